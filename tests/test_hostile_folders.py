"""A take folder from someone else (a zip, a synced drive) cannot reach outside itself, lose a take or
exhaust the machine: links, forged journals, mismatched audio, tampered caches, odd names and huge
files. Every test that opens a hostile store proves, with `Sandbox.assert_untouched()`, that nothing
outside the store was opened for writing, created, moved, deleted or changed.

Read-only folders (a read-only mount, permissions) are in tests/test_read_only_stores.py.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from acestep_engine import TakeStore, TakeStoreError
from acestep_engine.takes.folder import MAX_SIDECAR_BYTES
from acestep_engine.takes.journal import Journal, store_key
from hostile import Sandbox, make_take


@pytest.fixture
def box(tmp_path):
    sandbox = Sandbox(tmp_path)
    yield sandbox
    sandbox.stop()


def saved_store(box, count=2, **take_options):
    """A store holding `count` takes, made before the sandbox starts watching."""
    store = TakeStore(box.store_dir)
    takes = [make_take(seed=i + 1, **take_options) for i in range(count)]
    for take in takes:
        store.save(take)
    return store, takes


def sidecar(box, take) -> Path:
    return box.store_dir / f"{take.id}.json"


def journal_dir(box) -> Path:
    return box.store_dir / ".takestore" / "journal"


def messages(store) -> str:
    return "\n".join(str(p) for p in store.problems)


def finishes(call, seconds=20):
    """Run `call` in a thread; True if it returned (or raised) within `seconds` (a pipe must never block)."""
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(_outcome(call)), daemon=True)
    thread.start()
    thread.join(seconds)
    return bool(outcome), (outcome[0] if outcome else None)


def _outcome(call):
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - the caller looks at it
        return exc


# ---------------------------------------------------------------------------------- links out of the store

def test_a_linked_trash_is_refused_by_delete_and_empty_trash(box):
    store, (a, b) = saved_store(box)
    (box.store_dir / ".trash").symlink_to(box.outside, target_is_directory=True)
    box.start()
    for change in (lambda: store.delete(a.id), store.empty_trash, lambda: TakeStore(box.store_dir).delete(b.id),
                   lambda: store.undelete(a.id)):
        with pytest.raises(TakeStoreError, match=r"\.trash is a link, not a folder of the take store"):
            change()
    assert store.ids() == [a.id, b.id] and store.trashed() == []  # nothing was moved, nothing is listed from it
    assert ".trash is a link" in messages(store)
    box.assert_untouched()
    (box.store_dir / ".trash").unlink()  # the link removed: the store works again
    store.delete(a.id)
    assert store.trashed() == [a.id]


def test_a_trash_that_is_a_file_is_refused(box):
    store, (a, _) = saved_store(box)
    (box.store_dir / ".trash").write_text("not a folder")
    box.start()
    with pytest.raises(TakeStoreError, match=r"\.trash is a file"):
        store.delete(a.id)
    assert a.id in store.ids() and (box.store_dir / ".trash").read_text() == "not a folder"
    box.assert_untouched()


def test_a_linked_store_folder_is_used_read_only(box):
    """`.takestore` linked elsewhere: no lock, id, index or journal is written through it; takes still list."""
    store, takes = saved_store(box)
    shutil.rmtree(box.store_dir / ".takestore")
    (box.store_dir / ".takestore").symlink_to(box.outside, target_is_directory=True)
    box.start()
    fresh = TakeStore(box.store_dir)
    assert fresh.ids() == [t.id for t in takes]
    np.testing.assert_array_equal(fresh.load(takes[0].id).latents, takes[0].latents)
    for change in (lambda: fresh.save(make_take()), lambda: fresh.rename(takes[0].id, "x"),
                   lambda: fresh.delete(takes[0].id), fresh.empty_trash):
        with pytest.raises(TakeStoreError, match=r"\.takestore is a link"):
            change()
    assert ".takestore is a link" in messages(fresh) and fresh.revision.startswith("0:")
    box.assert_untouched()


def test_a_linked_journal_is_never_replayed(box):
    """A journal folder linked to a folder of entries elsewhere: nothing in it runs, nothing changes."""
    store, takes = saved_store(box)
    entry = {"op": "empty_trash", "id": "*", "moves": [], "removes": [".trash/x"]}
    (box.outside / "0001.json").write_text(json.dumps(entry))
    shutil.rmtree(journal_dir(box), ignore_errors=True)
    journal_dir(box).symlink_to(box.outside, target_is_directory=True)
    box.start()
    fresh = TakeStore(box.store_dir)
    assert fresh.ids() == [t.id for t in takes]
    with pytest.raises(TakeStoreError, match="journal is a link"):
        fresh.delete(takes[0].id)
    assert "journal is a link" in messages(fresh)
    box.assert_untouched()


def test_a_forged_journal_entry_through_a_linked_subfolder_changes_nothing(box):
    """The escape of the issue: an entry shipped with the folder names files in a sub-folder that is a
    link. Opening the store must neither delete nor write anything there, and must say so."""
    store, takes = saved_store(box)
    (box.store_dir / "sub").symlink_to(box.outside, target_is_directory=True)
    journal_dir(box).mkdir(exist_ok=True)
    entry = {"op": "save", "id": takes[0].id, "pid": 1,
             "moves": [["sub/precious.txt", f"{takes[0].id}.json"], [f"{takes[0].id}.json", "sub/new.txt"]],
             "removes": ["sub/song.flac", "sub/nested/deep.json"]}
    (journal_dir(box) / "00000000000000000001-forged.json").write_text(json.dumps(entry))
    box.start()
    fresh = TakeStore(box.store_dir)
    assert fresh.ids() == [t.id for t in takes]
    assert "not written by this store" in messages(fresh) and fresh.recovered == []
    assert (journal_dir(box) / "00000000000000000001-forged.json.bad").is_file()
    box.assert_untouched()


def _signed(box, entry) -> None:
    """Write `entry` into the store's journal signed with the store's own key (as if the store wrote it)."""
    meta = box.store_dir / ".takestore"
    journal = Journal(box.store_dir, meta / "journal", store_key((meta / "id").read_text().strip(), meta))
    journal_dir(box).mkdir(exist_ok=True)
    (journal_dir(box) / f"{time.time_ns():020d}-test.json").write_text(json.dumps(journal.sign(entry)))


def _signed_entries(ids):
    a, b = ids
    return {
        "a move out through a linked folder": {"op": "save", "id": a, "moves": [[".tmp-1@0-x", "sub/x.json"]],
                                               "removes": []},
        "a move in from a linked folder": {"op": "save", "id": a, "moves": [["sub/precious.txt", f"{a}.json"]],
                                           "removes": []},
        "a removal through a linked folder": {"op": "empty_trash", "id": "*", "moves": [],
                                              "removes": ["sub/precious.txt"]},
        "an absolute path": {"op": "empty_trash", "id": "*", "moves": [], "removes": ["/tmp/x"]},
        "a parent path": {"op": "empty_trash", "id": "*", "moves": [], "removes": [".trash/../../outside/song.flac"]},
        "a save that removes sidecars": {"op": "save", "id": a, "moves": [],
                                         "removes": [f"{a}.json", f"{b}.json"]},
        "a delete of another take": {"op": "delete", "id": a, "moves": [[f"{b}.json", f".trash/{b}.json"]],
                                     "removes": []},
        "a rename that moves a take over another": {"op": "rename", "id": a, "moves": [[f"{b}.json", f"{a}.json"]],
                                                    "removes": []},
        "an undelete over a live take": {"op": "undelete", "id": a, "moves": [[f".trash/{a}.json", f"{a}.json"]],
                                         "removes": []},
        "an unknown change": {"op": "format_disk", "id": a, "moves": [], "removes": []},
    }


@pytest.mark.parametrize("case", sorted(_signed_entries(("a", "b"))))
def test_an_entry_with_a_valid_marker_still_runs_only_the_changes_the_store_makes(box, case):
    """Defence in depth: even an entry that carries this store's marker cannot name a path outside the
    store or its trash, remove a sidecar, or replace one with anything but its own temporary file."""
    store, (a, b) = saved_store(box)
    store.delete(a.id)
    store.save(a)  # a is in the store and in the trash: an undelete over it must not replace it
    (box.store_dir / "sub").symlink_to(box.outside, target_is_directory=True)
    (box.store_dir / ".tmp-1@0-x").write_text("{}")
    before = {p.name: p.read_bytes() for p in box.store_dir.glob("*.json")}
    _signed(box, {**_signed_entries((a.id, b.id))[case], "version": 2, "pid": 1})
    box.start()
    fresh = TakeStore(box.store_dir)
    assert fresh.ids() == sorted([a.id, b.id], key=[t.id for t in (a, b)].index) and fresh.trashed() == [a.id]
    assert {p.name: p.read_bytes() for p in box.store_dir.glob("*.json")} == before
    assert "a journal entry that" in messages(fresh) and fresh.recovered == []
    box.assert_untouched()


def test_an_entry_that_removes_every_sidecar_drops_no_take(box):
    """The issue's journal: one entry "removing" every sidecar made the next opening drop all takes."""
    store, takes = saved_store(box, count=4)
    journal_dir(box).mkdir(exist_ok=True)
    entry = {"op": "empty_trash", "id": "*", "pid": 1, "moves": [], "removes": [f"{t.id}.json" for t in takes]}
    (journal_dir(box) / "00000000000000000001-aaaa.json").write_text(json.dumps(entry))
    box.start()
    fresh = TakeStore(box.store_dir)
    assert fresh.ids() == [t.id for t in takes] and fresh.trashed() == []
    problem = [p for p in fresh.problems if "journal" in p.path]
    assert len(problem) == 1 and "not replayed" in problem[0].message
    again = TakeStore(box.store_dir)  # the entry set aside stays reported until someone removes it
    assert again.ids() == [t.id for t in takes] and any(p.path.endswith(".json.bad") for p in again.problems)
    box.assert_untouched()


def test_a_pending_entry_copied_with_the_folder_is_not_replayed_in_the_copy(box, monkeypatch):
    """A copy of a folder after a kill (a zip, a sync to another disk) carries its journal; the copy
    reports it, the original finishes it."""
    store, (a, b) = saved_store(box)
    real = os.replace
    calls = {"n": 0}

    def die_after_two(src, dst):
        calls["n"] += 1
        if calls["n"] > 2:  # the journal entry and the sidecar's move to the trash are down
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(os, "replace", die_after_two)
    with pytest.raises(KeyboardInterrupt):
        store.delete(a.id)
    monkeypatch.setattr(os, "replace", real)
    copy = box.root / "copy"
    shutil.copytree(box.store_dir, copy, symlinks=True)
    copied = TakeStore(copy)
    assert copied.recovered == [] and "not written by this store" in messages(copied)
    assert (copy / f"{a.id}.flac").is_file()  # nothing moved in the copy
    original = TakeStore(box.store_dir)
    assert original.recovered and original.trashed() == [a.id] and original.ids() == [b.id]
    assert original.problems == []


def test_an_entry_signed_by_another_store_is_not_replayed(box, tmp_path_factory):
    other_dir = tmp_path_factory.mktemp("other") / "store"
    other = TakeStore(other_dir)
    take = make_take()
    other.save(take)
    store, takes = saved_store(box)
    meta = other_dir / ".takestore"
    journal = Journal(other_dir, meta / "journal", store_key((meta / "id").read_text().strip(), meta))
    entry = journal.sign({"version": 2, "op": "delete", "id": takes[0].id, "pid": 1,
                          "moves": [[f"{takes[0].id}.json", f".trash/{takes[0].id}.json"]], "removes": []})
    journal_dir(box).mkdir(exist_ok=True)
    (journal_dir(box) / "00000000000000000001-other.json").write_text(json.dumps(entry))
    box.start()
    fresh = TakeStore(box.store_dir)
    assert fresh.ids() == [t.id for t in takes] and "not written by this store" in messages(fresh)
    box.assert_untouched()


def test_a_folder_where_a_take_file_goes_is_refused_before_anything_moves(box):
    store, (a, b) = saved_store(box)
    (box.store_dir / ".trash" / f"{a.id}.json").mkdir(parents=True)
    box.start()
    with pytest.raises(TakeStoreError, match=f"onto the folder .*{a.id}.json"):
        store.delete(a.id)
    assert store.ids() == [a.id, b.id] and not list(journal_dir(box).glob("*.json"))
    _signed(box, {"version": 2, "op": "delete", "id": a.id, "pid": 1,
                  "moves": [[f"{a.id}.json", f".trash/{a.id}.json"]], "removes": []})
    fresh = TakeStore(box.store_dir)  # a replayed entry that meets the folder is set aside; the store opens
    assert fresh.ids() == [a.id, b.id] and "onto the folder" in messages(fresh)
    box.assert_untouched()


def test_a_change_the_system_refuses_to_finish_is_kept_and_finished_later(box, monkeypatch):
    store, (a, b) = saved_store(box)
    names = [f"{a.id}{suffix}" for suffix in (".json", ".latents.safetensors", ".flac")]
    _signed(box, {"version": 2, "op": "delete", "id": a.id, "pid": 1,
                  "moves": [[name, f".trash/{name}"] for name in names], "removes": []})
    real = os.replace

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(src))

    monkeypatch.setattr(os, "replace", refuse)
    fresh = TakeStore(box.store_dir)
    assert "could not be finished (Permission denied" in messages(fresh) and fresh.recovered == []
    monkeypatch.setattr(os, "replace", real)
    again = TakeStore(box.store_dir)
    assert again.recovered and again.trashed() == [a.id] and again.problems == []


@pytest.mark.parametrize("what", ["sidecar", "audio", "latents"])
def test_a_take_file_linked_out_of_the_store_is_not_read(box, what):
    store, (a, b) = saved_store(box)
    suffix = {"sidecar": ".json", "audio": ".flac", "latents": ".latents.safetensors"}[what]
    path = box.store_dir / f"{a.id}{suffix}"
    shutil.copy(path, box.outside / path.name)
    path.unlink()
    path.symlink_to(box.outside / path.name)
    box.start()
    fresh = TakeStore(box.store_dir)
    if what == "latents":
        assert fresh.ids() == [a.id, b.id]
    else:
        assert fresh.ids() == [b.id]
        assert "outside the take store" in messages(fresh)
    with pytest.raises(TakeStoreError, match="outside the take store"):
        fresh.load(a.id)
    fresh.delete(a.id)  # moves the link itself into the trash: what it points to stays where it is
    assert os.path.islink(box.store_dir / ".trash" / path.name)
    fresh.empty_trash()
    assert not os.path.lexists(box.store_dir / ".trash" / path.name)
    box.assert_untouched()


def test_a_take_file_linked_inside_the_store_is_read(box):
    store, (a, _) = saved_store(box)
    (box.store_dir / "kept").mkdir()
    os.replace(box.store_dir / f"{a.id}.flac", box.store_dir / "kept" / "a.flac")
    (box.store_dir / f"{a.id}.flac").symlink_to(Path("kept") / "a.flac")
    box.start()
    fresh = TakeStore(box.store_dir)
    assert a.id in fresh.ids()
    assert fresh.load(a.id).audio.shape == a.audio.shape
    box.assert_untouched()


@pytest.mark.parametrize("name", ["lock", "index.json", "revision", "id"])
def test_the_stores_own_files_are_never_written_through_links(box, name):
    store, takes = saved_store(box)
    own = box.store_dir / ".takestore" / name
    own.unlink(missing_ok=True)
    own.symlink_to(box.outside / "precious.txt")
    box.start()
    fresh = TakeStore(box.store_dir)
    assert fresh.ids() == [t.id for t in takes]
    if name == "lock":  # the lock cannot be taken through a link: the store can be read, not changed
        with pytest.raises(TakeStoreError, match="cannot lock"):
            fresh.save(make_take())
    else:  # the link is replaced by the store's own file
        fresh.save(make_take(seed=9))
        fresh.rename(takes[0].id, "renamed")
        assert len(fresh.ids()) == 3 and not own.is_symlink()
    box.assert_untouched()


def test_stale_temporary_links_and_folders_are_handled_safely(box):
    from acestep_engine.takes.folder import HOST

    store, takes = saved_store(box)
    link = box.store_dir / f".tmp-999999999@{HOST}-abc-x.flac"
    link.symlink_to(box.outside / "song.flac")
    folder = box.store_dir / f".tmp-999999999@{HOST}-abc-dir"
    folder.mkdir()
    (folder / "inside").write_text("x")
    box.start()
    fresh = TakeStore(box.store_dir)  # the stale temporary link is removed, never what it points to
    assert not os.path.lexists(link) and (folder / "inside").is_file()
    assert fresh.ids() == [t.id for t in takes]
    box.assert_untouched()


# ---------------------------------------------------------------------------------- audio against its sidecar

def _replace_audio(box, take, audio, rate):
    path = box.store_dir / f"{take.id}.flac"
    path.unlink()
    sf.write(str(path), np.asarray(audio, np.float32).T, rate, format="FLAC", subtype="PCM_16")


@pytest.fixture
def decoded_frames(monkeypatch):
    """The most frames any SoundFile.read was asked to decode."""
    asked = [0]
    real = sf.SoundFile.read

    def read(self, frames=-1, *args, **kwargs):
        asked[0] = max(asked[0], self.frames if frames < 0 else frames)
        return real(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", read)
    return asked


def test_audio_of_another_rate_and_channels_is_a_named_mismatch(box, decoded_frames):
    store, (a, _) = saved_store(box, rate=48000, seconds=0.05)
    _replace_audio(box, a, np.zeros((1, 400)), 8000)
    with pytest.raises(TakeStoreError) as info:
        store.load(a.id)
    message = str(info.value)
    assert "does not match its sidecar" in message and "8000 Hz, 1 channel, 400 samples" in message
    assert "48000 Hz, 2 channels, 2,400 samples" in message and decoded_frames[0] == 0


def test_ninety_minutes_under_a_short_sidecar_are_never_decoded(box, decoded_frames):
    store, (a, _) = saved_store(box, rate=8000, seconds=0.1, channels=1)
    minutes = 90
    _replace_audio(box, a, np.zeros((1, minutes * 60 * 8000), np.float32), 8000)  # silence: a small FLAC
    assert (box.store_dir / f"{a.id}.flac").stat().st_size < 8 << 20
    started = time.perf_counter()
    with pytest.raises(TakeStoreError, match=r"43,200,000 samples \(5400.00 s\).*the sidecar says 8000 Hz, 1 channel, "
                                             r"800 samples"):
        store.load(a.id)
    assert decoded_frames[0] == 0 and time.perf_counter() - started < 30


def test_a_header_that_claims_less_than_the_file_holds_decodes_only_what_the_sidecar_says(box, decoded_frames):
    store, (a, _) = saved_store(box, rate=8000, seconds=0.1, channels=1)
    long = np.random.default_rng(1).uniform(-0.1, 0.1, (1, 60 * 8000)).astype(np.float32)
    _replace_audio(box, a, long, 8000)
    data = bytearray((box.store_dir / f"{a.id}.flac").read_bytes())
    packed = int.from_bytes(data[18:26], "big")  # STREAMINFO: the low 36 bits are the total sample count
    data[18:26] = ((packed & ~((1 << 36) - 1)) | 800).to_bytes(8, "big")
    (box.store_dir / f"{a.id}.flac").write_bytes(bytes(data))
    take = store.load(a.id)
    assert take.audio.shape == (1, 800) and decoded_frames[0] == 801


def test_a_truncated_audio_file_is_a_named_mismatch(box):
    store, (a, _) = saved_store(box, rate=8000, seconds=2.0, channels=1)
    path = box.store_dir / f"{a.id}.flac"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(TakeStoreError, match=f"{a.id}: .*(holds only|unreadable)"):
        store.load(a.id)


def test_huge_latents_are_refused_before_they_are_read(box):
    store, (a, _) = saved_store(box)
    path = box.store_dir / f"{a.id}.latents.safetensors"
    with open(path, "r+b") as f:
        f.truncate(4 << 30)  # sparse: 4 GB that take no disk
    with pytest.raises(TakeStoreError, match="more than the take's audio"):
        store.load(a.id)


# ---------------------------------------------------------------------------------- tampered caches

def _tamper_index(box, change):
    path = box.store_dir / ".takestore" / "index.json"
    data = json.loads(path.read_text())
    change(data["entries"])
    path.write_text(json.dumps(data))


def test_a_tampered_index_record_is_checked_like_a_sidecar(box):
    store, (a, b) = saved_store(box)
    store.list()

    def inject(entries):
        entries[a.id]["record"]["name"] = 5  # the stat key still matches its sidecar
        entries[a.id]["record"]["task"] = "not a mapping"
        entries[b.id]["record"]["id"] = a.id  # a duplicate id
        entries["injected"] = {"key": entries[a.id]["key"], "record": {**entries[a.id]["record"], "id": "injected"}}

    _tamper_index(box, inject)
    box.start()
    fresh = TakeStore(box.store_dir)
    assert fresh.ids() == [a.id, b.id]
    assert [r["name"] for r in fresh.list()] == ["", ""]
    assert [r["id"] for r in fresh.list(task="text2music")] == [a.id, b.id]
    assert [r["id"] for r in fresh.list(search="HOSTILE")] == [a.id, b.id]
    assert fresh.list(search="nothing like it") == [] and fresh.problems == []
    box.assert_untouched()


def test_an_index_that_hides_a_good_take_is_not_believed(box):
    store, (a, b) = saved_store(box)
    store.list()
    _tamper_index(box, lambda entries: entries[a.id].update(record=None, problem="hidden"))
    assert TakeStore(box.store_dir).ids() == [a.id, b.id]


def test_an_index_of_every_wrong_shape_is_only_a_cache(box):
    store, takes = saved_store(box)
    path = box.store_dir / ".takestore" / "index.json"
    for content in ("[]", '{"version": 2, "entries": []}', '{"version": 2, "entries": {"x": 5}}',
                    '{"version": 2, "entries": {"' + takes[0].id + '": {"key": "k", "record": {}}}}',
                    '{"version": 2, "entries": {"' + takes[0].id + '": {"key": [1, 2, 3], "record": []}}}',
                    "9" * 5000, "[" * 100000):
        path.write_text(content)
        assert TakeStore(box.store_dir).ids() == [t.id for t in takes], content[:40]


def test_an_index_larger_than_its_takes_could_make_is_not_read(box, monkeypatch):
    store, takes = saved_store(box)
    store.list()
    path = box.store_dir / ".takestore" / "index.json"
    with open(path, "r+b") as f:
        f.truncate(1 << 30)  # sparse
    read = []
    real = json.loads
    monkeypatch.setattr(json, "loads", lambda raw, *a, **k: read.append(len(raw)) or real(raw, *a, **k))
    assert TakeStore(box.store_dir).ids() == [t.id for t in takes]
    assert max(read, default=0) < MAX_SIDECAR_BYTES


# ---------------------------------------------------------------------------------- odd names, pipes, huge files

def test_file_names_that_are_not_utf8_are_listed_and_reported_printably(box):
    store, takes = saved_store(box)
    folder = os.fsencode(box.store_dir)
    for raw in (b"\xff\xfe.json", b"caf\xe9.flac", b"\xed\xa0\x80.wav", b"ok\x80name.json"):
        with open(os.path.join(folder, raw), "wb") as f:
            f.write(b"{}")
    os.makedirs(os.path.join(folder, b".trash"), exist_ok=True)
    with open(os.path.join(folder, b".trash", b"\xff.json"), "wb") as f:
        f.write(b"x")
    box.start()
    fresh = TakeStore(box.store_dir)  # the first list() of a fresh store used to raise UnicodeEncodeError
    assert fresh.ids() == [t.id for t in takes]
    problems = fresh.problems
    assert len(problems) == 4
    for problem in problems:
        text = str(problem)
        text.encode("utf-8")
        json.dumps({"problem": text}, ensure_ascii=False).encode("utf-8")
    assert any("\\xff\\xfe.json" in str(p) for p in problems) and any("caf\\xe9.flac" in str(p) for p in problems)
    assert json.loads((box.store_dir / ".takestore" / "index.json").read_text())["entries"].keys() == \
        {t.id for t in takes}
    fresh.empty_trash()
    assert os.listdir(os.path.join(folder, b".trash")) == []
    assert len(os.listdir(folder)) == 2 + 2 * 3 + 4  # the odd files are left where they are
    box.assert_untouched()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.parametrize("where", ["sidecar", "audio", "index", "journal entry", "revision", "id"])
def test_a_named_pipe_is_never_opened_for_reading(box, where):
    store, (a, b) = saved_store(box)
    path = {"sidecar": box.store_dir / f"{a.id}.json", "audio": box.store_dir / f"{a.id}.flac",
            "index": box.store_dir / ".takestore" / "index.json",
            "journal entry": journal_dir(box) / "00000000000000000001-pipe.json",
            "revision": box.store_dir / ".takestore" / "revision", "id": box.store_dir / ".takestore" / "id"}[where]
    path.parent.mkdir(exist_ok=True)
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    def open_and_list():
        store = TakeStore(box.store_dir)
        return store.ids(), store.problems, store.revision

    done, result = finishes(open_and_list)
    assert done, f"opening a store with a pipe as its {where} blocked"
    assert not isinstance(result, Exception), result
    ids = result[0]
    assert b.id in ids and (a.id in ids) == (where not in ("sidecar", "audio"))
    if where == "audio":
        done, error = finishes(lambda: TakeStore(box.store_dir).load(a.id))
        assert done and isinstance(error, TakeStoreError)


def test_a_200_mb_sidecar_is_a_named_problem_and_never_read(box, monkeypatch):
    store, (a, b) = saved_store(box)
    with open(sidecar(box, a), "r+b") as f:
        f.truncate(200 << 20)  # sparse
    read = []
    real = json.loads
    monkeypatch.setattr(json, "loads", lambda raw, *args, **kw: read.append(len(raw)) or real(raw, *args, **kw))
    fresh = TakeStore(box.store_dir)
    assert fresh.ids() == [b.id]
    assert [p.path for p in fresh.problems] == [str(sidecar(box, a))]
    assert "is 200.0 MB; a sidecar may be at most 1.0 MB" in str(fresh.problems[0])
    assert max(read, default=0) < MAX_SIDECAR_BYTES
    assert (box.store_dir / ".takestore" / "index.json").stat().st_size < 64 << 10
    with pytest.raises(TakeStoreError, match="at most 1.0 MB"):
        fresh.load(a.id)


def test_a_save_whose_sidecar_would_pass_the_cap_is_refused_whole(box):
    store = TakeStore(box.store_dir)
    with pytest.raises(TakeStoreError, match=r"sidecar would be [\d,]+ bytes and a sidecar may be at most 1,048,576"):
        store.save(make_take(notes={"blob": "x" * MAX_SIDECAR_BYTES}))
    take = make_take()
    store.save(take)
    with pytest.raises(TakeStoreError, match="may be at most"):
        store.update_notes(take.id, blob="y" * MAX_SIDECAR_BYTES)
    assert store.ids() == [take.id] and store.record(take.id)["notes"] == {}
    assert {p.name for p in box.store_dir.iterdir()} == {".takestore", f"{take.id}.flac", f"{take.id}.json",
                                                         f"{take.id}.latents.safetensors"}


def test_a_huge_journal_entry_is_set_aside_unread(box):
    store, takes = saved_store(box)
    journal_dir(box).mkdir(exist_ok=True)
    entry = journal_dir(box) / "00000000000000000001-huge.json"
    with open(entry, "wb") as f:
        f.truncate(2 << 30)  # sparse
    fresh = TakeStore(box.store_dir)
    assert fresh.ids() == [t.id for t in takes] and "larger than a journal entry can be" in messages(fresh)


@pytest.mark.parametrize("digits", [5000, 100_000])
def test_a_sidecar_with_an_enormous_number_is_a_named_problem(box, digits):
    store, (a, b) = saved_store(box)
    text = sidecar(box, a).read_text()
    sidecar(box, a).write_text(text.replace('"seed": 1', '"seed": ' + "9" * digits))
    fresh = TakeStore(box.store_dir)
    assert fresh.ids() == [b.id]
    assert "number too long" in messages(fresh) or "must be from" in messages(fresh)


# ---------------------------------------------------------------------------------- kills still lose nothing

@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked process")
def test_a_killed_delete_is_still_finished_with_the_marker(tmp_path):
    """The marker does not stop the store's own entries: a process killed mid-delete is finished by the next."""
    code = ("import os, sys, time\nsys.path.insert(0, sys.argv[2])\nfrom hostile import make_take\n"
            "from acestep_engine import TakeStore\nreal = os.replace\ncount = [0]\n"
            "def replace(src, dst):\n    count[0] += 1\n    if count[0] == 2:\n        print('mid', flush=True)\n"
            "        time.sleep(60)\n    return real(src, dst)\n"
            "store = TakeStore(sys.argv[1])\ntake = make_take(take_id='victim')\nstore.save(take)\n"
            "os.replace = replace\nstore.delete('victim')\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(Path(__file__).parent)],
                             stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    assert child.stdout.readline().strip() == "mid"
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    store = TakeStore(tmp_path)
    assert store.recovered and store.trashed() == ["victim"] and store.ids() == [] and store.problems == []


# ---------------------------------------------------------------------------------- the sandbox itself

@pytest.mark.parametrize("trespass", ["open for writing through a link", "open read-write, nothing written",
                                      "remove through a linked folder", "create beside the store"])
def test_the_sandbox_sees_every_kind_of_trespass(box, trespass):
    (box.store_dir / "link.txt").symlink_to(box.outside / "precious.txt")
    (box.store_dir / "sub").symlink_to(box.outside, target_is_directory=True)
    box.start()
    if trespass == "open for writing through a link":
        with open(box.store_dir / "link.txt", "a") as f:
            f.write("x")
    elif trespass == "open read-write, nothing written":
        os.close(os.open(box.store_dir / "link.txt", os.O_RDWR))
    elif trespass == "remove through a linked folder":
        os.unlink(box.store_dir / "sub" / "song.flac")
    else:
        (box.root / "new.txt").write_text("x")
    with pytest.raises(AssertionError, match="outside the store"):
        box.assert_untouched()
