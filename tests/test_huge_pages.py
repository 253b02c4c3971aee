"""Huge pages for torch's large buffers (`acestep_engine.runtime.huge_pages`): asked for when the engine
is imported, unless the user or ACESTEP_FAST_PATHS=0 says no; the same takes either way. Each case runs
in a fresh interpreter, since torch reads the setting once per process."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from fresh_interpreter import run_python

from acestep_engine.runtime import huge_pages

PROBE = """
import json, os, sys
import acestep_engine
from acestep_engine.runtime import huge_pages_active
print(json.dumps({"variable": os.environ.get("THP_MEM_ALLOC_ENABLE"), "active": huge_pages_active()}))
"""

GENERATE = """
import sys
import numpy as np
from acestep_engine import Blueprint, Engine
from acestep_engine.runtime import huge_pages_active
engine = Engine.from_pretrained(sys.argv[1], device="cpu", dtype="fp32")
take, = engine.generate(Blueprint(caption="huge pages", duration=40), seeds=5)
np.savez(sys.argv[2], latents=take.latents, audio=take.audio, active=huge_pages_active())
"""


@pytest.mark.parametrize("env, asked", [({}, True), ({"THP_MEM_ALLOC_ENABLE": "0"}, False),
                                        ({"ACESTEP_FAST_PATHS": "0"}, False)])
def test_importing_the_engine_asks_for_huge_pages_unless_told_not_to(env, asked):
    probe = json.loads(run_python(PROBE, **env).strip().splitlines()[-1])
    if huge_pages.system_allows() and sys.platform.startswith("linux"):
        assert probe["active"] == asked
        assert probe["variable"] == ("1" if asked else env.get("THP_MEM_ALLOC_ENABLE"))
    else:  # a kernel with THP off: nothing to ask for, and nothing changes
        assert probe == {"variable": env.get("THP_MEM_ALLOC_ENABLE"), "active": False}


def test_a_take_is_the_same_with_and_without_huge_pages(tiny_dir, tmp_path):
    run_python(GENERATE, tiny_dir, tmp_path / "huge.npz")
    run_python(GENERATE, tiny_dir, tmp_path / "small.npz", THP_MEM_ALLOC_ENABLE="0")
    huge, small = np.load(tmp_path / "huge.npz"), np.load(tmp_path / "small.npz")
    assert bool(huge["active"]) == huge_pages.system_allows() and not bool(small["active"])
    assert np.array_equal(huge["latents"], small["latents"]) and np.array_equal(huge["audio"], small["audio"])
