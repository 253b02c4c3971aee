"""The quick-start notebook in a real JupyterLab, in headless Chromium (Debian's, via Playwright).

JupyterLab runs on 127.0.0.1 with an empty token; off-screen cells render (windowingMode none);
the news pop-up is off. One page runs all cells of `00_quickstart` at 1,400 px wide; the tests
then use its workbench as a person would: every widget renders, Generate twice and the Look tab
follows the newest take, a cancelled Format leaves the planner buttons usable, Play plays, the
Look tab's A/B switch, every result becomes current, delete/undo, export formats, LoRA on the
exports, Inspire's undo, a duration out of range shown inline, a reload and a second browser tab
show the live workbench, and no label is cut off at 1,400 or 1,024 px (a screenshot of every tab
at both widths under test-output/; `workbench-quickstart.png` is the README's `docs/workbench.png`).
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
    # PYTHONPATH: the kernel imports this checkout's packages (the venv may be shared with others).
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings), ACESTEP_TAKES_DIR="takes", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
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


def _visible_button(page, text, timeout_s: float = 30.0):
    """The first visible button labelled `text` (a tab built when first shown may take a moment)."""
    deadline = time.time() + timeout_s
    while not _visible_buttons(page, text) and time.time() < deadline:
        page.wait_for_timeout(200)
    visible = _visible_buttons(page, text)
    assert visible, f"no visible {text!r} button"
    return visible[0]


def _visible_field(page, css: str, label: str, timeout_s: float = 30.0):
    """The input of the visible widget `css` whose label says `label`."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        found = [e for e in page.locator(css, has_text=label).all() if e.is_visible()]
        if found:
            return found[0].locator("input")
        page.wait_for_timeout(200)
    raise AssertionError(f"no visible {label!r} field")


def _take_ids(work: Path) -> set[str]:
    return {p.stem for p in (work / "takes").glob("*.json")}


def _generate(page, work: Path, tab: str = "Generate", label: str = "Generate") -> set[str]:
    """Click `label` in `tab` once and return the ids of the new takes, once the job is over: their
    files are in the store and the button is usable again."""
    before = _take_ids(work)
    _tab(page, tab)
    _visible_button(page, label).click()

    def usable() -> bool:  # asked afresh each time: other tabs build their buttons as results arrive
        return any(b.is_enabled() for b in _visible_buttons(page, label))

    deadline = time.time() + 180
    while time.time() < deadline and not (_take_ids(work) - before and usable()):
        page.wait_for_timeout(200)
    new = _take_ids(work) - before
    assert new and usable(), f"{label} did not finish within 180 s"
    return new


def test_quickstart_runs_and_every_widget_renders(page):
    assert page.get_by_text("Error displaying widget").count() == 0
    labels = page.locator(".lm-TabBar-tabLabel")
    for title in TABS:
        assert labels.filter(has_text=title).count() >= 1, title
    assert page.locator("button", has_text="Use as source").count() >= 2  # the notebook's two takes
    machine = page.locator(".widget-html", has_text="LM to plan with").first  # the header's machine line
    assert machine.is_visible() and "memory budget" in machine.inner_text()


def test_a_reload_and_a_second_tab_show_the_live_workbench(page, lab):
    url, _ = lab
    count = _kernel(page, "from workbench.views import live_audio_bytes, live_widgets\n"
                          "print(len(live_widgets()), live_audio_bytes())").split()
    # what each reload restores, as the quickstart leaves it: no audio, and far fewer models than
    # the 860 (and 7 MB of audio) that made JupyterLab lose the outputs
    assert int(count[1]) == 0 and int(count[0]) < 400, count
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_timeout(2000)
    second = page.context.browser.new_page()
    try:
        second.set_viewport_size({"width": WIDTH, "height": 1600})
        second.goto(f"{url}/lab/tree/00_quickstart.ipynb")
        for view in (page, second):
            if view is page:
                page.reload()
            view.wait_for_function("window.jupyterapp !== undefined", timeout=60_000)
            view.wait_for_selector(".lm-TabBar-tabLabel:has-text('Blueprint')", timeout=60_000)
            view.wait_for_timeout(3000)  # JupyterLab's widget manager restores, then rerenders
            assert view.get_by_text("Error displaying widget").count() == 0
            assert view.locator("button", has_text="Use as source").count() >= 2
        page.evaluate("window.jupyterapp.shell.collapseLeft()")
        _tab(page, "Generate")  # the restored widgets respond: a click reaches the kernel
        before = _kernel(page, "print(bench.generate_panel.status.value)")
        _visible_button(page, "Generate").click()
        _wait_idle(page, "Generate")
        assert _kernel(page, "print(bench.generate_panel.status.value)") != before
    finally:
        second.close()


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


# --------------------------------------------------------------------------- issue 22: as a musician meets it
KERNEL = """async (code) => {
    const kernel = window.jupyterapp.shell.currentWidget.context.sessionContext.session.kernel;
    let out = '';
    const future = kernel.requestExecute({code, silent: false, store_history: false});
    future.onIOPub = (msg) => {
        if (msg.header.msg_type === 'stream') out += msg.content.text;
        if (msg.header.msg_type === 'error') out += msg.content.ename + ': ' + msg.content.evalue;
    };
    await future.done;
    return out;
}"""


def _kernel(page, code: str) -> str:
    """Run `code` in the notebook's kernel (what a cell would do) and return what it printed."""
    return page.evaluate(KERNEL, code)


def _visible_text(page, selector: str, text: str):
    return page.wait_for_function("""([selector, text]) => [...document.querySelectorAll(selector)].some(
        e => e.offsetParent !== null && e.textContent.includes(text))""", arg=[selector, text], timeout=120_000)


def _heading(page, tab: str) -> str:
    """The heading line of `tab` ("Cover · take ... "), once the tab has drawn."""
    _tab(page, tab)
    deadline = time.time() + 30
    while time.time() < deadline:
        headings = page.locator(".widget-html", has_text=f"{tab} · ")
        shown = [headings.nth(i).inner_text() for i in range(headings.count()) if headings.nth(i).is_visible()]
        if shown:
            return shown[0]
        page.wait_for_timeout(200)
    return ""


def _wait_idle(page, button_text: str, timeout_ms: int = 180_000) -> None:
    """Wait until the visible button `button_text` is enabled again (its job is over)."""
    page.wait_for_function("""(text) => [...document.querySelectorAll('button')].some(
        b => b.textContent.trim() === text && b.offsetParent !== null && !b.disabled)""", arg=button_text,
                           timeout=timeout_ms)


def _current_id(page) -> str:
    return _kernel(page, "print(bench.current_take.id)").strip()


def test_play_on_a_result_card_plays(page, lab):
    _tab(page, "Generate")
    cards = page.locator(".widget-hbox", has=page.locator("button", has_text="Use as source"))
    play = [b for b in cards.locator("button", has_text="Play").all() if b.is_visible()]
    assert len(play) >= 2  # one per result card
    play[-1].click()  # the oldest card's
    page.wait_for_function("""() => [...document.querySelectorAll('audio')].some(
        a => a.offsetParent !== null && !a.paused && a.currentTime > 0.3)""", timeout=30_000)
    _tab(page, "Blueprint")  # a hidden tab lets its audio go
    assert _kernel(page, "from workbench.views import live_audio_bytes; print(live_audio_bytes())").strip() == "0"


def test_look_ab_switch_keeps_playing_and_play_comes_back(page):
    _tab(page, "Look")
    player = page.locator(".acestep-synced-player").first
    player.wait_for(timeout=60_000)
    player.locator("button.play").click()
    page.wait_for_function("""() => { const c = document.querySelector('.acestep-synced-player .clock');
        return c && !c.textContent.startsWith('0:00.0'); }""", timeout=30_000)
    as_b = [b for b in page.locator("button", has_text="as B").all() if b.is_visible() and b.is_enabled()]
    as_b[-1].click()  # another row of the batch as B, while A plays
    page.wait_for_function("""() => document.querySelector('.acestep-synced-player .label').textContent.startsWith('B:')""",
                           timeout=30_000)
    clock = player.locator(".clock")
    first = clock.inner_text()
    page.wait_for_function("""(first) => document.querySelector('.acestep-synced-player .clock').textContent !== first""",
                           arg=first, timeout=15_000)  # B plays on: the clock moves
    assert "Pause" in player.locator("button.play").inner_text()
    player.locator("button.play").click()
    page.wait_for_function("""() => document.querySelector('.acestep-synced-player button.play').textContent.includes('Play')""",
                           timeout=15_000)
    _tab(page, "Generate")


def test_a_duration_out_of_range_shows_inline_and_in_the_header(page):
    _tab(page, "Blueprint")
    field = _visible_field(page, ".widget-text", "Duration (s)")
    field.fill("5")
    field.press("Enter")
    _visible_text(page, ".widget-html", "duration must be between 10 and 600 seconds (got 5.0)")
    _visible_text(page, ".widget-html", "no memory estimate until the duration is between 10 and 600 s")
    assert "BlueprintError" not in page.locator(".jp-Notebook").inner_text()
    field.fill("12")
    field.press("Enter")
    page.wait_for_function("""() => ![...document.querySelectorAll('.widget-html')].some(
        e => e.offsetParent !== null && e.textContent.includes('duration must be between'))""", timeout=30_000)


def test_inspire_can_be_undone(page):
    _tab(page, "Blueprint")
    if _visible_buttons(page, "Load planner"):
        _visible_button(page, "Load planner").click()
    caption = _kernel(page, "print(bench.editor.caption.value)").strip()
    page.locator(".widget-text", has_text="Idea").locator("input").first.fill("a song about the last train")
    _visible_button(page, "Inspire").click()
    _wait_idle(page, "Undo planner")  # enabled once the planner wrote the blueprint
    assert _kernel(page, "print(bench.editor.caption.value)").strip() != caption
    _visible_button(page, "Undo planner").click()
    page.wait_for_timeout(500)
    assert _kernel(page, "print(bench.editor.caption.value)").strip() == caption


def test_every_result_becomes_current_then_delete_undo_and_export(page, lab):
    _, work = lab
    _tab(page, "Repaint")
    _visible_button(page, "Add region").click()
    repainted, = _generate(page, work, "Repaint", "Repaint")
    for tab in ("Look", "Cover", "Tracks", "Takes"):
        assert repainted in _heading(page, tab), tab
    cover, = _generate(page, work, "Cover", "Cover")
    assert cover in _heading(page, "Repaint") and cover in _heading(page, "Look")
    _tab(page, "Takes")
    _visible_button(page, "Delete").click()  # the cover: its neighbour (the repaint) becomes current
    page.wait_for_function("(id) => document.body.textContent.includes('deleted ' + id)", arg=cover)
    assert _current_id(page) == repainted
    _visible_button(page, "Undo delete").click()
    page.wait_for_function("(id) => document.body.textContent.includes('restored ' + id)", arg=cover)
    assert _current_id(page) == cover
    formats = [o.get_attribute("value") or o.inner_text() for o in
               [e for e in page.locator(".widget-dropdown", has_text="Export as").all() if e.is_visible()][0]
               .locator("option").all()]
    assert any("MP3" in f for f in formats) and any("Opus" in f for f in formats), formats
    _visible_button(page, "Export").click()
    page.wait_for_function("() => document.body.textContent.includes('exported ')")
    exported = json.loads(next((work / "exports").glob("*.json")).read_text())
    assert exported["id"] == cover


def test_lora_prepares_the_workbench_exports(page, lab):
    _, work = lab
    _tab(page, "LoRA")
    folder = _visible_field(page, ".widget-text", "Songs folder")
    folder.fill("exports")
    folder.press("Tab")
    _visible_button(page, "Prepare").click()
    try:
        _visible_text(page, ".widget-html", "songs ready")
    except Exception:
        raise AssertionError(_kernel(page, "print(bench.lora_panel.status.value, bench.lora_panel.folder.value)"))
    assert page.get_by_text("No songs prepared yet").count() == 0 or not page.get_by_text(
        "No songs prepared yet").first.is_visible()


def test_every_tab_fits_1024_and_1400_px_with_screenshots(page):
    cut = {}
    for width in (1400, 1024):
        page.set_viewport_size({"width": width, "height": 1600})
        page.wait_for_timeout(500)
        if not page.get_by_text("No network").first.is_visible():
            _open_weights_section(page)
        for title in TABS:
            _tab(page, title)
            page.wait_for_timeout(300)
            tabs = page.locator(".lm-TabBar-tabLabel", has_text=title).first
            tabs.scroll_into_view_if_needed()
            page.screenshot(path=str(OUTPUT / f"tab-{title.lower()}-{width}.png"), full_page=False)
            for line in page.evaluate(LABELS_CUT_OFF):
                cut.setdefault(f"{width}px {title}: {line}", 1)
    page.set_viewport_size({"width": WIDTH, "height": 1600})
    assert not cut, "\n".join(cut)
