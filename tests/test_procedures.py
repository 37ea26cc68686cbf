"""Pruning procedures on real data: masks survive retraining, targets are met, originals untouched."""

import pandas as pd
import pytest
import torch

from course_lib.chapters import ch02_structure_and_speed as ch02
from course_lib.pruning import procedures as P
from course_lib.masks import get_masks, is_masked
from course_lib.models import build_model
from course_lib.training import TrainConfig, evaluate
from tests.test_training import _subset


@pytest.fixture(scope="module")
def small(quick_splits):
    return _subset(quick_splits, n=2000)


@pytest.fixture(scope="module")
def trained(small):
    from course_lib.training import train
    model = build_model("lenet300")
    train(model, small, TrainConfig(epochs=2, lr=3e-3), progress=False)
    return model


def test_prune_and_finetune_keeps_zeros_and_recovers(small, trained):
    result = P.prune_and_finetune(trained, small, 0.9, P.magnitude("global"), TrainConfig(epochs=1), progress=False)
    assert result.sparsity == pytest.approx(0.9, abs=1e-4)
    for name, mask in get_masks(result.model).items():
        assert torch.all(result.model.get_submodule(name.removesuffix(".weight")).weight[mask == 0] == 0)
    before = evaluate(P.one_shot(trained, 0.9, P.magnitude("global")).model, small.val)
    assert evaluate(result.model, small.val) > before
    assert not is_masked(trained), "procedures must work on a copy"


def test_iterative_and_gradual_reach_the_target(small, trained):
    it = P.iterative_pruning(trained, small, 0.8, 2, P.magnitude("local"), TrainConfig(epochs=1), progress=False)
    assert len(it.histories) == 2 and it.sparsity == pytest.approx(0.8, abs=1e-3)
    agp = P.gradual_pruning(trained, small, 0.8, P.magnitude("global"), TrainConfig(epochs=2), updates=5,
                            progress=False)
    assert agp.sparsity == pytest.approx(0.8, abs=1e-3)
    assert [s for _, s in agp.schedule] == sorted(s for _, s in agp.schedule) and len(agp.schedule) >= 5


def test_sensitivity_scan_prunes_one_layer_at_a_time(small, trained):
    scan = P.sensitivity_scan(trained, small.val, [0.0, 0.99], progress=False)
    assert list(scan.layer.unique()) == ["net.fc1", "net.fc2", "net.fc3"] and len(scan) == 6
    dense = evaluate(trained, small.val)
    assert (scan[scan.sparsity == 0.0].accuracy == dense).all()
    at_99 = scan[scan.sparsity == 0.99].set_index("layer").accuracy
    assert at_99["net.fc3"] < at_99["net.fc1"], "the 10-way output layer is the most sensitive"


def test_structured_sweep_shrinks_without_changing_outputs(quick_splits):
    data = _subset(quick_splits, n=1000)
    model = build_model("vgg")
    table, shrunk = ch02.structured_sweep(model, data, [1.0, 0.5], P.units("l1"), TrainConfig(epochs=1),
                                       latency_rounds=2, progress=False)
    assert table.loc[0.5, "max_output_diff"] < 1e-5
    assert table.loc[0.5, "MAC_reduction"] > 3 and table.loc[1.0, "MAC_reduction"] == 1
    assert shrunk[0.5].net.conv1.out_channels == 4


def test_a_random_control_keeps_each_layers_count_of_the_method_it_copies():
    model = build_model("lenet300", seed=3)
    chosen = P.magnitude("global")(model, 0.95)
    control = P.random_like(P.magnitude("global"))(model, 0.95)
    for name, mask in chosen.items():
        assert int(control[name].sum()) == int(mask.sum()), name  # where the zeros go: the same
    assert not torch.equal(control["net.fc1.weight"], chosen["net.fc1.weight"])  # which weights: not the same


def _scan(drops: dict[str, list[float]], grid=(0.0, 0.5, 0.8, 0.9)):
    import pandas as pd

    return pd.DataFrame([{"layer": layer, "sparsity": s, "accuracy": 90.0 - d}
                         for layer, ds in drops.items() for s, d in zip(grid, ds)])


def test_the_scan_design_prices_a_weight_not_a_layer():
    """A large layer that is cheap per weight takes the zeros; a small one is left dense, even where its own
    curve drops no more than the large one's (an equal-drop rule would prune both alike)."""
    scan = _scan({"big": [0, 0.5, 1.0, 3.0], "small": [0, 0.5, 1.0, 3.0]})
    chosen = P.sparsities_from_scan(scan, {"big": 1000, "small": 10}, 0.75)
    assert chosen == {"big": 0.8, "small": 0.0}
    # a layer whose next step costs nothing (or gains) is moved first, whatever its size
    scan = _scan({"big": [0, 0.5, 1.0, 3.0], "small": [0, -0.2, 0.0, 0.1]})
    assert P.sparsities_from_scan(scan, {"big": 1000, "small": 10}, 0.4)["small"] > 0
    with pytest.raises(ValueError, match="scan higher sparsities"):
        P.sparsities_from_scan(scan, {"big": 1000, "small": 10}, 0.95)


@pytest.mark.parametrize("classes, inputs, kept", [(3, 2, 3), (4, 3, 5), (10, 2, 12)])
def test_class_coverage_agrees_with_counting_every_draw(classes, inputs, kept):
    import itertools

    from course_lib.chapters import ch01_magnitude_pruning as ch01

    draws = list(itertools.combinations(range(classes * inputs), kept))
    empty = [classes - len({position // inputs for position in draw}) for draw in draws]
    covered, expected_empty = ch01.class_coverage(kept, classes, inputs)
    assert covered == pytest.approx(sum(e == 0 for e in empty) / len(draws))
    assert expected_empty == pytest.approx(sum(empty) / len(draws))


def test_units_cut_off_counts_units_with_no_input_and_hidden_units_with_no_output():
    from course_lib.chapters import ch01_magnitude_pruning as ch01

    first = torch.tensor([[1, 0, 1], [0, 0, 0]])  # 2 hidden units from 3 inputs: unit 1 has no input
    last = torch.tensor([[0, 1], [0, 0], [0, 1]])  # 3 classes from the 2 hidden units: class 1 has no input
    counts = ch01.units_cut_off({"net.fc1.weight": first, "net.fc2.weight": last})
    assert counts == {"net.fc1: no input": 1, "net.fc1: no output": 1, "net.fc2: no input": 1}


def test_claim_1_reads_the_schedule_chosen_on_validation_against_the_better_dense_network():
    from course_lib.chapters import ch01_magnitude_pruning as ch01

    rows = {"one-shot": {"validation (%)": 90.1, "test (%)": 89.0}, "AGP": {"validation (%)": 90.4, "test (%)": 88.5}}
    read = ch01.schedule_loss(rows, dense_test=89.2, longer_test=89.6)  # test's favourite is not chosen: 88.5 is
    assert read["chosen"] == "AGP" and read["loss"] == pytest.approx(89.6 - 88.5)
    assert ch01.schedule_loss(rows, dense_test=89.9, longer_test=89.6)["loss"] == pytest.approx(89.9 - 88.5)


def test_a_cached_fine_tuning_is_read_back_and_keyed_on_the_trained_weights(small, trained, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    config = TrainConfig(epochs=1)
    first = P.prune_and_finetune(trained, small, 0.9, P.magnitude("global"), config, progress=False, cached=True)

    def no_training(*args, **kwargs):
        raise AssertionError("a cached run must not train again")

    monkeypatch.setattr(P, "finetune", no_training)
    again = P.prune_and_finetune(trained, small, 0.9, P.magnitude("global"), config, progress=False, cached=True)
    for (name, a), (_, b) in zip(first.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert again.sparsity == first.sparsity and again.histories[0].steps == first.histories[0].steps
    with pytest.raises(AssertionError, match="must not train"):  # other weights, another criterion: other keys
        other = build_model("lenet300", seed=1)
        P.prune_and_finetune(other, small, 0.9, P.magnitude("global"), config, progress=False, cached=True)
    with pytest.raises(AssertionError, match="must not train"):
        P.prune_and_finetune(trained, small, 0.9, P.magnitude("local"), config, progress=False, cached=True)
    with pytest.raises(AssertionError, match="must not train"):  # a mask function of one's own is never cached
        P.prune_and_finetune(trained, small, 0.9, lambda m, s: P.magnitude("global")(m, s), config, progress=False,
                             cached=True)


def test_a_speed_difference_counts_only_beyond_the_reference_timed_again():
    latency = pd.DataFrame({"speedup": [1.0, 1.01, 1.023, 0.988, 1.30],
                            "speedup_low": [1.0, 0.978, 1.001, 0.985, 1.25],
                            "speedup_high": [1.0, 1.035, 1.035, 0.999, 1.34]},
                           index=["dense", "dense again", "zeros", "masked", "smaller"])
    lines = ch02.beyond_timing_spread(latency, "dense again", ["zeros", "masked"]).splitlines()
    assert "within the timing's spread" in lines[1] and "within the timing's spread" in lines[2]
    assert lines[3].endswith("not apart beyond the timing's spread")  # disjoint quartiles, but a gap inside the noise
    faster = ch02.beyond_timing_spread(latency, "dense again", ["smaller"]).splitlines()
    assert faster[1].endswith("faster than the reference beyond the timing's spread") and len(faster) == 2


def test_claim_2s_seeds_each_train_their_own_dense_network_and_seed_0_is_the_chapters(small, tmp_path, monkeypatch):
    from course_lib import cache
    from course_lib.chapters import ch01_magnitude_pruning as ch01

    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    dense_config, tuning = TrainConfig(epochs=1), TrainConfig(epochs=1, lr=1e-4)
    rows = {seed: ch01.scope_runs(small, dense_config, tuning, 0.98, seed, progress=False) for seed in (0, 1)}
    assert [r["scope"] for r in rows[0]] == ["global", "local", "random, local's sizes"]
    assert rows[0] != rows[1]  # another seed: another dense network, another random draw
    # Seed 0 is the chapter's own runs: its dense baseline and the scopes pruned from it, fine-tuned with the recipe.
    dense = cache.trained_baseline("lenet300", small, dense_config, progress=False).model
    chapter_runs = {name: evaluate(P.prune_and_finetune(dense, small, 0.98, make, tuning, progress=False,
                                                        cached=True).model, small.test)
                    for name, make in ch01.claim_scopes(0).items()}
    assert {r["scope"]: r["test_acc"] for r in rows[0]} == chapter_runs
