"""Sparsity schedules: the AGP cubic, iterative rounds, and the gradual pruning hook."""

import pytest
import torch

from course_lib.masks import get_masks, mask_sparsity
from course_lib.models import build_model
from course_lib.pruning.procedures import magnitude
from course_lib.sparse.schedules import GradualPruner, agp_sparsity, iterative_sparsities, rate_per_round


def test_agp_follows_the_cubic_by_hand():
    # Halfway: s_f + (0 - s_f) * (1 - 0.5)^3 = 0.8 * (1 - 1/8) = 0.7
    assert agp_sparsity(50, 0.8, 0, 100) == pytest.approx(0.7)
    assert agp_sparsity(0, 0.8, 0, 100) == 0.0 and agp_sparsity(100, 0.8, 0, 100) == pytest.approx(0.8)
    assert agp_sparsity(-5, 0.8, 0, 100) == 0.0 and agp_sparsity(500, 0.8, 0, 100) == pytest.approx(0.8)
    values = [agp_sparsity(t, 0.9, 10, 60, 0.1) for t in range(10, 61)]
    assert values == sorted(values) and values[0] == pytest.approx(0.1)
    steps = [b - a for a, b in zip(values, values[1:])]
    assert steps == sorted(steps, reverse=True), "AGP prunes fastest at the start"


def test_iterative_rounds_remove_the_same_fraction_of_survivors():
    targets = iterative_sparsities(0.9, 3)
    assert targets[-1] == pytest.approx(0.9)
    survivors = [1.0] + [1 - t for t in targets]
    assert [b / a for a, b in zip(survivors, survivors[1:])] == pytest.approx([0.1 ** (1 / 3)] * 3)
    assert rate_per_round(1 - 0.8 ** 5, 5) == pytest.approx(0.2)  # the lottery-ticket paper's 20 % per round


@pytest.mark.parametrize("call", [
    lambda: agp_sparsity(0, 1.5, 0, 10), lambda: agp_sparsity(0, 0.5, 10, 10),
    lambda: iterative_sparsities(0.9, 0), lambda: GradualPruner(magnitude(), 0.5, 0, 10, frequency=0),
])
def test_bad_schedules_are_refused(call):
    with pytest.raises(ValueError):
        call()


def test_gradual_pruner_raises_sparsity_on_schedule():
    model = build_model("lenet300")
    pruner = GradualPruner(magnitude("global"), 0.8, begin_step=0, end_step=100, frequency=25)
    seen = []
    for step in range(1, 121):
        pruner(model, step)
        seen.append(mask_sparsity(get_masks(model)) if get_masks(model) else 0.0)
    assert [s for s, _ in pruner.history] == [25, 50, 75, 100]
    assert seen[24] == pytest.approx(agp_sparsity(25, 0.8, 0, 100), abs=1e-4)
    assert seen[-1] == pytest.approx(0.8, abs=1e-4) and seen == sorted(seen)
    assert torch.count_nonzero(model.net[1].weight) < 0.25 * model.net[1].weight.numel()
