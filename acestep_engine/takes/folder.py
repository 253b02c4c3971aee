"""The take folder's own machinery: where the store may read and write, temporary files that name
their writer, an exclusive lock shared by threads and processes, and the problems a folder can hold.

A take folder may come from someone else (a zip, a synced drive), so nothing in it is trusted:
- The store's own folders (`.takestore/`, its `journal/`, `.trash/`) must be real folders of the
  store, never links: a linked trash or journal would carry moves and deletions out of the store.
- A file that is a link is read only when it leads to a file inside the store, and never written,
  moved or deleted through: renames and removals act on the link itself.
- New files are created exclusively (`O_EXCL`, `O_NOFOLLOW`): never through a planted link.
- Files are read with a size cap, and only when they are regular files (never a pipe or a device).

Temporary files are named `.tmp-<pid>@<host>-...` so that only a file whose writer is gone (or
that is a day old) is ever removed: another live process's save is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import socket
import stat
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import TakeStoreError
from ..json_files import read_json

STALE_TEMP_SECONDS = 24 * 3600  # a temporary file this old is stale even if its pid is alive (pid reuse)
MAX_SIDECAR_BYTES = 1 << 20  # a sidecar is a few kB; anything near this is not one of ours
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_REPARSE_POINT = 0x400  # Windows FILE_ATTRIBUTE_REPARSE_POINT: a junction or a link
READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


def shown(path) -> str:
    """`path` as printable text: bytes of a file name that are not UTF-8 are shown as `\\xNN`, so a
    message naming an odd file can always be printed, written to JSON or shown in a notebook."""
    text = os.fspath(path)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no POSIX name decodes to (a Windows name)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def is_real_directory(path) -> bool:
    """A directory itself, not a link (or junction) to one."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and not getattr(st, "st_file_attributes", 0) & _REPARSE_POINT


def own_directory(path: Path, create: bool = False) -> bool:
    """Whether `path` is usable as one of the store's own folders: True if it is a real folder
    (made first if `create`), False if it is absent; TakeStoreError if it is a link or a file."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path)
    if is_real_directory(path):
        return True
    if not os.path.lexists(path):
        return False
    kind = "a link" if os.path.islink(path) or os.path.isdir(path) else "a file"
    raise TakeStoreError(f"{shown(path)} is {kind}, not a folder of the take store: the store keeps its own files "
                         "only in real folders inside it (remove it, or move it away, to use the store)")


def is_inside(path, root_real: str) -> bool:
    """Whether `path`, links resolved, lies inside the folder whose resolved path is `root_real`."""
    target = os.path.realpath(path)
    try:
        return os.path.commonpath([root_real, target]) == root_real
    except ValueError:  # another drive (Windows)
        return False


def check_readable(path: Path, root_real: str) -> None:
    """Raise TakeStoreError if `path` is a link that leads out of the store (links inside it are read)."""
    if os.path.islink(path) and not is_inside(path, root_real):
        raise TakeStoreError(f"{shown(path)} is a link to {shown(os.path.realpath(path))}, outside the take store: "
                             "the store does not follow links out of its folder (copy the file in instead)")


def read_only_error(exc: OSError, folder: Path) -> TakeStoreError:
    """What a write the file system refused (errno in READ_ONLY_ERRNOS) becomes: the store says it is read-only."""
    return TakeStoreError(f"the take store {shown(folder)} is read-only ({exc.strerror}): its takes can be listed, "
                          "loaded and exported, not changed (copy it somewhere writable to change it)")


@dataclass(frozen=True)
class StoreProblem:
    """Something in the folder that is not a usable take; it is left untouched."""

    path: str
    message: str

    def __post_init__(self):  # printable whatever the file's name holds
        object.__setattr__(self, "path", shown(self.path))
        object.__setattr__(self, "message", shown(self.message))

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


def create_new(path: Path):
    """A new file at `path` opened for writing and reading ("w+b"): never an existing file, never
    through a link someone planted under that name."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _BINARY, 0o644)
    return os.fdopen(fd, "w+b")


def write_file(path: Path, data: bytes, sync: bool = False) -> None:
    """Write a new file. `sync` for the sidecar and the journal entry only: a kill needs no fsync at
    all (the page cache survives it), and each fsync costs tens of milliseconds on a busy disk."""
    with create_new(path) as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def read_own(path: Path, max_bytes: int) -> bytes | None:
    """One of the store's own small files (revision, id, index, journal entry), never through a link:
    its bytes, or None when it is absent, a link, not a regular file or larger than `max_bytes`."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _BINARY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        data = f.read(max_bytes + 1)
    return data if len(data) <= max_bytes else None


def read_sidecar_json(path: Path):
    """Parsed JSON of a sidecar (at most MAX_SIDECAR_BYTES), or TakeStoreError naming the file (too
    large, bad UTF-8, bad JSON, a number too long, too deeply nested)."""
    return read_json(path, TakeStoreError, expect=None, max_bytes=MAX_SIDECAR_BYTES, what="a sidecar")


class FolderLock:
    """An exclusive lock on `<meta>/lock` shared by threads and processes (flock/msvcrt). `meta` must be a
    real folder of the store (checked at every lock: a linked one would put the lock elsewhere); a
    store that cannot be locked (read-only) cannot be changed."""

    def __init__(self, meta: Path, folder: Path):
        self.meta = meta
        self.folder = folder
        self.path = meta / "lock"
        self._thread_lock = threading.RLock()  # flock is per open file, so threads are also kept apart here
        self._depth = 0
        self._fd = None

    def __enter__(self):
        self._thread_lock.acquire()
        if self._depth == 0:
            try:
                if not own_directory(self.meta, create=True):
                    raise TakeStoreError(f"cannot lock the take store: {shown(self.meta)} is missing")
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o644)
            except OSError as exc:
                self._thread_lock.release()
                if exc.errno in READ_ONLY_ERRNOS:
                    raise read_only_error(exc, self.folder) from None
                raise TakeStoreError(f"cannot lock the take store: {shown(self.path)} ({exc.strerror})") from None
            except BaseException:
                self._thread_lock.release()
                raise
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
