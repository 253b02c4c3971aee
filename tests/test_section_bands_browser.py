"""Section bands in a real headless Chromium (Debian's, driven by Playwright).

Static pages load the region canvas and the synced player ESM exactly as shipped, with a small fake
anywidget model whose state is what the Python widgets hold (the painter's picture of a take and its
sections as the `sections` trait): a click on a band's name in the painter makes that section the
painted region; in the player it plays that section, names it as the one playing, and stops at its end.
The painter's page is saved as test-output/section-bands.png.
"""

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from acestep_engine import Blueprint
from acestep_engine.generation.sections import timed_sections
from acestep_engine.takes import wav_bytes
from widget_page import write_widget_page
from workbench.painter import _JS as REGION_JS
from workbench.painter import _make_region_canvas_class
from workbench.sections import section_bands
from workbench.synced_player import _JS as PLAYER_JS

OUTPUT = Path(__file__).resolve().parents[1] / "test-output"
LYRICS = "[verse]\none line\nanother line\n\n[chorus]\nla la la\nsing it\n\n[bridge]\nover it"
BP = Blueprint(lyrics=LYRICS, bpm=120, timesignature=4, duration=10)
SECONDS = 10.0
SECTIONS = timed_sections(BP, [2.0, 3.0, 4.6, 5.5, 7.4], [2.9, 4.1, 5.4, 6.8, 8.3], SECONDS)  # intro .. bridge

def sweep(rate: int = 8000) -> np.ndarray:
    """Ten seconds of a rising tone over noise: a spectrogram with something to see."""
    t = np.arange(int(SECONDS * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * (200 + 150 * t) * t) + 0.02 * np.random.default_rng(0).standard_normal(t.size)
    return np.stack([tone, tone]).astype(np.float32)


@pytest.fixture(scope="module")
def pages(tmp_path_factory, serve_folder):
    folder = tmp_path_factory.mktemp("section-pages")
    shutil.copy(REGION_JS, folder / "region_canvas.js")
    shutil.copy(PLAYER_JS, folder / "synced_player.js")
    take = SimpleNamespace(audio=sweep(), sample_rate=8000, duration=SECONDS)
    canvas = _make_region_canvas_class()()
    canvas.set_take(take, SECTIONS)  # the traits the painter's widget syncs to the browser
    painter_state = {name: getattr(canvas, name) for name in ("image", "duration", "plot_left", "plot_right",
                                                               "plot_bottom", "plot_top", "regions", "sections")}
    write_widget_page(folder / "painter.html", "region_canvas.js", painter_state)
    player_state = {"mime": "audio/wav", "image_a": canvas.image, "image_b": "", "label_a": "A: sweep",
                    "label_b": "", "duration_a": SECONDS, "duration_b": 1.0, "plot_left": canvas.plot_left,
                    "plot_right": canvas.plot_right, "plot_bottom": canvas.plot_bottom, "plot_top": canvas.plot_top,
                    "position": 0.0, "playing": False, "current": "a",
                    "lines_a": [], "lines_b": [], "sections_a": section_bands(SECTIONS), "sections_b": [],
                    "stop_at": -1.0}
    write_widget_page(folder / "player.html", "synced_player.js", player_state,
                      audio={"audio_a": wav_bytes(sweep(), 8000), "audio_b": b""})
    return serve_folder(folder), canvas


def open_page(chromium, url):
    page = chromium.new_page(viewport={"width": 900, "height": 420})
    page.goto(url)
    page.wait_for_function("window.ready === true")
    page.wait_for_timeout(300)
    return page


def test_a_click_on_a_band_paints_that_section(chromium, pages):
    base, canvas = pages
    page = open_page(chromium, base + "/painter.html")
    names = page.eval_on_selector_all(".section-band", "bands => bands.map((b) => b.textContent)")
    assert names == SECTIONS.names == ["intro", "verse", "chorus", "bridge"]
    # Each name sits over its section's span of the plot (the plot spans plot_left..plot_right of the width).
    layer = page.locator("canvas").bounding_box()
    chorus = SECTIONS.named("chorus")
    band = page.locator(".section-band[data-name='chorus']").bounding_box()
    span = canvas.plot_right - canvas.plot_left
    assert band["x"] - layer["x"] == pytest.approx((canvas.plot_left + span * chorus.start / SECONDS) * 800, abs=2)
    assert band["width"] == pytest.approx(span * chorus.duration / SECONDS * 800, abs=2)
    assert band["y"] + band["height"] <= layer["y"] + 1  # the names sit above the picture
    page.click(".section-band[data-name='chorus']")
    assert page.evaluate("window.state.regions") == [[chorus.start, chorus.end]]
    assert page.evaluate("window.saved") == 1  # sent to Python, where the painter's boxes follow
    page.wait_for_timeout(100)
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "section-bands.png"))
    page.click(".section-band[data-name='bridge']")  # another section replaces the painted one
    bridge = SECTIONS.named("bridge")
    assert page.evaluate("window.state.regions") == [[bridge.start, bridge.end]]
    page.close()


def test_the_player_plays_a_section_and_names_the_one_playing(chromium, pages):
    base, _ = pages
    page = open_page(chromium, base + "/player.html")
    assert page.inner_text(".section-now") == "intro"  # at 0 s
    assert page.evaluate("document.querySelector('.section-band.active').dataset.name") == "intro"
    chorus = SECTIONS.named("chorus")
    page.click(".section-band[data-name='chorus']")
    page.wait_for_function("window.state.playing === true")
    assert page.evaluate("window.state.stop_at") == chorus.end
    page.wait_for_function(f"window.state.position > {chorus.start + 0.2}", timeout=10000)
    assert page.inner_text(".section-now") == "chorus"
    assert page.evaluate("document.querySelector('.section-band.active').dataset.name") == "chorus"
    page.wait_for_function("window.state.playing === false", timeout=15000)  # stopped at the chorus' end
    assert chorus.end - 0.05 <= page.evaluate("window.state.position") < chorus.end + 0.4
    assert page.evaluate("window.state.stop_at") == -1
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "section-player.png"))
    page.close()
