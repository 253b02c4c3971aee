"""glibc's heap around the engine's large buffers (`acestep_engine.runtime.heap`): inside
`mapped_large_buffers` a buffer of 1 MB or more that the heap cannot serve from memory it already
holds gets its own mapping (returned whole when freed); outside, glibc's heap grows for it. Each case
runs in a fresh interpreter, whose heap holds no large free chunks yet."""

from __future__ import annotations

import json

from fresh_interpreter import run_python

from acestep_engine.runtime import heap

PROBE = """
import ctypes, json
import torch
from acestep_engine.runtime import heap

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = heap._libc()
if libc is None or not hasattr(libc, "mallinfo2"):
    print(json.dumps(None))
    raise SystemExit
libc.mallinfo2.restype = Mallinfo2

def mapped_growth(size):
    before = libc.mallinfo2().hblkhd
    buffer = torch.empty(size, dtype=torch.uint8)
    return libc.mallinfo2().hblkhd - before

libc.mallopt(heap.M_MMAP_THRESHOLD, heap.HEAP_UP_TO)  # as once large frees have raised glibc's threshold
before = mapped_growth(4 << 20)
with heap.mapped_large_buffers():
    inside, small = mapped_growth(4 << 20), mapped_growth(heap.MAPPED_FROM // 4)
after = mapped_growth(4 << 20)
print(json.dumps({"before": before, "inside": inside, "small": small, "after": after}))
"""


def _probe(**env):
    return json.loads(run_python(PROBE, timeout=120, **env).strip().splitlines()[-1])


def test_large_buffers_get_their_own_mapping_only_inside_the_block():
    seen = _probe()
    if seen is None:  # not glibc 2.33+: nothing to measure, and the block changes nothing there
        assert heap._libc() is None or not hasattr(heap._libc(), "mallinfo2")
        return
    assert seen["before"] == 0  # the heap's
    assert seen["inside"] >= 4 << 20  # mapped on its own
    assert seen["small"] == 0  # below the threshold: the heap's
    assert seen["after"] == 0  # after the block the heap serves 4 MB again


def test_with_the_stock_paths_the_heap_is_left_alone():
    seen = _probe(ACESTEP_FAST_PATHS="0")
    assert seen is None or seen["inside"] == 0
