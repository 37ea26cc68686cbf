"""Chapter 1's budget, its comparison of pruning schedules, and the arithmetic of a starved output layer.

Most of chapter 1's experiments are short enough to stay in the notebook, built from
:mod:`course_lib.pruning.procedures` (fine-tuning runs through the run cache); what differs between the profiles
is how much accuracy a network trained in fewer epochs may lose.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from torch import nn

from course_lib.cache import cached_run, weights_digest
from course_lib.data import DataSplits
from course_lib.profiles import Profile, by_profile
from course_lib.pruning.procedures import (finetune, gradual_pruning, iterative_pruning, magnitude,
                                           prune_and_finetune)
from course_lib.training import TrainConfig, evaluate


@dataclass(frozen=True)
class Budget:
    """Chapter 1's bars in one profile.

    Attributes:
        tolerance: test-accuracy points the schedule chosen on validation may lose at >= 90 % sparsity
            (claim 1; Han et al. lost none on MNIST). The quick profile's network trains on fewer images
            for fewer epochs and recovers less in its short fine-tuning.
    """

    tolerance: float


BUDGETS = {"quick": Budget(tolerance=1.5), "full": Budget(tolerance=1.0)}


def budget(profile: Profile) -> Budget:
    """This chapter's :class:`Budget` for ``profile``."""
    return by_profile(profile, BUDGETS)


def class_coverage(kept: int, classes: int, inputs: int) -> tuple[float, float]:
    """When ``kept`` weights of a ``classes`` x ``inputs`` output layer are chosen at random: the chance that every
    class keeps at least one input, and how many classes keep none on average (exact, by counting).

    A class with no input left can only be guessed from its bias. Counting the draws of ``kept`` positions that
    miss a given set of ``j`` classes, and adding and subtracting them over every such set (inclusion-exclusion),
    gives the first number; the second is ``classes`` times the chance that one given class is missed.
    """
    if not 0 <= kept <= classes * inputs:
        raise ValueError(f"kept must lie between 0 and {classes * inputs} (the layer's weights), got {kept}.")

    def draws_missing(empty: int) -> int:  # draws of `kept` positions among the classes that are not `empty`
        return math.comb((classes - empty) * inputs, kept)

    covered = sum((-1) ** j * math.comb(classes, j) * draws_missing(j) for j in range(classes + 1)) / draws_missing(0)
    return covered, classes * draws_missing(1) / draws_missing(0)


def schedules_compared(dense: nn.Module, data: DataSplits, target: float, rounds: int, config: TrainConfig,
                       per_round: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Section 3's comparison, through the run cache: global magnitude pruning of ``dense`` to ``target`` one-shot,
    in ``rounds`` rounds (each fine-tuned with ``per_round``) and gradually (AGP), each with ``config``'s fine-tuning
    budget; and the dense network fine-tuned as long, the fair reference.

    Returns ``rows`` (by schedule: sparsity, fine-tuning steps, validation and test accuracy), the steps of one
    iterative round and of the AGP run, AGP's (step, sparsity) updates, and ``longer_test``.
    """
    def compute() -> dict[str, Any]:
        iterative = f"iterative ({rounds} rounds)"
        runs = {"one-shot + fine-tune": prune_and_finetune(dense, data, target, magnitude("global"), config,
                                                           progress=progress),
                iterative: iterative_pruning(dense, data, target, rounds, magnitude("global"), per_round,
                                             progress=progress),
                "gradual (AGP)": gradual_pruning(dense, data, target, magnitude("global"), config, progress=progress)}
        longer = copy.deepcopy(dense)
        finetune(longer, data, config, progress=progress, desc="dense, fine-tuned as long")
        return {"rows": {name: {"sparsity (%)": 100 * r.sparsity, "fine-tuning steps": sum(h.steps for h in r.histories),
                                "validation (%)": evaluate(r.model, data.val), "test (%)": evaluate(r.model, data.test)}
                         for name, r in runs.items()},
                "round_steps": runs[iterative].histories[0].steps, "agp_steps": runs["gradual (AGP)"].histories[0].steps,
                "agp_schedule": runs["gradual (AGP)"].schedule, "longer_test": evaluate(longer, data.test)}

    return cached_run("ch1-schedules", {"dense": weights_digest(dense), "data": data.key(), "target": target,
                                        "rounds": rounds, "config": config, "per_round": per_round}, compute)
