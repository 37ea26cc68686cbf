"""Exercise notebooks are generated from their solutions: ``solutions/`` is the only source.

In a solution notebook, the student's part of a code cell sits between two
marker lines (nbgrader's convention)::

    def local_magnitude_mask(weight, sparsity):
        ### BEGIN SOLUTION
        ...the reference solution...
        ### END SOLUTION

The generator replaces everything from ``### BEGIN SOLUTION`` to
``### END SOLUTION`` with a "YOUR CODE HERE" comment and a
``raise NotImplementedError(...)`` at the same indentation, clears all
outputs and writes the notebook to ``exercises/``. Markdown is copied as is.

Why not nbgrader's ``ClearSolutions``? It does the same replacement, but
nbgrader pulls in a grading database, a web server and JupyterLab menus that a
student does not need; these thirty lines are all the course uses of it.

Regenerate with ``make exercises`` (or ``python tools/make_exercises.py``);
a test fails when ``exercises/`` differs from what the solutions give.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = 'raise NotImplementedError("Your code here: replace this line with your solution.")'
ROOT = Path(__file__).resolve().parent.parent


def strip_solutions(source: str) -> str:
    """Replace every marked solution block in a cell's source with a stub."""
    out: list[str] = []
    inside = False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"nested {BEGIN!r} in:\n{source}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [f"{indent}# YOUR CODE HERE", f"{indent}{STUB}"]
        elif stripped == END:
            if not inside:
                raise ValueError(f"{END!r} without {BEGIN!r} in:\n{source}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN!r} without {END!r} in:\n{source}")
    return "\n".join(out)


def make_exercise(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The exercise version of a solution notebook: solutions stubbed, outputs cleared."""
    exercise = nbformat.from_dict(solution)
    for cell in exercise.cells:
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source)
            cell.outputs = []
            cell.execution_count = None
    return exercise


def generate(solutions: Path = ROOT / "solutions", exercises: Path = ROOT / "exercises") -> list[Path]:
    """Write ``exercises/X.ipynb`` for every ``solutions/X.ipynb``; return the paths written."""
    exercises.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(solutions.glob("*.ipynb")):
        target = exercises / path.name
        nbformat.write(make_exercise(nbformat.read(path, as_version=4)), target)
        written.append(target)
    return written


if __name__ == "__main__":
    for written_path in generate():
        print(f"wrote {written_path.relative_to(ROOT)}")
    sys.exit(0)
