"""A real browser: JupyterLab in Chromium, chapter 0 run, a slider moved, the output seen to change.

nbval proves the notebooks execute; only a browser proves that a lecturer's
widget actually renders and answers. The test serves a *copy* of chapter 0
from a temporary folder (so autosave never writes outputs into the repo),
on 127.0.0.1 with a random token, and stops the server at the end.

Without Chromium the test is skipped with a message saying how to enable it,
so ``make test`` still passes on a student's laptop.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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


@pytest.fixture
def jupyterlab(tmp_path: Path):
    """Start JupyterLab on a copy of chapter 0; yield (base_url, token); stop it."""
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, served / NOTEBOOK)
    with running_lab(lab_command(served), served, tmp_path) as server:
        yield server


def test_widget_slider_changes_the_output(jupyterlab):
    sync_api = pytest.importorskip("playwright.sync_api")
    base, token = jupyterlab
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}")
            # A cold kernel must be idle before cells are queued, or the run is lost.
            page.locator(".jp-Notebook").wait_for(timeout=60_000)
            page.locator("#jp-main-statusbar").get_by_text("Idle").first.wait_for(timeout=120_000)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()

            caption = page.locator(".mistake-caption").first
            caption.wait_for(timeout=600_000)  # the notebook trains the quick baselines if not cached
            caption.scroll_into_view_if_needed()
            before = caption.inner_text()
            assert "mistake 1 of" in before, before

            handle = page.locator(".noUi-handle").first
            handle.focus()
            for _ in range(3):
                page.keyboard.press("ArrowRight")
            # Three steps right: the kernel redraws and the caption names the fourth mistake.
            page.wait_for_function(
                "() => document.querySelector('.mistake-caption').innerText.includes('mistake 4 of')",
                timeout=30_000)
            after = caption.inner_text()
            assert after != before and "mistake 4 of" in after, (before, after)
            page.screenshot(path=str(ARTIFACTS / "chapter0_widget.png"), full_page=False)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "chapter0_widget_failure.png"))
            raise
        finally:
            browser.close()
