"""A real browser: JupyterLab in Chromium, a chapter's widget shown, its slider moved, the output seen to change.

nbval proves the notebooks execute; only a browser proves that a lecturer's
widget actually renders and answers. One JupyterLab server (on 127.0.0.1, with a
random token) and one Chromium serve the whole module; each test writes its
notebook into the server's temporary folder (so autosave never writes outputs
into the repo), opens it in a page and a JupyterLab workspace of its own, and
shuts its kernel down at the end: for every chapter with a widget, a short
notebook that builds it from the same library calls as the chapter (a whole
chapter takes minutes to run; nbval runs the chapters themselves). A move counts as answered when the caption
*and* the figure below it have been redrawn; the time from the key press to then
is written to ``test-artifacts/``.

Without Chromium the test is skipped with a message saying how to enable it,
so ``make test`` still passes on a student's laptop.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat

import pytest

from tests.jupyter_server import lab_command, running_lab

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "00_setup_data_and_cost.ipynb"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason="Chromium not found: `sudo apt-get install chromium` enables the browser test"),
]


CHAPTER0_WIDGET = [
    "from course_lib import cache, data, widgets\n"
    "from course_lib.profiles import get_profile\n"
    "from course_lib.training import recipe\n"
    "profile = get_profile('quick')\n"
    "splits = data.load_splits(profile)\n"
    "model = cache.trained_baseline('lenet5', splits, recipe('lenet5', profile)).model",
    "widgets.misclassified_browser(model, splits.test, splits.classes)",
]

CHAPTER1_WIDGET = [
    "from course_lib import cache, data, widgets\n"
    "from course_lib.profiles import get_profile\n"
    "from course_lib.training import recipe\n"
    "profile = get_profile('quick')\n"
    "splits = data.load_splits(profile)\n"
    "dense = cache.trained_baseline('lenet300', splits, recipe('lenet300', profile)).model",
    "widgets.sparsity_explorer(dense, splits.val)",
]

# Chapter 2's sweep, on three keep ratios (the chapter's seven take minutes).
CHAPTER2_WIDGET = [
    "from course_lib import cache, data, widgets\n"
    "from course_lib.profiles import get_profile\n"
    "from course_lib.chapters import ch02_structure_and_speed as ch02\n"
    "from course_lib.pruning import procedures\n"
    "from course_lib.training import finetune_recipe, recipe\n"
    "profile = get_profile('quick')\n"
    "splits = data.load_splits(profile)\n"
    "vgg = cache.trained_baseline('vgg', splits, recipe('vgg', profile)).model\n"
    "table, _ = ch02.structured_sweep(vgg, splits, [1.0, 0.75, 0.5], procedures.units('l1', 'local'),\n"
    "                                    finetune_recipe('vgg', profile), latency_rounds=3)",
    "widgets.keep_ratio_explorer(table)",
]

# Chapter 3's viewer on three IMP rounds of one epoch each (the chapter's eleven take minutes).
CHAPTER3_WIDGET = [
    "import dataclasses\n"
    "from course_lib import data, widgets\n"
    "from course_lib.profiles import get_profile\n"
    "from course_lib.chapters import ch03_lottery_tickets\n"
    "from course_lib.pruning import lottery\n"
    "profile = get_profile('quick')\n"
    "splits = data.load_splits(profile)\n"
    "config = dataclasses.replace(ch03_lottery_tickets.lottery_recipe(profile), epochs=1)\n"
    "tickets, _ = lottery.iterative_magnitude_pruning('lenet300', splits, config, 3, 0.5)\n"
    "reinits = {r: lottery.random_reinit_control('lenet300', tickets[r], splits, config)[0] for r in (1, 3)}",
    "widgets.ticket_viewer(tickets, reinits, splits.val)",
]

CHAPTER5_WIDGET = [
    "from course_lib import widgets\n"
    "from course_lib.profiles import get_profile\n"
    "from course_lib.chapters import ch05_rethinking_pruning as chapter\n"
    "profile = get_profile('quick')\n"
    "splits = chapter.rethinking_splits(profile)\n"
    "model = chapter.slimming_trained(splits, chapter.rethinking_recipe(profile), 0.1, seed=0)",
    "widgets.slimming_explorer(model, splits.val, min_channels=2)",
]


# The widget's figure (the image in the same widget box as the caption), once it has loaded; else null. A redraw
# replaces the image element, so a figure not marked as seen before the key press is a new one (even when the
# picture is the same, as for a static mask).
_FIGURE_JS = ("(() => { const box = document.querySelector('.%s').closest('.widget-vbox'); "
              "const img = box && box.querySelector('.jp-OutputArea-output img'); "
              "return img && img.complete && img.naturalWidth > 0 ? img : null; })()")


class Lab:
    """The module's JupyterLab server and Chromium: starting each once saves seconds per test."""

    def __init__(self, served: Path, base: str, token: str, browser) -> None:
        self.served, self.base, self.token, self.browser = served, base, token, browser

    def shut_down_kernels(self) -> None:
        """End every session (and its kernel), so that a test's kernel does not outlive it."""
        def call(path: str, method: str = "GET") -> bytes:
            request = urllib.request.Request(f"{self.base}{path}?token={self.token}", method=method)
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.read()
        for session in json.loads(call("/api/sessions")):
            call(f"/api/sessions/{session['id']}", "DELETE")


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    sync_api = pytest.importorskip("playwright.sync_api")
    scratch = tmp_path_factory.mktemp("lab")
    served = scratch / "served"
    served.mkdir()
    with running_lab(lab_command(served), served, scratch) as (base, token), sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            yield Lab(served, base, token, browser)
        finally:
            browser.close()


def _move_slider_and_watch(lab: Lab, name: str, notebook: nbformat.NotebookNode, caption_class: str,
                           key_presses: int, changed: str, artifact: str, key: str = "ArrowRight") -> float:
    """Serve ``notebook`` as ``name``, open it, run all cells, press ``key`` on the first slider; return seconds
    until ``changed``.

    ``changed`` is a JavaScript condition on ``caption`` (the caption element's innerText).
    """
    ARTIFACTS.mkdir(exist_ok=True)
    nbformat.write(notebook, lab.served / name)
    page = lab.browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        # A workspace of its own: JupyterLab would otherwise reopen the previous test's notebook too.
        page.goto(f"{lab.base}/lab/workspaces/{artifact}/tree/{name}?token={lab.token}")
        # A cold kernel must be idle before cells are queued, or the run is lost.
        page.locator(".jp-Notebook").wait_for(timeout=60_000)
        page.locator("#jp-main-statusbar").get_by_text("Idle").first.wait_for(timeout=120_000)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()

        caption = page.locator(f".{caption_class}").first
        caption.wait_for(timeout=600_000)  # the notebook trains the quick networks if not cached
        caption.scroll_into_view_if_needed()
        page.wait_for_function(f"() => {_FIGURE_JS % caption_class} !== null", timeout=60_000)
        before = caption.inner_text()
        page.evaluate(f"() => {{ {_FIGURE_JS % caption_class}.dataset.shownBefore = 'yes'; }}")  # mark the old image
        handle = page.locator(".noUi-handle").first
        handle.focus()
        started = time.perf_counter()
        for _ in range(key_presses):
            page.keyboard.press(key)
        # The whole output must be redrawn: a new caption *and* a new, fully loaded figure below it.
        page.wait_for_function(
            f"() => {{ const caption = document.querySelector('.{caption_class}').innerText; "
            f"const figure = {_FIGURE_JS % caption_class}; "
            f"return caption !== {before!r} && ({changed}) && figure !== null && figure.dataset.shownBefore !== 'yes'; }}",
            timeout=30_000)
        seconds = time.perf_counter() - started
        page.screenshot(path=str(ARTIFACTS / f"{artifact}.png"), full_page=False)
        (ARTIFACTS / f"{artifact}_response.txt").write_text(
            f"{key_presses} key press(es) to changed output: {seconds:.3f} s (kernel and browser together)\n")
        return seconds
    except Exception:
        page.screenshot(path=str(ARTIFACTS / f"{artifact}_failure.png"))
        raise
    finally:
        page.close()
        lab.shut_down_kernels()


def test_chapter0_slider_walks_the_mistakes(lab):
    seconds = _widget_notebook_test(lab, CHAPTER0_WIDGET, "chapter0_widget", "mistake-caption", 1,
                                    "caption.includes('mistake 2 of') && "  # the slider counts as the caption does
                                    "document.querySelector('.widget-readout').innerText.trim() === '2'")
    print(f"chapter 0 widget answered in {seconds:.2f} s")


def _widget_notebook_test(lab: Lab, cells: list[str], name: str, caption_class: str, key_presses: int,
                          changed: str, key: str = "ArrowRight") -> float:
    """Serve a notebook made of ``cells``, run it, move its first slider; seconds until the caption changed."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    notebook.metadata = nbformat.read(ROOT / "notebooks" / NOTEBOOK, as_version=4).metadata
    return _move_slider_and_watch(lab, f"{name}.ipynb", notebook, caption_class, key_presses, changed, name, key)


def test_chapter1_sparsity_slider_remasks_the_network(lab):
    seconds = _widget_notebook_test(lab, CHAPTER1_WIDGET, "chapter1_widget", "sparsity-caption", 1,
                                    "caption.includes('pruning to 91 %')")
    print(f"chapter 1 widget answered in {seconds:.2f} s")


def test_chapter2_keep_ratio_slider_shows_the_shrunk_network(lab):
    seconds = _widget_notebook_test(lab, CHAPTER2_WIDGET, "chapter2_widget", "keep-caption", 1,
                                    "caption.includes('keep 0.5 of')")
    print(f"chapter 2 widget answered in {seconds:.2f} s")


def test_chapter3_round_slider_shows_another_ticket(lab):
    # The viewer opens on the last round: step back.
    seconds = _widget_notebook_test(lab, CHAPTER3_WIDGET, "chapter3_widget", "ticket-caption", 1,
                                    "caption.includes('round 1')", key="ArrowLeft")
    print(f"chapter 3 widget answered in {seconds:.2f} s")


def test_chapter5_threshold_slider_redraws_the_slimmed_network(lab):
    seconds = _widget_notebook_test(lab, CHAPTER5_WIDGET, "chapter5_widget", "slimming-caption", 1,
                                    "caption.includes('threshold') && caption.includes('channels')")
    print(f"chapter 5 widget answered in {seconds:.2f} s")

CHAPTER6_WIDGET = [
    "import dataclasses\n"
    "from course_lib import widgets\n"
    "from course_lib.data import load_splits\n"
    "from course_lib.models import build_model\n"
    "from course_lib.profiles import get_profile\n"
    "from course_lib.chapters import ch06_sparse_training as chapter\n"
    "from course_lib.sparse import schedules, tracking\n"
    "from course_lib.training import steps_per_epoch, train\n"
    "profile = get_profile('quick')\n"
    "splits = load_splits(profile)\n"
    "config = dataclasses.replace(chapter.sparse_recipe(profile), epochs=1)  # the slider needs masks that moved, not a trained network\n"
    "delta_t = schedules.update_every(config, len(splits.train))\n"
    "traces = {}\n"
    "for name, trainer in chapter.SPARSE_TRAINERS.items():\n"
    "    tracker = tracking.MaskTracker(delta_t)\n"
    "    train(build_model('lenet300'), splits, config, hooks=[trainer(0.95, 'erk', update_every=delta_t), tracker],\n"
    "          progress=False)\n"
    "    traces[name] = tracker.trace",
    "widgets.sparse_training_explorer(traces, steps_per_epoch(len(splits.train), config.batch_size))",
]


def test_chapter6_time_slider_redraws_the_masks(lab):
    seconds = _widget_notebook_test(lab, CHAPTER6_WIDGET, "chapter6_widget", "sparse-caption", 2,
                                    "caption.includes('step') && !caption.includes('step 0 ')")
    print(f"chapter 6 widget answered in {seconds:.2f} s")

CHAPTER7_WIDGET = [
    "import torch\n"
    "from course_lib import widgets",
    "widgets.gumbel_top_k_explorer(torch.tensor([2.0, 1.0, 0.0, 0.0, -1.0, -2.0]))",
]


def test_chapter7_k_slider_redraws_the_sampler(lab):
    seconds = _widget_notebook_test(lab, CHAPTER7_WIDGET, "chapter7_widget", "sampler-caption", 1,
                                    "caption.includes('k = 3')")
    print(f"chapter 7 widget answered in {seconds:.2f} s")


# Chapter 9's explorer on 50 % and 2:4 (the chapter's four sparsities take longer to prune).
CHAPTER9_WIDGET = [
    "from course_lib import widgets\n"
    "from course_lib.profiles import get_profile\n"
    "from course_lib.chapters import ch09_one_shot_transformers as chapter\n"
    "profile = get_profile('quick')\n"
    "splits, vocab = chapter.text_data(profile)\n"
    "dense = chapter.language_model(profile, 0).model\n"
    "models = chapter.explorer_models(dense, chapter.calibration_batches(splits, 16, seed=0), sparsities=[0.5])",
    "widgets.one_shot_explorer(models, vocab, chapter.eval_windows(profile, splits))",
]


def test_chapter9_sparsity_slider_prunes_and_continues_the_prompt(lab):
    seconds = _widget_notebook_test(lab, CHAPTER9_WIDGET, "chapter9_widget", "one-shot-caption", 1,
                                    "caption.includes('at 50 %')")
    print(f"chapter 9 widget answered in {seconds:.2f} s")
