"""The class grader (tools/grade.py) on a synthetic class of exercise 6: what each kind of submission scores, and why.

Four students hand in exercise 6 (four tasks): a correct one; one with a typical mistake in every task who also
"fixes" the check cells by hand (and deletes one); one whose first task crashes and whose third loops forever; and
one who hands in the unsolved exercise. The grader must give each the points its code earns, with a reason. (Each
submission is a whole execution of the exercise, so the troubles share students: the suite stays short.)
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import grade  # noqa: E402  (tools/ is not a package)

EXERCISE = "06_sparse_training.ipynb"
CELL_TIMEOUT = 30  # the right checks of exercise 6 take a few seconds; the endless loop is cut after this


def _with_task(notebook: nbformat.NotebookNode, task: str, source: str) -> nbformat.NotebookNode:
    for cell in notebook.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == task:
            cell.source = source
            return notebook
    raise AssertionError(f"no cell {task}")


def _solution() -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "solutions" / EXERCISE, as_version=4)


def _task_source(task: str) -> str:
    cell = next(c for c in _solution().cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == task)
    return cell.source


def _submissions() -> dict[str, nbformat.NotebookNode]:
    erk, rigl, cosine, step = (_task_source(task) for task in ("task1", "task2", "task3", "task4"))
    mistakes = _solution()
    _with_task(mistakes, "task1", erk.replace("if not over:", "if True:"))  # no capping at density 1
    _with_task(mistakes, "task2", rigl.replace("    new_weight[new_mask & ~active] = 0.0\n", ""))  # no reset
    _with_task(mistakes, "task3", cosine.replace(") / 2", ")"))  # forgets the halving
    _with_task(mistakes, "task4", step.replace("        ctx.skip_step = True\n", ""))  # takes the step's update too
    for cell in mistakes.cells:  # ... and makes every check pass by editing it
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            cell.source = 'print("✓ all good")'
    mistakes.cells = [c for c in mistakes.cells  # and deletes the last check altogether
                      if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") != "task3-check"]
    breaks = _with_task(_solution(), "task1", "raise RuntimeError('I broke my notebook')\n" + erk)
    _with_task(breaks, "task3", cosine.replace("    ### BEGIN SOLUTION\n", "    ### BEGIN SOLUTION\n    while True:\n        pass\n"))
    return {"correct": _solution(), "mistakes_edits_checks": mistakes, "crashes_loops": breaks,
            "empty": nbformat.read(ROOT / "exercises" / EXERCISE, as_version=4)}


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> tuple[dict[tuple[str, str], dict[str, str]], Path]:
    submitted, out = tmp_path_factory.mktemp("submitted"), tmp_path_factory.mktemp("graded")
    for student, notebook in _submissions().items():
        (submitted / student).mkdir()
        nbformat.write(notebook, submitted / student / EXERCISE)
    grade.grade_class(submitted, out, cell_timeout=CELL_TIMEOUT)
    with open(out / "grades.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == grade.FIELDS
    return {(r["student"], r["task"].split(" —")[0]): r for r in rows}, out


EXPECTED = {  # (student, task): (points, a word of the reason)
    ("correct", "Task 1"): (1, "passed"), ("correct", "Task 2"): (1, "passed"), ("correct", "Task 3"): (1, "passed"),
    # the edited and deleted checks are put back from the solution, so the mistakes are still found
    ("mistakes_edits_checks", "Task 1"): (0, "above 1"), ("mistakes_edits_checks", "Task 2"): (0, "start at exactly zero"),
    ("mistakes_edits_checks", "Task 3"): (0, "division by 2"),
    # a crash and an endless loop cost their own task only
    ("crashes_loops", "Task 1"): (0, "I broke my notebook"), ("crashes_loops", "Task 2"): (1, "passed"),
    ("crashes_loops", "Task 3"): (0, "did not finish"),
    ("empty", "Task 1"): (0, "not attempted"), ("empty", "Task 2"): (0, "not attempted"),
    ("empty", "Task 3"): (0, "not attempted"),
    # Task 4 (2 points) trains the student's update step, built on their own drop_and_grow of task 2.
    ("correct", "Task 4"): (2, "passed"), ("mistakes_edits_checks", "Task 4"): (0, "skip_step"),
    ("crashes_loops", "Task 4"): (2, "passed"), ("empty", "Task 4"): (0, "not attempted"),
}
MAX_POINTS = {"Task 1": 1, "Task 2": 1, "Task 3": 1, "Task 4": 2}


@pytest.mark.parametrize("student_task", sorted(EXPECTED), ids=lambda st: f"{st[0]}-{st[1].replace(' ', '')}")
def test_each_submission_scores_what_its_code_earns_with_a_reason(graded, student_task):
    rows, _ = graded
    points, word = EXPECTED[student_task]
    row = rows[student_task]
    assert float(row["points"]) == points and float(row["max_points"]) == MAX_POINTS[student_task[1]], row
    assert word in row["reason"], row


def test_every_student_gets_a_feedback_file_with_the_checks_messages(graded):
    _, out = graded
    files = sorted(p.stem for p in (out / "feedback").glob("*.md"))
    assert files == sorted({student for student, _ in EXPECTED})
    mistakes = (out / "feedback" / "mistakes_edits_checks.md").read_text()
    assert "0 / 5 points" in mistakes and "start at exactly zero" in mistakes


def test_a_rebuilt_notebook_takes_every_locked_cell_from_the_solution():
    student = _submissions()["mistakes_edits_checks"]
    rebuilt = grade.rebuild(student, _solution())
    checks = [c.source for c in rebuilt.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert checks == [c.source for c in _solution().cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    ids = [c.metadata["nbgrader"]["grade_id"] for c in rebuilt.cells]
    assert ids.index("task3-check") == ids.index("task3") + 1  # the deleted check is back after its task


def test_a_wrongly_named_file_is_a_reason_not_a_crash(tmp_path):
    path = tmp_path / "06_sparse.ipynb"
    nbformat.write(_solution(), path)
    [row] = grade.grade_notebook(path, "someone")
    assert row.points == 0 and "no exercise is called" in row.reason
