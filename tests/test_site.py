"""The course website (``make site``), built in the quick profile and opened from disk in Chromium, network blocked.

``make test`` runs this module after the rest of the suite (``-m site``): nbval has then executed every lecture and
``conftest.py`` has kept the executed copies, so the build only renders them. Run on its own, the build executes
the lectures itself (through the run cache) - slower, never stale (see ``tools/build_site.py``).

Checked in the browser: every page loads, every image is present and decoded, no request leaves the machine (any
non-file URL is blocked and recorded), each chapter page says how it was executed, no widget or progress bar is left
as an empty box. Checked in the files: every internal link lands on a page and anchor that exist, and every glossary
link lands on the glossary.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

from course_lib.profiles import seed_shift

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
spec = importlib.util.spec_from_file_location("build_site", ROOT / "tools" / "build_site.py")
build_site = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_site)

pytestmark = [pytest.mark.site]


@pytest.fixture(scope="module")
def site() -> Path:
    start = time.perf_counter()
    out = build_site.build("quick", seed_shift(), out=build_site.BUILD / "site-quick")
    print(f"site built in {time.perf_counter() - start:.0f} s")
    return out


def pages(site: Path) -> list[Path]:
    return [site / "index.html", *sorted((site / "notebooks").glob("*.html")),
            *sorted((site / "exercises").glob("*.html"))]


def test_every_lecture_and_exercise_has_a_page(site: Path) -> None:
    assert (site / "index.html").exists()
    for source in [*build_site.lectures(), *build_site.exercises()]:
        assert (site / source.parent.name / f"{source.stem}.html").exists(), f"no page for {source.name}"


def _ids(page: Path) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', page.read_text()))


def test_internal_links_resolve_and_glossary_links_land_on_the_glossary(site: Path) -> None:
    glossary_links = 0
    for page in pages(site):
        for href in re.findall(r'<a [^>]*href="([^"]+)"', page.read_text()):
            if urlparse(href).scheme or href.startswith("mailto:"):
                continue
            path, fragment = urldefrag(href)
            target = (page.parent / unquote(path)).resolve() if path else page
            assert target.exists(), f"{page.relative_to(site)} links to {href}, which is not in the site"
            if fragment and target.suffix == ".html":
                assert fragment in _ids(target), f"{page.relative_to(site)}: {href} has no anchor '{fragment}'"
            if fragment == "glossary":
                glossary_links += 1
                assert target == site / "notebooks" / "00_setup_data_and_cost.html", href
    assert glossary_links >= len(build_site.lectures()) - 1, "the chapters' glossary links are missing"


def test_pages_render_offline_in_chromium(site: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium not found: `sudo apt-get install chromium` enables the browser test")
    sync_api = pytest.importorskip("playwright.sync_api")
    left_the_machine, failed = [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        context = browser.new_context()

        def block(route) -> None:
            if route.request.url.startswith("file://"):
                route.continue_()
            else:
                left_the_machine.append(route.request.url)
                route.abort()

        context.route("**/*", block)
        page = context.new_page()
        page.on("requestfailed", lambda request: failed.append(f"{request.url}: {request.failure}"))
        for html in pages(site):
            page.goto(html.as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => ({src: i.currentSrc, ok: i.complete && i.naturalWidth > 0}))")
            broken = [i["src"] for i in images if not i["ok"]]
            assert not broken, f"{html.name}: images missing or not decoded: {broken}"
            text = page.inner_text("main")
            assert "0%|" not in text and "VBox(" not in text, f"{html.name}: a progress bar or widget left as text"
            if html.parent.name == "notebooks":
                assert images, f"{html.name}: a chapter page without a single figure"
                run = page.inner_text("p.course-run")
                assert "quick" in run and f"COURSE_SEED={seed_shift()}" in run, run
                closed = page.eval_on_selector_all("details", "ds => ds.filter(d => !d.open).length")
                assert closed == page.eval_on_selector_all("details", "ds => ds.length"), "an answer is open"
        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        phone.route("**/*", block)
        page = phone.new_page()
        for html in pages(site):  # a student reading ahead on a phone: nothing makes the page scroll sideways
            page.goto(html.as_uri(), wait_until="load")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 391, f"{html.name} is {width} px wide on a 390 px phone screen"
        page.goto((site / "notebooks" / "01_magnitude_pruning.html").as_uri(), wait_until="load")
        page.locator(".primary-toggle:visible").first.click()  # the table of contents opens on a phone
        page.wait_for_selector("#pst-primary-sidebar-modal[open]", timeout=5000)
        assert page.locator("#pst-primary-sidebar-modal a", has_text="Chapter 2").count() >= 1
        browser.close()
    assert not left_the_machine, f"requests left the machine: {sorted(set(left_the_machine))[:5]}"
    assert not failed, f"requests failed: {failed[:5]}"
