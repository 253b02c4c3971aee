"""The region painter's JavaScript in a real headless Chromium (Debian's, driven by Playwright).

A static page loads the ESM exactly as shipped in the package with a small fake anywidget model;
mouse drags and double-clicks must change the `regions` trait the way the Python side expects.
"""

import base64
import shutil

import pytest

from widget_page import write_widget_page
from workbench.painter import _JS

@pytest.fixture(scope="module")
def page_url(tmp_path_factory, serve_folder):
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("canvas-page")
    shutil.copy(_JS, folder / "region_canvas.js")
    png = folder / "spec.png"
    Image.fromarray((np.random.default_rng(0).random((200, 800, 3)) * 255).astype("uint8")).save(png)
    data = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    write_widget_page(folder / "index.html", "region_canvas.js",
                      {"image": data, "duration": 10, "plot_left": 0.1, "plot_right": 0.9, "regions": [[7, 8]]})
    return serve_folder(folder) + "/index.html"


def test_drag_adds_a_region_and_double_click_removes_it(chromium, page_url, tmp_path):
    page = chromium.new_page(viewport={"width": 900, "height": 400})
    page.goto(page_url)
    page.wait_for_function("window.ready === true")
    canvas = page.locator("canvas")
    canvas.wait_for()
    page.wait_for_timeout(200)
    box = canvas.bounding_box()
    assert box["width"] == pytest.approx(800, abs=1)

    def x_at(seconds):  # the plot spans 10 %..90 % of the width for 10 s
        return box["x"] + (0.1 + 0.8 * seconds / 10) * box["width"]

    y = box["y"] + box["height"] / 2
    page.mouse.move(x_at(2.0), y)
    page.mouse.down()
    page.mouse.move(x_at(3.0), y, steps=5)
    page.mouse.move(x_at(4.5), y, steps=5)
    page.mouse.up()
    regions = page.evaluate("window.state.regions")
    assert len(regions) == 2 and regions[0] == [7, 8]
    assert regions[1] == pytest.approx([2.0, 4.5], abs=0.05)
    assert page.evaluate("window.saved") == 1
    page.screenshot(path=str(tmp_path / "painted.png"))

    page.mouse.move(x_at(7.0), y)  # drag the left edge of the first region from 7 s to 6 s
    page.mouse.down()
    page.mouse.move(x_at(6.0), y, steps=5)
    page.mouse.up()
    assert page.evaluate("window.state.regions")[0] == pytest.approx([6.0, 8.0], abs=0.05)

    page.mouse.dblclick(x_at(3.5), y)
    assert page.evaluate("window.state.regions") == [pytest.approx([6.0, 8.0], abs=0.05)]
    page.close()
