"""environment.yml (conda route) and pyproject.toml (pip route) pin the same packages."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def test_conda_pip_section_repeats_the_pyproject_pins():
    pins = set(_pyproject()["project"]["dependencies"])
    pip_section = next(d["pip"] for d in _environment()["dependencies"] if isinstance(d, dict))
    env_pins = {line for line in pip_section if not line.startswith("-e")}
    assert env_pins == pins, f"only in environment.yml: {env_pins - pins}; only in pyproject.toml: {pins - env_pins}"
    assert "-e ." in pip_section, "the conda route must install course_lib itself"


def test_every_pin_is_exact():
    project = _pyproject()["project"]
    for requirement in project["dependencies"] + project["optional-dependencies"]["dev"]:
        assert "==" in requirement, f"{requirement} is not pinned to a tested version"


def test_python_versions_agree():
    conda = [d for d in _environment()["dependencies"] if isinstance(d, str) and d.startswith("python=")]
    assert conda == ["python=3.11"]
    assert _pyproject()["project"]["requires-python"] == ">=3.11,<3.12"


def test_channels_are_conda_forge_only():
    assert _environment()["channels"] == ["conda-forge", "nodefaults"]
