"""pytest settings for the whole suite: tests/, and the notebooks nbval runs from notebooks/ and solutions/."""

from __future__ import annotations

import functools
import os

import pytest

# After the kernel reports that a cell has finished, nbval waits for each of the cell's output messages with a
# hard-coded 5 s timeout. On a busy 2-core machine a cell that streamed many progress-bar updates can deliver its
# last outputs later than that; nbval then fails a cell that ran correctly ("Timeout of 5 seconds exceeded waiting
# for output", seen on chapter 3 in a CI run). The cell's own time limit (--nbval-cell-timeout) is unchanged.
NBVAL_OUTPUT_TIMEOUT_S = 60

# `make test` runs the suite in two pytest-xdist workers (`-n 2 --dist loadscope`: every notebook, and every test
# module, stays on one worker). The course's small models are limited by Python, not arithmetic, so two processes
# with one PyTorch thread each finish sooner than one process with two threads. Files are handed out in this
# order, longest first, so that neither worker is left with a long notebook at the end; the many short unit-test
# modules come last and fill the gaps. (The browser tests train chapter 0's quick baselines, which chapters 1-3
# and their solutions load; the run cache makes the other worker wait for them rather than train them twice.)
LONGEST_FIRST = [
    "tests/test_browser.py",
    "notebooks/08_", "notebooks/07_", "notebooks/06_", "notebooks/05_", "notebooks/03_", "notebooks/04_",
    "solutions/08_", "solutions/07_", "solutions/06_", "solutions/05_", "notebooks/09_", "solutions/09_",
    "notebooks/02_", "notebooks/01_", "notebooks/00_", "tests/test_exercises.py", "solutions/",
]


def _rank(nodeid: str) -> int:
    return next((i for i, prefix in enumerate(LONGEST_FIRST) if nodeid.startswith(prefix)), len(LONGEST_FIRST))


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):  # one PyTorch thread per worker, and per kernel it starts
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: _rank(item.nodeid))  # stable: the order within a file is kept
    for item in items:
        if hasattr(item, "output_timeout"):  # nbval's notebook cells
            item.output_timeout = NBVAL_OUTPUT_TIMEOUT_S


# Each lecture nbval executes is kept with its outputs in build/executed/<profile>/ (tools/build_site.py), so that
# the website test renders the chapters this run executed instead of running them a second time. A copy records the
# notebook's cells, the library's code, the profile and the seed; the site reuses it only while all four match.
@functools.cache  # one module for the whole run, not one per notebook
def _site_builder():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("build_site", Path(__file__).parent / "tools" / "build_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _as_jupyter_shows(source: str, outputs: list) -> list:
    """A cell's outputs as Jupyter shows them: nbval runs cells without storing them in IPython's history, so a
    trailing ``;`` does not silence the cell's value (IPython reads the ``;`` from the history); Jupyter's does."""
    from IPython.core.displayhook import DisplayHook

    if DisplayHook.semicolon_at_end_of_expression(source):
        return [out for out in outputs if out.output_type != "execute_result"]
    return outputs


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    notebook = item.parent
    if call.when != "call" or not hasattr(item, "test_outputs") or notebook.path.parent.name != "notebooks":
        return report
    kept = notebook.__dict__.setdefault("_course_outputs", {})
    kept[item.cell_num] = _as_jupyter_shows(item.cell.source, item.test_outputs) if report.passed else None
    code_cells = sum(cell.cell_type == "code" for cell in notebook.nb.cells)
    if item.cell_num == code_cells - 1 and len(kept) == code_cells and None not in kept.values():
        from course_lib.profiles import get_profile, seed_shift

        builder = _site_builder()
        builder.save_executed(notebook.nb, kept, get_profile().name, seed_shift(),
                              builder.executed_path(notebook.path, get_profile().name))
    return report
