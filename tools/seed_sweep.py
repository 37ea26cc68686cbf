"""Run chapters under several COURSE_SEED values and report every claim's margin: how far it was from failing.

A claim that holds by 0.04 points on the seed it was written on can fail on the next one, in front of a class.
This tool executes each notebook once per seed, in a fresh kernel, in the profile you choose, and collects
what every ``course_lib.claims.claim`` printed (through ``COURSE_CLAIMS_LOG``). It prints

* every run that failed, with the failing claim's message (or any other error);
* one row per claim: its margin under each seed, the smallest margin, and the spread (std) of the measured
  value over the seeds. A smallest margin below that spread is a claim the next seed may break.

The report is also written to ``OUT/report.md`` and ``OUT/claims.csv``, with each executed notebook beside
them (read the answers in ``<details>`` against the numbers those runs printed).

Run (``make seed-sweep`` does the same with NOTEBOOKS, SEEDS, PROFILE and JOBS)::

    .venv/bin/python tools/seed_sweep.py --profile quick --seeds 1 2 notebooks/*.ipynb
    .venv/bin/python tools/seed_sweep.py --profile full --seeds 1 --jobs 1 notebooks/0[1345]_*.ipynb

``--jobs 2`` runs two notebooks at once, each with one PyTorch thread (on 2 cores that is faster than one at a
time with two threads: the course's small models are limited by Python, not arithmetic). Timing claims stay
valid beside a second notebook: the course times on one thread and decides on the spread (see
``course_lib.costs``). Results go through the run cache (``COURSE_CACHE_DIR``), keyed by the seed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import nbformat
import pandas as pd
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course_lib.claims import CLAIMS_LOG_ENV_VAR  # noqa: E402  (needs ROOT on the path)
from course_lib.profiles import PROFILE_ENV_VAR, PROFILES, SEED_ENV_VAR  # noqa: E402


def run_one(notebook: Path, profile: str, seed: int, out: Path, threads: int | None, timeout: int) -> dict:
    """Execute ``notebook`` in a fresh kernel with ``COURSE_SEED=seed``; return how it went and what it claimed."""
    stem = f"{notebook.stem}-{profile}-seed{seed}"
    log = out / f"{stem}.jsonl"
    log.unlink(missing_ok=True)
    os.environ.update({PROFILE_ENV_VAR: profile, SEED_ENV_VAR: str(seed), CLAIMS_LOG_ENV_VAR: str(log)})
    if threads is not None:  # read by PyTorch in the kernel when it starts
        os.environ["OMP_NUM_THREADS"] = str(threads)
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent.resolve())}})
    start, error = time.perf_counter(), None
    try:
        client.execute()
    except CellExecutionError as failure:
        error = f"{failure.ename}: {failure.evalue}".strip()
    except Exception as failure:  # a dead kernel or a timeout: report it with the others
        error = f"{type(failure).__name__}: {failure}"
    seconds = time.perf_counter() - start
    nbformat.write(nb, out / f"{stem}.ipynb")
    claims = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return {"notebook": notebook.name, "seed": seed, "seconds": seconds, "error": error, "claims": claims}


def margins_table(runs: list[dict]) -> pd.DataFrame:
    """One row per claim: margin per seed, the smallest margin, the value's std over seeds, and the verdicts."""
    rows = [{"notebook": r["notebook"].split("_")[0], "claim": c["label"], "what": c["text"], "seed": r["seed"],
             "margin": c["margin"], "value": c["value"], "unit": c["unit"], "held": c["held"]}
            for r in runs for c in r["claims"]]
    if not rows:
        return pd.DataFrame()
    claims = pd.DataFrame(rows)
    keys = ["notebook", "claim", "what", "unit"]
    per_seed = claims.pivot_table(index=keys, columns="seed", values="margin", aggfunc="min")
    per_seed.columns = [f"margin seed {s}" for s in per_seed.columns]
    grouped = claims.groupby(keys)
    summary = pd.DataFrame({"smallest margin": grouped.margin.min(),
                            "value std over seeds": grouped.value.std(ddof=1),
                            "failed": grouped.held.apply(lambda h: int((h == False).sum())),  # noqa: E712
                            "undecided": grouped.held.apply(lambda h: int(h.isna().sum()))})
    table = per_seed.join(summary).reset_index()
    table["thin"] = table["smallest margin"] < table["value std over seeds"].fillna(0.0)
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
        lines.append(f"| {r['notebook']} | {r['seed']} | {r['seconds'] / 60:.1f} | {result} |")
    failed = sum(r["error"] is not None for r in runs)
    lines += ["", f"{failed} of {len(runs)} runs failed.", ""]
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
    tasks = [(nb.resolve(), args.profile, seed, out, threads, args.timeout) for seed in args.seeds
             for nb in sorted(args.notebooks)]
    start = time.perf_counter()
    runs = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for done in as_completed([pool.submit(run_one, *task) for task in tasks]):
            run = done.result()
            runs.append(run)
            print(f"[{(time.perf_counter() - start) / 60:5.1f} min] {run['notebook']} seed {run['seed']}: "
                  f"{'ok' if run['error'] is None else 'FAILED'} ({run['seconds']:.0f} s, {len(run['claims'])} claims)",
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
