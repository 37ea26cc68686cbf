"""Benchmark: can background load fake a speed-up? The course's timing rule against the old one, idle and busy.

A structurally pruned SmallVGG (half the filters of every convolution, shrunk) is timed against the dense one at
batch 256, in alternating rounds, four ways:

* the old rule: PyTorch's default threads, the *median* call of each round;
* the course's rule (``course_lib.costs``): one thread, the *fastest* call of each round;

each once on an idle machine and once while a second process spins on one core (a browser, a video call or
another notebook on a lecture laptop). Printed per way: the speed-up (median of the per-round ratios), its spread
(25th-75th percentile of the rounds) and how much it moved under load. All measured in one run, alternating, so
the numbers are comparable with each other and not with another machine's. Not a test.

Run:  .venv/bin/python benchmarks/latency_under_load.py
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable

import pandas as pd
import torch
from torch import nn

from course_lib.costs import _call_times, cpu_threads, speedups_over_first
from course_lib.masks import apply_masks
from course_lib.models import build_model
from course_lib.pruning.selection import structured_masks
from course_lib.pruning.surgery import shrink

ROUNDS, REPEATS = 15, 5


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def rounds_of(fns: dict[str, Callable[[], object]], statistic: Callable[[list[float]], float],
              threads: int | None) -> pd.DataFrame:
    with cpu_threads(threads):
        for fn in fns.values():
            fn()
        return pd.DataFrame([{name: statistic(_call_times(fn, REPEATS, "cpu")) for name, fn in fns.items()}
                             for _ in range(ROUNDS)])


@torch.inference_mode()
def main() -> None:
    dense = build_model("vgg").eval()
    half = build_model("vgg")
    apply_masks(half, structured_masks(half, 0.5))
    half = shrink(half).eval()
    x = torch.randn(256, 1, 28, 28)
    fns: dict[str, Callable[[], object]] = {"dense": lambda: dense(x), "keep 0.5": lambda: half(x)}
    rules = {"old: default threads, median call": (statistics.median, None),
             "course: one thread, fastest call": (min, 1)}
    rows = []
    for load in ("idle", "one core busy"):
        spinner = None
        if load != "idle":
            spinner = multiprocessing.get_context("spawn").Process(target=_spin, args=(600.0,), daemon=True)
            spinner.start()
            time.sleep(1.0)
        try:
            for rule, (statistic, threads) in rules.items():
                s = speedups_over_first(rounds_of(fns, statistic, threads)).loc["keep 0.5"]
                rows.append({"load": load, "rule": rule, "speed-up": s.speedup, "25 %": s.speedup_low,
                             "75 %": s.speedup_high})
        finally:
            if spinner is not None:
                spinner.terminate()
                spinner.join()
    table = pd.DataFrame(rows).set_index(["rule", "load"]).sort_index()
    print(f"SmallVGG keep 0.5 vs dense, batch 256, {ROUNDS} rounds of {REPEATS} calls, "
          f"{torch.get_num_threads()} default threads\n")
    print(table.round(3).to_string())
    for rule in rules:
        idle, busy = (table.loc[(rule, load), "speed-up"] for load in ("idle", "one core busy"))
        print(f"{rule}: busy / idle speed-up = {busy / idle:.3f}")


if __name__ == "__main__":
    main()
