"""Every lecture notebook follows the course's conventions (see ``COURSE_DESIGN.md``).

Each chapter has 3-6 numbered questions, each followed by an answer a lecturer
can reveal (a collapsed ``<details>`` block); at least one cell that shows a
method's core lines from the library (``show(...)``); and a references section
whose entries link to the papers. Chapter 0 holds the glossary that later
chapters link to, and every such link must land on it.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
QUESTION = re.compile(r"\*\*Question (\d+)")
LINK = re.compile(r"\]\((https?://[^)\s]+)\)")


def _markdown(path: Path) -> list[str]:
    return [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "markdown"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_questions_have_answers(path: Path) -> None:
    text = "\n".join(_markdown(path))
    numbers = [int(n) for n in QUESTION.findall(text)]
    assert 3 <= len(set(numbers)) <= 6, f"{path.name}: {len(set(numbers))} questions, the convention is 3-6"
    assert sorted(set(numbers)) == list(range(1, len(set(numbers)) + 1)), f"{path.name}: questions {numbers}"
    for n in set(numbers):
        after = text[text.index(f"**Question {n}"):]
        assert "<details>" in after and "</details>" in after, f"{path.name}: question {n} has no answer after it"
    assert text.count("<details>") >= len(set(numbers)) and text.count("<details>") == text.count("</details>")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_core_lines_are_shown_from_the_library(path: Path) -> None:
    cells = nbformat.read(path, as_version=4).cells
    shown = [c.source for c in cells if c.cell_type == "code" and re.search(r"(^|\W)show\(", c.source)]
    assert shown, f"{path.name} never shows a method's source with course_lib.source.show"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_references_link_to_the_papers(path: Path) -> None:
    sections = [s for s in _markdown(path) if re.search(r"^#+ References", s, re.MULTILINE)]
    assert len(sections) == 1, f"{path.name}: expected one references section, found {len(sections)}"
    references = sections[0][re.search(r"^#+ References", sections[0], re.MULTILINE).end():]
    entries = [entry.strip() for entry in re.split(r"^\* ", references, flags=re.MULTILINE)[1:]]  # wrapped lines too
    assert entries, f"{path.name}: the references section lists nothing"
    unlinked = [e for e in entries if not LINK.search(e)]
    assert not unlinked, f"{path.name}: references without a link: {unlinked}"


def test_glossary_links_land_on_the_glossary() -> None:
    chapter0 = NOTEBOOKS[0]
    assert '<a id="glossary"></a>' in "\n".join(_markdown(chapter0))
    for term in ("sparsity", "density", "compression ratio", "MACs", "FLOPs"):
        assert f"**{term}**" in "\n".join(_markdown(chapter0)), f"the glossary does not define {term}"
    links = {path.name: re.findall(r"\]\(([^)]*#glossary)\)", "\n".join(_markdown(path))) for path in NOTEBOOKS[1:]}
    assert all(links.values()), f"chapters without a link to the glossary: {[n for n, l in links.items() if not l]}"
    for name, targets in links.items():
        for target in targets:
            assert target == f"{chapter0.name}#glossary", f"{name} links to {target}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_measured_claims_print_their_margin(path: Path) -> None:
    # A measured claim goes through course_lib.claims.claim, so that its margin is printed and the seed sweep
    # (tools/seed_sweep.py) can report how close it came to failing; a bare assert says only pass or fail.
    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    assert re.search(r"from course_lib\.claims import [^\n]*\bclaim\b", code) and re.search(r"(^|\W)claim\(\"\d", code), \
        f"{path.name} checks no claim with course_lib.claims.claim"
