"""Chapter 8's experiment: every registered method under one protocol, over seeds, ranked.

The methods and the record they return live in :mod:`course_lib.methods`
(the registry). This module gives each family its protocol - the model, the
data and the budget of :data:`BUDGETS` - runs every (method, sparsity, seed)
through the run cache, and ranks the methods with their spread over seeds.

**Running it.** :func:`run` goes through the course's run cache, so a
chapter that finds its results cached never trains. Fill the cache on a
faster machine with::

    python -m course_lib.chapters.ch08_capstone --profile full --device cuda
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from course_lib.cache import cached_run
from course_lib.claims import ahead_on_every_seed
from course_lib.data import load_splits
from course_lib.devices import DEVICE_ENV_VAR, default_device
from course_lib.fingerprint import PACKAGE
from course_lib.methods import KEEP, METHODS, Family, Ledger, Protocol, dense_trained, run_method
from course_lib.profiles import Profile, by_profile, get_profile
from course_lib.training import evaluate


@dataclass(frozen=True)
class Budget:
    """What the capstone spends in one profile.

    Attributes:
        train_size: training images of every run (chapter 7's, so both chapters train on the same images).
        epochs: the budget of every LeNet-300-100 run.
        vgg_epochs: the budget of every SmallVGG-BN run.
        sparsities: the sparsities of the unstructured comparison.
    """

    train_size: int
    epochs: int
    vgg_epochs: int
    sparsities: tuple[float, ...]


BUDGETS = {"quick": Budget(train_size=6_000, epochs=3, vgg_epochs=2, sparsities=(0.95, 0.98)),
           "full": Budget(train_size=20_000, epochs=6, vgg_epochs=4, sparsities=(0.8, 0.9, 0.95, 0.98))}


def budget(profile: Profile) -> Budget:
    """This chapter's :class:`Budget` for ``profile``."""
    return by_profile(profile, BUDGETS)


def run(name: str, protocol: Protocol, sparsity: float, seed: int) -> dict[str, Any]:
    """:func:`run_method` through the run cache: a row (a plain dict) of the capstone's tables.

    The key names the code that computes the run - the registry (:mod:`course_lib.methods`) and the runner's own
    module - not this chapter's, so a change to how the chapter ranks or prints leaves the cached runs valid. A
    runner registered outside ``course_lib`` (typed in a notebook) runs every time and is never cached: the cache
    cannot read its code, so a stored row could outlive an edit of it.
    """
    def compute() -> dict[str, Any]:
        return asdict(run_method(name, protocol, sparsity, seed))

    runner = METHODS[name].runner if name in METHODS else None
    if runner is None or not runner.__module__.startswith(f"{PACKAGE}."):
        return compute()  # an unknown name gets run_method's error; a notebook's runner is not cached
    return cached_run("capstone", {**protocol.key(), "method": name, "settings": METHODS[name].settings,
                                   "sparsity": sparsity, "seed": seed}, compute,
                      code=sorted({run_method.__module__, runner.__module__}))


def protocols(profile: Profile) -> dict[str, Protocol]:
    """Both families' protocols for a profile: LeNet-300-100 and SmallVGG-BN on the chapter's data and budgets."""
    plan = budget(profile)
    data = load_splits(profile, train_size=plan.train_size)
    return {"unstructured": Protocol("lenet300", data, plan.epochs),
            "structured": Protocol("vgg", data, plan.vgg_epochs)}


def family_jobs(family: Family, profile: Profile, methods: Sequence[str] | None = None,
                sparsities: Sequence[float] | None = None) -> list[tuple[str, float, int]]:
    """The runs of one family: unstructured methods at the profile's sparsities (or the ``sparsities`` given,
    which must be among them), structured ones at 1 - KEEP."""
    names = [n for n, m in METHODS.items() if m.family == family and (methods is None or n in methods)]
    if family == "structured":
        return plan(names, (1.0 - KEEP,), profile.seeds())
    columns = budget(profile).sparsities
    unknown = sorted(set(sparsities or ()) - set(columns))
    if unknown:
        raise ValueError(f"The {profile.name} capstone runs at sparsities {columns}, not {unknown}.")
    return plan(names, sparsities or columns, profile.seeds())


def plan(methods: Sequence[str], sparsities: Sequence[float], seeds: Sequence[int]) -> list[tuple[str, float, int]]:
    """Every (method, sparsity, seed) to run, seeds outermost so that partial runs cover every method."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"Unknown methods {unknown}; the registry has {sorted(METHODS)}.")
    return [(m, s, seed) for seed in seeds for m in methods for s in sparsities]


def dense_reference(profile: Profile) -> pd.DataFrame:
    """LeNet-300-100 trained densely for the whole budget, one row per seed (the ceiling of the plot; cached)."""
    protocol = protocols(profile)["unstructured"]
    rows = []
    for seed in profile.seeds():
        model = dense_trained(protocol, protocol.epochs, seed, Ledger(protocol))
        rows.append({"seed": seed, "val_acc": evaluate(model, protocol.data.val),
                     "test_acc": evaluate(model, protocol.data.test)})
    return pd.DataFrame(rows)


def ranking(summary: pd.DataFrame, per_seed: pd.DataFrame | None = None) -> pd.DataFrame:
    """Methods by mean accuracy, best first, and whether each is separated from the next one down.

    ``summary`` is :func:`course_lib.experiments.mean_std` of one setting, indexed by method. With ``per_seed`` (one
    row per seed, one column per method: each seed's methods share their data order and initialization), a method
    is separated from the next when it is ahead of it on every seed by more than the test set's noise — the rule
    of :func:`course_lib.claims.paired_verdict`. Without it, when the gap to the next exceeds the larger of the two
    standard deviations over seeds.
    """
    ordered = summary.sort_values("mean", ascending=False)
    gaps = ordered["mean"] - ordered["mean"].shift(-1)
    if per_seed is None:
        spreads = pd.concat([ordered["std"], ordered["std"].shift(-1)], axis=1).max(axis=1)
        separated = (gaps > spreads).astype("boolean")
    else:
        names = list(ordered.index)
        ahead = [ahead_on_every_seed(per_seed[a] - per_seed[b]) for a, b in zip(names, names[1:])] + [False]
        separated = pd.Series(ahead, index=ordered.index).astype("boolean")
    separated = separated.mask(gaps.isna())  # the last method has no next: <NA>
    return ordered.assign(rank=range(1, len(ordered) + 1), gap_to_next=gaps, separated_from_next=separated)


def results(profile: Profile, family: Family, methods: Sequence[str] | None = None,
            progress: bool = True, sparsities: Sequence[float] | None = None) -> pd.DataFrame:
    """Every run of one family under the profile's protocol (or of some of its columns), through the cache: one
    row per run."""
    protocol = protocols(profile)[family]
    jobs = family_jobs(family, profile, methods, sparsities)
    rows = [run(name, protocol, sparsity, seed)
            for name, sparsity, seed in tqdm(jobs, desc=f"capstone: {family} runs", disable=not progress)]
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> None:
    """Fill the run cache with every capstone run of a profile (``python -m course_lib.chapters.ch08_capstone --help``)."""
    parser = argparse.ArgumentParser(description="Run every method of the course under the capstone's protocol "
                                                 "and cache the results.")
    parser.add_argument("--profile", choices=["quick", "full"], default="full")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: the best available)")
    parser.add_argument("--methods", nargs="*", default=None, help=f"a subset of: {', '.join(METHODS)}")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    if args.device:
        os.environ[DEVICE_ENV_VAR] = args.device  # default_device() checks that the machine has it
    if args.methods:
        plan(args.methods, (0.5,), (0,))  # fails early on a name the registry does not know
    started = time.perf_counter()
    count = sum(len(results(profile, family, args.methods)) for family in ("unstructured", "structured"))
    print(f"{count} runs of profile {profile.name} cached in {time.perf_counter() - started:.0f} s "
          f"on {default_device()}")


if __name__ == "__main__":
    main()
