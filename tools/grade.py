"""Grade a class's exercise notebooks, or validate one before submitting it.

Every code cell of a solution notebook carries nbgrader's metadata
(``metadata.nbgrader``): the student's cells (``solution: true``, one per
task, ``grade_id`` ``taskN``), the check cells that grade them (``grade:
true``, ``grade_id`` ``taskN-check``, with their ``points``) and the provided
cells around them (``locked: true``). ``make exercises`` copies it into
``exercises/``. Grading a submission:

1. **Rebuild** it from the student's notebook: the student's own cells stay,
   in their order; every locked cell - provided code and checks - is replaced
   by the solution notebook's version, and a locked cell the student deleted
   is put back after the task it belongs to. Editing or deleting a check
   gains nothing.
2. **Run** it in a fresh kernel in the quick profile, each cell with a time
   limit (an endless loop is interrupted, and the next cell runs).
3. **Score** every task: its check cell's points if the check ran without an
   error, otherwise zero with the reason - the check's own message, the
   error of the student's cell, "not attempted" for an untouched stub, the
   time limit, a missing task cell or a dead kernel.

Commands (``make grade`` and ``make validate`` call them)::

    python tools/grade.py grade SUBMISSIONS OUT      # SUBMISSIONS/{student}/{exercise}.ipynb
    python tools/grade.py validate exercises/06_sparse_training.ipynb

``grade`` writes ``OUT/grades.csv`` (``student,exercise,task,points,max_points,reason``)
and one ``OUT/feedback/{student}.md`` per student; ``validate`` prints what
the grader would give one notebook - exactly the same run.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
from nbclient.exceptions import DeadKernelError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from notebook_run import CourseNotebookClient  # noqa: E402  (tools/ is not a package)

SOLUTIONS = ROOT / "solutions"
CELL_TIMEOUT = 300  # seconds per cell; the quick profile needs far less (the longest check takes about a minute)
FIELDS = ["student", "exercise", "task", "points", "max_points", "reason"]
STUB_ERROR = "NotImplementedError"


@dataclass
class TaskGrade:
    """One task of one submission."""

    student: str
    exercise: str
    task: str
    points: float
    max_points: float
    reason: str


def _meta(cell: nbformat.NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _grade_id(cell: nbformat.NotebookNode) -> str | None:
    return _meta(cell).get("grade_id")


def task_titles(solution: nbformat.NotebookNode) -> dict[str, str]:
    """``{"task2": "Task 2 — One RigL update of one layer", ...}``, from the markdown heading before each task."""
    titles, heading = {}, None
    for cell in solution.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("#"):
            heading = cell.source.lstrip("# ").splitlines()[0].strip()
        elif _meta(cell).get("solution"):
            task = _grade_id(cell)
            titles[task] = heading or task
    return titles


def _locked_copy(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(cell.source, metadata={"nbgrader": _meta(cell)})


def rebuild(submission: nbformat.NotebookNode, solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook the grader runs: the student's cells, with every locked cell taken from ``solution``."""
    locked = {_grade_id(c): c for c in solution.cells if c.cell_type == "code" and _meta(c).get("locked")}
    cells, seen = [], set()
    for cell in submission.cells:
        if cell.cell_type != "code":
            continue
        grade_id = _grade_id(cell)
        if grade_id in locked:  # the solution's version, whatever the student made of it
            cells.append(_locked_copy(locked[grade_id]))
            seen.add(grade_id)
        else:
            cells.append(nbformat.v4.new_code_cell(cell.source, metadata=dict(cell.get("metadata", {}))))
    # Locked cells the student deleted go back in the solution's order: after the cell that precedes them there.
    order = [_grade_id(c) for c in solution.cells if c.cell_type == "code"]
    for position, grade_id in enumerate(order):
        if grade_id not in locked or grade_id in seen:
            continue
        at = 0
        for index, cell in enumerate(cells):
            if _grade_id(cell) in order[:position]:
                at = index + 1
        cells.insert(at, _locked_copy(locked[grade_id]))
        seen.add(grade_id)
    return nbformat.v4.new_notebook(cells=cells, metadata=solution.metadata)


def _error(cell: nbformat.NotebookNode) -> str | None:
    """The error a cell ended with, as one line (None if it ran cleanly)."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            message = (output.get("evalue") or "").strip().splitlines()
            first = message[0] if message else ""
            ename = output.get("ename", "Error")
            return (first if ename == "CheckFailed" else f"{ename}: {first}")[:400]  # a check's message speaks for itself
    return None


def run(notebook: nbformat.NotebookNode, cell_timeout: int) -> str | None:
    """Execute ``notebook`` in place in a fresh kernel (quick profile); the reason if the kernel died."""
    client = CourseNotebookClient(notebook, timeout=cell_timeout, kernel_name="python3", allow_errors=True,
                                  interrupt_on_timeout=True, resources={"metadata": {"path": str(ROOT / "exercises")}})
    try:
        client.execute(env={**os.environ, "COURSE_PROFILE": "quick"})  # the kernel's environment only
    except DeadKernelError as error:
        return f"the kernel died ({error})"[:400]
    except Exception as error:  # noqa: BLE001 - a grader reports every failure as a reason, never crashes
        return f"the run stopped: {type(error).__name__}: {error}"[:400]
    return None


def grade_notebook(path: Path, student: str, cell_timeout: int = CELL_TIMEOUT) -> list[TaskGrade]:
    """Grade one submitted notebook: one row per task of its exercise."""
    exercise = path.stem
    solution_path = SOLUTIONS / path.name
    if not solution_path.is_file():
        known = sorted(p.name for p in SOLUTIONS.glob("*.ipynb"))
        return [TaskGrade(student, exercise, "(whole notebook)", 0, 0,
                          f"no exercise is called {path.name}; name the file as the exercise is named: {known}")]
    solution = nbformat.read(solution_path, as_version=4)
    titles = task_titles(solution)
    checks = {_grade_id(c).removesuffix("-check"): float(_meta(c).get("points", 0))
              for c in solution.cells if _meta(c).get("grade")}
    try:
        submission = nbformat.read(path, as_version=4)
    except Exception as error:  # noqa: BLE001
        return [TaskGrade(student, exercise, titles.get(t, t), 0, p, f"the notebook could not be read: {error}"[:400])
                for t, p in checks.items()]
    notebook = rebuild(submission, solution)
    died = run(notebook, cell_timeout)
    by_id = {_grade_id(c): c for c in notebook.cells if _grade_id(c)}
    rows = []
    for task, points in checks.items():
        check, answer = by_id.get(f"{task}-check"), by_id.get(task)
        reason = _reason(check, answer, died, cell_timeout)
        rows.append(TaskGrade(student, exercise, titles.get(task, task), points if reason == "passed" else 0, points,
                              reason))
    return rows


def _reason(check: nbformat.NotebookNode | None, answer: nbformat.NotebookNode | None, died: str | None,
            cell_timeout: int) -> str:
    """Why a task scored what it did: "passed", or the first thing that went wrong, in the student's terms."""
    ran = check is not None and check.get("execution_count") is not None
    check_error = _error(check) if ran else None
    if ran and check_error is None:
        return "passed"
    if answer is None:
        return "the task's code cell is missing (its check could not use your function)"
    answer_error = _error(answer)
    if not ran:
        return died or "the check did not run"
    if (answer_error or check_error or "").startswith(STUB_ERROR):
        return "not attempted (the stub still raises NotImplementedError)"
    if answer_error and "KeyboardInterrupt" in answer_error:
        return f"your task cell did not finish within {cell_timeout} s (an endless loop?)"
    if "KeyboardInterrupt" in check_error:
        return f"the check did not finish within {cell_timeout} s: does your function loop forever?"
    if answer_error:
        return f"your task cell failed: {answer_error}"
    return check_error


def feedback(student: str, rows: list[TaskGrade]) -> str:
    """A student's feedback file: per exercise, each task's points and the checks' messages."""
    lines = [f"# Feedback for {student}", ""]
    for exercise in sorted({r.exercise for r in rows}):
        mine = [r for r in rows if r.exercise == exercise]
        got, out_of = sum(r.points for r in mine), sum(r.max_points for r in mine)
        lines += [f"## {exercise}: {got:g} / {out_of:g} points", ""]
        lines += [f"- **{r.task}** — {r.points:g}/{r.max_points:g}: {r.reason}" for r in mine]
        lines.append("")
    return "\n".join(lines)


def grade_class(submissions: Path, out: Path, cell_timeout: int = CELL_TIMEOUT) -> list[TaskGrade]:
    """Grade ``submissions/{student}/{exercise}.ipynb`` for every student; write the CSV and the feedback files."""
    if not submissions.is_dir():
        raise SystemExit(f"{submissions} is not a folder: give the folder that holds one folder per student.")
    students = sorted(p for p in submissions.iterdir() if p.is_dir())
    if not students:
        raise SystemExit(f"{submissions} holds no student folders ({submissions}/STUDENT/EXERCISE.ipynb).")
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    rows: list[TaskGrade] = []
    for folder in students:
        notebooks = sorted(folder.glob("*.ipynb"))
        mine: list[TaskGrade] = []
        for path in notebooks:
            started = time.perf_counter()
            mine += grade_notebook(path, folder.name, cell_timeout)
            print(f"{folder.name}/{path.name}: graded in {time.perf_counter() - started:.0f} s", flush=True)
        if not notebooks:
            mine.append(TaskGrade(folder.name, "(none)", "(none)", 0, 0, "no notebook was submitted"))
        (out / "feedback" / f"{folder.name}.md").write_text(feedback(folder.name, mine))
        rows += mine
    with open(out / "grades.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({**asdict(r), "points": f"{r.points:g}", "max_points": f"{r.max_points:g}"} for r in rows)
    print(f"{len(rows)} task grades of {len(students)} students in {out / 'grades.csv'}; "
          f"feedback in {out / 'feedback'}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    grade = commands.add_parser("grade", help="grade SUBMISSIONS/{student}/{exercise}.ipynb into OUT")
    grade.add_argument("submissions", type=Path)
    grade.add_argument("out", type=Path)
    validate = commands.add_parser("validate", help="run one notebook exactly as the grader will")
    validate.add_argument("notebook", type=Path)
    for command in (grade, validate):
        command.add_argument("--cell-timeout", type=int, default=CELL_TIMEOUT, help="seconds per cell")
    args = parser.parse_args(argv)
    if args.command == "grade":
        grade_class(args.submissions, args.out, args.cell_timeout)
        return 0
    if not args.notebook.is_file():
        parser.error(f"{args.notebook} is not a notebook file")
    rows = grade_notebook(args.notebook, "you", args.cell_timeout)
    print(feedback("you", rows))
    return 0 if all(r.points == r.max_points for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
