"""Build the course as a static website that opens from disk, offline: ``make site``.

A lecturer previews the course, and a student reads ahead on a phone, without installing anything. The site holds
the landing page, every lecture executed (its figures, tables, printed verdicts and the code ``show(...)``
displays), the exercises unsolved, and the glossary (chapter 0's section, where every chapter's glossary links
land). Answers stay collapsed. Solutions are not published.

Three steps:

1. **Execute** each lecture in the chosen profile (``--profile full`` by default) and seed, in a fresh kernel,
   through the run cache (``COURSE_CACHE_DIR``): a chapter run once before opens again in about a minute. An
   executed copy in
   ``build/executed/<profile>/`` is reused when its record still matches - the notebook's cells, the code of
   ``course_lib``, the profile and the seed (:func:`run_record`) - so it can never be stale. ``make test`` leaves
   such copies from its own nbval run (``conftest.py``), and its site test builds without running a chapter twice.
2. **Stage** the sources in ``build/site-src/``: ``START_HERE.ipynb`` as the index, the executed lectures prepared
   for a static page (:func:`static_notebook`: a line at the top with the profile, seed and date; progress bars
   dropped, since a saved bar only shows its start; a widget shown as its first figure with a line that the notebook
   has the controls), the exercises without outputs, and links to
   files the site does not publish turned into their text (:func:`site_links`).
3. **Render** with Sphinx, MyST-NB and the Book theme (``site/conf.py``) into ``build/site/``; MathJax comes from a
   Python package and is copied beside the pages, so nothing is fetched at build or view time.

Run::

    make site                                   # full profile (cold: every chapter's full run; warm: minutes)
    .venv/bin/python tools/build_site.py --profile quick
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from copy import deepcopy
from pathlib import Path

import nbformat
from nbclient.exceptions import CellExecutionError
from nbformat import NotebookNode
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from course_lib.fingerprint import code_fingerprint, package_modules  # noqa: E402  (needs ROOT on the path)
from course_lib.profiles import PROFILE_ENV_VAR, SEED_ENV_VAR, seed_shift  # noqa: E402

BUILD = ROOT / "build"
CONF_DIR = ROOT / "site"
RUN_KEY = "course_run"  # the notebook metadata that records how an executed copy was made
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# tqdm's bar as text: "train:  40%|████      | 2/5 [00:01<00:02, 1.9it/s]"
PROGRESS_BAR = re.compile(r"\d+%\|.*\|\s*\d+/\d+")
WIDGET_NOTE = ("<p class=\"course-widget-note\">Interactive in the notebook: its controls redraw the figure below, which "
               "shows their first setting. Open the chapter in JupyterLab (<code>make lab</code>) to use them.</p>")


# --- 1. executed copies, and the record that says whether one is still current --------------------------------

def lectures() -> list[Path]:
    """The lecture notebooks, in teaching order."""
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def exercises() -> list[Path]:
    """The unsolved exercise notebooks, in teaching order."""
    return sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))


def cells_digest(nb: NotebookNode) -> str:
    """A hash of what a notebook says and runs: its cells' types and sources (outputs and metadata do not count)."""
    text = json.dumps([(cell.cell_type, cell.source) for cell in nb.cells])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_record(source: NotebookNode, profile: str, seed: int) -> dict[str, str | int]:
    """What an executed copy of ``source`` must match to be reused: its cells, the library's code, profile, seed."""
    return {"cells": cells_digest(source), "code": code_fingerprint(*package_modules()),
            "profile": profile, "seed": seed}


def executed_path(notebook: Path, profile: str) -> Path:
    return BUILD / "executed" / profile / notebook.name


def save_executed(source: NotebookNode, outputs: dict[int, list[NotebookNode]], profile: str, seed: int,
                  path: Path) -> None:
    """Write ``source`` with the outputs of its code cells (``outputs[i]`` for the i-th code cell) to ``path``.

    Used by ``conftest.py`` to keep what nbval executed in ``make test``. The copy records how it was made
    (:func:`run_record`, and the date), so that a later build reuses it only while it is current.
    """
    nb = deepcopy(source)  # nbval keeps using its own
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    for i, cell in enumerate(code_cells):
        cell.outputs = [nbformat.from_dict(dict(out)) for out in outputs.get(i, [])]
        cell.execution_count = i + 1
        for out in cell.outputs:
            if out.output_type == "execute_result":
                out.execution_count = i + 1
    nb.metadata[RUN_KEY] = {**run_record(source, profile, seed), "date": datetime.date.today().isoformat()}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    nbformat.write(nb, partial)
    partial.replace(path)  # never a half-written copy


def current_copy(notebook: Path, profile: str, seed: int) -> NotebookNode | None:
    """The executed copy of ``notebook`` if one exists and its record matches today's sources; else ``None``."""
    path = executed_path(notebook, profile)
    if not path.exists():
        return None
    copy = nbformat.read(path, as_version=4)
    record = dict(copy.metadata.get(RUN_KEY, {}))
    record.pop("date", None)
    return copy if record == run_record(nbformat.read(notebook, as_version=4), profile, seed) else None


def execute(notebook: Path, profile: str, seed: int, timeout: int, threads: int | None = None,
            position: int = 0) -> None:
    """Run ``notebook`` in a fresh kernel (profile, seed, run cache) and save the executed copy.

    ``threads`` sets the kernel's PyTorch threads (one each when two notebooks run at once); ``position`` is the
    line of this notebook's progress bar.
    """
    from notebook_run import CourseNotebookClient

    source = nbformat.read(notebook, as_version=4)
    nb = deepcopy(source)
    env = {**os.environ, PROFILE_ENV_VAR: profile, SEED_ENV_VAR: str(seed)}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    client = CourseNotebookClient(nb, timeout=timeout, kernel_name="python3",
                                  resources={"metadata": {"path": str(notebook.parent.resolve())}})
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    with tqdm(total=len(code_cells), desc=notebook.stem, unit="cell", position=position, leave=True) as bar:
        client.on_cell_executed = lambda **_: bar.update()
        try:
            client.execute(env=env)
        except CellExecutionError as error:
            raise SystemExit(f"{notebook.name} failed, so the site cannot show it:\n{error}") from None
    save_executed(source, {i: cell.outputs for i, cell in enumerate(code_cells)}, profile, seed,
                  executed_path(notebook, profile))


def execute_all(todo: list[Path], profile: str, seed: int, timeout: int, jobs: int = 1) -> list[str]:
    """Execute every notebook in ``todo`` (``jobs`` at a time) and return one message per notebook that failed.

    A failed notebook (a claim's assert, say) does not stop the others: a cold full build takes hours, and one
    chapter's failure should not cost the rest their run.
    """
    failures: list[str] = []
    if jobs == 1:
        for notebook in todo:
            try:
                execute(notebook, profile, seed, timeout)
            except SystemExit as failed:
                failures.append(str(failed))
    else:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            running = [pool.submit(execute, notebook, profile, seed, timeout, 1, k % jobs)
                       for k, notebook in enumerate(todo)]
            for done in as_completed(running):
                try:
                    done.result()
                except SystemExit as failed:
                    failures.append(str(failed))
    return failures


def executed_lectures(profile: str, seed: int, timeout: int, jobs: int = 1) -> list[NotebookNode]:
    """Every lecture executed: current copies reused, the others run now (``jobs`` at a time), times printed.

    On a 2-core machine two notebooks at once, one PyTorch thread each, finish sooner than one at a time with two:
    the course's small models are limited by Python, not arithmetic (as in ``tools/seed_sweep.py``).
    """
    start = time.perf_counter()
    todo = [notebook for notebook in lectures() if current_copy(notebook, profile, seed) is None]
    for notebook in lectures():
        if notebook not in todo:
            print(f"{notebook.name}: the executed copy is current, reused", flush=True)
    if todo:
        print(f"executing {len(todo)} lecture(s) in the {profile} profile, {jobs} at a time ...", flush=True)
    failures = execute_all(todo, profile, seed, timeout, jobs)
    print(f"lectures ready in {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    if failures:  # the others ran to the end and kept their copies: a rerun executes only the failed ones
        raise SystemExit("\n\n".join(failures) + f"\n\n{len(failures)} of {len(todo)} lecture(s) failed (above); the "
                         "others' executed copies are kept, so after a fix the build runs only the failed ones again")
    copies = [current_copy(notebook, profile, seed) for notebook in lectures()]
    if any(copy is None for copy in copies):  # the code changed while the build ran
        raise SystemExit("a lecture or course_lib changed during the build: run it again")
    return copies


# --- 2. static pages ---------------------------------------------------------------------------------------------

def is_progress_bar(out: NotebookNode) -> bool:
    """Whether ``out`` is a tqdm progress bar: a widget (in a kernel) or text; saved, it only shows its start."""
    if out.output_type == "stream":
        return bool(PROGRESS_BAR.search(out.text))
    text = out.get("data", {}).get("text/plain", "")
    return WIDGET_MIME in out.get("data", {}) and bool(PROGRESS_BAR.search(text))


def static_outputs(outputs: Iterable[NotebookNode]) -> list[NotebookNode]:
    """Outputs as a static page can show them: progress bars dropped, a widget replaced by a line about it.

    A course widget draws its first figure when it is built (that figure is kept); the widget itself is only a
    reference to live controls, which a page without a kernel cannot show, so a line above the figure says so.
    """
    outputs = [out for out in outputs if not is_progress_bar(out)]
    if not any(WIDGET_MIME in out.get("data", {}) for out in outputs):
        return outputs
    note = nbformat.v4.new_output("display_data", data={"text/html": WIDGET_NOTE})
    return [note] + [out for out in outputs if WIDGET_MIME not in out.get("data", {})]


def run_line(record: dict) -> str:
    """The line at the top of each chapter page: how its numbers were made."""
    return (f"<p class=\"course-run\">Executed in the <b>{record['profile']}</b> profile with "
            f"<code>{SEED_ENV_VAR}={record['seed']}</code> on {record['date']}: every number below is that run's. "
            f"Run it yourself in JupyterLab (<code>make lab</code>).</p>")


def below_title(nb: NotebookNode, html: str) -> None:
    """Put ``html`` right under the notebook's ``# `` title, the first line of its first Markdown cell."""
    first = next(cell for cell in nb.cells if cell.cell_type == "markdown")
    title, _, rest = first.source.partition("\n")
    if not title.startswith("# "):
        raise ValueError(f"a page must open with its '# ' title; this one opens with {title!r}")
    first.source = f"{title}\n\n{html}\n{rest}"


def static_notebook(executed: NotebookNode) -> NotebookNode:
    """An executed lecture prepared for a static page (see :func:`static_outputs` and :func:`run_line`)."""
    nb = deepcopy(executed)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = static_outputs(cell.outputs)
    below_title(nb, run_line(nb.metadata[RUN_KEY]))
    return nb


MARKDOWN_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)")


def site_links(markdown: str, here: Path, published: set[Path]) -> str:
    """Keep links to published pages and the web; a link to a file the site does not publish becomes its text.

    ``here`` is the folder of the notebook the text is in; ``published`` the source notebooks the site renders.
    """
    def relink(match: re.Match) -> str:
        text, target = match.groups()
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            return match.group(0)
        path = (here / target.split("#")[0]).resolve()
        return match.group(0) if path in published else text

    return MARKDOWN_LINK.sub(relink, markdown)


def without_solution_column(markdown: str) -> str:
    """The landing page's table of notebooks without its last column when that column links the solutions."""
    lines = markdown.split("\n")
    header = next((i for i, line in enumerate(lines) if line.startswith("|") and "solution" in line), None)
    if header is None:
        return markdown
    end = header
    while end < len(lines) and lines[end].startswith("|"):
        lines[end] = "|".join(lines[end].rstrip().rstrip("|").split("|")[:-1]) + "|"
        end += 1
    return "\n".join(lines)


def index_notebook(published: set[Path], pages: list[str]) -> NotebookNode:
    """``START_HERE.ipynb`` as the site's front page, with the table of contents (hidden in the page body).

    The solutions are not published, so their column goes; a line under the title says what the site is.
    """
    nb = nbformat.read(ROOT / "START_HERE.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = site_links(without_solution_column(cell.source), ROOT, published)
        else:
            cell.outputs = static_outputs(cell.outputs)
    note = ("<p class=\"course-site-note\">This is the course as a website: every lecture executed once, with its "
            "figures and numbers, and the exercises unsolved. To run them, change them and see the solutions, "
            "open the repository in JupyterLab (<code>make lab</code>).</p>")
    below_title(nb, note)
    toctree = "\n".join(["```{toctree}", ":hidden:", ":caption: The course, in teaching order", "", *pages, "```"])
    nb.cells.append(nbformat.v4.new_markdown_cell(toctree))
    return nb


def stage(executed: list[NotebookNode], out: Path) -> None:
    """Write the Sphinx sources: index, lectures (static), exercises (unsolved, no outputs)."""
    shutil.rmtree(out, ignore_errors=True)
    (out / "notebooks").mkdir(parents=True)
    (out / "exercises").mkdir(parents=True)
    published = {p.resolve() for p in [*lectures(), *exercises()]}
    for notebook, copy in zip(lectures(), executed):
        nb = static_notebook(copy)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = site_links(cell.source, notebook.parent, published)
        nbformat.write(nb, out / "notebooks" / notebook.name)
    for exercise in exercises():
        nb = nbformat.read(exercise, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = site_links(cell.source, exercise.parent, published)
            else:
                cell.outputs, cell.execution_count = [], None
        nbformat.write(nb, out / "exercises" / exercise.name)
    by_chapter = {}
    for path in [*lectures(), *exercises()]:
        by_chapter.setdefault(path.name[:2], []).append(f"{path.parent.name}/{path.stem}")
    pages = [page for chapter in sorted(by_chapter) for page in by_chapter[chapter]]
    nbformat.write(index_notebook(published, pages), out / "index.ipynb")


# --- 3. render ------------------------------------------------------------------------------------------------

def render(source: Path, out: Path) -> None:
    """Sphinx (``site/conf.py``) from ``source`` into ``out``; a warning (a broken link, say) fails the build."""
    from sphinx.cmd.build import build_main

    doctrees = out.parent / f"{out.name}-doctrees"
    for folder in (out, doctrees):  # a fresh build: rendering takes seconds, and nothing old can survive in it
        shutil.rmtree(folder, ignore_errors=True)
    status = build_main(["-b", "html", "-q", "-W", "--keep-going", "-c", str(CONF_DIR), "-d", str(doctrees),
                         str(source), str(out)])
    if status != 0:
        raise SystemExit(f"sphinx-build failed (status {status}): see the warnings above")


def build(profile: str, seed: int, out: Path = BUILD / "site", timeout: int = 3600, jobs: int = 1) -> Path:
    """The whole build (execute, stage, render); returns the folder with ``index.html``."""
    start = time.perf_counter()
    executed = executed_lectures(profile, seed, timeout, jobs)
    stage(executed, BUILD / "site-src")
    began = time.perf_counter()
    render(BUILD / "site-src", out)
    print(f"rendered in {time.perf_counter() - began:.0f} s; site built in {(time.perf_counter() - start) / 60:.1f} "
          f"min: open {out / 'index.html'}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default=os.environ.get(PROFILE_ENV_VAR, "full"), choices=["full", "quick"],
                        help="the profile the lectures are executed in (default: full, or $COURSE_PROFILE)")
    parser.add_argument("--out", type=Path, default=BUILD / "site", help="where the site goes (default build/site)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one cell may take (default 3600)")
    parser.add_argument("--jobs", type=int, default=2, choices=[1, 2, 3, 4],
                        help="lectures executed at once, one PyTorch thread each (default 2)")
    args = parser.parse_args()
    build(args.profile, seed_shift(), args.out, args.timeout, args.jobs)


if __name__ == "__main__":
    main()
