"""The method registry, the capstone's protocol and ledger: every method runs under one protocol and returns one record."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from course_lib import methods
from course_lib.chapters import ch07_dynamic_probabilistic_pruning as chapter7
from course_lib.chapters import ch08_capstone as capstone
from course_lib.costs import layer_costs
from course_lib.dpp.pruner import dpp_hook
from course_lib.models import LENET_CLASSIFIER, build_model
from course_lib.devices import DEVICE_ENV_VAR, default_device
from tests.test_updaters import _toy_data

STRUCTURED = {"dense", "L1 filters + fine-tune", "Scratch-B", "network slimming", "feature-map DPP"}
UNSTRUCTURED = {"magnitude + fine-tune", "iterative magnitude", "AGP", "lottery ticket", "LR rewinding", "SNIP",
                "SynFlow", "static", "SET", "RigL", "DPP"}


@pytest.fixture(scope="module")
def protocol() -> methods.Protocol:
    return methods.Protocol("lenet300", _toy_data(n=256), epochs=3)


def test_the_registry_holds_every_unstructured_method_of_the_course():
    registered = {name for name, m in methods.METHODS.items() if m.family == "unstructured"}
    assert registered == UNSTRUCTURED
    assert all(m.about and 0 <= m.chapter <= 7 for m in methods.METHODS.values())
    assert {n for n, m in methods.METHODS.items() if m.family == "structured"} == STRUCTURED
    with pytest.raises(ValueError, match="registered already"):
        methods.register("SET", "unstructured", 6, "again")(lambda *args: None)


@pytest.mark.parametrize("name", sorted(UNSTRUCTURED))
def test_every_method_returns_the_common_record_at_the_sparsity_asked(name, protocol, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    result = methods.run_method(name, protocol, 0.9, seed=0)
    assert result.method == name and result.family == "unstructured" and result.seed == 0
    assert result.measured_sparsity == pytest.approx(0.9, abs=0.005)  # over fc1 and fc2
    assert "net.fc3.weight" not in result.masks or bool(result.masks["net.fc3.weight"].all())  # classifier dense
    assert result.weights_kept == sum(int(m.sum()) for m in result.masks.values()) + 100 * 10  # + the dense classifier
    assert 0.0 <= result.val_acc <= 100.0 and 0.0 <= result.test_acc <= 100.0
    assert result.train_epochs >= protocol.epochs - 1e-9 and 0.0 < result.train_flops < 2.5
    assert result.seconds > 0


def test_the_ledger_counts_dense_pretraining_and_sparse_phases(protocol, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    tuned = methods.run_method("magnitude + fine-tune", protocol, 0.9, seed=0)
    static = methods.run_method("static", protocol, 0.9, seed=0)
    ticket = methods.run_method("lottery ticket", protocol, 0.9, seed=0)
    dpp = methods.run_method("DPP", protocol, 0.9, seed=0)
    # 2 dense epochs + 1 epoch at ~10 % density, in units of 3 dense epochs; the classifier (1,000 weights) stays dense.
    density = (0.1 * (784 * 300 + 300 * 100) + 100 * 10) / (784 * 300 + 300 * 100 + 100 * 10)
    assert tuned.train_epochs == pytest.approx(3.0)
    assert tuned.train_flops == pytest.approx((2 + density) / 3, rel=0.02)
    assert static.train_flops == pytest.approx(density, rel=0.02)
    assert ticket.train_epochs == pytest.approx(6.0) and ticket.train_flops == pytest.approx(1 + density, rel=0.02)
    # A sampled mask needs the gradient of every entry: forward and input gradient sparse, weight gradient dense.
    assert dpp.train_flops == pytest.approx((2 * density + 1) / 3, rel=0.02)


def test_the_capstones_dpp_is_chapter_7s_run_on_the_same_protocol(protocol, tmp_path, monkeypatch):
    """The ledger watches the capstone's runs; chapter 7 trains the same DPP without it. Same seed, same run."""
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    ours = methods.run_method("DPP", protocol, 0.9, seed=1)
    config = methods.budgets(protocol.epochs, 1)["dpp"]
    hook = dpp_hook(0.9, protocol.data, config, 1, LENET_CLASSIFIER)
    row, _ = chapter7._dpp_row("DPP", 0.9, protocol.data, config, hook)
    assert (ours.val_acc, ours.test_acc) == (row["val_acc"], row["test_acc"])


def test_runs_are_cached_and_the_plan_covers_every_method_per_seed(protocol, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    first = capstone.run("static", protocol, 0.9, seed=1)
    again = capstone.run("static", protocol, 0.9, seed=1)
    assert again["seconds"] == first["seconds"]  # read back, not re-run
    jobs = capstone.plan(["SET", "DPP"], (0.8, 0.9), (0, 1))
    assert jobs[:4] == [("SET", 0.8, 0), ("SET", 0.9, 0), ("DPP", 0.8, 0), ("DPP", 0.9, 0)] and len(jobs) == 8
    with pytest.raises(ValueError, match="Unknown methods"):
        capstone.plan(["SNAP"], (0.9,), (0,))


def test_the_command_line_explains_itself(capsys):
    with pytest.raises(SystemExit):
        capstone.main(["--help"])
    assert "--profile" in capsys.readouterr().out


def test_course_device_chooses_the_device_or_says_what_is_wrong(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV_VAR, "cpu")
    assert default_device() == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV_VAR, "tpu")
    with pytest.raises(ValueError, match="choose cpu, cuda or mps"):
        default_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv(DEVICE_ENV_VAR, "cuda")
        with pytest.raises(ValueError, match="no cuda device"):
            default_device()


@pytest.mark.parametrize("name", sorted(STRUCTURED))
def test_structured_methods_return_a_smaller_network_with_its_costs(name, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    protocol = methods.Protocol("vgg", _toy_data(n=128), epochs=2)
    result = methods.run_method(name, protocol, 1.0 - methods.KEEP, seed=0)
    dense_macs = int(layer_costs(build_model("vgg")).macs.sum())
    assert result.model is not None and result.family == "structured"
    assert result.macs == int(layer_costs(result.model).effective_macs.sum())
    if name == "dense":
        assert result.macs == dense_macs and result.measured_sparsity == 0.0
    else:
        assert result.macs < 0.5 * dense_macs and result.measured_sparsity > 0.3  # half the filters, and their inputs
    if name == "Scratch-B":
        # the predefined architecture needs no dense phase: only its own training, stretched to one dense run's compute
        assert 0.7 < result.train_flops < 1.3 and result.train_epochs > protocol.epochs, result


def test_a_new_method_is_one_registration_and_the_capstone_runs_it(protocol, tmp_path, monkeypatch):
    """The example of ``course_lib/__init__.py``: register a runner, and the capstone's plan and cache take it."""
    from course_lib.masks import apply_masks
    from course_lib.models import LENET_CLASSIFIER
    from course_lib.pruning.procedures import magnitude

    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    try:
        @methods.register("magnitude, no fine-tuning", "unstructured", chapter=1,
                          about="one global cut of the dense network")
        def _magnitude_only(protocol, sparsity, seed, ledger):
            model = methods.dense_trained(protocol, protocol.epochs, seed, ledger)
            apply_masks(model, magnitude("global", exclude=LENET_CLASSIFIER)(model, sparsity))
            return model

        assert ("magnitude, no fine-tuning", 0.9, 0) in capstone.plan(list(methods.METHODS), (0.9,), (0,))
        row = capstone.run("magnitude, no fine-tuning", protocol, 0.9, seed=0)
        assert not list(tmp_path.glob("capstone-*")), "a runner outside course_lib was cached: an edit would go unseen"
    finally:
        methods.METHODS.pop("magnitude, no fine-tuning", None)  # the example is not shipped
    assert row["measured_sparsity"] == pytest.approx(0.9, abs=0.005)
    assert row["train_epochs"] == pytest.approx(protocol.epochs) and row["train_flops"] == pytest.approx(1.0)
    assert row["train_flops_total"] > 0 and row["bytes"] == 4 * row["parameters"]
    assert "magnitude, no fine-tuning" not in methods.METHODS


def test_the_ranking_separates_neighbours_seed_by_seed_when_it_has_the_seeds():
    summary = pd.DataFrame({"mean": [80.0, 79.5, 70.0], "std": [2.0, 2.0, 0.1]}, index=["A", "B", "C"])
    per_seed = pd.DataFrame({"A": [82.0, 78.4], "B": [81.0, 78.0], "C": [70.1, 69.9]}, index=[0, 1])
    by_std = capstone.ranking(summary)
    by_seed = capstone.ranking(summary, per_seed)
    assert list(by_std.separated_from_next[:2]) == [False, True]  # 0.5 < 2.0; 9.5 > 2.0
    assert list(by_seed.separated_from_next[:2]) == [True, True]  # A beats B on both seeds, B beats C on both
    assert pd.isna(by_seed.separated_from_next.iloc[-1])
    per_seed.loc[1, "A"] = 78.1  # ahead of B on seed 1 by 0.1 points: within the test set's noise
    assert not capstone.ranking(summary, per_seed).separated_from_next.iloc[0]
