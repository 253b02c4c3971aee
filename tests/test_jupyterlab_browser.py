"""The quick-start notebook in a real JupyterLab, in headless Chromium (Debian's, via Playwright).

JupyterLab runs on 127.0.0.1 with an empty token; off-screen cells render (windowingMode none);
the news pop-up is off. We run all cells, check that every widget renders, click Generate in
the workbench, wait for the new take card and save a screenshot under test-output/.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OUTPUT = ROOT / "test-output"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    work = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "notebooks" / "00_quickstart.ipynb", work / "00_quickstart.ipynb")
    settings = work / "settings"
    for plugin, values in {"@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
                           "@jupyterlab/apputils-extension/notification": {"fetchNews": "false"}}.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port = _free_port()
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings), ACESTEP_TAKES_DIR=str(work / "takes"),
               HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
           "--LabApp.expose_app_in_browser=True", f"--ServerApp.root_dir={work}", "--allow-root"]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("JupyterLab did not start within 90 s")
    yield url
    server.terminate()
    server.wait(20)


def test_quickstart_runs_and_the_workbench_generates_in_a_browser(lab):
    if CHROMIUM is None:
        pytest.fail("Debian's chromium is needed for browser tests: `make test` installs it")
    from playwright.sync_api import sync_playwright

    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(f"{lab}/lab/tree/00_quickstart.ipynb")
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
        # The stored outputs would satisfy the waits below: start from a clean notebook.
        page.evaluate("window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
        assert page.get_by_text("lineage of a fresh take: True").count() == 0
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.get_by_text("lineage of a fresh take: True").wait_for(timeout=180_000)
        assert page.get_by_text("Error displaying widget").count() == 0
        labels = page.locator(".lm-TabBar-tabLabel")
        for title in ("Blueprint", "Generate", "Look", "Repaint", "Cover", "Tracks", "Takes"):
            assert labels.filter(has_text=title).count() >= 1, title

        cards = page.locator("button", has_text="Use as source")
        before = cards.count()
        assert before >= 2  # at least the cards of the two takes the notebook generated
        labels.filter(has_text="Generate").first.click()
        generate = page.locator("button", has_text="Generate")
        visible = [i for i in range(generate.count()) if generate.nth(i).is_visible()]
        generate.nth(visible[0]).click()
        page.wait_for_function(
            "[...document.querySelectorAll('button')].filter(b => b.textContent.includes('Use as source')).length"
            f" >= {before + 2}", timeout=180_000)
        assert page.get_by_text("take(s) in").count() >= 1
        page.screenshot(path=str(OUTPUT / "workbench-quickstart.png"), full_page=False)
        browser.close()
    assert (OUTPUT / "workbench-quickstart.png").stat().st_size > 10_000
