"""The synced player's JavaScript in a real headless Chromium (Debian's, driven by Playwright).

A static page loads the ESM exactly as shipped with a small fake anywidget model holding two WAV
buffers and lyric lines: Play must move the playhead, a click must seek, the highlighted line must
follow the time, and A/B must switch takes at the same position.
"""

import base64
import shutil

import numpy as np
import pytest

from acestep_engine.takes import wav_bytes
from widget_page import write_widget_page
from workbench.synced_player import _JS

@pytest.fixture(scope="module")
def page_url(tmp_path_factory, serve_folder):
    from PIL import Image

    folder = tmp_path_factory.mktemp("player-page")
    shutil.copy(_JS, folder / "synced_player.js")
    rate = 8000
    t = np.arange(10 * rate) / rate
    tone = lambda f: np.stack([0.2 * np.sin(2 * np.pi * f * t)] * 2).astype(np.float32)  # noqa: E731
    png = folder / "spec.png"
    Image.fromarray((np.random.default_rng(0).random((120, 800, 3)) * 255).astype("uint8")).save(png)
    image = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    state = {"mime": "audio/wav", "image_a": image, "image_b": image, "label_a": "A: first", "label_b": "B: second",
             "duration_a": 10, "duration_b": 10, "plot_left": 0.1, "plot_right": 0.9, "position": 0,
             "playing": False, "current": "a", "lines_a": [[0.0, "one"], [0.6, "two"], [6.0, "three"]],
             "lines_b": [[0.0, "b one"], [5.0, "b two"]]}
    write_widget_page(folder / "index.html", "synced_player.js", state,
                      audio={"audio_a": wav_bytes(tone(440), rate), "audio_b": wav_bytes(tone(660), rate)})
    return serve_folder(folder) + "/index.html"


def active_line(page):
    return page.evaluate("(document.querySelector('.line.active') || {}).textContent || null")


def test_play_seek_highlight_and_ab_switch(chromium, page_url, tmp_path):
    page = chromium.new_page(viewport={"width": 900, "height": 500})
    page.goto(page_url)
    page.wait_for_function("window.ready === true")
    page.wait_for_function("document.querySelector('audio, .play') !== null")
    canvas = page.locator("canvas.playhead")
    canvas.wait_for()
    page.wait_for_timeout(300)
    box = canvas.bounding_box()
    start_x = float(page.evaluate("document.querySelector('canvas.playhead').dataset.x"))
    assert start_x == pytest.approx(0.1 * box["width"], abs=2)  # at 0 s: the plot's left edge
    assert active_line(page) == "one"

    page.click("button.play")
    page.wait_for_function("window.state.playing === true")
    page.wait_for_function("window.state.position > 0.8", timeout=10000)  # the time passes and is synced
    assert float(page.evaluate("document.querySelector('canvas.playhead').dataset.x")) > start_x + 5
    assert active_line(page) == "two"  # the highlighted line followed the time
    assert "Pause" in page.inner_text("button.play")
    page.click("button.play")
    page.wait_for_function("window.state.playing === false")
    paused_at = page.evaluate("window.state.position")

    x6 = box["x"] + (0.1 + 0.8 * 6.5 / 10) * box["width"]  # click at 6.5 s
    page.mouse.click(x6, box["y"] + box["height"] / 2)
    page.wait_for_function("Math.abs(window.state.position - 6.5) < 0.1")
    assert active_line(page) == "three" and paused_at < 6
    assert float(page.evaluate("document.querySelector('canvas.playhead').dataset.x")) == pytest.approx(
        (0.1 + 0.8 * 0.65) * box["width"], abs=3)
    page.screenshot(path=str(tmp_path / "player.png"))

    page.click("button.side-b")  # A/B at the same position: B's lines, B's label
    page.wait_for_function("window.state.current === 'b'")
    assert active_line(page) == "b two"
    assert page.inner_text(".label") == "B: second"
    page.click("button.play")
    page.wait_for_function("window.state.position > 6.7", timeout=10000)  # B plays on from 6.5 s
    page.click("button.side-a")
    page.wait_for_function("window.state.current === 'a'")
    assert active_line(page) == "three" and page.evaluate("window.state.position") > 6.5

    page.evaluate("window.model.set('position', 0.1)")  # Python seeks: the playhead follows
    page.wait_for_function("Math.abs(parseFloat(document.querySelector('canvas.playhead').dataset.x) - "
                           f"{0.1 * box['width']:.1f}) < 20")
    page.close()
