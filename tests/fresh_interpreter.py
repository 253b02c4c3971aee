"""Run Python code in a fresh interpreter, for settings a process reads once (torch's huge pages,
glibc's heap thresholds): shared by the tests that need a process of their own."""

from __future__ import annotations

import os
import subprocess
import sys

CLEARED = ("THP_MEM_ALLOC_ENABLE", "ACESTEP_FAST_PATHS")  # settings the caller's own environment must not lend


def run_python(code: str, *args, timeout: int = 300, **env: str) -> str:
    """stdout of `python -c code args...` with this environment less CLEARED, plus `env`; fails the
    test with the child's stderr when it exits non-zero."""
    environment = {k: v for k, v in os.environ.items() if k not in CLEARED}
    environment.update(env)
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=environment, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
