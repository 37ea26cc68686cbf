"""Sparsity schedules: the AGP cubic, iterative rounds, and the gradual pruning hook."""

from types import SimpleNamespace

import pytest

from course_lib.pruning.procedures import magnitude
from course_lib.sparse.schedules import agp_sparsity, cosine_drop_fraction, iterative_sparsities, rate_per_round
from course_lib.sparse.updaters import AGP, RigL


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
    lambda: iterative_sparsities(0.9, 0), lambda: AGP(magnitude(), 0.5, update_every=0), lambda: RigL(0.9, drop_fraction=1.5),
    lambda: cosine_drop_fraction(0, 0.3, 10, 10),
])
def test_bad_schedules_are_refused(call):
    with pytest.raises(ValueError):
        call()


def test_cosine_drop_fraction_decays_from_alpha_to_zero():
    assert cosine_drop_fraction(0, 0.3, 0, 100) == pytest.approx(0.3)
    assert cosine_drop_fraction(50, 0.3, 0, 100) == pytest.approx(0.15)
    assert cosine_drop_fraction(100, 0.3, 0, 100) == pytest.approx(0.0, abs=1e-12)
    assert cosine_drop_fraction(500, 0.3, 0, 100) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("steps, every", [(628, 19), (1884, 57), (96, 3), (10, 20)])
def test_the_update_count_is_what_a_trainer_does(steps, every):
    from course_lib.sparse.schedules import drop_and_grow_updates
    from course_lib.sparse.updaters import SET, MaskUpdater

    updater = SET(0.9, update_every=every)
    MaskUpdater.on_start(updater, SimpleNamespace(total_steps=steps))  # the end step a run of `steps` sets
    assert drop_and_grow_updates(steps, every) == sum(updater.is_due(t) for t in range(1, steps + 1))
