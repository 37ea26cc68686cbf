"""How much, when: sparsity schedules for pruning and drop fractions for sparse training.

* **One-shot**: prune to the target once, then fine-tune.
* **Iterative** (Han et al. 2015; Frankle & Carbin 2019): several rounds, each
  removing the same *fraction of the survivors*, with training in between.
  Five rounds of 20 % each reach 1 - 0.8^5 = 67 % sparsity.
* **Gradual** (Zhu & Gupta 2017, "automated gradual pruning", AGP): the
  sparsity rises during training along a cubic curve, fast at first (when
  there are many redundant weights) and slowly near the end:

      s(t) = s_f + (s_i - s_f) * (1 - (t - t_0) / (t_1 - t_0))^3    for t_0 <= t <= t_1

* **Drop fraction** of sparse training (SET, RigL): the share of each layer's
  weights moved at an update decays along half a cosine.
* **Update interval** Delta T of sparse training (:func:`update_every`): a fixed
  number of mask updates before T_end, whatever the run's length.

These are pure functions of the step; :mod:`course_lib.sparse.updaters` uses
them to decide how much each mask update changes.
"""

from __future__ import annotations

import math

from course_lib.masks import check_sparsity
from course_lib.training.config import TrainConfig


def agp_sparsity(step: int, final_sparsity: float, begin_step: int, end_step: int,
                 initial_sparsity: float = 0.0) -> float:
    """Target sparsity at ``step`` of the cubic AGP schedule (constant outside [begin, end])."""
    check_sparsity(final_sparsity, "final_sparsity")
    check_sparsity(initial_sparsity, "initial_sparsity")
    if end_step <= begin_step:
        raise ValueError(f"end_step ({end_step}) must come after begin_step ({begin_step}).")
    progress = min(max((step - begin_step) / (end_step - begin_step), 0.0), 1.0)
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - progress) ** 3


def iterative_sparsities(final_sparsity: float, rounds: int) -> list[float]:
    """Sparsity after each of ``rounds`` rounds that each remove the same fraction of survivors.

    ``iterative_sparsities(0.9, 3)`` -> about [0.536, 0.785, 0.9]: each round keeps
    (1 - 0.9)^(1/3) = 46.4 % of what survived the previous one.
    """
    check_sparsity(final_sparsity, "final_sparsity")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}.")
    keep_per_round = (1.0 - final_sparsity) ** (1.0 / rounds)
    return [1.0 - keep_per_round ** r for r in range(1, rounds + 1)]


def rate_per_round(final_sparsity: float, rounds: int) -> float:
    """The fraction of surviving weights each round removes (e.g. 0.2 in the lottery-ticket paper)."""
    return iterative_sparsities(final_sparsity, rounds)[0]


def cosine_drop_fraction(step: int, initial_fraction: float, begin_step: int, end_step: int) -> float:
    """The fraction of each layer's weights that SET and RigL move at ``step``.

    It decays from ``initial_fraction`` (alpha) at ``begin_step`` to 0 at
    ``end_step`` along half a cosine (Evci et al. 2020):

        f(t) = alpha * (1 + cos(pi * (t - t_0) / (t_end - t_0))) / 2
    """
    if end_step <= begin_step:
        raise ValueError(f"end_step ({end_step}) must come after begin_step ({begin_step}).")
    progress = min(max((step - begin_step) / (end_step - begin_step), 0.0), 1.0)
    return initial_fraction * 0.5 * (1.0 + math.cos(math.pi * progress))


MASK_UPDATES = 25  # mask updates before T_end in every SET/RigL run, whatever its length


END_FRACTION = 0.75  # T_end: no mask updates (and no more AGP pruning) in the last quarter of training


def default_end_step(total_steps: int, end_fraction: float = END_FRACTION, begin_step: int = 0) -> int:
    """T_end of a run of ``total_steps``: the step at ``end_fraction`` of it, and at least one after ``begin_step``.
    Every mask updater takes it as its last update step when it is given no ``end_step``."""
    return max(begin_step + 1, round(end_fraction * total_steps))


def drop_and_grow_updates(total_steps: int, every: int, end_fraction: float = END_FRACTION) -> int:
    """How many mask updates SET and RigL make in a run of ``total_steps``: one every ``every`` steps, strictly
    before T_end. :func:`update_every` aims at :data:`MASK_UPDATES`; whole steps can make it one fewer or more."""
    return len(range(every, default_end_step(total_steps, end_fraction), every))


def update_every(config: TrainConfig, train_size: int, updates: int = MASK_UPDATES,
                 end_fraction: float = END_FRACTION) -> int:
    """Delta T: the steps between mask updates that give ``updates`` updates before ``end_fraction`` of training.

    RigL updates every 100 steps of runs that last tens of thousands of steps
    (hundreds of updates); our runs last about two thousand, so we keep a
    useful number of updates instead and let Delta T follow the run's length.
    """
    if updates < 1:
        raise ValueError(f"updates must be at least 1, got {updates}.")
    return max(1, round(end_fraction * config.total_steps(train_size) / updates))
