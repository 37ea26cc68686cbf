"""Run profiles: one notebook, two budgets.

A *profile* says how much data and how many epochs a notebook may spend.

* ``full`` is what a lecture shows: the real numbers, each notebook within
  about 15 minutes on a 2-core laptop CPU. Opening a notebook gives ``full``.
* ``quick`` is what CI and ``make test`` run: the same code on fewer samples
  and epochs, every notebook within about 3 minutes.

Choose one with the environment variable ``COURSE_PROFILE`` (``quick`` or
``full``) *before* starting Jupyter, or call :func:`get_profile` with a name.
Notebooks read every epoch count and data size from the profile and never
hard-code them, so a claim asserted in ``full`` is checked in ``quick`` with
a bar that is honestly lower (``Profile.accuracy_bar``).

**Seeds.** A comparative claim with a small margin is checked on the mean over
``Profile.num_seeds`` seeds (:meth:`Profile.seeds`). The environment variable
``COURSE_SEED`` shifts *every* seed the course uses (data split, initial
weights, data order, random masks), so a lecturer can re-run a chapter with
other seeds and see that its claims are not luck: ``COURSE_SEED=100 make lab``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

PROFILE_ENV_VAR = "COURSE_PROFILE"
SEED_ENV_VAR = "COURSE_SEED"


@dataclass(frozen=True)
class Profile:
    """Budgets for one run of the course.

    Attributes:
        name: ``"quick"`` or ``"full"``.
        train_size: training images used (``None`` = the whole training split).
        val_size: validation images carved from the official training set.
        test_size: test images evaluated (``None`` = all 10 000).
        epochs: training epochs per model name (``"lenet300"``, ``"lenet5"``, ``"vgg"``).
        finetune_epochs: retraining epochs after pruning, per model name.
        latency_repeats: timed calls per latency measurement (see the timing rule in ``course_lib.costs``).
        accuracy_bar: minimum test accuracy (in %) the dense baselines must reach.
        num_seeds: how many seeds a comparative claim is checked over.

    A chapter's own budget (its epochs, data size, sparsities) is declared in
    its experiment module (``BUDGETS`` in :mod:`course_lib.chapters`), not here.
    """

    name: str
    train_size: int | None
    val_size: int
    test_size: int | None
    epochs: dict[str, int] = field(default_factory=dict)
    finetune_epochs: dict[str, int] = field(default_factory=dict)
    latency_repeats: int = 30
    accuracy_bar: dict[str, float] = field(default_factory=dict)
    num_seeds: int = 3

    def seeds(self) -> list[int]:
        """The seeds ``0, 1, ..., num_seeds - 1`` (shifted by ``COURSE_SEED`` where they are used)."""
        return list(range(self.num_seeds))


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        train_size=20_000,
        val_size=2_000,
        test_size=None,
        epochs={"lenet300": 4, "lenet5": 4, "vgg": 3, "resnet": 2},
        finetune_epochs={"lenet300": 3, "lenet5": 2, "vgg": 1, "resnet": 1},
        latency_repeats=10,
        accuracy_bar={"lenet300": 82.0, "lenet5": 80.0, "vgg": 80.0},
        num_seeds=2,
    ),
    "full": Profile(
        name="full",
        train_size=None,
        val_size=5_000,
        test_size=None,
        epochs={"lenet300": 15, "lenet5": 15, "vgg": 8, "resnet": 4},
        finetune_epochs={"lenet300": 8, "lenet5": 4, "vgg": 3, "resnet": 2},
        latency_repeats=50,
        # The VGG trains 8 epochs, the CNN 15: its bar is half a point lower. One test accuracy is uncertain by about
        # 0.3 points (one standard error on 10 000 images), and seeds 11 and 13 ended 0.75 and 0.43 above 89.
        accuracy_bar={"lenet300": 88.0, "lenet5": 89.0, "vgg": 88.5},
        num_seeds=3,
    ),
}


def get_profile(name: str | None = None) -> Profile:
    """Return the profile called ``name``, or the one chosen by ``COURSE_PROFILE``.

    Without a name and without the environment variable, the lecture profile
    ``full`` is returned.

    Raises:
        ValueError: if the name is not a known profile; the message lists them.
    """
    chosen = name if name is not None else os.environ.get(PROFILE_ENV_VAR, "full")
    chosen = chosen.strip().lower()
    if chosen not in PROFILES:
        raise ValueError(
            f"Unknown course profile {chosen!r}. Use one of {sorted(PROFILES)}, e.g. "
            f"`export {PROFILE_ENV_VAR}=quick` before starting Jupyter."
        )
    return PROFILES[chosen]


def seed_shift() -> int:
    """The shift ``COURSE_SEED`` adds to every seed (0 when unset).

    Raises:
        ValueError: if ``COURSE_SEED`` is not a whole number.
    """
    raw = os.environ.get(SEED_ENV_VAR, "0").strip() or "0"
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{SEED_ENV_VAR} must be a whole number (it shifts every seed of the course), "
                         f"got {raw!r}.") from None


def shifted_seed(seed: int) -> int:
    """``seed`` shifted by ``COURSE_SEED``: every random generator of the course is seeded through this."""
    return seed + seed_shift()


def seeds_label(seeds: Sequence[int]) -> str:
    """How a chapter names its seeds: ``"seeds [0, 1]"``, and under ``COURSE_SEED`` the seeds its generators used.

    Tables and titles keep the unshifted seeds (0, 1, ...), so that runs under
    different ``COURSE_SEED`` line up; this line says what they stand for.
    """
    shift = seed_shift()
    label = f"seeds {list(seeds)}"
    if shift:
        label += f" (COURSE_SEED={shift}: the generators were seeded {[shifted_seed(s) for s in seeds]})"
    return label


T = TypeVar("T")


def by_profile(profile: Profile, budgets: Mapping[str, T]) -> T:
    """The entry of ``budgets`` (one per profile name) for ``profile``: how a chapter declares its own budget.

    Raises:
        ValueError: if ``budgets`` has no entry for this profile; the message names the ones it has.
    """
    if profile.name not in budgets:
        raise ValueError(f"No budget for profile {profile.name!r}: this chapter declares {sorted(budgets)}. "
                         "Add an entry for it to the chapter's BUDGETS.")
    return budgets[profile.name]


# What each derived seed is for, and how far it sits from the run's own seed. A run of seed s draws its initial
# weights, data order and masks from s itself; a *fresh* network that must not share them (Scratch-E/B, a random
# re-initialization control) draws from s + 1000; a shuffled control mask from s + 1. Seeds of runs are small
# (0, 1, 2, ...), so these never collide with another run's own seed.
SEED_PURPOSES: dict[str, int] = {"run": 0, "shuffled mask": 1, "fresh init": 1000}


def derive_seed(base: int, purpose: str) -> int:
    """The seed for ``purpose`` within the run seeded ``base``: the course's one rule for related seeds.

    ``derive_seed(3, "fresh init")`` is the seed of a re-initialized network
    that must not share seed 3's initial weights. Over seeds, the run's own
    seed *replaces* a recipe's seed (``replace(config, seed=s)``); everything
    else a run needs is derived from it here (and shifted by ``COURSE_SEED``
    where it is used, see :func:`shifted_seed`).

    Raises:
        ValueError: for a purpose the course does not know; the message lists them.
    """
    if purpose not in SEED_PURPOSES:
        raise ValueError(f"Unknown seed purpose {purpose!r}; the course derives seeds for {sorted(SEED_PURPOSES)}. "
                         "Add a new purpose to SEED_PURPOSES with an offset no other purpose uses.")
    return base + SEED_PURPOSES[purpose]
