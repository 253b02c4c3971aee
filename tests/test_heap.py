"""glibc's heap around the engine's large buffers (`acestep_engine.runtime.heap`): inside
`mapped_large_buffers` a buffer of 1 MB or more gets its own mapping; outside, glibc's heap serves it."""

from __future__ import annotations

import ctypes

import torch

from acestep_engine.runtime import heap


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def _mapped_bytes_of_a_new_buffer(size: int) -> int:
    """How much glibc's count of mapped bytes grows while a `size`-byte torch buffer lives."""
    libc = heap._libc()
    libc.mallinfo2.restype = _Mallinfo2
    before = libc.mallinfo2().hblkhd
    buffer = torch.empty(size, dtype=torch.uint8)
    grown = libc.mallinfo2().hblkhd - before
    del buffer
    return grown


def _glibc():
    libc = heap._libc()
    return libc if libc is not None and hasattr(libc, "mallinfo2") else None


def test_large_buffers_get_their_own_mapping_only_inside_the_block():
    glibc, size = _glibc(), 4 << 20
    if glibc is None:  # not glibc 2.33+: the block runs its body and changes nothing
        with heap.mapped_large_buffers():
            assert torch.empty(size, dtype=torch.uint8).numel() == size
        return
    glibc.mallopt(heap.M_MMAP_THRESHOLD, heap.HEAP_UP_TO)  # as after the first block: the heap serves 4 MB
    assert _mapped_bytes_of_a_new_buffer(size) == 0
    with heap.mapped_large_buffers():
        assert _mapped_bytes_of_a_new_buffer(size) >= size
        assert _mapped_bytes_of_a_new_buffer(heap.MAPPED_FROM // 4) == 0  # small ones stay in the heap
    assert _mapped_bytes_of_a_new_buffer(size) == 0


def test_with_the_stock_paths_the_heap_is_left_alone(monkeypatch):
    monkeypatch.setenv("ACESTEP_FAST_PATHS", "0")
    glibc = _glibc()
    if glibc is not None:
        glibc.mallopt(heap.M_MMAP_THRESHOLD, heap.HEAP_UP_TO)
    with heap.mapped_large_buffers():
        assert glibc is None or _mapped_bytes_of_a_new_buffer(4 << 20) == 0
