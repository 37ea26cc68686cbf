"""Run chapters under several COURSE_SEED values and report every claim's margin: how far it was from failing.

A claim that holds by 0.04 points on the seed it was written on can fail on the next one, in front of a class.
This tool executes each notebook once per seed, in a fresh kernel, in the profile you choose, and collects
what every ``course_lib.claims.claim`` printed (through ``COURSE_CLAIMS_LOG``). It prints

* every run that failed, with the failing claim's message (or any other error);
* one row per claim: its margin under each seed, the smallest margin, and the spread (std) of the measured
  value: over the COURSE_SEED runs when there are several, else the spread the claim itself printed (the std over
  the profile's seeds inside the one run; ``spread from`` says which). A smallest margin below that spread is a
  claim the next seed may break.

The report is also written to ``OUT/report.md`` and ``OUT/claims.csv``, with each executed notebook beside
them (read the answers in ``<details>`` against the numbers those runs printed).

Run (``make seed-sweep`` does the same with NOTEBOOKS, SEEDS, PROFILE and JOBS)::

    .venv/bin/python tools/seed_sweep.py --profile quick --seeds 1 2 notebooks/*.ipynb
    .venv/bin/python tools/seed_sweep.py --profile full --seeds 1 --jobs 1 notebooks/0[1345]_*.ipynb

**A lost kernel message does not stop the sweep.** Notebooks run through ``notebook_run.CourseNotebookClient``,
which removes the cause we found (nbclient's Output-widget mimic; see that module). Should a reply still go missing,
a watchdog looks at every running notebook: when the running cell has sent nothing for ``--silence`` seconds *and*
the kernel used almost no CPU meanwhile, the kernel is stopped, the run is reported as ``LostKernelMessage`` with
the cell's index, and the notebook runs once more (warm: its results are cached). A cell that computes keeps the
kernel's CPU busy, so a long silent computation is never stopped; a course cell that runs long prints progress
anyway. Each notebook runs in a fresh worker process that is started, not forked, so no run inherits another's
sockets or event loop.

``--jobs 2`` runs two notebooks at once, each with one PyTorch thread (on 2 cores that is faster than one at a
time with two threads: the course's small models are limited by Python, not arithmetic). Timing claims stay
valid beside a second notebook: the course times on one thread and decides on the spread (see
``course_lib.costs``). Results go through the run cache (``COURSE_CACHE_DIR``), keyed by the seed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import nbformat
import pandas as pd
import psutil
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course_lib.claims import CLAIMS_LOG_ENV_VAR  # noqa: E402  (needs ROOT on the path)
from course_lib.profiles import PROFILE_ENV_VAR, PROFILES, SEED_ENV_VAR  # noqa: E402

sys.path.insert(0, str(ROOT / "tools"))
from build_site import is_progress_bar  # noqa: E402  (tools/ is not a package)
from notebook_run import CourseNotebookClient  # noqa: E402


class LostKernelMessage(RuntimeError):
    """The running cell sent nothing for a long time while its kernel sat idle: a message from the kernel was lost."""


class WatchedClient(CourseNotebookClient):
    """The course's notebook client, noting when the running cell last sent a message, for the watchdog."""

    def __init__(self, nb, **kw) -> None:
        super().__init__(nb, **kw)
        self.last_message = time.monotonic()
        self.cell_index: int | None = None
        self.on_cell_execute = self._cell_started

    def _cell_started(self, cell, cell_index: int) -> None:
        self.cell_index, self.last_message = cell_index, time.monotonic()

    def process_message(self, msg, cell, cell_index):
        self.last_message = time.monotonic()
        return super().process_message(msg, cell, cell_index)


def _cpu_seconds(pid: int) -> float | None:
    """CPU time used so far by process ``pid`` and its children; ``None`` once it has gone (shut down or killed)."""
    try:
        process = psutil.Process(pid)
        return sum(sum(p.cpu_times()[:2]) for p in [process, *process.children(recursive=True)])
    except psutil.Error:
        return None


def watch(client: WatchedClient, silence: float, finished: threading.Event, lost: list[str]) -> None:
    """Stop the kernel when the running cell has been silent for ``silence`` s while the kernel used < 2 % of a core.

    Runs in a thread beside ``client.execute()``; a stopped kernel makes nbclient raise ``DeadKernelError``, which the
    caller turns into ``LostKernelMessage`` with the message recorded in ``lost``.
    """
    cpu_at, cpu = time.monotonic(), None
    while not finished.wait(min(silence / 4, 5.0)):
        pid = getattr(getattr(client.km, "provisioner", None), "pid", None)
        if pid is None:
            continue
        now, used = time.monotonic(), _cpu_seconds(pid)
        if used is None:  # the kernel is gone (nbclient shuts it down after the last cell): nothing to watch
            continue
        if cpu is None or client.last_message > cpu_at:  # a message arrived: measure CPU from here
            cpu_at, cpu = max(client.last_message, cpu_at), used
            continue
        quiet = now - cpu_at
        if quiet >= silence and used - cpu < 0.02 * quiet:
            lost.append(f"cell {client.cell_index} sent nothing for {quiet:.0f} s while the kernel used "
                        f"{used - cpu:.2f} s of CPU: a lost kernel message (see the module docstring)")
            with contextlib.suppress(ProcessLookupError):  # it may have gone since
                os.kill(pid, signal.SIGKILL)
            return


def run_one(notebook: Path, profile: str, seed: int, out: Path, threads: int | None, timeout: int,
            silence: float = 600.0) -> dict:
    """Execute ``notebook`` in a fresh kernel with ``COURSE_SEED=seed``; return how it went and what it claimed."""
    stem = f"{notebook.stem}-{profile}-seed{seed}"
    log = out / f"{stem}.jsonl"
    log.unlink(missing_ok=True)
    env = {**os.environ, PROFILE_ENV_VAR: profile, SEED_ENV_VAR: str(seed), CLAIMS_LOG_ENV_VAR: str(log)}
    if threads is not None:  # read by PyTorch in the kernel when it starts
        env["OMP_NUM_THREADS"] = str(threads)
    nb = nbformat.read(notebook, as_version=4)
    client = WatchedClient(nb, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(notebook.parent.resolve())}})
    finished, lost = threading.Event(), []
    watchdog = threading.Thread(target=watch, args=(client, silence, finished, lost), daemon=True)
    start, error = time.perf_counter(), None
    watchdog.start()
    try:
        client.execute(env=env)  # the kernel's environment; this process's stays as it is
    except CellExecutionError as failure:
        error = f"{failure.ename}: {failure.evalue}".strip()
    except Exception as failure:  # a dead kernel or a timeout: report it with the others
        error = f"{type(failure).__name__}: {failure}"
    finally:
        finished.set()
        watchdog.join()
    if lost:
        error = f"{LostKernelMessage.__name__}: {lost[0]}"
    seconds = time.perf_counter() - start
    for cell in nb.cells:  # a saved progress bar only shows its start ("0%"): the executed copy is read without them
        if cell.cell_type == "code":
            cell.outputs = [output for output in cell.outputs if not is_progress_bar(output)]
    nbformat.write(nb, out / f"{stem}.ipynb")
    claims = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return {"notebook": notebook.name, "seed": seed, "seconds": seconds, "error": error, "claims": claims,
            "lost": lost}


def run_with_retry(*task) -> dict:
    """``run_one``, and once more when a kernel message was lost; the run reports how many were lost."""
    run = run_one(*task)
    if run["lost"]:
        lost = run["lost"]
        run = run_one(*task)
        run["lost"] = lost + run["lost"]
    return run


def margins_table(runs: list[dict]) -> pd.DataFrame:
    """One row per claim: margin per seed, the smallest margin, the value's spread, and the verdicts.

    The spread is the std of the value over the COURSE_SEED runs when there are two or more; with one run it is
    the largest spread the claim printed itself (``claim(..., spread=...)``: the std over the profile's seeds
    inside the run), and missing when the claim gave none.
    """
    rows = [{"notebook": r["notebook"].split("_")[0], "claim": c["label"], "what": c["text"], "seed": r["seed"],
             "margin": c["margin"], "value": c["value"], "unit": c["unit"], "held": c["held"],
             "own spread": c.get("spread")}
            for r in runs for c in r["claims"]]
    if not rows:
        return pd.DataFrame()
    claims = pd.DataFrame(rows)
    keys = ["notebook", "claim", "what", "unit"]
    per_seed = claims.pivot_table(index=keys, columns="seed", values="margin", aggfunc="min")
    per_seed.columns = [f"margin seed {s}" for s in per_seed.columns]
    grouped = claims.groupby(keys)
    over_runs, own = grouped.value.std(ddof=1), grouped["own spread"].max()
    summary = pd.DataFrame({"smallest margin": grouped.margin.min(),
                            "spread": over_runs.fillna(own),
                            "spread from": over_runs.notna().map({True: "COURSE_SEED runs", False: "seeds in the run"})
                                           .where(over_runs.notna() | own.notna(), "none given"),
                            "failed": grouped.held.apply(lambda h: int((h == False).sum())),  # noqa: E712
                            "undecided": grouped.held.apply(lambda h: int(h.isna().sum()))})
    table = per_seed.join(summary).reset_index()
    table["thin"] = table["smallest margin"] < table["spread"].fillna(0.0)
    return table.sort_values(["notebook", "smallest margin"])


def _markdown(table: pd.DataFrame) -> str:
    """A pandas table as a Markdown table (numbers to two decimals), without an extra dependency."""
    cells = table.map(lambda v: f"{v:.2f}" if isinstance(v, float) else str(v))
    rows = [list(table.columns), ["---"] * len(table.columns), *cells.values.tolist()]
    return "\n".join("| " + " | ".join(map(str, row)) + " |" for row in rows)


def report(runs: list[dict], table: pd.DataFrame, profile: str) -> str:
    lines = [f"# Seed sweep: profile {profile}, seeds {sorted({r['seed'] for r in runs})}", "",
             "| notebook | seed | minutes | result |", "| --- | --- | --- | --- |"]
    for r in sorted(runs, key=lambda r: (r["notebook"], r["seed"])):
        result = "ok" if r["error"] is None else f"FAILED: {r['error'].splitlines()[0][:300]}"
        if r.get("lost"):
            result += f" (run again after: {r['lost'][0]})"
        lines.append(f"| {r['notebook']} | {r['seed']} | {r['seconds'] / 60:.1f} | {result} |")
    failed = sum(r["error"] is not None for r in runs)
    lost = sum(bool(r.get("lost")) for r in runs)
    lines += ["", f"{failed} of {len(runs)} runs failed; {lost} were run again after a lost kernel message.", ""]
    if not table.empty:
        thin = int(table["thin"].sum())
        lines += [f"{len(table)} claims; {int((table['failed'] > 0).sum())} failed under some seed; {thin} with a "
                  "smallest margin below the spread of their value over the seeds (marked thin).", "",
                  _markdown(table)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2], help="COURSE_SEED values (default: 1 2)")
    parser.add_argument("--jobs", type=int, default=2, help="notebooks executed at once (default: 2)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds a single cell may take")
    parser.add_argument("--silence", type=float, default=600.0,
                        help="seconds a cell may send nothing while its kernel is idle before the run is retried")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "seed-sweep")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.notebooks if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    out = args.out / args.profile
    out.mkdir(parents=True, exist_ok=True)
    threads = 1 if args.jobs > 1 else None
    tasks = [(nb.resolve(), args.profile, seed, out, threads, args.timeout, args.silence) for seed in args.seeds
             for nb in sorted(args.notebooks)]
    start = time.perf_counter()
    runs = []
    # A fresh, spawned worker per notebook: nothing (sockets, event loop, kernel manager) carries from one run to the next.
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        for done in as_completed([pool.submit(run_with_retry, *task) for task in tasks]):
            run = done.result()
            runs.append(run)
            print(f"[{(time.perf_counter() - start) / 60:5.1f} min] {run['notebook']} seed {run['seed']}: "
                  f"{'ok' if run['error'] is None else 'FAILED'} ({run['seconds']:.0f} s, {len(run['claims'])} claims"
                  f"{', retried after a lost kernel message' if run['lost'] else ''})",
                  flush=True)
    table = margins_table(runs)
    text = report(runs, table, args.profile)
    (out / "report.md").write_text(text)
    if not table.empty:
        table.to_csv(out / "claims.csv", index=False)
    print("\n" + text + f"\nwritten to {out}")
    return 1 if any(r["error"] for r in runs) or (not table.empty and (table["failed"] > 0).any()) else 0


if __name__ == "__main__":
    sys.exit(main())
