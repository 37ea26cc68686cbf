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
from dataclasses import dataclass, field

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
        lottery_epochs: epochs of every training run of the lottery-ticket and
            pruning-at-initialization chapters (LeNet-300-100).
        latency_repeats: timed calls per latency measurement (see the timing rule in ``course_lib.costs``).
        accuracy_bar: minimum test accuracy (in %) the dense baselines must reach.
        num_seeds: how many seeds a comparative claim is checked over.
        rethinking_train_size: training images of every run of chapter 5
            (``None`` = the profile's ``train_size``). Chapter 5 trains about
            a dozen networks per seed; a smaller split keeps it in budget.
        rethinking_epochs: epochs of the dense runs of chapter 5 (Scratch-E
            trains as many, Scratch-B more, fine-tuning a quarter).
        sparse_epochs: epochs of every run of chapter 6 (dense, small-dense,
            AGP, static, SET, RigL: all trained for the same steps).
        sparse_sparsities: the sparsities chapter 6 compares the methods at.
        dpp_train_size: training images of every run of chapter 7.
        dpp_epochs: the budget of every LeNet-300-100 run of chapter 7 (dense
            training plus fine-tuning for magnitude pruning, all of it for DPP).
        dpp_vgg_epochs: the same budget for chapter 7's SmallVGG-BN runs.
        dpp_sparsities: the sparsities chapter 7 compares DPP with magnitude pruning at.
            ``quick`` gives DPP under 300 steps, too few for its masks to
            settle at 95 % (it trailed per-row magnitude by 1.5-2.5 points
            there while the chapter was written), so it compares at 80 and 90 %.
        capstone_epochs: the budget of every LeNet-300-100 run of the capstone (chapter 8).
        capstone_vgg_epochs: the budget of every SmallVGG-BN run of the capstone.
        capstone_sparsities: the sparsities of the capstone's unstructured comparison.
        over_seeds_train_size: training images of the comparisons over seeds in
            chapters 3 and 4 (Renda et al.'s retraining, Frankle et al.'s sanity
            checks), which train many LeNet-300-100s per seed (``None`` = ``train_size``).
    """

    name: str
    train_size: int | None
    val_size: int
    test_size: int | None
    epochs: dict[str, int] = field(default_factory=dict)
    finetune_epochs: dict[str, int] = field(default_factory=dict)
    lottery_epochs: int = 10
    latency_repeats: int = 30
    accuracy_bar: dict[str, float] = field(default_factory=dict)
    num_seeds: int = 3
    rethinking_train_size: int | None = None
    rethinking_epochs: int = 4
    sparse_epochs: int = 4
    sparse_sparsities: tuple[float, ...] = (0.9, 0.95, 0.98)
    dpp_train_size: int | None = None
    dpp_epochs: int = 6
    dpp_vgg_epochs: int = 4
    dpp_sparsities: tuple[float, ...] = (0.8, 0.9, 0.95)
    capstone_epochs: int = 6
    capstone_vgg_epochs: int = 4
    capstone_sparsities: tuple[float, ...] = (0.8, 0.9, 0.95, 0.98)
    over_seeds_train_size: int | None = None

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
        lottery_epochs=3,
        latency_repeats=10,
        accuracy_bar={"lenet300": 82.0, "lenet5": 80.0, "vgg": 80.0},
        num_seeds=2,
        rethinking_train_size=6_000,
        rethinking_epochs=2,
        sparse_epochs=3,
        sparse_sparsities=(0.9, 0.95),
        dpp_train_size=6_000,
        dpp_epochs=6,
        dpp_vgg_epochs=2,
        dpp_sparsities=(0.8, 0.9),
        capstone_epochs=3,
        capstone_vgg_epochs=2,
        capstone_sparsities=(0.9, 0.98),
        over_seeds_train_size=None,  # all 20 000: on 6 000 images and 3 epochs the masks are too noisy to compare
    ),
    "full": Profile(
        name="full",
        train_size=None,
        val_size=5_000,
        test_size=None,
        epochs={"lenet300": 15, "lenet5": 15, "vgg": 8, "resnet": 4},
        finetune_epochs={"lenet300": 8, "lenet5": 4, "vgg": 3, "resnet": 2},
        lottery_epochs=10,
        latency_repeats=50,
        accuracy_bar={"lenet300": 88.0, "lenet5": 89.0, "vgg": 89.0},
        num_seeds=3,
        rethinking_train_size=12_000,
        rethinking_epochs=4,
        sparse_epochs=4,
        sparse_sparsities=(0.9, 0.95, 0.98),
        dpp_train_size=20_000,
        dpp_epochs=6,
        dpp_vgg_epochs=4,
        dpp_sparsities=(0.8, 0.9, 0.95),
        capstone_epochs=6,
        capstone_vgg_epochs=4,
        capstone_sparsities=(0.8, 0.9, 0.95, 0.98),
        over_seeds_train_size=12_000,
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
