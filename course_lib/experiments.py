"""Experiments over seeds: run, cache, and summarise as mean ± standard deviation.

A comparative claim with a margin of a point or two ("RigL beats SET") is
not settled by one run: a different seed moves accuracies by about as much.
The course therefore runs such comparisons over the profile's seeds
(:meth:`course_lib.profiles.Profile.seeds`) and asserts on the *mean*, with
the spread shown beside it.

::

    def run(seed):                       # one seed -> rows of results
        return [{"method": "RigL", "accuracy": ...}, {"method": "SET", "accuracy": ...}]

    table = over_seeds("ch6-methods", {"sparsity": 0.9, "config": config}, run, profile.seeds())
    summary = mean_std(table, by="method", value="accuracy")

Each seed's rows are cached under ``parts``, the seed and a fingerprint of
the code that computes them (see :mod:`course_lib.cache`). A ``run`` typed in
a notebook is fingerprinted by the whole ``course_lib``, so any edit of the
library recomputes it; name the modules it calls, as in
``over_seeds(..., code="course_lib.sparse.updaters")``, to recompute only when they change.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from course_lib.cache import cached_run
from course_lib.fingerprint import Code, default_code
from course_lib.profiles import Profile, get_profile

Rows = Mapping[str, Any] | Sequence[Mapping[str, Any]]


def over_seeds(name: str, parts: Mapping[str, Any], run: Callable[[int], Rows], seeds: Sequence[int],
               progress: bool = True, code: Code | None = None) -> pd.DataFrame:
    """Run ``run(seed)`` for every seed through the run cache; one tidy table of all rows.

    ``run`` returns one row (a dict of named values) or a list of rows; each
    row gets a ``seed`` column. ``parts`` must hold everything else that
    determines the result, and ``code`` the module(s) whose code does; by
    default the module that defines ``run`` if it is part of ``course_lib``,
    else the whole package (see :func:`course_lib.cache.cached_run`).
    """
    if not seeds:
        raise ValueError("over_seeds needs at least one seed, e.g. profile.seeds().")
    code = default_code(run) if code is None else code  # not the lambda below, which is defined here
    rows: list[dict[str, Any]] = []
    for seed in tqdm(list(seeds), desc=f"{name} over seeds", disable=not progress, leave=False):
        result = cached_run(name, {**parts, "seed": seed}, lambda: _as_rows(run(seed)), code=code)
        rows += [{"seed": seed, **row} for row in result]
    return pd.DataFrame(rows)


def _as_rows(result: Rows) -> list[dict[str, Any]]:
    return [dict(result)] if isinstance(result, Mapping) else [dict(row) for row in result]


def mean_std(table: pd.DataFrame, by: str | Sequence[str], value: str) -> pd.DataFrame:
    """Mean, standard deviation (n - 1; 0 for one seed) and number of seeds of ``value`` per group of ``by``."""
    missing = {value, *([by] if isinstance(by, str) else by)} - set(table.columns)
    if missing:
        raise ValueError(f"The table has no column {sorted(missing)}; its columns are {list(table.columns)}.")
    grouped = table.groupby(by, sort=False)[value]
    return pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1).fillna(0.0), "seeds": grouped.size()})


def cache_command(description: str, fill: Callable[[Profile], pd.DataFrame],
                  argv: Sequence[str] | None = None) -> None:
    """A chapter's command that fills the run cache with its longest experiments, on any machine, before a lecture:
    ``--profile`` (``full`` by default) chooses the profile, ``fill(profile)`` runs the experiments through the
    cache, and the number of runs and the seconds they took are printed. The chapter's notebook then reads the same
    cache entries (their keys name the chapter module's code, not the command's)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--profile", choices=["quick", "full"], default="full")
    profile = get_profile(parser.parse_args(argv).profile)
    started = time.perf_counter()
    runs = fill(profile)
    print(f"{len(runs)} runs of profile {profile.name} cached in {time.perf_counter() - started:.0f} s")
