"""tools/build_site.py's pieces: an executed copy is reused only while current, outputs made static, links kept or
turned into text. (The whole site, built and opened in Chromium, is tests/test_site.py.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("build_site", ROOT / "tools" / "build_site.py")
build_site = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_site)

WIDGET = build_site.WIDGET_MIME


def _widget(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("display_data", data={WIDGET: {"model_id": "abc", "version_major": 2},
                                                        "text/plain": text})


def test_progress_bars_are_dropped_and_a_widget_becomes_a_line_under_its_figure() -> None:
    figure = nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"})
    printed = nbformat.v4.new_output("stream", name="stdout", text="claim 1 held: +1.2 points\n")
    outputs = [_widget("train:   0%|          | 0/5 [00:00<?, ?it/s]"),
               nbformat.v4.new_output("stream", name="stderr", text="\r 40%|████      | 2/5 [00:01<00:02]"),
               figure, _widget("VBox(children=(IntSlider(value=1),))"), printed]
    static = build_site.static_outputs(outputs)  # the note first: it introduces the figure the widget drew
    assert static[0].data == {"text/html": build_site.WIDGET_NOTE}
    assert static[1:] == [figure, printed]
    assert build_site.static_outputs([figure, printed]) == [figure, printed]  # no widget, no note


def test_links_to_published_pages_and_the_web_stay_and_others_become_their_text() -> None:
    here = ROOT / "notebooks"
    published = {(ROOT / "notebooks" / "00_setup_data_and_cost.ipynb").resolve()}
    text = ("see the [glossary](00_setup_data_and_cost.ipynb#glossary), the [solution](../solutions/x.ipynb), "
            "[`masks.py`](../course_lib/masks.py), [the paper](https://arxiv.org/abs/1803.03635), "
            "[above](#claims) and ![a figure](figure.png)")
    assert build_site.site_links(text, here, published) == (
        "see the [glossary](00_setup_data_and_cost.ipynb#glossary), the solution, `masks.py`, "
        "[the paper](https://arxiv.org/abs/1803.03635), [above](#claims) and ![a figure](figure.png)")


def test_the_landing_table_loses_only_its_solution_column() -> None:
    table = ("intro\n\n| # | lecture | exercise | solution |\n| --- | --- | --- | --- |\n"
             "| 0 | [a](n.ipynb) | [b](e.ipynb) | [c](s.ipynb) |\n\nafter | with a bar")
    assert build_site.without_solution_column(table) == (
        "intro\n\n| # | lecture | exercise |\n| --- | --- | --- |\n| 0 | [a](n.ipynb) | [b](e.ipynb) |\n\n"
        "after | with a bar")


def test_an_executed_copy_is_reused_only_while_its_cells_profile_and_seed_match(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(build_site, "BUILD", tmp_path / "build")
    notebook = tmp_path / "notebooks" / "05_example.ipynb"
    notebook.parent.mkdir()
    source = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Example"),
                                             nbformat.v4.new_code_cell("print(1)")])
    nbformat.write(source, notebook)
    printed = nbformat.v4.new_output("stream", name="stdout", text="1\n")
    build_site.save_executed(source, {0: [printed]}, "quick", 0, build_site.executed_path(notebook, "quick"))

    copy = build_site.current_copy(notebook, "quick", 0)
    assert copy is not None and copy.cells[1].outputs == [printed]
    assert build_site.current_copy(notebook, "quick", 1) is None  # another seed
    assert build_site.current_copy(notebook, "full", 0) is None  # another profile (and no copy there)
    source.cells[1].source = "print(2)"
    nbformat.write(source, notebook)
    assert build_site.current_copy(notebook, "quick", 0) is None  # the notebook changed


def test_a_failed_lecture_does_not_stop_the_others_and_every_failure_is_reported(monkeypatch) -> None:
    ran = []

    def execute(notebook: Path, *args) -> None:
        ran.append(notebook.name)
        if notebook.name != "02_passes.ipynb":
            raise SystemExit(f"{notebook.name} failed, so the site cannot show it")

    monkeypatch.setattr(build_site, "execute", execute)
    todo = [Path(name) for name in ("01_fails.ipynb", "02_passes.ipynb", "03_fails.ipynb")]
    failures = build_site.execute_all(todo, "quick", 0, timeout=60, jobs=1)
    assert ran == ["01_fails.ipynb", "02_passes.ipynb", "03_fails.ipynb"]
    assert [message.split()[0] for message in failures] == ["01_fails.ipynb", "03_fails.ipynb"]


def test_each_chapter_page_opens_with_how_it_was_executed() -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Chapter 5 — Title\n\nClaims.")])
    nb.metadata[build_site.RUN_KEY] = {"profile": "full", "seed": 13, "date": "2026-12-07"}
    first = build_site.static_notebook(nb).cells[0].source
    assert first.startswith("# Chapter 5 — Title\n\n<p class=\"course-run\">Executed in the <b>full</b> profile")
    assert "COURSE_SEED=13" in first and "2026-12-07" in first and first.endswith("Claims.")
    nb.cells[0].source = "Claims first."
    with pytest.raises(ValueError, match="open with its '# ' title"):
        build_site.static_notebook(nb)
