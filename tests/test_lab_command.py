"""`make lab` opens the course at the repository root: lectures, exercises and solutions one click away."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import urllib.request
from pathlib import Path

import nbformat

from tests.jupyter_server import running_lab

ROOT = Path(__file__).resolve().parent.parent
LANDING = ROOT / "START_HERE.ipynb"
FOLDERS = ("notebooks", "exercises", "solutions")


def make_lab_command() -> list[str]:
    """The command line `make lab` runs (the last line `make -n lab` prints), without running it."""
    printed = subprocess.run(["make", "-s", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, check=True)
    line = printed.stdout.strip().splitlines()[-1]
    assert " lab " in line, f"`make -n lab` does not end with a `jupyter lab` command:\n{printed.stdout}"
    return shlex.split(line)


def test_make_lab_serves_the_repository_root_with_every_folder(tmp_path):
    command = make_lab_command()
    assert command[-1] == LANDING.name, f"make lab should open the landing page, runs: {command}"
    with running_lab(command, ROOT, tmp_path) as (base, token):
        def contents(path: str = "") -> dict:
            with urllib.request.urlopen(f"{base}/api/contents/{path}?token={token}", timeout=10) as response:
                return json.load(response)

        top = {item["name"]: item["type"] for item in contents()["content"]}
        for folder in FOLDERS:
            assert top.get(folder) == "directory", f"{folder}/ is not reachable from make lab's file browser: {top}"
            notebooks = [i["name"] for i in contents(folder)["content"] if i["name"].endswith(".ipynb")]
            assert notebooks, f"{folder}/ shows no notebooks"
        assert contents(LANDING.name)["type"] == "notebook"


def test_landing_page_links_every_notebook_and_only_existing_files():
    text = "\n".join(cell.source for cell in nbformat.read(LANDING, as_version=4).cells)
    links = set(re.findall(r"\]\(([^)#\s]+)\)", text))
    missing = sorted(link for link in links if not (ROOT / link).exists())
    assert not missing, f"START_HERE.ipynb links to files that do not exist: {missing}"
    notebooks = {f"{folder}/{p.name}" for folder in FOLDERS for p in sorted((ROOT / folder).glob("*.ipynb"))}
    unlinked = sorted(notebooks - links)
    assert not unlinked, f"START_HERE.ipynb does not link {unlinked}: add them to its table"
