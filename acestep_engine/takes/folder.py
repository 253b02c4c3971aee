"""The take folder's own machinery: temporary files that name their writer, an exclusive lock shared
by threads and processes, and the problems a folder can hold.

Temporary files are named `.tmp-<pid>@<host>-...` so that only a file whose writer is gone (or
that is a day old) is ever removed: another live process's save is never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import TakeStoreError
from ..json_files import read_json

STALE_TEMP_SECONDS = 24 * 3600  # a temporary file this old is stale even if its pid is alive (pid reuse)


@dataclass(frozen=True)
class StoreProblem:
    """Something in the folder that is not a usable take; it is left untouched."""

    path: str
    message: str

    def __str__(self) -> str:
        return self.message if self.path in self.message else f"{self.path}: {self.message}"


HOST = f"{zlib.crc32(socket.gethostname().encode()) & 0xFFFFFFFF:08x}"
_TEMP_RE = re.compile(r"\.tmp-(\d+)@([0-9a-f]{8})-")


def temp_name(purpose: str) -> str:
    return f".tmp-{os.getpid()}@{HOST}-{secrets.token_hex(6)}-{purpose}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # on Windows os.kill(pid, 0) would terminate the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def temp_is_stale(path: Path) -> bool:
    """Stale when its writer is gone; never when a live process on this host may still be writing it."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if age > STALE_TEMP_SECONDS:
        return True
    match = _TEMP_RE.match(path.name)
    if match is None:  # an older version's `.tmp-xxxx` name: no owner recorded, so wait a while
        return age > 3600
    pid, host = int(match.group(1)), match.group(2)
    return host == HOST and not _pid_alive(pid)


def write_file(path: Path, data: bytes, sync: bool = False) -> None:
    """`sync` for the sidecar and the journal entry only: a kill needs no fsync at all (the page cache
    survives it), and each fsync costs tens of milliseconds on a busy disk."""
    with open(path, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def read_store_json(path: Path):
    """Parsed JSON, or TakeStoreError naming the file (bad UTF-8, bad JSON, too deeply nested)."""
    return read_json(path, TakeStoreError, expect=None)


class FolderLock:
    """An exclusive lock on `<folder>/.lock` shared by threads and processes (flock/msvcrt)."""

    def __init__(self, path: Path):
        self.path = path
        self._thread_lock = threading.RLock()  # flock is per open file, so threads are also kept apart here
        self._depth = 0
        self._fd = None

    def __enter__(self):
        self._thread_lock.acquire()
        if self._depth == 0:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                self._thread_lock.release()
                raise TakeStoreError(f"cannot lock the take store: {self.path} ({exc.strerror})") from None
            try:
                if os.name == "nt":
                    import msvcrt

                    while True:
                        try:
                            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                            break
                        except OSError:  # LK_LOCK gives up after 10 s; keep waiting like flock does
                            continue
                else:
                    import fcntl

                    fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                self._thread_lock.release()
                raise
            self._fd = fd
        self._depth += 1
        return self

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0:
            fd, self._fd = self._fd, None
            if os.name == "nt":
                import msvcrt

                with contextlib.suppress(OSError):
                    os.lseek(fd, 0, os.SEEK_SET)
                    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
            os.close(fd)  # closing releases flock
        self._thread_lock.release()
