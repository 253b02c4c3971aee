"""Shared fixtures: tiny checkpoint sets in the official layout, written once per test session."""

import contextlib
import functools
import http.server
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """48 kHz, hop 1920 tiny set with turbo and base DiTs."""
    from acestep_engine.models import write_tiny_checkpoints

    root = tmp_path_factory.mktemp("tiny-checkpoints")
    write_tiny_checkpoints(root, variant="turbo")
    write_tiny_checkpoints(root, variant="base")
    return root


@pytest.fixture(scope="session")
def tiny16_dir(tmp_path_factory):
    """16 kHz, hop 320, 8 latent channels: nothing like the official format."""
    from acestep_engine.models import write_tiny_checkpoints

    root = tmp_path_factory.mktemp("tiny16-checkpoints")
    write_tiny_checkpoints(root, variant="turbo", preset="tiny-16k")
    return root


# The shared engines run in fp32 whatever dtype "auto" picks on the machine (bf16 on CPUs
# with native bf16): many tests compare against fp32 references at tight tolerances. The "auto"
# default is exercised by every engine a test loads without a dtype, and by the notebooks.
@pytest.fixture(scope="session")
def turbo(tiny_dir):
    from acestep_engine import Engine

    return Engine.from_pretrained(tiny_dir, dit="acestep-v15-turbo", device="cpu", dtype="fp32")


@pytest.fixture(scope="session")
def base(tiny_dir):
    from acestep_engine import Engine

    return Engine.from_pretrained(tiny_dir, dit="acestep-v15-base", device="cpu", dtype="fp32")


@pytest.fixture(scope="session")
def planner(tiny_dir, turbo):
    """The tiny 5 Hz LM planner beside the tiny DiTs (official folder name), attached to `turbo`."""
    from acestep_engine.lm import Planner
    from acestep_engine.models import LM_FOLDER, write_lm

    write_lm(tiny_dir / LM_FOLDER)
    return Planner.from_pretrained("acestep-5Hz-lm-0.6B", checkpoints_dir=tiny_dir, device="cpu", engine=turbo)


# --------------------------------------------------------------------------- browser tests of the widgets' JavaScript

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")  # one Playwright per module: a second sync_playwright cannot run beside it
def chromium():
    """Debian's headless Chromium, driven by Playwright (autoplay allowed for the players)."""
    if CHROMIUM is None:
        pytest.fail("Debian's chromium is needed for browser tests: `make test` installs it "
                    "(apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--no-first-run",
                                          "--autoplay-policy=no-user-gesture-required"])
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def serve_folder():
    """`serve_folder(folder)` -> the base URL of a local HTTP server for `folder` (stopped at the end)."""
    servers = []

    def serve(folder) -> str:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()


# --------------------------------------------------------------------------- Colab's pinned packages

@pytest.fixture(scope="session")
def colab_pins() -> dict[str, str]:
    """tests/colab-constraints.txt as {package name (lower case, '-' for '_'): pinned version}."""
    from pathlib import Path

    pins = {}
    for line in (Path(__file__).parent / "colab-constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


# --------------------------------------------------------------------------- a Jupyter server for browser tests

@contextlib.contextmanager
def _running_jupyter(command, cwd, env, timeout: float = 90.0):
    """Start `command` (an argv list or a shell line; "{port}" in it becomes a free port on 127.0.0.1),
    wait until it answers /api/status, yield its URL, stop it afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    shell = isinstance(command, str)
    filled = command.format(port=port) if shell else [part.format(port=port) for part in command]
    server = subprocess.Popen(filled, shell=shell, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"{filled} did not answer within {timeout:.0f} s")
        yield url
    finally:
        server.terminate()
        server.wait(20)


@pytest.fixture(scope="session")
def running_jupyter():
    """`with running_jupyter(command, cwd, env) as url:` a Jupyter server started from `command`."""
    return _running_jupyter
