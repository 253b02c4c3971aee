"""The workbench on Colab's kernel stack in a live kernel: in JupyterLab with headless Chromium (Debian's,
via Playwright), and on the wire with Colab's ipywidgets 7.7.1 too.

`make test` builds Colab's pinned packages into `.venv-colab` (or `$ACESTEP_COLAB_STACK`): `kernel/`
(ipykernel 6.17.1, IPython 7.34.0, tornado) and `widgets/` (ipywidgets 7.7.1). JupyterLab itself runs on
the venv; the notebook's kernel is a kernelspec whose environment puts `kernel/` ahead on PYTHONPATH.
JupyterLab 4's widget manager renders ipywidgets 8 models only (ipywidgets 7's are refused: "Module
@jupyter-widgets/controls, version ^1.5.0 is not registered"), so that kernel keeps the venv's
ipywidgets 8; Colab's own frontend renders 7. The notebook is the tutorials' setup cell, which shows the
workbench; the test clicks Generate and records every change the page shows while the job runs (a
MutationObserver): the progress bar and status line move through the job's stages, then the new take's
result card appears. These updates come from the job's worker thread, which the kernel version decides.
The second test starts a kernel on the whole stack, ipywidgets 7.7.1 included, and reads the widget
updates a job's worker sends on IOPub, as Colab's frontend receives them (`bench/kernel_threads.py`).
"""

import importlib.metadata
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STACK = Path(os.environ.get("ACESTEP_COLAB_STACK") or ROOT / ".venv-colab")
KERNEL = "colab-stack"
KERNEL_PACKAGES = ("ipykernel", "ipython", "tornado")

# Every value the visible progress bars (by bar), the status lines and the result cards show, as they change.
RECORD = """() => {
    const visible = e => e.offsetParent !== null;
    const seen = window.acestepSeen = {bars: [], statuses: [], cards: []};
    const ids = new WeakMap();
    const note = (list, value) => { if (list[list.length - 1] !== value) list.push(value); };
    const look = () => {
        for (const bar of document.querySelectorAll('.jupyter-widgets .progress-bar')) {
            if (!visible(bar)) continue;
            if (!ids.has(bar)) { ids.set(bar, seen.bars.length); seen.bars.push([]); }
            note(seen.bars[ids.get(bar)], parseFloat(bar.style.width || '0'));
        }
        for (const html of document.querySelectorAll('.widget-html-content')) {
            if (visible(html) && /%\\)$/.test(html.textContent.trim())) note(seen.statuses, html.textContent.trim());
        }
        note(seen.cards, [...document.querySelectorAll('button')]
            .filter(b => visible(b) && b.textContent.trim() === 'Use as source').length);
    };
    look();
    new MutationObserver(look).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                       characterData: true});
}"""


def _notebook() -> dict:
    """A stack report, then the tutorials' setup cell (the quick start's first code cell: the workbench)."""
    quickstart = json.loads((ROOT / "notebooks" / "00_quickstart.ipynb").read_text())
    setup = next(c for c in quickstart["cells"] if c["cell_type"] == "code")
    report = ("import IPython, ipykernel, ipywidgets, tornado\n"
              "print('kernel stack:', 'ipykernel', ipykernel.__version__, 'ipython', IPython.__version__,\n"
              "      'tornado', tornado.version, 'ipywidgets', ipywidgets.__version__)")
    cells = [{"cell_type": "code", "execution_count": None, "id": "stack", "metadata": {}, "outputs": [],
              "source": report},
             {**setup, "id": "setup", "outputs": [], "execution_count": None}]
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": KERNEL, "display_name": "Python 3 (Colab's kernel stack)",
                                        "language": "python"}}}


@pytest.fixture(scope="module")
def stack(colab_pins) -> dict[str, Path]:
    """{"kernel": folder, "widgets": folder} of Colab's pinned packages, checked."""
    folders = {"kernel": STACK / "kernel", "widgets": STACK / "widgets"}
    installed = {d.metadata["Name"].lower(): d.version
                 for d in importlib.metadata.distributions(path=[str(f) for f in folders.values()])}
    wanted = {name: colab_pins[name] for name in (*KERNEL_PACKAGES, "ipywidgets")}
    if {name: installed.get(name) for name in wanted} != wanted:
        pytest.fail(f"Colab's kernel stack {wanted} is not in {STACK} (found {installed}): `make test` builds it "
                    f"(target $(COLAB_STACK)/.installed), or point ACESTEP_COLAB_STACK at such a folder")
    return folders


@pytest.fixture(scope="module")
def lab(tmp_path_factory, stack, running_jupyter):
    base = tmp_path_factory.mktemp("colab-lab")
    work, settings, data = base / "work", base / "settings", base / "data"
    work.mkdir()
    (work / "colab_stack.ipynb").write_text(json.dumps(_notebook()))
    spec = data / "kernels" / KERNEL
    spec.mkdir(parents=True)
    # This checkout's code comes after the stack: the kernel imports what is tested, wherever it is installed.
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (Colab's kernel stack)", "language": "python",
        "env": {"PYTHONPATH": os.pathsep.join([str(stack["kernel"]), str(ROOT)]),
                "PYDEVD_DISABLE_FILE_VALIDATION": "1"}}))
    for plugin, values in {"@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
                           "@jupyterlab/apputils-extension/notification": {"fetchNews": "false"}}.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTER_PATH=str(data), ACESTEP_TAKES_DIR="takes",
               HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)  # the server runs on the venv; only the kernel gets the stack
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", "--port={port}",
           "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
           "--LabApp.expose_app_in_browser=True", f"--ServerApp.root_dir={work}", "--allow-root"]
    with running_jupyter(cmd, work, env) as url:
        yield url, work


def test_generate_on_colabs_kernel_stack_shows_progress_and_the_new_take(lab, chromium, colab_pins):
    url, work = lab
    page = chromium.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(f"{url}/lab/tree/colab_stack.ipynb")
    page.wait_for_function("window.jupyterapp !== undefined", timeout=60_000)
    page.wait_for_selector(".jp-Notebook", timeout=60_000)
    page.evaluate("""async () => {
        const panel = window.jupyterapp.shell.currentWidget;
        await panel.context.sessionContext.ready;
        const kernel = panel.context.sessionContext.session.kernel;
        for (let i = 0; i < 600 && kernel.status !== 'idle'; i++) await new Promise(r => setTimeout(r, 100));
    }""")
    assert page.evaluate("window.jupyterapp.shell.currentWidget.context.sessionContext.session.kernel.name") == KERNEL
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    report = page.locator(".jp-OutputArea-output", has_text="kernel stack:").first
    report.wait_for(timeout=120_000)
    words = report.inner_text().split()
    shown = dict(zip(words[2::2], words[3::2]))
    assert {name: shown.get(name) for name in KERNEL_PACKAGES} == {name: colab_pins[name] for name in KERNEL_PACKAGES}
    assert shown["ipywidgets"].startswith("8.")  # what JupyterLab 4 renders

    tab = page.locator(".lm-TabBar-tabLabel", has_text="Generate").first
    tab.wait_for(timeout=180_000)
    assert page.get_by_text("Error displaying widget").count() == 0
    tab.click()
    generate = next(b for b in page.locator("button", has_text="Generate").all()
                    if b.is_visible() and b.inner_text().strip() == "Generate")
    generate.wait_for(state="visible")
    before = {p.stem for p in (work / "takes").glob("*.json")}
    page.evaluate(RECORD)
    generate.click()
    deadline = time.time() + 180
    while time.time() < deadline and not ({p.stem for p in (work / "takes").glob("*.json")} - before
                                          and generate.is_enabled()):
        page.wait_for_timeout(200)
    page.wait_for_function("window.acestepSeen.bars.some(values => values.includes(100))", timeout=30_000)
    seen = page.evaluate("window.acestepSeen")
    new = {p.stem for p in (work / "takes").glob("*.json")} - before
    assert len(new) == 1, f"Generate made {sorted(new)} within 180 s"

    bar = max(seen["bars"], key=len)  # the Generate tab's: the others did not move
    moving = [w for w in bar if 0 < w < 100]
    assert len(set(moving)) >= 3 and moving == sorted(moving) and bar[-1] == 100, seen["bars"]  # forward, live
    assert any("denoising, step" in s for s in seen["statuses"]), seen["statuses"]
    assert any("decoding" in s for s in seen["statuses"]), seen["statuses"]
    assert seen["cards"][-1] == seen["cards"][0] + 1, seen["cards"]  # the new take's card, drawn when it ended
    page.close()


def test_a_jobs_widget_updates_reach_the_frontend_on_colabs_whole_stack(stack, colab_pins):
    sys.path.insert(0, str(ROOT / "bench"))
    from kernel_threads import probe, verdict

    result = probe(os.pathsep.join(str(stack[part]) for part in ("widgets", "kernel")))
    assert result["stack"] == " ".join(f"{name} {colab_pins[name]}" for name in (*KERNEL_PACKAGES, "ipywidgets"))
    assert verdict(result) == {"thread": "ok", "post": "ok", "job": "ok"}, result
    assert not [line for line in result["errors"] if "Traceback" in line], result["errors"]
