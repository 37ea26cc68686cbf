"""The baseline cache: a hit never retrains, and any change of config is a miss."""

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
