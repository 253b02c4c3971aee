"""The take store as a small database: ids, atomic changes, recovery, bad sidecars, failed saves,
the index, the revision token, kills and two processes at once."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from acestep_engine import Blueprint, Take, TakeStore, TakeStoreError
from acestep_engine.takes.record import TAKE_ID_PATTERN, check_record, check_take_id, new_take_id

ROOT = Path(__file__).resolve().parents[1]
INFRA = {".takestore", ".trash"}


def make_take(take_id=None, seconds=0.05, rate=8000, seed=3, caption="db take", **changes):
    rng = np.random.default_rng(seed if isinstance(seed, int) else 0)
    fields = dict(id=new_take_id() if take_id is None and "id" not in changes else take_id, audio=rng.uniform(-0.5, 0.5, (2, int(seconds * rate))).astype(np.float32),
                  sample_rate=rate, seed=seed, blueprint=Blueprint(caption=caption), task={"name": "text2music"},
                  model={"variant": "tiny"}, sampling={"steps": 8}, timings={"total_s": 0.1},
                  latents=rng.standard_normal((4, 8)).astype(np.float32))
    fields.update(changes)
    return Take(**fields)


def visible_files(folder: Path) -> set[str]:
    """Everything in the folder but the store's own bookkeeping."""
    return {p.name for p in folder.iterdir() if p.name not in INFRA}


# ---------------------------------------------------------------------------------- ids

BAD_IDS = ["../escaped", "", "a/b", "a\\b", ".", "..", ".hidden", "a.b", "-lead", "x" * 129, "a b", "é", "a\x00b",
           "C:evil", "/abs", None, 5, b"bytes", ("t",)]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_ids_are_refused_everywhere_naming_id_and_pattern(tmp_path, bad):
    store = TakeStore(tmp_path / "store")
    with pytest.raises(TakeStoreError) as info:
        store.save(make_take(id=bad))
    assert repr(bad) in str(info.value) and TAKE_ID_PATTERN in str(info.value)
    assert visible_files(tmp_path / "store") == set() and sorted(os.listdir(tmp_path)) == ["store"]
    for call in (store.load, store.record, store.delete, store.undelete, lambda i: store.rename(i, "n")):
        with pytest.raises(TakeStoreError, match="is not valid"):
            call(bad)
    assert bad not in store


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=140))
def test_any_text_id_is_either_a_plain_stem_or_refused(take_id):
    try:
        check_take_id(take_id)
    except TakeStoreError as exc:
        assert TAKE_ID_PATTERN in str(exc)
    else:
        assert take_id and "/" not in take_id and "\\" not in take_id and "." not in take_id
        assert Path(take_id).name == take_id and len(take_id) <= 128


def test_new_ids_are_valid_and_distinct():
    ids = {new_take_id() for _ in range(2000)}
    assert len(ids) == 2000 and all(check_take_id(i) for i in ids)


# ---------------------------------------------------------------------------------- failed saves

def _lone_surrogate_caption():
    return dict(blueprint=Blueprint(caption="bad \udc80 text"))


FAILING_SAVES = {
    "lone surrogate in caption": (_lone_surrogate_caption, "blueprint.caption"),
    "lone surrogate in name": (lambda: dict(name="x\ud800"), "name"),
    "nan in notes": (lambda: dict(notes={"score": np.float32("nan")}), "notes.score"),
    "inf in timings": (lambda: dict(timings={"total_s": float("inf")}), "timings.total_s"),
    "object in notes": (lambda: dict(notes={"x": object()}), "notes.x"),
    "set in sampling": (lambda: dict(sampling={"steps": {1, 2}}), "sampling.steps"),
    "tuple key": (lambda: dict(notes={(1, 2): 3}), "notes"),
    "nan audio": (lambda: dict(audio=np.full((2, 100), np.nan, np.float32)), "NaN or infinite"),
    "inf audio": (lambda: dict(audio=np.array([[0.0, np.inf]], np.float32)), "NaN or infinite"),
    "0-sample audio": (lambda: dict(audio=np.zeros((2, 0), np.float32)), "empty"),
    "3-d audio": (lambda: dict(audio=np.zeros((1, 2, 100), np.float32)), "dimensions"),
    "samples-major audio": (lambda: dict(audio=np.zeros((100, 2), np.float32)), "channels, samples"),
    "string audio": (lambda: dict(audio="loud"), "numeric array"),
    "complex audio": (lambda: dict(audio=np.zeros((2, 10), np.complex64)), "real numbers"),
    "sample rate 0": (lambda: dict(sample_rate=0), "sample_rate"),
    "sample rate -8000": (lambda: dict(sample_rate=-8000), "sample_rate"),
    "sample rate nan": (lambda: dict(sample_rate=float("nan")), "sample_rate"),
    "nan latents": (lambda: dict(latents=np.full((4, 8), np.nan, np.float32)), "latents"),
    "1-d latents": (lambda: dict(latents=np.zeros(8, np.float32)), "latents"),
    "float seed": (lambda: dict(seed=1.5), "seed"),
    "task None": (lambda: dict(task=None), "task"),
    "name number": (lambda: dict(name=5), "name"),
    "bad parent": (lambda: dict(parent_id="../up"), "parent_id"),
    "blueprint dict": (lambda: dict(blueprint={"caption": "x"}), "blueprint"),
}


@pytest.mark.parametrize("case", sorted(FAILING_SAVES))
def test_a_save_that_fails_leaves_nothing_behind(tmp_path, case):
    changes, named = FAILING_SAVES[case]
    store = TakeStore(tmp_path, audio_format="wav")
    with pytest.raises(TakeStoreError, match=named.replace("[", r"\[").replace(".", r"\.")):
        store.save(make_take(**changes()))
    assert visible_files(tmp_path) == set()
    assert store.ids() == [] and store.problems == []


def test_numpy_values_in_the_sidecar_are_converted(tmp_path):
    store = TakeStore(tmp_path)
    take = make_take(seed=np.int64(7), notes={"score": np.float32(0.5), "arr": np.arange(3), "n": np.int16(2)},
                     timings={"total_s": np.float64(1.25)})
    store.save(take)
    record = store.record(take.id)
    assert record["seed"] == 7 and record["notes"] == {"score": 0.5, "arr": [0, 1, 2], "n": 2}
    assert store.load(take.id).timings == {"total_s": 1.25}


def test_a_save_killed_while_writing_leaves_nothing(tmp_path, monkeypatch):
    """An error while the latents are being written (disk full) removes the audio already written."""
    import safetensors.numpy

    store = TakeStore(tmp_path)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.numpy, "save", disk_full)
    with pytest.raises(OSError):
        store.save(make_take())
    assert visible_files(tmp_path) == set()


# ---------------------------------------------------------------------------------- bad sidecars

BAD_SIDECARS = {
    "list": "[]",
    "empty object": "{}",
    "number": "5",
    "no id": lambda r: r.pop("id"),
    "created 5": lambda r: r.update(created=5),
    "created not a date": lambda r: r.update(created="yesterday"),
    "task null": lambda r: r.update(task=None),
    "task a list": lambda r: r.update(task=["cover"]),
    "task name 5": lambda r: r.update(task={"name": 5}),
    "name 5": lambda r: r.update(name=5),
    "name list": lambda r: r.update(name=["a"]),
    "seed text": lambda r: r.update(seed="7"),
    "seed true": lambda r: r.update(seed=True),
    "sample_rate 0": lambda r: r.update(sample_rate=0),
    "sample_rate float": lambda r: r.update(sample_rate=44100.5),
    "blueprint list": lambda r: r.update(blueprint=[]),
    "blueprint unknown field": lambda r: r["blueprint"].update(tempo=120),
    "model null": lambda r: r.update(model=None),
    "notes list": lambda r: r.update(notes=[]),
    "parent escapes": lambda r: r.update(parent_id="../x"),
    "audio_file escapes": lambda r: r.update(audio_file="../../etc/passwd"),
    "id of another take": lambda r: r.update(id="someone-else"),
    "id with separator": lambda r: r.update(id="a/b"),
    "not json": "{half",
    "deeply nested": "[" * 100_000 + "]" * 100_000,
    "not utf-8": b"{\"id\": \"\xff\xfe\"}",
    "nan literal": lambda r: r.update(seed=float("nan")),
}


@pytest.mark.parametrize("case", sorted(BAD_SIDECARS))
def test_a_bad_sidecar_is_skipped_and_reported(tmp_path, case):
    store = TakeStore(tmp_path)
    good, victim = make_take(caption="good"), make_take(seed=4)
    store.save(good)
    store.save(victim)
    path = tmp_path / f"{victim.id}.json"
    damage = BAD_SIDECARS[case]
    if callable(damage):
        record = json.loads(path.read_text())
        damage(record)
        path.write_text(json.dumps(record))
    else:
        path.write_bytes(damage if isinstance(damage, bytes) else damage.encode())
    for fresh in (store, TakeStore(tmp_path)):  # the store object that saw it good, and a new one
        assert [r["id"] for r in fresh.list()] == [good.id]
        assert [p.path for p in fresh.problems] == [str(path)]
        assert str(path) in str(fresh.problems[0])
        with pytest.raises(TakeStoreError, match=str(path).replace("\\", "\\\\")):
            fresh.load(victim.id)
    store.delete(victim.id)  # an unusable take can still be thrown away
    assert store.problems == [] and victim.id in store.trashed()


@settings(max_examples=150, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=12))
def test_check_record_never_fails_with_anything_but_a_store_error(value):
    base = make_take(take_id="t1").to_record()
    for candidate in (value, {**base, "task": value}, {**base, "blueprint": value}, {**base, "created": value},
                      {**base, "notes": value, "name": value}):
        try:
            check_record(candidate)
        except TakeStoreError:
            pass


def test_a_sidecar_without_audio_and_stray_audio_are_reported(tmp_path):
    store = TakeStore(tmp_path)
    a, b = make_take(), make_take(seed=5)
    store.save(a)
    store.save(b)
    (tmp_path / f"{a.id}.flac").unlink()
    (tmp_path / "orphan.flac").write_bytes(b"")
    assert store.ids() == [b.id]
    messages = sorted(str(p) for p in store.problems)
    assert any("audio file is missing" in m and a.id in m for m in messages)
    assert any("orphan.flac" in m and "no sidecar" in m for m in messages)
    assert (tmp_path / "orphan.flac").exists()  # reported, never deleted


# ---------------------------------------------------------------------------------- recovery

class Killed(BaseException):
    pass


def _die_after(monkeypatch, count):
    """os.replace works `count` times more, then the process 'dies' (a BaseException, like Ctrl-C)."""
    real = os.replace
    calls = {"n": 0}

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] > count:
            raise Killed()
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return lambda: monkeypatch.setattr(os, "replace", real)


@pytest.mark.parametrize("op", ["save", "delete", "undelete", "rename", "empty_trash"])
@pytest.mark.parametrize("survive", [0, 1, 2, 3])
def test_a_change_killed_at_any_rename_is_finished_or_absent(tmp_path, monkeypatch, op, survive):
    store = TakeStore(tmp_path)
    take = make_take()
    if op != "save":
        store.save(take)
    if op == "undelete" or op == "empty_trash":
        store.delete(take.id)
    restore = _die_after(monkeypatch, survive)
    try:
        if op == "save":
            store.save(take)
        elif op == "rename":
            store.rename(take.id, "renamed")
        else:
            getattr(store, op)(take.id) if op != "empty_trash" else store.empty_trash()
        finished = True
    except Killed:
        finished = False
    restore()
    again = TakeStore(tmp_path)  # as after a restart: recovery runs
    present, trashed = take.id in again.ids(), take.id in again.trashed()
    journal_written = survive >= 1
    if op == "save":
        assert present == (finished or journal_written)
        assert not trashed
    elif op == "delete":
        assert trashed != present and trashed == (finished or journal_written)
    elif op == "undelete":
        assert trashed != present and present == (finished or journal_written)
    elif op == "rename":
        assert present and again.record(take.id)["name"] == ("renamed" if finished or journal_written else "")
    else:
        assert not present and trashed != (finished or journal_written)
    if present:
        np.testing.assert_array_equal(again.load(take.id).latents, take.latents)
    if trashed:
        again.undelete(take.id)
        again.load(take.id)
    assert again.problems == [] and not list((tmp_path / ".takestore" / "journal").glob("*"))
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_a_change_interrupted_before_the_folder_moved_is_finished_in_its_new_place(tmp_path, monkeypatch):
    store = TakeStore(tmp_path / "old")
    take = make_take()
    store.save(take)
    restore = _die_after(monkeypatch, 2)  # the journal entry and the sidecar's move to the trash
    with pytest.raises(Killed):
        store.delete(take.id)
    restore()
    os.replace(tmp_path / "old", tmp_path / "new")  # e.g. a synced drive mounted elsewhere
    again = TakeStore(tmp_path / "new")
    assert again.trashed() == [take.id] and again.ids() == [] and again.problems == []
    again.undelete(take.id)
    np.testing.assert_array_equal(again.load(take.id).latents, take.latents)


@pytest.mark.parametrize("entry", ['{"moves": [["../../x", "y"]], "removes": []}', '{"moves": [[1, 2]], "removes": []}',
                                   '{"moves": "x", "removes": []}', '[]', '{half', '{"moves": [], "removes": ["/etc/x"]}'])
def test_a_damaged_journal_entry_is_set_aside_and_reported(tmp_path, entry):
    TakeStore(tmp_path)
    journal = tmp_path / ".takestore" / "journal"
    journal.mkdir(exist_ok=True)
    (journal / "0001.json").write_text(entry)
    store = TakeStore(tmp_path)
    assert [p.path for p in store.problems] == [str(journal / "0001.json")]
    assert (journal / "0001.json.bad").exists() and not (journal / "0001.json").exists()


def test_temp_files_of_a_live_process_are_kept_and_of_a_dead_one_removed(tmp_path):
    from acestep_engine.takes import folder as takes_folder

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".tmp-{sleeper.pid}@{takes_folder.HOST}-abc-x.flac"
        live.write_bytes(b"half a take")
        TakeStore(tmp_path).save(make_take())
        assert live.exists()  # another kernel's save in progress is never touched
    finally:
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()
    TakeStore(tmp_path)
    assert not live.exists()
    other_host = tmp_path / f".tmp-{sleeper.pid}@00000000-abc-x.flac"
    other_host.write_bytes(b"x")
    TakeStore(tmp_path)
    assert other_host.exists()  # another machine's pid means nothing here: only age removes it
    os.utime(other_host, (0, 0))
    TakeStore(tmp_path)
    assert not other_host.exists()


# ---------------------------------------------------------------------------------- index and revision

def test_list_is_served_from_the_index(tmp_path, monkeypatch):
    store = TakeStore(tmp_path)
    takes = [make_take(seed=i) for i in range(5)]
    for take in takes:
        store.save(take)
    assert len(store.list()) == 5 and (tmp_path / ".takestore" / "index.json").is_file()
    reads = []
    real = TakeStore._checked_file
    monkeypatch.setattr(TakeStore, "_checked_file", lambda self, path: reads.append(path.name) or real(self, path))
    fresh = TakeStore(tmp_path)  # another process: only the index is read
    assert [r["id"] for r in fresh.list()] == [t.id for t in takes] and reads == []
    store.rename(takes[2].id, "changed")
    reads.clear()
    assert fresh.list()[2]["name"] == "changed" and reads == [f"{takes[2].id}.json"]
    (tmp_path / ".takestore" / "index.json").write_text("{damaged")
    reads.clear()
    assert len(TakeStore(tmp_path).list()) == 5 and len(reads) == 5  # rebuilt from the sidecars
    reads.clear()
    assert len(TakeStore(tmp_path).list()) == 5 and reads == []
    (tmp_path / ".takestore" / "index.json").unlink()
    assert len(TakeStore(tmp_path).list()) == 5 and (tmp_path / ".takestore" / "index.json").is_file()


def test_a_sidecar_edited_in_place_is_read_again(tmp_path):
    store = TakeStore(tmp_path)
    take = make_take()
    store.save(take)
    assert store.list()[0]["name"] == ""
    path = tmp_path / f"{take.id}.json"
    record = json.loads(path.read_text())
    record["name"] = "edited by hand, in place"
    with open(path, "r+") as f:  # same inode, as many editors write
        f.write(json.dumps(record))
        f.truncate()
    assert store.list()[0]["name"] == "edited by hand, in place"


def test_list_results_are_copies(tmp_path):
    store = TakeStore(tmp_path)
    take = make_take()
    store.save(take)
    store.list()[0]["name"] = "scribbled"
    assert store.list()[0]["name"] == ""


def test_revision_changes_with_every_change_from_any_store_object(tmp_path):
    a, b = TakeStore(tmp_path), TakeStore(tmp_path)
    take = make_take()
    seen = [a.revision]
    for change in (lambda: b.save(take), lambda: b.rename(take.id, "x"), lambda: b.delete(take.id),
                   lambda: b.undelete(take.id), lambda: b.delete(take.id), b.empty_trash):
        change()
        assert a.revision not in seen
        seen.append(a.revision)
        a.list()
        assert a.revision == seen[-1]  # reading changes nothing


def _save_one(folder):
    TakeStore(folder).save(make_take())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="uses a forked process")
def test_revision_changes_when_another_process_saves(tmp_path):
    import multiprocessing

    store = TakeStore(tmp_path)
    before = store.revision
    child = multiprocessing.get_context("fork").Process(target=_save_one, args=(tmp_path,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert store.revision != before and len(store.list()) == 1


# ---------------------------------------------------------------------------------- misc doors

def test_store_arguments_are_checked(tmp_path):
    with pytest.raises(TakeStoreError, match="audio_format"):
        TakeStore(tmp_path, audio_format="mp3")
    with pytest.raises(TakeStoreError, match="folder must be a path"):
        TakeStore(5)
    (tmp_path / "file").write_text("x")
    with pytest.raises(TakeStoreError, match="file"):
        TakeStore(tmp_path / "file")
    store = TakeStore(tmp_path / "s")
    with pytest.raises(TakeStoreError, match="save expects a Take"):
        store.save({"id": "x"})
    with pytest.raises(TakeStoreError, match="format must be"):
        store.save(make_take(), format="ogg")
    take = make_take()
    store.save(take)
    for bad in (5, None, "x" * 300, "bad \udc80"):
        with pytest.raises(TakeStoreError, match="name"):
            store.rename(take.id, bad)
    with pytest.raises(TakeStoreError, match="search must be text"):
        store.list(search=5)
    with pytest.raises(TakeStoreError, match="not in the trash"):
        store.undelete(take.id)
    store.delete(take.id)
    store.save(take)
    with pytest.raises(TakeStoreError, match="in the store already"):
        store.undelete(take.id)


def test_resaving_in_another_format_replaces_the_take_whole(tmp_path):
    store = TakeStore(tmp_path)
    take = make_take()
    store.save(take)
    store.save(make_take(take_id=take.id, latents=None), format="wav")
    assert visible_files(tmp_path) == {f"{take.id}.wav", f"{take.id}.json"}
    assert store.load(take.id).latents is None
    store.delete(take.id)
    store.save(take)
    store.delete(take.id)  # the trash copy is replaced, not mixed with the old one
    assert {p.name for p in store.trash.iterdir()} == {f"{take.id}.flac", f"{take.id}.json",
                                                      f"{take.id}.latents.safetensors"}


# ---------------------------------------------------------------------------------- kills and processes

def _bench(script, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True,
                          env=env, timeout=600)


def test_kill_at_random_moments_loses_nothing():
    """The fast version of bench/store_kill.py (which runs 100 trials)."""
    result = _bench("store_kill.py", "--trials", "8", "--quiet", "--max-delay", "0.3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lost 0, unreadable 0; 0 trials failed" in result.stdout


def test_two_processes_save_into_one_folder():
    """The fast version of bench/store_concurrency.py (which saves 2 x 50 takes)."""
    started = time.perf_counter()
    result = _bench("store_concurrency.py", "--takes", "10", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "20 of 20 takes listed, 0 unreadable, 0 saves failed, 0 problems" in result.stdout
    assert time.perf_counter() - started < 300


# ---------------------------------------------------------------------------------- a model of the store


class StoreAgainstAModel(RuleBasedStateMachine):
    """Any sequence of saves, renames, deletes, undeletes and trash emptyings, through two store
    objects on one folder (as two kernels), agrees with a plain dict model of what should be there."""

    @initialize()
    def open(self):
        import tempfile

        self.folder = Path(tempfile.mkdtemp(prefix="store-model-"))
        self.stores = [TakeStore(self.folder), TakeStore(self.folder, audio_format="wav")]
        self.present, self.trashed, self.count = {}, set(), 0

    @rule(which=st.integers(0, 1), latents=st.booleans())
    def save(self, which, latents):
        self.count += 1
        take = make_take(take_id=f"take-{self.count}", seed=self.count, latents=None if not latents else
                         np.full((2, 3), self.count, np.float32))
        self.stores[which].save(take)
        self.present[take.id] = ""

    @precondition(lambda self: self.present)
    @rule(data=st.data(), name=st.one_of(st.text(max_size=12), st.sampled_from(["bad \udc80", "\ud800"])))
    def rename(self, data, name):
        take_id = data.draw(st.sampled_from(sorted(self.present)))
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            with pytest.raises(TakeStoreError):
                self.stores[0].rename(take_id, name)
            return
        self.stores[1].rename(take_id, name)
        self.present[take_id] = name

    @precondition(lambda self: self.present)
    @rule(data=st.data(), which=st.integers(0, 1))
    def delete(self, data, which):
        take_id = data.draw(st.sampled_from(sorted(self.present)))
        self.stores[which].delete(take_id)
        self.trashed.add(take_id)
        self.trashed_names = getattr(self, "trashed_names", {})
        self.trashed_names[take_id] = self.present.pop(take_id)

    @precondition(lambda self: self.trashed - set(self.present))
    @rule(data=st.data(), which=st.integers(0, 1))
    def undelete(self, data, which):
        take_id = data.draw(st.sampled_from(sorted(self.trashed - set(self.present))))
        self.stores[which].undelete(take_id)
        self.trashed.discard(take_id)
        self.present[take_id] = self.trashed_names[take_id]

    @rule()
    def empty_trash(self):
        self.stores[0].empty_trash()
        self.trashed.clear()

    @invariant()
    def agrees(self):
        if not hasattr(self, "stores"):
            return
        for store in self.stores:
            assert sorted(store.ids()) == sorted(self.present)
            assert {r["id"]: r["name"] for r in store.list()} == self.present
            assert set(store.trashed()) == self.trashed
            assert store.problems == []

    def teardown(self):
        import shutil

        if hasattr(self, "folder"):
            for take_id in list(self.present)[:3]:
                self.stores[0].load(take_id)
            shutil.rmtree(self.folder, ignore_errors=True)


StoreAgainstAModel.TestCase.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
test_store_agrees_with_a_model = StoreAgainstAModel.TestCase
