"""The baselines chapters 5-7 compare their methods with: each is what its docstring says, on toy data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib.chapters import ch05_rethinking_pruning as ch5
from course_lib.chapters import ch06_sparse_training as ch6
from course_lib.chapters import ch07_dynamic_probabilistic_pruning as ch7
from course_lib.masks import get_masks
from course_lib.training import TrainConfig
from tests.test_updaters import _toy_data


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))


def test_small_dense_gets_the_rate_that_trains_it_best_on_validation():
    data = _toy_data(n=256)
    config = TrainConfig(epochs=2, batch_size=32, lr=3e-3)
    assert ch6.small_dense_lr(data, config, 0.9, (1e-9, 1e-2)) == 1e-2  # a rate that cannot train, and one that can


def test_a_rate_search_scores_every_rate_once_and_chooses_the_best():
    data, trials = _toy_data(n=256), []

    def trial(config: TrainConfig) -> nn.Module:
        trials.append(config.lr)
        model = ch6.lenet300_of_size(ch6.small_dense_parameters(0.9), seed=config.seed)
        ch6.train(model, data, config, progress=False)
        return model

    search = ch6.RateSearch("test-rate-search", data, TrainConfig(epochs=2, batch_size=32, seed=5), 0.9, trial,
                            (1e-9, 1e-2))
    scores = search.scores()
    assert list(scores) == [1e-9, 1e-2] and search.best() == max(scores, key=scores.get) == 1e-2
    assert trials == [1e-9, 1e-2]  # one run per rate: the second call read the cache


def test_a_search_of_one_rate_uses_it_without_training():
    def trial(config: TrainConfig) -> nn.Module:
        raise AssertionError("one rate: nothing to choose, so nothing may train")

    search = ch6.RateSearch("test-one-rate", _toy_data(n=64), TrainConfig(epochs=1, batch_size=32), 0.9, trial, (1e-2,))
    assert search.best() == 1e-2


def test_the_small_dense_target_counts_the_kept_weights_and_every_bias():
    weights, biases = 784 * 300 + 300 * 100 + 100 * 10, 300 + 100 + 10
    assert ch6.small_dense_parameters(0.9) == round(0.1 * weights) + biases


def test_the_random_row_control_keeps_k_of_every_row_at_random():
    data = _toy_data(n=64)
    row, model = ch7._random_row_run(data, TrainConfig(epochs=1, batch_size=32, seed=3), 0.9)
    assert row["method"] == "random row" and set(row["masks"]) == {"net.fc1.weight", "net.fc2.weight"}
    for name, mask in row["masks"].items():
        kept = mask.sum(dim=1)
        assert (kept == round(0.1 * mask.shape[1])).all(), name  # exactly k per neuron, as DPP
    first = row["masks"]["net.fc1.weight"]
    assert not torch.equal(first[0], first[1])  # not the same k for every neuron: drawn at random per row


def test_the_dense_run_as_long_as_scratch_b_trains_the_full_network_then_prunes_and_fine_tunes_it():
    data = _toy_data(n=64)
    config = TrainConfig(epochs=1, batch_size=32)
    longer = TrainConfig(epochs=1, batch_size=32, steps=6)
    dense, tuned = ch5.dense_as_long(data, config, longer, keep=0.5, seed=0, progress=False)
    assert dense["method"] == "dense, as long as Scratch-B" and dense["epochs"] == pytest.approx(3.0)
    full = sum(m.weight.numel() for m in ch5.build_model("vgg").modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert dense["weights_kept"] == full and dense["keep"] == tuned["keep"] == 0.5
    assert tuned["method"] == "fine-tuned from the long dense" and tuned["epochs"] == pytest.approx(1.0)
    assert tuned["weights_kept"] < 0.5 * full  # half the filters of every convolution: about a quarter of the weights


def test_the_dense_classifier_control_keeps_as_many_weights_as_uniform_and_erk():
    rows = ch6.classifier_runs(_toy_data(n=128), TrainConfig(epochs=1, batch_size=32), 0.95, seed=0, progress=False)
    total = 784 * 300 + 300 * 100 + 100 * 10
    for row in rows:
        trace = row["trace"]
        assert trace.densities[-1]["net.fc3"] == 1.0, row["method"]  # the classifier stays dense
        assert trace.densities[-1]["net.fc1"] == pytest.approx(trace.densities[-1]["net.fc2"], abs=0.01)  # uniform
        kept = sum(trace.densities[-1][n] * trace.weights[n] for n in trace.layers)
        assert kept == pytest.approx(0.05 * total, rel=0.005), row["method"]  # as many weights as the other arms
    assert [r["method"] for r in rows] == list(ch6.SPARSE_TRAINERS)


def test_agp_prunes_the_hidden_layers_and_keeps_as_many_weights_as_the_sparse_trainers():
    # Global magnitude over all three layers starved the 100x10 classifier (claim 1's lesson); AGP leaves it dense.
    model = ch6.agp_pruning(_toy_data(n=128), 0.95, TrainConfig(epochs=2, batch_size=32), seed=0).model
    masks = get_masks(model)
    assert "net.fc3.weight" not in masks  # the classifier has no mask: dense
    total = 784 * 300 + 300 * 100 + 100 * 10
    kept = sum(int(m.sum()) for m in masks.values()) + 100 * 10
    assert kept == pytest.approx(0.05 * total, rel=0.005)


def test_the_random_n_of_m_control_keeps_n_of_every_group_at_random():
    model = ch7.build_model("lenet300", seed=0)
    masks = ch7.random_n_of_m_masks(model, 1, 4, seed=2)
    assert set(masks) == {"net.fc1.weight", "net.fc2.weight"}  # the classifier stays dense, as for DPP's tiles
    for name, mask in masks.items():
        assert ch7.is_n_m_sparse(mask, 1, 4) and int(mask.sum()) == mask.numel() // 4, name
    groups = masks["net.fc1.weight"].reshape(-1, 4)
    assert len({tuple(g.tolist()) for g in groups}) == 4  # every position of the kept one occurs: not a fixed pattern
    assert not torch.equal(masks["net.fc1.weight"], ch7.random_n_of_m_masks(model, 1, 4, seed=3)["net.fc1.weight"])


@pytest.mark.parametrize("criterion", ["l1", "random"])
def test_kernel_controls_keep_k_whole_kernels_of_every_filter(criterion):
    model = ch7.build_model("vgg", seed=0)
    masks = ch7.kernel_masks(model, 0.5, criterion, seed=1)
    for name, mask in masks.items():
        per_kernel = mask.sum(dim=(2, 3))
        assert set(per_kernel.unique().tolist()) <= {0.0, 9.0}, name  # a kernel is kept or removed whole
        kept = (per_kernel > 0).sum(dim=1)
        assert (kept == max(1, round(0.5 * mask.shape[1]))).all(), name
    if criterion == "l1":  # the kept kernels of a filter are its largest by sum of |w|
        name = next(n for n, m in masks.items() if m.shape[1] > 1)
        w = dict(model.named_parameters())[name].detach().abs().sum(dim=(2, 3))
        kept = masks[name][:, :, 0, 0].bool()
        assert (w[kept].reshape(len(w), -1).min(dim=1).values >= w[~kept].reshape(len(w), -1).max(dim=1).values).all()
    with pytest.raises(ValueError, match="'l1' or 'random'"):
        ch7.kernel_masks(model, 0.5, "l2", seed=1)


def test_dpps_mask_on_the_dense_network_keeps_dpps_choice_and_the_magnitude_schedule(monkeypatch):
    data = _toy_data(n=64)
    monkeypatch.setattr(ch7, "post_training_quantized", lambda model, data: {})  # not what this test is about
    rows = ch7.weight_runs(data, epochs=3, sparsities=(0.9,), seed=4)
    by_method = {row["method"]: row for row in rows}
    learned, transplanted = by_method["DPP"], by_method["DPP's mask, fine-tuned"]
    for name, mask in learned["masks"].items():
        assert torch.equal(transplanted["masks"][name], mask), name  # the very mask DPP froze
    assert any(not torch.equal(by_method["row"]["masks"][n], m) for n, m in learned["masks"].items())
    floor = by_method["random row, fine-tuned"]["masks"]  # the transplant's floor: a random k per neuron, same weights
    assert all((m.sum(dim=1) == learned["masks"][n].sum(dim=1)).all() for n, m in floor.items())
    assert any(not torch.equal(m, learned["masks"][n]) for n, m in floor.items())


def test_the_sgd_regime_trains_set_and_rigl_with_sgd_at_the_rate_chosen_for_set(monkeypatch):
    data, seen = _toy_data(n=128), []
    original = ch6.train

    def spy(model, data, config, *args, **kwargs):
        seen.append((config.optimizer, config.momentum, config.lr))
        return original(model, data, config, *args, **kwargs)

    monkeypatch.setattr(ch6, "train", spy)
    monkeypatch.setattr(ch6, "budget", lambda profile: ch6.BUDGETS["full"].__class__(
        train_size=128, epochs=1, sparsities=(0.95,), lengths=(1,), sgd_rates=(1e-9, 0.05), adam_rates=(1e-2,)))
    config = TrainConfig(epochs=1, batch_size=32, lr=3e-3)
    sgd = ch6.sgd_recipe(None, data, config)
    scores = ch6.sgd_search(None, data, config).scores()  # read from the cache: nothing trains again
    assert list(scores) == [1e-9, 0.05] and sgd.lr == max(scores, key=scores.get)  # chosen on validation
    assert (sgd.optimizer, sgd.momentum) == ("sgd", 0.9)
    assert seen == [("sgd", 0.9, 1e-9), ("sgd", 0.9, 0.05)]  # the search: SGD at each rate, once
    rows = ch6.sgd_runs(data, sgd, 0.95, seed=1, progress=False)
    assert [r["method"] for r in rows] == ["SET", "RigL"] and all(r["lr"] == sgd.lr for r in rows)
    assert seen[2:] == [("sgd", 0.9, sgd.lr)] * 2


def test_the_slimming_strength_breaks_validation_ties_towards_a_cut_of_silenced_channels():
    import pandas as pd
    table = pd.DataFrame({"val_acc_finetuned": [84.0, 85.5, 85.3, 78.0], "share_below_0.05": [0.0, 0.37, 0.68, 0.91]},
                         index=pd.Index([0.0, 0.01, 0.03, 0.1], name="lambda"))
    assert ch5.chosen_strength(table) == 0.01  # no noise given: the best on validation
    assert ch5.chosen_strength(table, noise=0.35) == 0.03  # 0.01 and 0.03 tie; 0.03 silenced over half the channels
    assert ch5.chosen_strength(table, noise=0.1) == 0.01  # no tie: the best wins whatever it silenced


def test_a_shuffled_ticket_keeps_each_units_values_and_moves_them():
    from course_lib.masks import apply_masks
    from course_lib.pruning.procedures import magnitude
    model = ch5.build_model("lenet300", seed=0)
    apply_masks(model, magnitude("global")(model, 0.9))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ch5.shuffle_within_units(model, seed=1)
    name = "net.fc1.parametrizations.weight.original"
    old, new = before[name], dict(model.named_parameters())[name].detach()
    mask = ch5.get_masks(model)["net.fc1.weight"].bool()
    assert torch.equal(old[~mask], new[~mask])  # the pruned positions are untouched
    for row in range(0, 300, 37):
        assert torch.equal(old[row][mask[row]].sort().values, new[row][mask[row]].sort().values)  # the same values
    assert not torch.equal(old[mask], new[mask])  # ... in other places
