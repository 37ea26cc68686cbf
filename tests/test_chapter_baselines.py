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


def test_small_dense_gets_the_rate_that_trains_it_best_on_validation(monkeypatch):
    monkeypatch.setattr(ch6, "LEARNING_RATES", (1e-9, 1e-2))  # a rate that cannot train, and one that can
    data = _toy_data(n=256)
    config = TrainConfig(epochs=2, batch_size=32, lr=3e-3)
    assert ch6.small_dense_lr(data, config, 0.9) == 1e-2


def test_a_rate_search_scores_every_rate_once_and_chooses_the_best(monkeypatch):
    monkeypatch.setattr(ch6, "LEARNING_RATES", (1e-9, 1e-2))
    data, trials = _toy_data(n=256), []

    def trial(config: TrainConfig) -> nn.Module:
        trials.append(config.lr)
        model = ch6.lenet300_of_size(ch6.small_dense_parameters(0.9), seed=config.seed)
        ch6.train(model, data, config, progress=False)
        return model

    search = ch6.RateSearch("test-rate-search", data, TrainConfig(epochs=2, batch_size=32, seed=5), 0.9, trial)
    scores = search.scores()
    assert list(scores) == [1e-9, 1e-2] and search.best() == max(scores, key=scores.get) == 1e-2
    assert trials == [1e-9, 1e-2]  # one run per rate: the second call read the cache


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
