"""When to prune: one-shot, iterative rounds, or gradually during training (AGP).

* **One-shot**: prune to the target once, then fine-tune.
* **Iterative** (Han et al. 2015; Frankle & Carbin 2019): several rounds, each
  removing the same *fraction of the survivors*, with training in between.
  Five rounds of 20 % each reach 1 - 0.8^5 = 67 % sparsity.
* **Gradual** (Zhu & Gupta 2017, "automated gradual pruning", AGP): the
  sparsity rises during training along a cubic curve, fast at first (when
  there are many redundant weights) and slowly near the end:

      s(t) = s_f + (s_i - s_f) * (1 - (t - t_0) / (t_1 - t_0))^3    for t_0 <= t <= t_1
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from course_lib.masks import Masks, apply_masks
from course_lib.pruning.selection import check_sparsity


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


class GradualPruner:
    """An ``after_step`` hook that prunes along the AGP schedule while training.

    Every ``frequency`` optimizer steps between ``begin_step`` and ``end_step``
    it asks ``make_masks(model, sparsity)`` for masks at the scheduled
    sparsity and attaches them; between updates the masks stay fixed, and
    :func:`course_lib.masks.zero_pruned_weights` should run as the next hook.

    Example::

        pruner = GradualPruner(lambda m, s: unstructured_masks(m, s), 0.9, 0, 2000, 100)
        train(model, data, config, after_step=[pruner, zero_pruned_weights])
    """

    def __init__(self, make_masks: Callable[[nn.Module, float], Masks], final_sparsity: float,
                 begin_step: int, end_step: int, frequency: int = 100, initial_sparsity: float = 0.0) -> None:
        agp_sparsity(begin_step, final_sparsity, begin_step, end_step, initial_sparsity)  # validates
        if frequency < 1:
            raise ValueError(f"frequency must be at least 1 step, got {frequency}.")
        self.make_masks = make_masks
        self.final_sparsity = final_sparsity
        self.initial_sparsity = initial_sparsity
        self.begin_step, self.end_step, self.frequency = begin_step, end_step, frequency
        self.history: list[tuple[int, float]] = []  # (step, sparsity) of every mask update

    def __call__(self, model: nn.Module, step: int) -> None:
        due = (step - self.begin_step) % self.frequency == 0 or step == self.end_step
        if self.begin_step <= step <= self.end_step and due:
            target = agp_sparsity(step, self.final_sparsity, self.begin_step, self.end_step, self.initial_sparsity)
            if not self.history or target > self.history[-1][1]:
                apply_masks(model, self.make_masks(model, target))
                self.history.append((step, target))
