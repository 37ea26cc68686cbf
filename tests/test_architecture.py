"""The library's layers hold: teaching -> chapter experiments -> method registry -> method families -> foundations.

The contracts are written in ``pyproject.toml`` (``[tool.importlinter]``) and
checked by import-linter. They fail as soon as a method module imports a
chapter's experiment, a foundation imports a method, a module of the package
is left out of the layers, or two modules of one package import each other.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint(config: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(lint), "--config", str(config), "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_the_import_contracts_hold():
    result = _lint(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("arrow", [
    ("course_lib.pruning.lottery", "course_lib.chapters.ch03_lottery_tickets"),  # a method reaching up to a chapter
    ("course_lib.masks", "course_lib.pruning.selection"),  # a foundation reaching up to a method
])
def test_the_layers_contract_can_fail(tmp_path, arrow):
    """Forbid an arrow that does not exist in the other direction: the same checker must report it as broken."""
    importer, imported = arrow
    config = tmp_path / "contracts.toml"
    config.write_text(f"""
[tool.importlinter]
root_package = "course_lib"

[[tool.importlinter.contracts]]
name = "reversed"
type = "layers"
layers = ["{importer}", "{imported}"]
""")
    result = _lint(config)  # the real code has imported -> importer, so putting importer on top breaks the contract
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout + result.stderr
