"""Tools for the hostile-folder tests: a sandbox whose files outside the take store are watched, and takes.

`Sandbox` holds a store folder beside an `outside/` folder full of files that links in the store
point to. `assert_untouched()` proves that nothing outside the store was opened for writing,
created, moved, deleted or changed, in two independent ways:
- Python's audit hooks record every open for writing, rename, removal, mkdir, link, chmod, truncate
  and rmtree made by this process, with the path it really touches (links resolved the way the call
  resolves them);
- a snapshot of every file and folder outside the store (type, size, mtime, inode, content or link
  target) taken before is compared with one taken after.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from pathlib import Path

import numpy as np

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_watchers: list["Sandbox"] = []
_hook_lock = threading.Lock()


def _final_not_followed(path) -> str:
    """Where a call that does not follow its last component (rename, unlink, O_NOFOLLOW) acts."""
    path = os.path.abspath(os.fsdecode(path))
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def _followed(path) -> str:
    return os.path.realpath(os.path.abspath(os.fsdecode(path)))


def _touched(event: str, args) -> list[str]:
    """The paths a write-like audit event acts on (empty for reads and for calls on file descriptors)."""
    def paths(*items):
        return [item for item in items if isinstance(item, (str, bytes, os.PathLike))]

    if event == "open":
        path, mode, flags = args
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool((flags or 0) & _WRITE_FLAGS)
        if not writes or not paths(path):
            return []
        return [_final_not_followed(path) if (flags or 0) & _NOFOLLOW else _followed(path)]
    if event in ("os.rename", "os.link"):
        return [_final_not_followed(p) for p in paths(args[0], args[1])]
    if event == "os.symlink":
        return [_final_not_followed(p) for p in paths(args[1])]
    if event in ("os.remove", "os.rmdir", "os.mkdir"):
        return [_final_not_followed(p) for p in paths(args[0])]
    if event in ("os.truncate", "os.chmod", "os.chown", "os.utime", "shutil.rmtree", "os.chflags"):
        return [_followed(p) for p in paths(args[0])]
    return []


def _hook(event: str, args) -> None:
    if not _watchers or event not in ("open", "os.rename", "os.link", "os.symlink", "os.remove", "os.rmdir",
                                      "os.mkdir", "os.truncate", "os.chmod", "os.chown", "os.utime",
                                      "shutil.rmtree", "os.chflags"):
        return
    try:
        touched = _touched(event, args)
    except Exception:  # noqa: BLE001 - an audit hook must never break the call it watches
        return
    for sandbox in list(_watchers):
        for path in touched:
            if sandbox.watches(path):
                sandbox.writes.append((event, path))


sys.addaudithook(_hook)  # hooks cannot be removed: inactive unless a sandbox is watching


def _snapshot(root: Path, skip: str) -> dict:
    """Every file, link and folder under `root` but the folder `skip` (type, size, mtime, inode, content)."""
    out = {}
    for folder, dirs, files in os.walk(root):  # links are listed, never walked into
        dirs[:] = [d for d in dirs if os.path.join(folder, d) != skip]
        st = os.lstat(folder)
        out[os.path.relpath(folder, root) + "/"] = (st.st_mode, st.st_mtime_ns, st.st_ino)
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if os.path.islink(path):
                content = "link to " + os.readlink(path)
            elif os.path.isfile(path):
                content = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            else:
                content = "folder"
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino, content)
    return out


class Sandbox:
    """`root` holds `store/` (the take folder) and `outside/` (files a hostile store links to)."""

    def __init__(self, root: Path):
        self.root = Path(os.path.realpath(root))
        self.store_dir = self.root / "store"
        self.outside = self.root / "outside"
        self.store_dir.mkdir()
        self.outside.mkdir()
        (self.outside / "precious.txt").write_text("a file of someone else's\n")
        (self.outside / "song.flac").write_bytes(b"not ours")
        (self.outside / "nested").mkdir()
        (self.outside / "nested" / "deep.json").write_text('{"id": "deep"}')
        self.writes: list[tuple[str, str]] = []
        self._before = None

    def watches(self, path: str) -> bool:
        inside_root = path == str(self.root) or path.startswith(str(self.root) + os.sep)
        in_store = path == str(self.store_dir) or path.startswith(str(self.store_dir) + os.sep)
        return inside_root and not in_store

    def start(self) -> "Sandbox":
        """Begin watching: from here on nothing outside the store may change."""
        self._before = _snapshot(self.root, str(self.store_dir))
        self.writes.clear()
        with _hook_lock:
            _watchers.append(self)
        return self

    def stop(self) -> None:
        with _hook_lock:
            if self in _watchers:
                _watchers.remove(self)

    def assert_untouched(self) -> None:
        self.stop()
        assert self.writes == [], f"written outside the store: {self.writes}"
        after = _snapshot(self.root, str(self.store_dir))
        changed = sorted(k for k in set(self._before) | set(after) if self._before.get(k) != after.get(k))
        assert changed == [], f"changed outside the store: {changed}"


def make_take(take_id=None, seconds=0.1, rate=8000, channels=2, seed=3, caption="hostile take", **changes):
    from acestep_engine import Blueprint, Take
    from acestep_engine.takes import new_take_id

    rng = np.random.default_rng(seed)
    fields = dict(id=take_id or new_take_id(), audio=rng.uniform(-0.5, 0.5, (channels, int(seconds * rate)))
                  .astype(np.float32), sample_rate=rate, seed=seed, blueprint=Blueprint(caption=caption),
                  task={"name": "text2music"}, model={"variant": "tiny"}, sampling={"steps": 8},
                  timings={"total_s": 0.1}, latents=rng.standard_normal((4, 8)).astype(np.float32))
    fields.update(changes)
    return Take(**fields)
