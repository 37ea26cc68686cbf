"""Chapter 1's budget: how far below the dense network a pruned one may end, per profile.

Chapter 1's experiments are short enough to stay in the notebook, built from
:mod:`course_lib.pruning.procedures`; what differs between the profiles is
only how much accuracy a network trained in fewer epochs may lose.
"""

from __future__ import annotations

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
