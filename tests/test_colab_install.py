"""Colab as it is: the workbench installs into Colab's pinned kernel stack and moves none of it.

`tests/colab-constraints.txt` holds Colab's pins (where they come from and when is written in it).
pip resolves this project's requirements against them as on a machine with nothing installed
(`--dry-run --ignore-installed`), so every requirement meets every pin and none is satisfied by this
venv instead; in Colab, where the pinned versions are installed, a resolution that keeps them all is
an install that upgrades none of them (pip's "restart your runtime" warning never comes). The
notebooks install the same project from the one source `[project.urls]` names, and say so.
"""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNEL_STACK = ("ipykernel", "ipython", "tornado", "ipywidgets")  # what the running kernel has imported


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_install_resolves_against_colabs_pins_and_moves_none_of_them(tmp_path, colab_pins):
    report = tmp_path / "report.json"
    run = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                          "--report", str(report), "-c", str(ROOT / "tests" / "colab-constraints.txt"), str(ROOT)],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"pip cannot install the workbench beside Colab's pins:\n{run.stderr[-3000:]}"
    chosen = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
              for item in json.loads(report.read_text())["install"]}
    assert chosen.get("acestep-workbench") == _project()["version"]
    for name in KERNEL_STACK:  # the pins that matter are in play: the project pulls each of them in
        assert name in chosen, f"{name} is no longer a requirement: drop it from KERNEL_STACK"
    moved = {name: (pinned, chosen[name]) for name, pinned in colab_pins.items()
             if name in chosen and chosen[name] != pinned}
    assert moved == {}


def _setup_cell(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


def test_every_notebook_installs_in_colab_from_the_one_source_pyproject_names():
    source = _project()["urls"]["Source"]
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert len(notebooks) >= 8
    for path in notebooks:
        cell = _setup_cell(path)
        installs = re.findall(r"^\s*%pip install (.*)$", cell, flags=re.M)
        assert installs == [f'-q "acestep-workbench @ git+{source}"'], (path.name, installs)
        lines = cell.splitlines()
        at = next(i for i, line in enumerate(lines) if "%pip install" in line)
        guard = next(line for line in reversed(lines[:at]) if line.startswith("if "))
        assert guard == 'if "google.colab" in sys.modules:', path.name  # only in Colab; elsewhere `make lab` installs
        comment = " ".join(line.strip() for line in lines[lines.index(guard) + 1:at] if line.strip().startswith("#"))
        assert "nothing Colab pins" in comment, (path.name, comment)  # and says so
