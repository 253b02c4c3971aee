"""Takes (generated audio with full provenance) and the folder that keeps them: a small database.

On disk a take is `<id>.flac` (or .wav), an optional `<id>.latents.safetensors` and a JSON
sidecar `<id>.json` holding everything needed to reproduce it; a deleted take is the same files
under `.trash/`. A take exists exactly when its sidecar does.

How a change stays whole when the process is killed at any instant:
- New file contents are written to temporary files named `.tmp-<pid>@<host>-...` first.
- Then, under an exclusive lock on `.takestore/lock` (fcntl/msvcrt, so two processes or kernels can share
  one folder), the change is written down as a journal entry in `.takestore/journal/` (write, fsync,
  rename: the entry exists whole or not at all), the files are renamed into place in an order
  that keeps the take invisible until it is complete (the sidecar last when a take appears,
  first when it goes), and the entry is removed.
- Whoever takes the lock next (opening a store, any change, or a listing that sees a journal)
  first replays the entries a killed process left: every rename is idempotent, so a take ends
  fully present or fully in the trash. Temporary files are removed only when the process that
  wrote them is gone (or they are a day old): another live process's save is never touched.

`list()` is served from `.takestore/index.json`, a cache of validated sidecars keyed by their size, mtime
and inode; only changed sidecars are read again. `revision` changes whenever any process
changes the store. A sidecar that cannot be used is skipped and described in `problems`.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import re
import secrets
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import TakeStoreError
from ..json_files import read_json
from .audio_io import AudioFileError, check_audio_array, check_format, check_sample_rate, encode_audio, read_audio

FORMAT_VERSION = 1
INDEX_VERSION = 1
TAKE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}"  # no dots, no separators: a take id is a plain file stem
_TAKE_ID_RE = re.compile(TAKE_ID_PATTERN)
MAX_NAME_CHARS = 256
STALE_TEMP_SECONDS = 24 * 3600  # a temporary file this old is stale even if its pid is alive (pid reuse)
AUDIO_EXTENSIONS = ("flac", "wav")
LATENTS_SUFFIX = ".latents.safetensors"


_issued_lock = threading.Lock()
_issued: tuple[str, set] = ("", set())  # this process's ids of the current millisecond


def new_take_id() -> str:
    """Unique and roughly time-sortable: `YYYYMMDD-HHMMSS-mmm-xxxxxxxx` (UTC, milliseconds, 32 random
    bits). Never repeated within a process (a batch saves many takes in one millisecond); across
    processes a repeat needs the same millisecond and the same 32 bits."""
    global _issued
    with _issued_lock:
        while True:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")[:-3]
            if _issued[0] != stamp:
                _issued = (stamp, set())
            suffix = secrets.token_hex(4)
            if suffix not in _issued[1]:
                _issued[1].add(suffix)
                return f"{stamp}-{suffix}"


def check_take_id(take_id, what: str = "take id") -> str:
    """Return `take_id` if it matches TAKE_ID_PATTERN, else raise TakeStoreError naming it and the pattern."""
    if not isinstance(take_id, str) or not _TAKE_ID_RE.fullmatch(take_id):
        raise TakeStoreError(f"{what} {take_id!r} is not valid: ids match {TAKE_ID_PATTERN} "
                             "(letters, digits, '_' and '-', no separators, not empty, at most 128 characters)")
    return take_id


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass
class Take:
    """One generated result. `audio` is float32 `[channels, samples]` at `sample_rate`;
    `latents` float32 `[frames, latent_channels]`."""

    id: str
    audio: np.ndarray
    sample_rate: int
    seed: int
    blueprint: object
    task: dict
    model: dict
    sampling: dict
    timings: dict
    latents: np.ndarray | None = None
    parent_id: str | None = None
    name: str = ""
    created: str = field(default_factory=_now)
    batch_index: int = 0
    notes: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.audio.shape[-1] / self.sample_rate

    @property
    def channels(self) -> int:
        return int(self.audio.shape[0])

    @property
    def title(self) -> str:
        return self.name or self.id

    def restore(self):
        """The blueprint that made this take, to put back into an editor and iterate on."""
        from ..blueprint import Blueprint

        return Blueprint.from_dict(self.blueprint.to_dict())

    def as_source(self) -> "Take":
        """This take as the source of the next task (cover, repaint, extend, tracks). Tasks accept
        takes directly; the new take then records this one as its parent."""
        return self

    def to_record(self) -> dict:
        return {
            "format_version": FORMAT_VERSION, "id": self.id, "name": self.name, "created": self.created,
            "parent_id": self.parent_id, "seed": self.seed, "batch_index": self.batch_index,
            "sample_rate": self.sample_rate, "channels": self.channels, "samples": int(self.audio.shape[-1]),
            "duration": self.duration, "blueprint": self.blueprint.to_dict(), "task": self.task,
            "model": self.model, "sampling": self.sampling, "timings": self.timings, "notes": self.notes,
        }

    @classmethod
    def from_record(cls, record: dict, audio: np.ndarray, latents: np.ndarray | None = None) -> "Take":
        from ..blueprint import Blueprint

        return cls(id=record["id"], audio=audio, sample_rate=int(record["sample_rate"]), seed=int(record["seed"]),
                   blueprint=Blueprint.from_dict(record["blueprint"]), task=record["task"], model=record["model"],
                   sampling=record["sampling"], timings=record.get("timings", {}), latents=latents,
                   parent_id=record.get("parent_id"), name=record.get("name", ""),
                   created=record.get("created", _now()), batch_index=int(record.get("batch_index", 0)),
                   notes=record.get("notes", {}))

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        task = self.task.get("name", "?") if isinstance(self.task, dict) else "?"
        return f"Take(id={self.id!r}, {label}{self.duration:.1f} s, seed={self.seed}, {task})"


# ---------------------------------------------------------------------------------- checking records

def _jsonable(value, where: str):
    """`value` as plain JSON types: numpy scalars and arrays converted, tuples as lists. Refuses
    non-finite numbers, text that is not valid Unicode (lone surrogates) and other types, naming `where`."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TakeStoreError(f"{where} holds text that cannot be written as UTF-8 ({exc.reason} at "
                                 f"character {exc.start}: {value[exc.start:exc.end]!r})") from None
        return value
    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, (bytes, complex)):
            raise TakeStoreError(f"{where} must be a JSON value (got numpy {type(value).__name__})")
        return _jsonable(value, where)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        if not math.isfinite(value):
            raise TakeStoreError(f"{where} must be a finite number (got {value!r})")
        return float(value)
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist(), where)
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, np.generic):
                key = key.item()
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TakeStoreError(f"{where} has a key {key!r} of type {type(key).__name__}; keys must be text")
            key = _jsonable(str(key), f"{where} key")
            out[key] = _jsonable(item, f"{where}.{key}")
        return out
    raise TakeStoreError(f"{where} must hold only JSON values (text, numbers, lists, mappings); "
                         f"got {type(value).__name__}")


def _expect(record: dict, key: str, types, label: str, optional: bool = False):
    if key not in record:
        if optional:
            return None
        raise TakeStoreError(f"lacks the field {key!r}")
    value = record[key]
    if optional and value is None:
        return None
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise TakeStoreError(f"field {key!r} must be {label} (got {value!r})")
    if not isinstance(value, types):
        raise TakeStoreError(f"field {key!r} must be {label} (got {type(value).__name__} {value!r:.60})")
    return value


def check_record(record) -> dict:
    """Raise TakeStoreError (without a path; the caller adds it) if a sidecar record is unusable."""
    from ..blueprint import Blueprint
    from ..errors import BlueprintError

    if not isinstance(record, dict):
        raise TakeStoreError(f"must hold a JSON object (got {type(record).__name__})")
    check_take_id(_expect(record, "id", str, "text"), "field 'id'")
    _expect(record, "name", str, "text", optional=True)
    created = _expect(record, "created", str, "an ISO date text", optional=True)
    if created is not None:
        try:
            datetime.fromisoformat(created)
        except ValueError:
            raise TakeStoreError(f"field 'created' must be an ISO date (got {created!r:.60})") from None
    parent = _expect(record, "parent_id", str, "a take id or null", optional=True)
    if parent is not None:
        check_take_id(parent, "field 'parent_id'")
    _expect(record, "seed", int, "a whole number")
    _expect(record, "batch_index", int, "a whole number", optional=True)
    rate = _expect(record, "sample_rate", int, "a whole number of Hz")
    if rate <= 0:
        raise TakeStoreError(f"field 'sample_rate' must be positive (got {rate})")
    for key in ("task", "model", "sampling"):
        _expect(record, key, dict, "a JSON object")
    for key in ("timings", "notes"):
        _expect(record, key, dict, "a JSON object", optional=True)
    task_name = record["task"].get("name")
    if task_name is not None and not isinstance(task_name, str):
        raise TakeStoreError(f"field 'task.name' must be text (got {task_name!r:.60})")
    try:
        Blueprint.from_dict(_expect(record, "blueprint", dict, "a JSON object"))
    except BlueprintError as exc:
        raise TakeStoreError(f"field 'blueprint' is unusable ({exc})") from None
    audio_file = _expect(record, "audio_file", str, "a file name", optional=True)
    if audio_file is not None and (Path(audio_file).name != audio_file
                                   or audio_file not in (f"{record['id']}.{ext}" for ext in AUDIO_EXTENSIONS)):
        raise TakeStoreError(f"field 'audio_file' must be {record['id']}.flac or .wav (got {audio_file!r:.60})")
    return record


@dataclass(frozen=True)
class StoreProblem:
    """Something in the folder that is not a usable take; it is left untouched."""

    path: str
    message: str

    def __str__(self) -> str:
        return self.message if self.path in self.message else f"{self.path}: {self.message}"


# ---------------------------------------------------------------------------------- files and locks

_HOST = f"{zlib.crc32(socket.gethostname().encode()) & 0xFFFFFFFF:08x}"
_TEMP_RE = re.compile(r"\.tmp-(\d+)@([0-9a-f]{8})-")


def _temp_name(purpose: str) -> str:
    return f".tmp-{os.getpid()}@{_HOST}-{secrets.token_hex(6)}-{purpose}"


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


def _temp_is_stale(path: Path) -> bool:
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
    return host == _HOST and not _pid_alive(pid)


def _write_file(path: Path, data: bytes, sync: bool = False) -> None:
    """`sync` for the sidecar and the journal entry only: a kill needs no fsync at all (the page cache
    survives it), and each fsync costs tens of milliseconds on a busy disk."""
    with open(path, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def _encode_json(record: dict) -> bytes:
    return json.dumps(record, indent=2, ensure_ascii=False, allow_nan=False).encode("utf-8")


def _read_json(path: Path):
    """Parsed JSON, or TakeStoreError naming the file (bad UTF-8, bad JSON, too deeply nested)."""
    return read_json(path, TakeStoreError, expect=None)


class _FolderLock:
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


# ---------------------------------------------------------------------------------- the store

class TakeStore:
    """A folder of takes that survives restarts and kills, shared safely by several processes.

    Iterating yields take ids, oldest first. `list()` returns sidecar records without loading
    audio; `problems` lists what in the folder could not be used (and was left untouched).
    """

    def __init__(self, folder, audio_format: str = "flac"):
        if audio_format not in AUDIO_EXTENSIONS:
            raise TakeStoreError(f"audio_format must be 'flac' or 'wav' (got {audio_format!r})")
        if not isinstance(folder, (str, os.PathLike)):
            raise TakeStoreError(f"folder must be a path (got {type(folder).__name__})")
        self.folder = Path(folder)
        self.audio_format = audio_format
        if self.folder.exists() and not self.folder.is_dir():
            raise TakeStoreError(f"{self.folder} is not a folder")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TakeStoreError(f"cannot create the take folder {self.folder} ({exc.strerror})") from None
        if not self.folder.is_dir():
            raise TakeStoreError(f"{self.folder} is not a folder")
        try:
            (self.folder / ".takestore").mkdir(exist_ok=True)
        except OSError:
            pass  # a read-only folder: listed without lock, journal or index
        self._lock = _FolderLock(self.folder / ".takestore" / "lock")
        self._cache: dict[str, tuple[tuple, dict | None, str | None]] = {}  # id -> (stat key, record, problem)
        self._index_key = None
        self._problems: list[StoreProblem] = []
        self._open_problems: list[StoreProblem] = []  # found by recovery, kept for this store object
        self.recovered: list[str] = []  # what recovery finished on this store object, in plain words
        try:
            with self._lock:
                self._recover()
        except TakeStoreError as exc:  # a read-only folder can still be listed
            self._open_problems.append(StoreProblem(str(self.folder), f"recovery skipped: {exc}"))

    # ------------------------------------------------------------------ paths
    @property
    def trash(self) -> Path:
        return self.folder / ".trash"

    @property
    def _meta(self) -> Path:
        """The store's own files: lock, journal, index, revision counter (apart, so that writing the
        index does not touch the take folder's modification time that `revision` watches)."""
        return self.folder / ".takestore"

    @property
    def _journal(self) -> Path:
        return self._meta / "journal"

    @property
    def _index_path(self) -> Path:
        return self._meta / "index.json"

    @property
    def _revision_path(self) -> Path:
        return self._meta / "revision"

    def _sidecar(self, take_id: str, folder: Path | None = None) -> Path:
        return (folder or self.folder) / f"{take_id}.json"

    def _latents_path(self, take_id: str, folder: Path | None = None) -> Path:
        return (folder or self.folder) / f"{take_id}{LATENTS_SUFFIX}"

    def _files_of(self, take_id: str, folder: Path) -> list[Path]:
        """The take's files that exist in `folder`, sidecar first."""
        paths = [self._sidecar(take_id, folder), self._latents_path(take_id, folder)]
        paths += [folder / f"{take_id}.{ext}" for ext in AUDIO_EXTENSIONS]
        return [p for p in paths if p.is_file()]

    def _audio_path(self, take_id: str, folder: Path | None = None, record: dict | None = None) -> Path:
        folder = folder or self.folder
        names = [record["audio_file"]] if record and record.get("audio_file") else []
        names += [f"{take_id}.{ext}" for ext in AUDIO_EXTENSIONS]
        for name in names:
            if (folder / name).is_file():
                return folder / name
        raise TakeStoreError(f"take {take_id} has no audio file in {folder}")

    # ------------------------------------------------------------------ journal and recovery
    def _run(self, operation: str, take_id: str, moves=(), removes=(), temps: list | None = None) -> None:
        """Apply renames then removals as one change that survives a kill at any point.

        Caller holds the lock. `moves` are (source, target) paths, all sources fully written. Once
        the journal entry is down, the temporary files in `temps` belong to it (the list is emptied):
        if this process dies or fails from here on, the next change by anyone finishes the job."""
        entry = {"op": operation, "id": take_id, "pid": os.getpid(),
                 "moves": [[self._relative(src), self._relative(dst)] for src, dst in moves],
                 "removes": [self._relative(p) for p in removes]}
        self._journal.mkdir(exist_ok=True)
        name = f"{time.time_ns():020d}-{secrets.token_hex(4)}.json"
        tmp = self._journal / _temp_name("journal")
        try:
            _write_file(tmp, json.dumps(entry).encode(), sync=True)
            os.replace(tmp, self._journal / name)
        finally:
            tmp.unlink(missing_ok=True)
        if temps is not None:
            temps.clear()
        self._replay(entry)
        (self._journal / name).unlink()
        self._bump_revision()

    def _relative(self, path: Path) -> str:
        """Journal entries name files relative to the store, so a folder moved or mounted elsewhere
        (a synced drive) after a kill is still recovered."""
        return Path(path).relative_to(self.folder).as_posix()

    def _inside(self, relative: str) -> Path:
        if not isinstance(relative, str) or Path(relative).is_absolute() or ".." in Path(relative).parts:
            raise TakeStoreError(f"journal entry names a file outside the store: {relative!r:.80}")
        return self.folder / relative

    def _replay(self, entry: dict) -> list[str]:
        missing = []
        for src, dst in entry["moves"]:
            src, dst = self._inside(src), self._inside(dst)
            if src.exists():
                dst.parent.mkdir(exist_ok=True)
                os.replace(src, dst)
            elif not dst.exists():
                missing.append(src.name)
        for path in entry["removes"]:
            self._inside(path).unlink(missing_ok=True)
        return missing

    def _recover(self) -> None:
        """Finish changes that a killed process left half done, then drop its temporary files.
        Caller holds the lock, so no live change is in progress in any process."""
        changed = False
        if self._journal.is_dir():
            for path in sorted(self._journal.glob("*.json")):
                try:
                    entry = json.loads(path.read_text(encoding="utf-8"))
                    ok = (isinstance(entry, dict) and isinstance(entry.get("moves"), list)
                          and isinstance(entry.get("removes"), list))
                except (OSError, ValueError, RecursionError):
                    ok = False
                try:
                    missing = self._replay(entry) if ok else None
                except (TakeStoreError, ValueError, TypeError):
                    missing = None
                if missing is None:
                    self._open_problems.append(StoreProblem(str(path), "unusable journal entry (moved aside)"))
                    os.replace(path, path.with_name(path.name + ".bad"))
                    continue
                note = f"finished an interrupted {entry.get('op')} of take {entry.get('id')}"
                if missing:
                    note += f" (already absent: {', '.join(missing)})"
                self.recovered.append(note)
                path.unlink()
                changed = True
        for folder in (self.folder, self.trash, self._meta, self._journal):
            if folder.is_dir():
                for tmp in folder.glob(".tmp-*"):
                    if _temp_is_stale(tmp):
                        tmp.unlink(missing_ok=True)
        if changed:
            self._bump_revision()

    def _recover_if_needed(self) -> None:
        """A listing that sees a journal entry waits for the lock and finishes the change it describes."""
        journal = self._journal
        if journal.is_dir() and any(p.suffix == ".json" for p in journal.iterdir()):
            try:
                with self._lock:
                    self._recover()
            except TakeStoreError:
                pass

    # ------------------------------------------------------------------ revision
    def _read_counter(self) -> int:
        try:
            return int(self._revision_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _bump_revision(self) -> None:
        tmp = self._meta / _temp_name("revision")
        try:
            tmp.write_text(str(self._read_counter() + 1))
            os.replace(tmp, self._revision_path)
        finally:
            tmp.unlink(missing_ok=True)

    @property
    def revision(self) -> str:
        """A cheap token (one small read, two stats) that changes whenever any process changes the
        store through the API, and when files are added to or removed from the folder by hand."""
        stamps = []
        for folder in (self.folder, self.trash):
            try:
                st = os.stat(folder)
                stamps.append(f"{st.st_mtime_ns:x}")
            except FileNotFoundError:
                stamps.append("-")
        return f"{self._read_counter()}:{':'.join(stamps)}"

    # ------------------------------------------------------------------ writing
    def _checked_record(self, take: Take, audio_name: str) -> dict:
        if not isinstance(take, Take):
            raise TakeStoreError(f"save expects a Take (got {type(take).__name__})")
        check_take_id(take.id)
        if take.parent_id is not None:
            check_take_id(take.parent_id, "parent_id")
        if not isinstance(take.name, str) or len(take.name) > MAX_NAME_CHARS:
            raise TakeStoreError(f"name must be text of at most {MAX_NAME_CHARS} characters (got {take.name!r:.60})")
        if isinstance(take.seed, bool) or not isinstance(take.seed, numbers.Integral):
            raise TakeStoreError(f"seed must be a whole number (got {take.seed!r})")
        for key in ("task", "model", "sampling", "timings", "notes"):
            if not isinstance(getattr(take, key), dict):
                raise TakeStoreError(f"{key} must be a dict (got {type(getattr(take, key)).__name__})")
        if not hasattr(take.blueprint, "to_dict"):
            raise TakeStoreError(f"blueprint must be a Blueprint (got {type(take.blueprint).__name__})")
        record = {key: _jsonable(value, key) for key, value in take.to_record().items()}
        record["audio_file"] = audio_name
        try:
            check_record(record)
        except TakeStoreError as exc:
            raise TakeStoreError(f"take {take.id} cannot be saved: {exc}") from None
        return record

    def save(self, take: Take, format: str | None = None) -> Path:
        """Write the take (audio, latents, then the sidecar as the commit point); returns the audio path.

        Everything is checked before anything is written: the id (TAKE_ID_PATTERN), the audio
        (finite, `[channels, samples]`, at least one sample), the latents, and every field of the
        sidecar (numpy numbers become plain numbers; text that cannot be UTF-8 and NaN/Inf are
        refused naming the field). A save that fails or is killed leaves no trace of the take.
        Saving an id that is already in the store replaces that take.
        """
        if not isinstance(take, Take):
            raise TakeStoreError(f"save expects a Take (got {type(take).__name__})")
        try:
            format = check_format(format or self.audio_format)
            audio = check_audio_array(getattr(take, "audio", None), f"take {getattr(take, 'id', '?')!r}: audio")
            if audio.shape != np.shape(take.audio):
                raise AudioFileError(f"take {take.id!r}: audio must be [channels, samples] "
                                     f"(got shape {np.shape(take.audio)})")
            check_sample_rate(take.sample_rate, f"take {take.id!r}: sample_rate")
        except AudioFileError as exc:
            raise TakeStoreError(str(exc)) from None
        latents = None
        if take.latents is not None:
            latents = np.asarray(take.latents)
            if latents.ndim != 2 or latents.size == 0 or latents.dtype.kind not in "biuf" \
                    or not np.isfinite(latents).all():
                raise TakeStoreError(f"take {take.id!r}: latents must be a finite [frames, channels] array "
                                     f"(got shape {latents.shape}, dtype {latents.dtype})")
        audio_name = f"{take.id}.{format}"
        record = self._checked_record(take, audio_name)
        payload = _encode_json(record)

        temps = []
        try:
            audio_tmp = self.folder / _temp_name(audio_name)
            temps.append(audio_tmp)
            encode_audio(audio_tmp, audio, int(take.sample_rate), format)
            moves = []
            if latents is not None:
                from safetensors.numpy import save

                # Serialised here and written by us: safetensors' save_file uses temporary files of
                # its own (".tmpXXXXXX") that a kill would leave behind under a name we cannot own.
                latents_tmp = self.folder / _temp_name("latents")
                temps.append(latents_tmp)
                _write_file(latents_tmp, save({"latents": np.ascontiguousarray(latents, dtype=np.float32)}))
                moves.append((latents_tmp, self._latents_path(take.id)))
            sidecar_tmp = self.folder / _temp_name("sidecar")
            temps.append(sidecar_tmp)
            _write_file(sidecar_tmp, payload, sync=True)
            moves += [(audio_tmp, self.folder / audio_name), (sidecar_tmp, self._sidecar(take.id))]
            with self._lock:
                self._recover()
                stale = [p for p in self._files_of(take.id, self.folder)
                         if p.name != audio_name and not p.name.endswith(".json")
                         and not (latents is not None and p.name.endswith(LATENTS_SUFFIX))]
                self._run("save", take.id, moves, stale, temps)
        finally:
            for tmp in temps:
                if tmp.exists():
                    tmp.unlink()
        return self.folder / audio_name

    def _rewrite_sidecar(self, take_id: str, operation: str, change) -> dict:
        """Read the sidecar, apply `change(record)`, write it back atomically (the sidecar rename is
        the commit point); returns the new record."""
        check_take_id(take_id)
        with self._lock:
            self._recover()
            record = self.record(take_id)
            change(record)
            record = _jsonable(record, "sidecar")
            temps = [self.folder / _temp_name("sidecar")]
            try:
                _write_file(temps[0], _encode_json(record), sync=True)
                self._run(operation, take_id, [(temps[0], self._sidecar(take_id))], temps=temps)
            finally:
                for tmp in temps:
                    tmp.unlink(missing_ok=True)
        return record

    def rename(self, take_id: str, name: str) -> None:
        """Set the take's display name (text, at most MAX_NAME_CHARS characters; "" clears it)."""
        if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
            raise TakeStoreError(f"name must be text of at most {MAX_NAME_CHARS} characters (got {name!r:.60})")
        _jsonable(name, "name")
        self._rewrite_sidecar(take_id, "rename", lambda record: record.update(name=name))

    def update_notes(self, take_id: str, **notes) -> dict:
        """Merge `notes` (JSON-friendly values; numpy numbers are converted, NaN/Inf refused naming the
        note) into the take's sidecar notes, atomically; returns them all."""
        checked = {key: _jsonable(value, f"notes.{key}") for key, value in notes.items()}
        record = self._rewrite_sidecar(take_id, "update_notes",
                                       lambda record: record.update(notes={**(record.get("notes") or {}), **checked}))
        return record["notes"]

    def delete(self, take_id: str) -> str:
        """Move the take to `.trash/` (see `undelete`); a take of the same id already there is replaced."""
        check_take_id(take_id)
        with self._lock:
            self._recover()
            if not self._sidecar(take_id).is_file():  # an unusable sidecar may still be thrown away
                raise TakeStoreError(f"no take {take_id} in {self.folder}")
            self.trash.mkdir(exist_ok=True)
            files = self._files_of(take_id, self.folder)  # sidecar first: the take leaves listings at once
            names = {p.name for p in files}
            old = [p for p in self._files_of(take_id, self.trash) if p.name not in names]
            self._run("delete", take_id, [(p, self.trash / p.name) for p in files], old)
        return take_id

    def undelete(self, take_id: str) -> str:
        """Bring a deleted take back from `.trash/`."""
        check_take_id(take_id)
        with self._lock:
            self._recover()
            sidecar = self._sidecar(take_id, self.trash)
            if not sidecar.is_file():
                raise TakeStoreError(f"take {take_id} is not in the trash of {self.folder}")
            if self._sidecar(take_id).is_file():
                raise TakeStoreError(f"take {take_id} is in the store already; delete it first to restore "
                                     "the one in the trash")
            record = self._checked_file(sidecar)
            self._audio_path(take_id, self.trash, record)
            files = self._files_of(take_id, self.trash)
            files = files[1:] + files[:1]  # the sidecar last: the take appears only once complete
            self._run("undelete", take_id, [(p, self.folder / p.name) for p in files])
        return take_id

    def trashed(self) -> list[str]:
        """Ids of the takes in the trash (sorted)."""
        if not self.trash.is_dir():
            return []
        return sorted(p.name[:-5] for p in self.trash.glob("*.json") if _TAKE_ID_RE.fullmatch(p.name[:-5]))

    def empty_trash(self) -> None:
        """Delete the trash for good (sidecars first, so no half take is ever listed as deleted)."""
        with self._lock:
            self._recover()
            if not self.trash.is_dir():
                return
            files = sorted((p for p in self.trash.iterdir() if p.is_file()), key=lambda p: p.suffix != ".json")
            self._run("empty_trash", "*", removes=files)

    def export(self, take_id: str, path, format: str | None = None, bit_depth=None, extras: bool = True) -> Path:
        """Write the take to `path`: wav (bit_depth 16, 24 or "float"), flac (16, 24), mp3, ogg or opus, from
        the suffix unless `format` is given; with `extras` its `.lrc` and sidecar `.json` go beside it.
        Batches and lineages: `acestep_engine.takes.export.export_batch` / `export_lineage`."""
        from .export import export_take

        return export_take(self, take_id, path, format, bit_depth, extras)

    # ------------------------------------------------------------------ reading
    def _checked_file(self, path: Path) -> dict:
        record = _read_json(path)
        try:
            check_record(record)
        except TakeStoreError as exc:
            raise TakeStoreError(f"the sidecar {path} is unusable: {exc}") from None
        if record["id"] != path.name[:-5]:
            raise TakeStoreError(f"the sidecar {path} holds the id {record['id']!r}, not its file name's")
        return record

    def record(self, take_id: str) -> dict:
        """The take's sidecar record (a fresh dict), checked; TakeStoreError if absent or unusable."""
        check_take_id(take_id)
        path = self._sidecar(take_id)
        if not path.is_file():
            raise TakeStoreError(f"no take {take_id} in {self.folder}")
        return self._checked_file(path)

    def _scan(self) -> list[dict]:
        """Usable records of every take, from the index where the sidecar is unchanged (same size,
        mtime and inode: a sidecar edited by hand, even in place, is read again)."""
        self._recover_if_needed()
        sidecars, others = {}, set()
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                if entry.name.endswith(".json"):
                    try:
                        st = entry.stat()
                    except FileNotFoundError:
                        continue
                    sidecars[entry.name[:-5]] = (st.st_size, st.st_mtime_ns, st.st_ino)
                else:
                    others.add(entry.name)
        self._load_index()
        records, problems, changed = [], [], set(self._cache) - set(sidecars)
        for take_id, key in sidecars.items():
            path = self._sidecar(take_id)
            cached = self._cache.get(take_id)
            if cached is None or cached[0] != key:
                changed.add(take_id)
                try:
                    if not _TAKE_ID_RE.fullmatch(take_id):
                        raise TakeStoreError(f"{path}: the file name is not a take id ({TAKE_ID_PATTERN})")
                    cached = (key, self._checked_file(path), None)
                except (TakeStoreError, OSError) as exc:
                    cached = (key, None, str(exc))
                self._cache[take_id] = cached
            _, record, problem = cached
            if record is not None:
                audio_name = record.get("audio_file")
                if not ({audio_name} if audio_name else {f"{take_id}.{e}" for e in AUDIO_EXTENSIONS}) & others:
                    problem, record = f"{path}: its audio file is missing", None
            if record is None:
                problems.append(StoreProblem(str(path), problem))
            else:
                records.append(record)
        for take_id in set(self._cache) - set(sidecars):
            del self._cache[take_id]
        for name in sorted(others):
            stem = name[:-len(LATENTS_SUFFIX)] if name.endswith(LATENTS_SUFFIX) else name.rsplit(".", 1)[0]
            if name.rsplit(".", 1)[-1] in AUDIO_EXTENSIONS + ("safetensors",) and stem not in sidecars:
                problems.append(StoreProblem(str(self.folder / name), "has no sidecar, so it is not a take "
                                             "(left untouched)"))
        self._problems = problems
        if changed:
            self._save_index()
        return records

    def _load_index(self) -> None:
        path = self._index_path
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        if key == self._index_key:
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != INDEX_VERSION:
                return
            for take_id, item in data["entries"].items():
                if take_id not in self._cache:
                    self._cache[take_id] = (tuple(item["key"]), item.get("record"), item.get("problem"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return  # a damaged index is only a cache: the sidecars are read again
        self._index_key = key

    def _save_index(self) -> None:
        data = {"version": INDEX_VERSION,
                "entries": {take_id: {"key": list(key), "record": record, "problem": problem}
                            for take_id, (key, record, problem) in self._cache.items()}}
        tmp = self._meta / _temp_name("index")
        try:
            tmp.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, self._index_path)
            st = os.stat(self._index_path)
            self._index_key = (st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError:  # a read-only folder is listed without an index
            tmp.unlink(missing_ok=True)

    @property
    def problems(self) -> list[StoreProblem]:
        """What a listing skips, as of now: unusable sidecars, sidecars without audio, stray audio
        files, and anything recovery could not use. Cheap: served from the index like `list()`."""
        self._scan()
        return list(self._problems) + list(self._open_problems)

    def list(self, task: str | None = None, parent_id: str | None = None, search: str | None = None) -> list[dict]:
        """Sidecar records (no audio loaded), oldest first (creation time, then batch index), optionally
        filtered by task name, parent id or a case-insensitive search of name, id and caption.
        Unusable sidecars are skipped and described in `problems`."""
        for label, value in (("task", task), ("parent_id", parent_id), ("search", search)):
            if value is not None and not isinstance(value, str):
                raise TakeStoreError(f"{label} must be text or None (got {type(value).__name__})")
        records = []
        needle = search.lower() if search else None
        for record in self._scan():
            if task and record["task"].get("name") != task:
                continue
            if parent_id and record.get("parent_id") != parent_id:
                continue
            if needle:
                caption = record["blueprint"].get("caption")
                haystack = " ".join([record.get("name") or "", record["id"],
                                     caption if isinstance(caption, str) else ""]).lower()
                if needle not in haystack:
                    continue
            records.append({**record})
        return sorted(records, key=lambda r: (r.get("created") or "", r.get("batch_index") or 0, r["id"]))

    def ids(self) -> list[str]:
        """Ids of the usable takes, oldest first."""
        return [r["id"] for r in self.list()]

    def load(self, take_id: str) -> Take:
        record = self.record(take_id)
        try:
            audio, rate = read_audio(self._audio_path(take_id, record=record))
        except AudioFileError as exc:
            raise TakeStoreError(f"take {take_id}: {exc}") from None
        latents = None
        latents_path = self._latents_path(take_id)
        if latents_path.is_file():
            from safetensors import SafetensorError
            from safetensors.numpy import load_file

            try:
                latents = load_file(str(latents_path))["latents"]
            except (SafetensorError, OSError, KeyError, ValueError) as exc:
                raise TakeStoreError(f"{latents_path} is unreadable ({type(exc).__name__}: {exc})") from None
        return Take.from_record(record, audio, latents)

    def lineage(self, take_id: str) -> list[str]:
        """Ids from the root ancestor down to `take_id`, following `parent_id`."""
        chain, current = [], take_id
        while current and current not in chain:
            chain.append(current)
            try:
                current = self.record(current).get("parent_id")
            except TakeStoreError:
                break
        return chain[::-1]

    def children(self, take_id: str) -> list[str]:
        return [r["id"] for r in self.list(parent_id=take_id)]

    def __contains__(self, take_id) -> bool:
        return isinstance(take_id, str) and bool(_TAKE_ID_RE.fullmatch(take_id)) and self._sidecar(take_id).is_file()

    def __len__(self) -> int:
        return len(self.ids())

    def __iter__(self):
        return iter(self.ids())

    def __repr__(self) -> str:
        return f"TakeStore({str(self.folder)!r}, {len(self)} takes)"
