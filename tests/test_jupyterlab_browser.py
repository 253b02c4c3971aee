"""The quick-start notebook in a real JupyterLab, in headless Chromium (Debian's, via Playwright).

JupyterLab runs on 127.0.0.1 with an empty token; off-screen cells render (windowingMode none);
the news pop-up is off. One page runs all cells of `00_quickstart` at 1,400 px wide; the tests
then use its workbench as a person would: every widget renders, Generate twice and the Look tab
follows the newest take, a cancelled Format leaves the planner buttons usable, and no label is cut
off. The screenshot under test-output/ is the README's (`docs/workbench.png`).
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OUTPUT = ROOT / "test-output"
WIDTH = 1400
TABS = ("Blueprint", "Generate", "Look", "Repaint", "Cover", "Tracks", "Takes", "LoRA")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, running_jupyter):
    base = tmp_path_factory.mktemp("lab")
    work, settings = base / "work", base / "settings"  # settings outside the file browser's root
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "00_quickstart.ipynb", work / "00_quickstart.ipynb")
    for plugin, values in {"@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
                           "@jupyterlab/apputils-extension/notification": {"fetchNews": "false"}}.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    # The kernel starts in `work`: takes land in work/takes and the header says "takes", no temp path.
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings), ACESTEP_TAKES_DIR="takes", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", "--port={port}",
           "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
           "--LabApp.expose_app_in_browser=True", f"--ServerApp.root_dir={work}", "--allow-root"]
    with running_jupyter(cmd, work, env) as url:
        yield url, work


@pytest.fixture(scope="module")
def page(lab):
    """JupyterLab at 1,400 px with `00_quickstart` run from a clean notebook."""
    if CHROMIUM is None:
        pytest.fail("Debian's chromium is needed for browser tests: `make test` installs it")
    from playwright.sync_api import sync_playwright

    url, _ = lab
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--no-first-run"])
        page = browser.new_page(viewport={"width": WIDTH, "height": 1600})
        page.goto(f"{url}/lab/tree/00_quickstart.ipynb")
        page.wait_for_function("window.jupyterapp !== undefined", timeout=60_000)
        page.wait_for_selector(".jp-Notebook", timeout=60_000)
        status = page.evaluate("""async () => {
            const panel = window.jupyterapp.shell.currentWidget;
            await panel.context.sessionContext.ready;
            const kernel = panel.context.sessionContext.session.kernel;
            for (let i = 0; i < 600 && kernel.status !== 'idle'; i++) await new Promise(r => setTimeout(r, 100));
            return kernel.status;
        }""")
        assert status == "idle"
        page.evaluate("window.jupyterapp.shell.collapseLeft()")  # the file browser is not the subject
        # The stored outputs would satisfy the waits below: start from a clean notebook.
        page.evaluate("window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
        assert page.get_by_text("lineage of a fresh take: True").count() == 0
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.get_by_text("lineage of a fresh take: True").wait_for(timeout=180_000)
        yield page
        browser.close()


def _tab(page, title):
    page.locator(".lm-TabBar-tabLabel", has_text=title).first.click()
    page.wait_for_timeout(300)


def _visible_buttons(page, text):
    buttons = page.locator("button", has_text=text)
    return [buttons.nth(i) for i in range(buttons.count())
            if buttons.nth(i).is_visible() and buttons.nth(i).inner_text().strip() == text]


def _visible_button(page, text):
    visible = _visible_buttons(page, text)
    assert visible, f"no visible {text!r} button"
    return visible[0]


def _take_ids(work: Path) -> set[str]:
    return {p.stem for p in (work / "takes").glob("*.json")}


def _generate(page, work: Path) -> set[str]:
    """Click Generate once (a batch of the panel's size) and return the ids of the new takes, once
    the job is over: their files are in the store and the Generate button is usable again."""
    before = _take_ids(work)
    _tab(page, "Generate")
    button = _visible_button(page, "Generate")
    button.click()
    deadline = time.time() + 180
    while time.time() < deadline and not (_take_ids(work) - before and button.is_enabled()):
        page.wait_for_timeout(200)
    new = _take_ids(work) - before
    assert new and button.is_enabled(), "Generate did not finish within 180 s"
    return new


def test_quickstart_runs_and_every_widget_renders(page):
    assert page.get_by_text("Error displaying widget").count() == 0
    labels = page.locator(".lm-TabBar-tabLabel")
    for title in TABS:
        assert labels.filter(has_text=title).count() >= 1, title
    assert page.locator("button", has_text="Use as source").count() >= 2  # the notebook's two takes
    machine = page.locator(".widget-html", has_text="LM to plan with").first  # the header's machine line
    assert machine.is_visible() and "memory budget" in machine.inner_text()


def test_generate_twice_and_the_look_tab_shows_the_second_take(page, lab):
    _, work = lab
    first = _generate(page, work)
    second = _generate(page, work)
    assert first and second and not first & second
    page.wait_for_timeout(500)
    page.screenshot(path=str(OUTPUT / "workbench-quickstart.png"), full_page=False)
    _tab(page, "Look")
    page.wait_for_function("""(ids) => [...document.querySelectorAll('.widget-html')].some(e =>
        e.offsetParent !== null && e.textContent.includes('Look') && ids.some(id => e.textContent.includes(id)))""",
                           arg=sorted(second), timeout=30_000)
    headings = page.locator(".widget-html", has_text="Look · take")
    shown = [headings.nth(i).inner_text() for i in range(headings.count()) if headings.nth(i).is_visible()]
    assert len(shown) == 1 and any(i in shown[0] for i in second), shown  # a take of the second click
    assert (OUTPUT / "workbench-quickstart.png").stat().st_size > 10_000


def test_after_a_cancelled_format_the_planner_buttons_are_enabled(page):
    _tab(page, "Blueprint")
    if _visible_buttons(page, "Load planner"):
        _visible_button(page, "Load planner").click()
    page.wait_for_function("""() => [...document.querySelectorAll('button')].some(
        b => b.textContent.includes('Format caption') && !b.disabled && b.offsetParent !== null)""", timeout=60_000)
    _visible_button(page, "Format caption + lyrics").click()
    cancel = _visible_button(page, "Cancel")
    cancel.click()
    page.wait_for_function("""() => [...document.querySelectorAll('button')].filter(
        b => ['Inspire', 'Fill empty fields', 'Format caption + lyrics'].includes(b.textContent.trim())
             && b.offsetParent !== null).every(b => !b.disabled)""", timeout=60_000)
    for name in ("Inspire", "Fill empty fields", "Format caption + lyrics"):
        assert _visible_button(page, name).is_enabled(), name
    assert not cancel.is_enabled()


LABELS_CUT_OFF = """() => {
    const selector = '.widget-label, .widget-button, .widget-toggle-button, .jupyter-widgets label, ' +
                     '.widget-label-basic, .lm-TabBar-tabLabel';
    return [...document.querySelectorAll(selector)]
        .filter(e => e.offsetParent !== null && e.clientWidth > 0 && e.textContent.trim())
        .filter(e => e.scrollWidth > e.clientWidth + 1)
        .map(e => `${e.className}: "${e.textContent.trim()}" needs ${e.scrollWidth}px, has ${e.clientWidth}px`);
}"""


def _open_weights_section(page):
    page.locator(".widget-accordion").get_by_text("Get the real weights", exact=True).first.click()


def test_get_the_real_weights_offline_says_how_to_copy_them(page):
    _open_weights_section(page)
    note = page.get_by_text("No network").first
    note.wait_for(state="visible", timeout=30_000)
    paragraph = note.locator("xpath=..").inner_text()
    assert "HF_HUB_OFFLINE=1" in paragraph and "hf download ACE-Step/Ace-Step1.5" in paragraph
    download = [b for b in page.locator("button", has_text="Download").all() if b.is_visible()]
    assert download and all(not b.is_enabled() for b in download)


def test_no_label_is_wider_than_its_box_at_1400_px(page):
    assert page.viewport_size["width"] == WIDTH
    cut = {}
    if not page.get_by_text("No network").first.is_visible():  # the weights section open too
        _open_weights_section(page)
    for title in TABS:
        _tab(page, title)
        for line in page.evaluate(LABELS_CUT_OFF):
            cut.setdefault(line, title)
    assert not cut, "\n".join(f"{tab}: {line}" for line, tab in cut.items())
