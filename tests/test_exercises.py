"""exercises/ is generated from solutions/, and every exercise stops at its first check with the stub's message.

(The solutions themselves run under nbval with the other notebooks.)
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tools.make_exercises import STUB, generate, strip_solutions

ROOT = Path(__file__).resolve().parent.parent
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))


def test_exercises_regenerate_byte_for_byte(tmp_path):
    written = generate(ROOT / "solutions", tmp_path)
    assert [p.name for p in written] == [p.name for p in EXERCISES], "every solution needs its exercise, and back"
    for path in written:
        assert path.read_bytes() == (ROOT / "exercises" / path.name).read_bytes(), \
            f"exercises/{path.name} differs from its solution: run `make exercises` (never edit exercises/ by hand)"


def test_stubs_keep_indentation_and_the_code_around_them():
    source = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n\nprint(f)"
    assert strip_solutions(source) == f"def f(x):\n    y = 1\n    # YOUR CODE HERE\n    {STUB}\n\nprint(f)"
    with pytest.raises(ValueError, match="without"):
        strip_solutions("### BEGIN SOLUTION\nx = 1")


def test_no_solution_survives_in_the_exercises():
    for path in EXERCISES:
        text = path.read_text()
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text and STUB in text.replace('\\"', '"')
        assert '"outputs": []' in text and "execution_count\": null" in text


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.name)
def test_unsolved_exercise_fails_at_its_first_check_with_the_stub_message(path):
    notebook = nbformat.read(path, as_version=4)
    first_check = next(i for i, c in enumerate(notebook.cells) if c.cell_type == "code"
                       and ("checks.check_" in c.source or "checks.try_design" in c.source))
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    with pytest.raises(CellExecutionError) as error:
        client.execute()
    assert error.value.ename == "NotImplementedError", f"{path.name} crashed elsewhere: {error.value}"
    failed = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code"
              and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert failed == [first_check], f"{path.name}: expected the first check cell ({first_check}) to fail, got {failed}"
    assert "Your code here" in error.value.evalue
