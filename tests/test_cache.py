"""The baseline cache: a hit never retrains, and any change of config, or of the code that trains, is a miss."""

import multiprocessing
import time
from pathlib import Path

import pytest
import torch

from course_lib import cache
from course_lib.training import TrainConfig
from tests.test_training import _subset


@pytest.fixture
def small(quick_splits):
    return _subset(quick_splits, n=600)


def test_a_hit_does_not_retrain(small, tmp_path, monkeypatch):
    config = TrainConfig(epochs=1)
    first = cache.trained_baseline("lenet300", small, config, directory=tmp_path, progress=False)
    assert not first.from_cache and first.path.is_file()

    def must_not_train(*args, **kwargs):
        raise AssertionError("a cache hit retrained the model")

    monkeypatch.setattr(cache, "train", must_not_train)
    second = cache.trained_baseline("lenet300", small, config, directory=tmp_path, progress=False)
    assert second.from_cache and second.history.val_accuracy == first.history.val_accuracy
    for a, b in zip(first.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)
    assert not second.model.training


def test_env_var_chooses_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV_VAR, str(tmp_path))
    assert cache.cache_dir() == tmp_path


def test_key_changes_with_everything_that_changes_the_weights(small):
    base = cache.cache_key("lenet300", small, TrainConfig(epochs=1))
    assert base == cache.cache_key("lenet300", small, TrainConfig(epochs=1))
    assert base != cache.cache_key("lenet5", small, TrainConfig(epochs=1))
    assert base != cache.cache_key("lenet300", small, TrainConfig(epochs=2))
    assert base != cache.cache_key("lenet300", small, TrainConfig(epochs=1, seed=1))
    assert base != cache.cache_key("lenet300", _subset(small, n=300), TrainConfig(epochs=1))
    other_split = type(small)(small.train, small.val, small.test, small.classes, small.name, seed=1)
    assert base != cache.cache_key("lenet300", other_split, TrainConfig(epochs=1))


def test_key_changes_with_the_code_that_trains_but_not_with_its_comments(small, tmp_path, monkeypatch):
    loop = tmp_path / "toy_training" / "loop.py"
    loop.parent.mkdir()
    (loop.parent / "__init__.py").write_text("")
    loop.write_text('"""A training loop."""\n\nLR = 0.1\n')
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.setattr(cache, "BASELINE_CODE", ("toy_training.loop",))  # stands in for course_lib.training.loop
    base = cache.cache_key("lenet300", small, TrainConfig(epochs=1))
    loop.write_text('"""The training loop, described anew."""\nLR = 0.1  # the step size\n')
    assert cache.cache_key("lenet300", small, TrainConfig(epochs=1)) == base
    loop.write_text('"""A training loop."""\n\nLR = 0.2\n')
    assert cache.cache_key("lenet300", small, TrainConfig(epochs=1)) != base


def test_a_corrupt_baseline_file_is_moved_aside_and_retrained(small, tmp_path):
    config = TrainConfig(epochs=1)
    first = cache.trained_baseline("lenet300", small, config, directory=tmp_path, progress=False)
    first.path.write_bytes(first.path.read_bytes()[:100])  # a killed process: the file is cut short
    with pytest.warns(UserWarning, match="could not be read") as caught:
        again = cache.trained_baseline("lenet300", small, config, directory=tmp_path, progress=False)
    assert str(first.path) in str(caught[0].message)
    assert not again.from_cache and again.path.is_file()
    assert first.path.with_name(first.path.name + ".corrupt").is_file()
    for a, b in zip(first.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)  # seeded: the recomputed baseline is the same


@pytest.mark.parametrize("damage", [b"", b"not a torch file at all", None])
def test_cached_run_recomputes_a_damaged_file_with_a_warning(tmp_path, damage):
    calls = []

    def compute():
        calls.append(1)
        return {"accuracy": 87.5, "curve": torch.arange(3)}

    first = cache.cached_run("exp", {"sparsity": 0.9}, compute, directory=tmp_path)
    hit = cache.cached_run("exp", {"sparsity": 0.9}, compute, directory=tmp_path)
    assert len(calls) == 1 and hit["accuracy"] == first["accuracy"] and torch.equal(hit["curve"], first["curve"])
    (path,) = tmp_path.glob("exp-*.pt")
    if damage is None:  # a readable torch file that is not ours (e.g. a model saved by hand under that name)
        torch.save({"something": "else"}, path)
    else:
        path.write_bytes(damage)
    with pytest.warns(UserWarning, match=path.name):
        again = cache.cached_run("exp", {"sparsity": 0.9}, compute, directory=tmp_path)
    assert len(calls) == 2 and again["accuracy"] == 87.5 and torch.equal(again["curve"], torch.arange(3))


def test_cached_run_keys_on_parts_device_and_course_seed(tmp_path, monkeypatch):
    calls = []
    run = lambda: calls.append(1) or len(calls)
    cache.cached_run("exp", {"a": 1, "config": TrainConfig(epochs=1)}, run, directory=tmp_path)
    cache.cached_run("exp", {"a": 2, "config": TrainConfig(epochs=1)}, run, directory=tmp_path)
    cache.cached_run("exp", {"a": 1, "config": TrainConfig(epochs=2)}, run, directory=tmp_path)
    cache.cached_run("exp", {"a": 1, "config": TrainConfig(epochs=1)}, run, directory=tmp_path,
                     device=torch.device("meta"))
    monkeypatch.setenv("COURSE_SEED", "7")
    cache.cached_run("exp", {"a": 1, "config": TrainConfig(epochs=1)}, run, directory=tmp_path)
    assert len(calls) == 5
    with pytest.raises(TypeError, match="cache key"):
        cache.cached_run("exp", {"a": object()}, run, directory=tmp_path)


def _count_and_wait(directory: str, log: str) -> int:
    def compute() -> int:
        with open(log, "a") as f:
            f.write("computed\n")
        time.sleep(1.0)
        return 7
    return cache.cached_run("shared", {"x": 1}, compute, directory=Path(directory))


def test_two_processes_asking_for_one_result_compute_it_once(tmp_path):
    # Two notebooks (or two test workers) want the same result at once: one computes, the other waits and loads.
    log = tmp_path / "log.txt"
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with context.Pool(2) as pool:
        results = pool.starmap(_count_and_wait, [(str(tmp_path), str(log))] * 2)
    assert results == [7, 7] and log.read_text().count("computed") == 1
