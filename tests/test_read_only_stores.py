"""A take folder that cannot be written (a read-only mount, or files the user may only read) is opened,
listed and loaded, and every change says "read-only" instead of a raw OSError or "System error".

Two real read-only views, each in a child process:
- "mount": the folder bind-mounted read-only in a private mount namespace (`unshare -rm`), so every
  write fails with EROFS, for root too;
- "permissions": the folder read by a user who does not own it (root drops to `nobody` in a fork;
  another user makes the files read-only with chmod), so writes fail with EACCES.
Where user namespaces are not allowed (some CI runners), "mount" runs through "permissions" instead.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from acestep_engine import TakeStore
from hostile import _snapshot, make_take

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHANGES = ("save", "rename", "update_notes", "delete", "undelete", "empty_trash")

EXERCISE = r"""
import json, sys
sys.path[:0] = [sys.argv[2], sys.argv[3]]
from acestep_engine import TakeStore, TakeStoreError
from hostile import make_take

def exercise(folder):
    out = {}
    store = TakeStore(folder)
    out["ids"] = store.ids()
    out["problems"] = [str(p) for p in store.problems]
    out["revision"] = store.revision
    out["loaded"] = [list(store.load(i).audio.shape) for i in out["ids"]]
    out["records"] = [store.record(i)["id"] for i in out["ids"]]
    out["found"] = len(store.list(search="hostile")) + len(store.list(task="text2music"))
    out["trashed"] = store.trashed()
    first = (out["ids"] or ["none"])[0]
    changes = {"save": lambda: store.save(make_take(seed=77)), "rename": lambda: store.rename(first, "new"),
               "update_notes": lambda: store.update_notes(first, stars=5), "delete": lambda: store.delete(first),
               "undelete": lambda: store.undelete((out["trashed"] or ["none"])[0]), "empty_trash": store.empty_trash}
    for name, change in changes.items():
        try:
            change()
            out[name] = "no error"
        except TakeStoreError as exc:
            out[name] = "TakeStoreError: " + str(exc)
        except BaseException as exc:
            out[name] = type(exc).__name__ + ": " + str(exc)
    return out
"""


def _mount_namespaces_work() -> bool:
    if not shutil.which("unshare") or not sys.platform.startswith("linux"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount --bind / /mnt 2>/dev/null || mount -t tmpfs x /mnt"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


MOUNTS = _mount_namespaces_work()


def run_read_only(folder: Path, how: str) -> dict:
    """`EXERCISE` run on `folder` through a read-only view of it; its result."""
    if how == "mount" and MOUNTS:
        script = (f"mount --bind '{folder}' '{folder}' && mount -o remount,ro,bind '{folder}' '{folder}' && "
                  f"exec '{sys.executable}' -c \"$0\" '{folder}' '{ROOT}' '{HERE}'")
        code = EXERCISE + "\nprint(json.dumps(exercise(sys.argv[1])))\n"
        done = subprocess.run(["unshare", "-rm", "sh", "-c", script, code], capture_output=True, text=True,
                              timeout=300, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])
    return _as_reader(folder)


def _as_reader(folder: Path) -> dict:
    """EXERCISE in a fork that may only read `folder`: `nobody` when we are root, else after chmod a-w."""
    namespace = {}
    sys.path[:0] = [str(ROOT), str(HERE)]
    exec(compile(EXERCISE.split("\n", 3)[3], "exercise", "exec"), namespace)  # the imports are ours already
    import safetensors.numpy  # noqa: F401 - loaded before giving up the rights to read the installation
    import soundfile  # noqa: F401

    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        code = 0
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            result = json.dumps(namespace["exercise"](str(folder)))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            result, code = json.dumps({"crash": f"{type(exc).__name__}: {exc}"}), 1
        with os.fdopen(write, "w") as out:
            out.write(result)
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    result = json.loads(text)
    assert "crash" not in result, result["crash"]
    return result


@pytest.fixture
def shared_folder():
    """A folder another user can reach (pytest's tmp_path is private to its owner)."""
    base = Path(tempfile.mkdtemp(prefix="read-only-store-"))
    base.chmod(0o755)
    yield base / "store"
    for path in [base, *base.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR if path.is_dir() else
                       path.stat().st_mode | stat.S_IWUSR)
    shutil.rmtree(base, ignore_errors=True)


def _filled(folder: Path, count=2):
    store = TakeStore(folder)
    takes = [make_take(seed=i + 1) for i in range(count)]
    for take in takes:
        store.save(take)
    store.delete(takes[-1].id)
    store.list()
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    return takes


def _assert_listed_and_refused(result, takes):
    live = [t.id for t in takes[:-1]]
    assert result["ids"] == live and result["records"] == live
    assert result["loaded"] == [list(t.audio.shape) for t in takes[:-1]]
    assert result["trashed"] == [takes[-1].id] and result["found"] == 2 * len(live)
    for change in CHANGES:
        assert result[change].startswith("TakeStoreError: the take store"), (change, result[change])
        assert "is read-only" in result[change] and "System error" not in result[change]


@pytest.mark.parametrize("how", ["mount", "permissions"])
def test_a_read_only_store_lists_loads_and_says_read_only(shared_folder, how):
    takes = _filled(shared_folder)
    before = _snapshot(shared_folder.parent, "")
    result = run_read_only(shared_folder, how)
    _assert_listed_and_refused(result, takes)
    assert result["problems"] == []
    assert _snapshot(shared_folder.parent, "") == before


@pytest.mark.parametrize("how", ["mount", "permissions"])
def test_a_fresh_read_only_store_without_index_or_own_folder_lists(shared_folder, how):
    """The first list() on a read-only mount used to raise a raw OSError about a temporary index file."""
    takes = _filled(shared_folder)
    shutil.rmtree(shared_folder / ".takestore")
    result = run_read_only(shared_folder, how)
    _assert_listed_and_refused(result, takes)
    assert result["problems"] == [] and not (shared_folder / ".takestore").exists()


@pytest.mark.parametrize("how", ["mount", "permissions"])
def test_a_read_only_store_with_an_interrupted_change_says_it_cannot_finish_it(shared_folder, how, monkeypatch):
    takes = _filled(shared_folder, count=3)
    store = TakeStore(shared_folder)
    real = os.replace
    calls = {"n": 0}

    def die_after_two(src, dst):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(os, "replace", die_after_two)
    with pytest.raises(KeyboardInterrupt):
        store.delete(takes[0].id)
    monkeypatch.setattr(os, "replace", real)
    for path in [shared_folder, *shared_folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    result = run_read_only(shared_folder, how)
    assert result["ids"] == [takes[1].id] and result["loaded"] == [list(takes[1].audio.shape)]
    assert any("interrupted changes cannot be finished" in p and "read-only" in p for p in result["problems"])
    assert TakeStore(shared_folder).ids() == [takes[1].id] and TakeStore(shared_folder).trashed() == \
        sorted([takes[0].id, takes[2].id])  # writable again: the change is finished


def test_a_journal_the_reader_may_not_open_does_not_stop_listing(shared_folder):
    """The issue's case: a PermissionError on .takestore/journal made the store impossible to open."""
    takes = _filled(shared_folder)
    journal = shared_folder / ".takestore" / "journal"
    journal.mkdir(exist_ok=True)
    journal.chmod(0o700 if os.geteuid() == 0 else 0o000)
    try:
        result = _as_reader(shared_folder) if os.geteuid() == 0 else _unreadable_journal_as_owner(shared_folder)
    finally:
        journal.chmod(0o755)
    assert result["ids"] == [t.id for t in takes[:-1]]
    assert result["loaded"] == [list(t.audio.shape) for t in takes[:-1]]


def _unreadable_journal_as_owner(folder: Path) -> dict:
    store = TakeStore(folder)
    return {"ids": store.ids(), "loaded": [list(store.load(i).audio.shape) for i in store.ids()]}


def test_writes_are_never_tried_through_os_errors_on_a_writable_store(tmp_path):
    """The same doors on a writable folder change what they say they change (the control of the tests above)."""
    takes = _filled(tmp_path / "store")
    store = TakeStore(tmp_path / "store")
    store.rename(takes[0].id, "new")
    store.update_notes(takes[0].id, stars=5)
    store.undelete(takes[-1].id)
    store.delete(takes[0].id)
    store.empty_trash()
    assert store.ids() == [takes[-1].id] and store.trashed() == [] and store.problems == []
