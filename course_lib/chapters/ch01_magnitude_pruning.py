"""Chapter 1's budget: how far below the dense network a pruned one may end, per profile.

Chapter 1's experiments are short enough to stay in the notebook, built from
:mod:`course_lib.pruning.procedures`; what differs between the profiles is
only how much accuracy a network trained in fewer epochs may lose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from course_lib.profiles import Profile, by_profile


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
