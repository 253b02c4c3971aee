"""glibc's heap and the engine's large buffers: hand freed memory back, and keep a decode's
activations out of the heap.

glibc serves allocations of a few MB (a layer's weight) from its heap once large frees have raised
its mmap threshold (up to 32 MB), and keeps what is freed there for reuse: after loading a checkpoint
or packing and unpacking an LM's layers, gigabytes can stay in the process's resident set with
nothing in them (1.1 GB after a 0.6B LM's decode, measured). `give_back_free_memory` (malloc_trim)
returns those pages.

`mapped_large_buffers` keeps a stretch of work whose buffers are large and short-lived (the VAE's
decode windows) out of the heap: each buffer of 1 MB or more gets its own mapping, returned whole
when freed. Served from a heap the loaded models had already fragmented, a 30 s take's decode
raised the engine's peak by 1.0 GB and left 0.6 GB behind; mapped, by 0.6 GB, leaving nothing, in
the same time. Elsewhere than glibc both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from contextlib import contextmanager

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
MAPPED_FROM = 1 << 20  # bytes: buffers this large get their own mapping inside `mapped_large_buffers`
HEAP_UP_TO = 32 << 20  # glibc's largest (and, once large buffers come and go, usual) mmap threshold


@functools.lru_cache(maxsize=1)
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def give_back_free_memory() -> bool:
    """Return the heap's free pages to the system; True where it could (glibc)."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


@contextmanager
def mapped_large_buffers(threshold: int = MAPPED_FROM):
    """While the block lasts, allocations of `threshold` bytes or more are mapped on their own and
    unmapped when freed (see the module docstring); then the heap serves up to 32 MB again, as glibc's
    own threshold does once large buffers have come and gone (setting it ends glibc's adjusting it).
    Nothing changes where the C library is not glibc or `ACESTEP_FAST_PATHS=0`."""
    from .fast_paths import fast_paths_enabled

    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt") or not fast_paths_enabled():
        yield
        return
    libc.mallopt(M_MMAP_THRESHOLD, int(threshold))
    try:
        yield
    finally:
        libc.mallopt(M_MMAP_THRESHOLD, HEAP_UP_TO)
