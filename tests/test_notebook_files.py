"""The tutorials as files: stored without outputs, kept that way by a git filter, and opened by `make lab`
from the project root.

JupyterLab saves executed outputs, execution counts, widget state and the kernel's Python version into
a notebook. The tracked notebooks hold none of them (their checks are asserts in the cells, which the
notebook tests run), and the `notebook-filter` the Makefile installs (nbstripout) strips them whenever
git reads a notebook, so a user's run is no change: `git diff` shows nothing and nothing can be
committed (`git status` may list a run notebook by its new file size until the next `git add`).
"""

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
VENV = Path(sys.executable).parent.parent  # the venv this test runs in: the filter's python
GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.org", GIT_COMMITTER_NAME="test",
               GIT_COMMITTER_EMAIL="test@example.org", GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")


def test_the_tracked_notebooks_hold_no_outputs_and_check_with_asserts():
    assert len(NOTEBOOKS) >= 8
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert [c["outputs"] for c in code] == [[]] * len(code), path.name
        assert {c["execution_count"] for c in code} == {None}, path.name
        assert "widgets" not in nb["metadata"] and "version" not in nb["metadata"].get("language_info", {}), path.name
        sources = ["".join(c["source"]) for c in code]
        # nbval would compare a NBVAL_CHECK_OUTPUT cell with a stored output: there is none, the asserts check
        assert not [s for s in sources if "NBVAL_CHECK_OUTPUT" in s], path.name
        assert sum("assert " in s for s in sources) >= 3, path.name


def _run(notebook: Path) -> None:
    """What JupyterLab writes after running `notebook`: outputs, counts, widget state, its Python version."""
    nb = json.loads(notebook.read_text())
    count = 0
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            count += 1
            cell["execution_count"] = count
            cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": [f"run {count}\n"]}]
            cell["metadata"]["execution"] = {"iopub.status.idle": "2026-12-07T00:00:00.000Z"}
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2}}
    nb["metadata"].setdefault("language_info", {})["version"] = "3.12.9"
    notebook.write_text(json.dumps(nb, indent=1))


def test_a_run_saved_by_jupyterlab_is_no_change_to_git(tmp_path):
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    for name in ("Makefile", ".gitattributes"):
        shutil.copy(ROOT / name, repo / name)
    for path in NOTEBOOKS:
        shutil.copy(path, repo / "notebooks" / path.name)

    def git(*args) -> str:
        return subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True,
                              text=True).stdout

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "the tutorials")
    quickstart = repo / "notebooks" / "00_quickstart.ipynb"
    _run(quickstart)
    assert git("status", "--porcelain") == " M notebooks/00_quickstart.ipynb\n"  # without the filter: a change
    git("checkout", "--", ".")

    subprocess.run(["make", "-s", "notebook-filter", f"VENV={VENV}"], cwd=repo, env=GIT_ENV, check=True)
    assert "nbstripout" in git("config", "filter.nbstripout.clean")
    git("add", "--renormalize", ".")
    assert git("status", "--porcelain") == ""  # the tracked notebooks are already what the filter makes
    _run(quickstart)
    assert "run 1" in quickstart.read_text()  # the file on disk keeps the run...
    assert git("diff") == ""  # ...git sees no change in it (`status` may list it by its new size until an add)
    git("add", ".")
    assert git("status", "--porcelain") == ""  # nothing to commit
    stored = json.loads(git("show", ":notebooks/00_quickstart.ipynb"))
    assert all(not c.get("outputs") for c in stored["cells"]) and "widgets" not in stored["metadata"]


def test_make_lab_serves_the_project_root_and_opens_the_quickstart(tmp_path, running_jupyter):
    # The recipe `make lab` runs (-n: nothing runs, -o: the venv counts as installed), started here headless.
    dry = subprocess.run(["make", "-n", "-o", f"{VENV}/bin/.installed", "lab", f"VENV={VENV}"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    command = next(line for line in dry.splitlines() if "jupyter lab" in line)
    runtime = tmp_path / "runtime"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime), JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    headless = f"exec {command} --no-browser --ip=127.0.0.1 --port={{port}} --ServerApp.token= --ServerApp.password="
    with running_jupyter(headless, ROOT, env) as url:
        listing = json.load(urllib.request.urlopen(f"{url}/api/contents"))
        names = {item["name"] for item in listing["content"]}
        assert {"checkpoints", "notebooks", "README.md"} <= names  # the file browser shows the project root
        readme = json.load(urllib.request.urlopen(f"{url}/api/contents/checkpoints/README.md"))
        assert readme["type"] == "file"  # what the quick start's first cell points to
        opens, = runtime.glob("jpserver-file-to-run-*-open.html")  # the page a browser is sent to
        assert "lab/tree/notebooks/00_quickstart.ipynb" in opens.read_text()
