"""Transparent huge pages for torch's large CPU buffers, asked for before torch allocates anything.

Every activation the VAE decodes through is a fresh buffer of up to 141 MB (a 10 s window in bf16),
which glibc maps anew and the kernel faults in 4 KB at a time: 2 million page faults and 7 s of
kernel time for a 30 s take in the engine's process on the 2-core EPYC here, a third of the
decode. torch's own switch `THP_MEM_ALLOC_ENABLE=1` (since 2.2) advises huge pages for buffers of
2 MB and more, so each fault brings in 2 MB: 70 thousand faults, and the
same decode took 13.2-15.3 s instead of 17.0-18.2 s, with no more memory. The results are the same
numbers (only where buffers lie changes).

torch reads the variable once, at its first CPU allocation, so `request_huge_pages` runs when the
engine is imported (`acestep_engine.runtime` asks first thing). A process that allocated a tensor
before importing the engine keeps its setting; `huge_pages_active()` says which it got. Set
`THP_MEM_ALLOC_ENABLE=0` (or `ACESTEP_FAST_PATHS=0`) to keep 4 KB pages.
"""

from __future__ import annotations

import os
import sys

from .fast_paths import fast_paths_enabled  # imports torch, which allocates nothing until asked

ENV = "THP_MEM_ALLOC_ENABLE"
HUGE_PAGE = 2 << 20
SYSFS = "/sys/kernel/mm/transparent_hugepage/enabled"


def system_allows() -> bool:
    """Whether the kernel gives huge pages to a process that asks (THP "always" or "madvise")."""
    try:
        with open(SYSFS) as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def request_huge_pages() -> bool:
    """Ask torch for huge pages unless the user said otherwise; True if the variable now asks."""
    if not sys.platform.startswith("linux") or not system_allows():
        return False
    if not fast_paths_enabled():
        return False
    return os.environ.setdefault(ENV, "1") == "1"


def huge_pages_active() -> bool:
    """Whether torch advises huge pages for a large CPU buffer in this process (the kernel marks
    the buffer's memory "hg" in /proc/self/smaps), whether or not its pages are in yet."""
    import torch

    buffer = torch.empty(4 * HUGE_PAGE, dtype=torch.uint8)
    return _advised(buffer.data_ptr() + 2 * HUGE_PAGE)


def _advised(address: int) -> bool:
    try:
        with open("/proc/self/smaps") as f:
            inside = False
            for line in f:
                first = line.split(None, 1)[0]
                if "-" in first and not first.endswith(":"):  # a mapping's header: start-end perms ...
                    start, _, end = first.partition("-")
                    inside = int(start, 16) <= address < int(end, 16)
                elif inside and first == "VmFlags:":
                    return "hg" in line.split()[1:]
    except (OSError, ValueError):
        return False
    return False
