"""Do widget updates from a worker thread reach the frontend, on a given kernel stack? (not a test)

    .venv/bin/python bench/kernel_threads.py                                  # the venv's own kernel stack
    .venv/bin/python bench/kernel_threads.py --stack .venv-colab/widgets:.venv-colab/kernel   # Colab's, ahead
    .venv/bin/python bench/kernel_threads.py --ipykernel 6.17.1 6.0.2 5.5.6 4.10.1 --base-stack DIR

Starts a real kernel (jupyter_client, as JupyterLab does) on the stack, runs one cell that makes an
`IntProgress` and returns, so the kernel is idle as it is while a person watches a job, then listens
on IOPub for the `comm_msg` updates three kinds of writers send, ten values each:
- `thread`: a worker thread sets the trait directly;
- `post`: the worker hands each update to `workbench.jobs.post`, which must run it on the kernel's main thread;
- `job`: the workbench's job runner (`JobPanel.run_job`) reports progress from its worker, as a
  Generate click does, and redraws the panel when the job ends.
A writer passes when all its values arrive in order and the kernel printed no traceback.
`--ipykernel` installs each listed ipykernel (no dependencies) over `--base-stack` (one folder holding
the rest of the stack) into a cache folder and probes each one, to find the lowest release with which
worker-thread updates work. `tests/test_colab_kernel_browser.py` runs `probe` on Colab's whole stack.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VALUES = 10

CELL = r"""
import threading, time, ipywidgets, ipykernel, IPython, tornado
from workbench.jobs import JobPanel, post
from workbench.state import WorkbenchState

print("STACK ipykernel", ipykernel.__version__, "ipython", IPython.__version__, "tornado", tornado.version,
      "ipywidgets", ipywidgets.__version__)
bars = {name: ipywidgets.IntProgress(max=1000, description=name) for name in ("thread", "post")}
for name, bar in bars.items():
    print("MODEL", name, bar.model_id)

def direct():
    for i in range(1, %(n)d + 1):
        bars["thread"].value = i
        time.sleep(0.02)

on_main = []

def posted():
    for i in range(1, %(n)d + 1):
        post(lambda i=i: (setattr(bars["post"], "value", i),
                          on_main.append(threading.current_thread() is threading.main_thread())))
        time.sleep(0.02)
    post(lambda: print("POSTED_ON_MAIN", len(on_main) == %(n)d and all(on_main), flush=True))

class Probe(JobPanel):
    def __init__(self):
        self._init_jobs(WorkbenchState(), [])

panel = Probe()
print("MODEL job", panel.progress.model_id)

def work(cancel, progress):
    for i in range(1, %(n)d + 1):
        progress.stage("probing", i / 1000)
        time.sleep(0.02)
    return "ok"

threading.Thread(target=direct, daemon=True).start()
threading.Thread(target=posted, daemon=True).start()
panel.run_job("probe", work, show=lambda value: "probe " + value)
"""


def probe(stack: str | Path | None, timeout: float = 60.0) -> dict:
    """Start a kernel with `stack` (a folder, or folders joined by os.pathsep) ahead on PYTHONPATH, then
    this checkout, run the cell, collect the bars' values."""
    from jupyter_client import KernelManager

    env = dict(os.environ, HF_HUB_OFFLINE="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    folders = [Path(f).resolve() for f in str(stack).split(os.pathsep)] if stack else []
    env["PYTHONPATH"] = os.pathsep.join(str(f) for f in [*folders, ROOT])
    km = KernelManager(kernel_cmd=None)
    km.kernel_spec_manager  # noqa: B018 - resolve the spec before overriding its argv
    km._kernel_spec = km.kernel_spec_manager.get_kernel_spec("python3")
    km._kernel_spec.argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    km.start_kernel(env=env, cwd=tempfile.mkdtemp(prefix="kernel-threads-"))
    client = km.client()
    client.start_channels()
    result = {"stack": None, "errors": [], "values": {}, "job_status": "", "posted_on_main": None}
    by_comm: dict[str, list] = {}  # updates arrive before the (buffered) printout that names their model
    try:
        client.wait_for_ready(timeout=timeout)
        client.execute(CELL % {"n": VALUES})
        models, deadline = {}, time.time() + timeout
        while time.time() < deadline:
            try:
                msg = client.get_iopub_msg(timeout=1.0)
            except queue.Empty:
                if result["job_status"] and len(models) == 3 and result["posted_on_main"] is not None and \
                        all(len(by_comm.get(m, ())) >= VALUES for m, name in models.items() if name != "job"):
                    break
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                for line in content["text"].splitlines():
                    if line.startswith("STACK "):
                        result["stack"] = line[6:]
                    elif line.startswith("POSTED_ON_MAIN "):
                        result["posted_on_main"] = line.split()[1] == "True"
                    elif line.startswith("MODEL "):
                        _, name, model_id = line.split()
                        models[model_id] = name
                    elif content["name"] == "stderr" and line.strip():
                        result["errors"].append(line)
            elif kind == "error":
                result["errors"].append(f"{content['ename']}: {content['evalue']}")
            elif kind == "comm_msg":
                data = content["data"]
                state = data.get("state", {}) if data.get("method") == "update" else {}
                if "value" in state:
                    by_comm.setdefault(content["comm_id"], []).append(state["value"])
                if "value" in state and isinstance(state["value"], str) and state["value"].startswith("probe ok"):
                    result["job_status"] = state["value"]
        result["values"] = {name: by_comm.get(model_id, []) for model_id, name in models.items()}
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)
    return result


def verdict(result: dict) -> dict:
    """writer -> "ok" or what went wrong."""
    expected = list(range(1, VALUES + 1))
    out = {}
    for name, values in result["values"].items():
        if name == "job":
            values = [v for v in values if 0 < v <= VALUES]  # the bar's own resets and the final 1000
            ok = values == expected and bool(result["job_status"])
        elif name == "post":  # ...and each update ran on the kernel's main thread, as post() promises
            ok = values == expected and result["posted_on_main"] is True
        else:
            ok = values == expected
        out[name] = "ok" if ok else f"got {values[:12]}, on the main thread: {result['posted_on_main']}"
    return out


def install(version: str, base: Path | None, cache: Path) -> Path:
    folder = cache / f"ipykernel-{version}"
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        if base is not None:
            shutil.copytree(base, folder, symlinks=True)
            for old in folder.glob("ipykernel*"):
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade", "--target",
                        str(folder), f"ipykernel=={version}"], check=True, capture_output=True)
        (folder / ".complete").touch()
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", help="folders put ahead of the venv on PYTHONPATH, joined by ':'")
    parser.add_argument("--ipykernel", nargs="*", default=(), help="ipykernel releases to install and probe")
    parser.add_argument("--base-stack", type=Path, help="the stack the --ipykernel releases go over")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "acestep-kernel-threads")
    args = parser.parse_args()
    for version in args.ipykernel or [None]:
        try:
            stack = args.stack if version is None else install(version, args.base_stack, args.cache)
        except subprocess.CalledProcessError as exc:
            print(f"ipykernel {version}: pip could not install it: {exc.stderr.decode().strip().splitlines()[-1]}")
            continue
        try:
            result = probe(stack)
        except Exception as exc:  # a kernel that does not start at all on this stack
            print(f"ipykernel {version}: kernel did not start: {type(exc).__name__}: {exc}")
            continue
        checks = verdict(result)
        print(f"{result['stack'] or version}: " + ", ".join(f"{k} {v}" for k, v in checks.items()))
        for line in result["errors"][:6]:
            print("    kernel said:", line)


if __name__ == "__main__":
    main()
