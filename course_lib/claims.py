"""Claims: a chapter's assertion that also says how close it came to failing.

Every chapter opens with numbered claims and checks each one in code. A bare
``assert a > b + 1`` answers only "held" or "failed". A claim that held by
0.04 points on this seed may fail on the next one, and a lecturer should know
that before class, not in front of it. :func:`claim` therefore

* prints the measured value, the bar and the **margin** (how far the value is
  from the bar, in the claim's own units, positive when the claim held);
* raises :class:`ClaimFailed` (an ``AssertionError``) when the claim does not
  hold, with a message that names the claim and its numbers;
* appends one JSON line per claim to the file named by ``COURSE_CLAIMS_LOG``
  when that variable is set. ``tools/seed_sweep.py`` sets it, runs chapters
  under several ``COURSE_SEED`` values and prints each claim's smallest
  margin next to the spread of its value over the seeds.

::

    gain = erk - uniform
    claim("3", "RigL with ERK minus uniform at 95 %", gain, ">", 0.0, spread=std_of_gain)

What is *not* a claim: bookkeeping that holds by construction (the masks have
the requested sparsity, a shrunk network computes the same outputs). Check
those with a plain ``assert``; they have no margin to report.
"""

from __future__ import annotations

import json
import math
import operator
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from course_lib.profiles import PROFILE_ENV_VAR, seed_shift

CLAIMS_LOG_ENV_VAR = "COURSE_CLAIMS_LOG"

# op -> (test, sign of the margin: +1 when larger values are better for the claim)
_OPS: dict[str, tuple[Callable[[float, float], bool], int]] = {
    ">": (operator.gt, +1),
    ">=": (operator.ge, +1),
    "<": (operator.lt, -1),
    "<=": (operator.le, -1),
}


class ClaimFailed(AssertionError):
    """A chapter's claim did not hold on this run (the message says by how much)."""


def margin(value: float, op: str, bar: float) -> float:
    """How far ``value`` is from failing ``value op bar``: positive when it holds with room to spare.

    For ``>``/``>=`` it is ``value - bar``; for ``<``/``<=`` it is ``bar - value``.
    A margin of exactly 0 holds for ``>=``/``<=`` and fails for ``>``/``<``.
    """
    if op not in _OPS:
        raise ValueError(f"Unknown comparison {op!r}: use one of {sorted(_OPS)}.")
    return _OPS[op][1] * (value - bar)


def claim(label: str, text: str, value: float, op: str, bar: float, *, unit: str = "points",
          spread: float | None = None, interval: tuple[float, float] | None = None) -> float:
    """Check ``value op bar``, print the margin, log it for the seed sweep, and fail loudly if it does not hold.

    Args:
        label: the claim's number in the chapter, e.g. ``"2"`` or ``"2 at 98 %"``.
        text: what is measured, in words ("global minus local at 98 %").
        value: the measured number.
        op: one of ``">"``, ``">="``, ``"<"``, ``"<="``.
        bar: the number ``value`` is compared with.
        unit: the unit of ``value`` and of the margin, for the printed line.
        spread: the standard deviation over seeds behind ``value``, when it is
            a mean; printed beside the margin, so a reader sees whether the
            margin is larger than the noise.
        interval: for a *measured* value such as a speed-up, the spread of the
            measurement ``(low, high)`` (e.g. ``speedup_low``/``speedup_high``
            of :func:`course_lib.costs.compare_latency`). The claim then holds
            only when the whole interval satisfies it and fails only when the
            whole interval violates it; in between it is **undecided**: the
            line says the machine was too noisy to decide, and nothing fails.

    Returns:
        The margin (see :func:`margin`).

    Raises:
        ClaimFailed: when ``value op bar`` is false (with ``interval``: when
            it is false at both ends of the interval).
        ValueError: for an unknown ``op`` or a value that is not a finite number.
    """
    value, bar = float(value), float(bar)
    if not (math.isfinite(value) and math.isfinite(bar)):
        raise ValueError(f"claim {label} ({text}): the value {value} and the bar {bar} must be finite numbers; "
                         "a NaN usually means an empty selection in the table it came from.")
    room = margin(value, op, bar) + 0.0  # + 0.0: a margin of exactly zero prints as +0.00, not -0.00
    test = _OPS[op][0]
    held: bool | None = test(value, bar)
    noise = "" if spread is None else f", seed std {float(spread):.2f}"
    bounds = None if interval is None else sorted(float(v) for v in interval)
    if bounds is not None:
        noise += f", measured {bounds[0]:.2f}-{bounds[1]:.2f}"
        ends = [test(end, bar) for end in bounds]
        if all(ends):
            held = True
        elif not any(ends):
            held = False
        else:
            held = None  # the bar lies inside the measured spread
    verdict = {True: "holds", False: "FAILS", None: "UNDECIDED: the machine was too noisy to tell"}[held]
    print(f"claim {label}: {text}: {value:.2f} {op} {bar:.2f} {verdict} (margin {room:+.2f}{_unit(unit)}{noise})")
    _log({"label": label, "text": text, "value": value, "op": op, "bar": bar, "margin": room, "unit": unit,
          "spread": None if spread is None else float(spread), "interval": bounds, "held": held,
          "profile": os.environ.get(PROFILE_ENV_VAR, "full"), "course_seed": seed_shift()})
    if held is False:
        raise ClaimFailed(f"claim {label} failed: {text} is {value:.2f}, which is not {op} {bar:.2f} "
                          f"(margin {room:+.2f}{_unit(unit)}{noise}).")
    return room


TEST_NOISE = 0.25  # points: the smallest per-seed accuracy difference a verdict reads as a direction (see paired_verdict)
# points: the floor for a change in a lead, i.e. a difference of two paired differences (A - B here minus A - B there).
# Two independent noises of TEST_NOISE add in quadrature, so the floor is sqrt(2) times wider.
CHANGE_NOISE = TEST_NOISE * 2 ** 0.5


def accuracy_noise(images: int) -> float:
    """The noise floor of an accuracy difference measured on ``images`` images: :data:`TEST_NOISE` is the one for
    10,000 test images, and the standard error grows as 1/sqrt(images) (about 0.56 points for 2,000 validation
    images). Pass it as ``noise`` to :func:`paired_verdict` for a split other than the test set."""
    if images < 1:
        raise ValueError(f"need a positive number of images, got {images}.")
    return TEST_NOISE * (10_000 / images) ** 0.5


def ranked(values: Mapping[str, float], tie: float = TEST_NOISE) -> str:
    """``values`` best first as one line, "a 86.07 ≈ b 85.96 > c 83.92": neighbours at most ``tie`` apart are joined
    by ≈ (one run cannot order them), the others by >. For a ranking a chapter prints rather than asserts."""
    order = sorted(values.items(), key=lambda kv: -kv[1])
    if not order:
        raise ValueError("ranked needs at least one value.")
    return f"{order[0][0]} {order[0][1]:.2f}" + "".join(
        f" {'≈' if above - value <= tie else '>'} {name} {value:.2f}" for (_, above), (name, value) in zip(order, order[1:]))


def ahead_on_every_seed(differences: Mapping[int, float], noise: float = TEST_NOISE) -> bool:
    """Is ``first`` ahead of ``second`` on every seed by more than ``noise``, given seed -> ``first - second``?
    The rule of :func:`paired_verdict` and of the capstone's rankings."""
    return all(float(v) > noise for v in dict(differences).values())


def leader(differences: Mapping[int, float], first: str, second: str, noise: float = TEST_NOISE) -> str | None:
    """The name of the method ahead on every seed by more than ``noise`` (``first`` or ``second``), or None when
    the seeds do not separate them: the direction of :func:`paired_verdict`, for code that reads it."""
    if not dict(differences):
        return None
    if ahead_on_every_seed(differences, noise):
        return first
    if ahead_on_every_seed({seed: -float(v) for seed, v in dict(differences).items()}, noise):
        return second
    return None


def why_not_separated(differences: Mapping[int, float], noise: float = TEST_NOISE, first: str = "",
                      second: str = "", noise_name: str = "the noise") -> str:
    """Why paired per-seed differences name no direction (the "not separated" of :func:`paired_verdict`), as a
    phrase for a reading line: "the seeds disagree", "within the noise on every seed", "ahead on every seed, but
    by less than the noise on one" or "a seed's difference is exactly zero"; "" when they do name one
    (:func:`leader` is not None).

    "Not separated" covers two different situations, and a reading should say which: seeds that point opposite
    ways (no direction at all on this run), or seeds that agree on a direction too small to tell from the test
    images a seed happened to get right (a direction, but not a result). Only the second hints at what more
    seeds might show. Pass ``first`` and ``second`` (the names of ``first - second``) to name the one ahead, and
    ``noise_name`` to say which noise ("the test set's noise (0.25 points)")."""
    values = [float(v) for v in dict(differences).values()]
    if leader(dict(enumerate(values)), "first", "second", noise) is not None:
        return ""
    if any(v > 0 for v in values) and any(v < 0 for v in values):  # a sign disagreement outranks a zero
        return "the seeds disagree" + (" (and a seed's difference is exactly zero)" if 0 in values else "")
    within = sum(abs(v) <= noise for v in values)
    if 0 in values:  # e.g. two runs with the same accuracy, or two changes of the same size
        return f"within {noise_name} on every seed" if within == len(values) else "a seed's difference is exactly zero"
    ahead = (first if values[0] > 0 else second) if first and second else ""
    if len(values) == 1:  # one run has no "every seed"
        return f"one run, {ahead + ' ' if ahead else ''}ahead by less than {noise_name}"
    return (f"{ahead} ahead on every seed, but by less than {noise_name} on "
            f"{'one' if within == 1 else f'{within} of {len(values)}'}").lstrip()


def who_leads(differences: Mapping[int, float], first: str, second: str, unit: str = "points") -> str:
    """A headline-table entry for paired per-seed differences ``first - second``: the :func:`leader` with the size
    of its lead ("SET, on every seed (mean 0.88 points, smallest 0.31)"), or "not separated" with the signed
    differences, so that a reader sees how close it came ("not separated (mean +0.12 points; per seed +0.30,
    -0.20, +0.45)")."""
    winner = leader(differences, first, second)
    if winner is None:
        signed = [float(v) for v in dict(differences).values()]
        return (f"not separated (mean {sum(signed) / len(signed):+.2f}{_unit(unit)}; per seed "
                + ", ".join(f"{v:+.2f}" for v in signed) + ")")
    values = [abs(float(v)) for v in dict(differences).values()]
    return (f"{winner}, on every seed (mean {sum(values) / len(values):.2f}{_unit(unit)}, "
            f"smallest {min(values):.2f})")


def paired_verdict(differences: Mapping[int, float], first: str, second: str, unit: str = "points",
                   noise: float | None = None) -> str:
    """A one-line verdict on paired per-seed differences ``first - second`` that asserts nothing.

    Each seed's two runs share their data order and their initial weights, so the seed-by-seed difference removes
    what the seed does to both. The verdict names the direction only when every seed agrees on it *by more than
    the test set's noise*: "``first`` ahead on all n seeds", "``second`` ahead on all n seeds", or "not
    separated" (the seeds disagree - said first, even when another seed's difference is zero - or a difference
    is zero or within the noise). For a comparison the
    chapter *reports* rather than asserts (see :func:`claim` for one it asserts).

    **The noise floor.** Two networks scored on the same 10,000 test images that disagree on a share d of them
    have an accuracy difference whose standard error is about 100·sqrt(d / 10,000) points: 0.22 to 0.32 points
    for the 5-10 % our networks disagree on. A per-seed difference below :data:`TEST_NOISE` (0.25 points) could
    be the test images the seed happened to get right, so it names no direction. Accuracy differences (``unit``
    "points") get this floor by default; pass ``noise`` for another unit.

    "Every seed" is weak evidence with few seeds: a difference that is pure noise falls on the same side for two
    seeds half of the time, for three seeds a quarter of the time. Read a verdict with the size of the
    differences it prints, and trust it more where the full profile's three seeds agree.

    Args:
        differences: seed -> ``first`` minus ``second`` (e.g. a pandas Series indexed by seed).
        first, second: the two methods' names, as the line should print them.
        unit: the unit of the differences.
        noise: the smallest per-seed difference that counts (default: :data:`TEST_NOISE` for "points", else 0).
    """
    values = [float(v) for v in dict(differences).values()]
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{first} minus {second}: need finite per-seed differences, got {values}; a NaN usually "
                         "means a method missing from the table.")
    floor = (TEST_NOISE if unit == "points" else 0.0) if noise is None else noise
    ahead = leader(dict(enumerate(values)), first, second, floor)
    if ahead is not None:
        word = f"{ahead} ahead on all {len(values)} seeds" if len(values) > 1 else f"{ahead} ahead (one run)"
    else:
        floor_name = "the test set's noise" if noise is None else "the noise floor"
        word = "not separated: " + why_not_separated(dict(enumerate(values)), floor, first, second,
                                                     f"{floor_name} ({floor:.2g}{_unit(unit)})")
    per_seed = ", ".join(f"{v:+.2f}" for v in values)
    return f"{first} minus {second}: mean {sum(values) / len(values):+.2f}{_unit(unit)} (per seed {per_seed}) -> {word}"


def _unit(unit: str) -> str:
    return f" {unit}" if unit else ""


def _log(record: dict[str, object]) -> None:
    path = os.environ.get(CLAIMS_LOG_ENV_VAR)
    if path:
        with Path(path).open("a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
