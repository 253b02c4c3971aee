"""The take store: a folder of takes that is a small database.

On disk a take is `<id>.flac` (or .wav), an optional `<id>.latents.safetensors` and a JSON
sidecar `<id>.json` holding everything needed to reproduce it (`record`); a deleted take is the
same files under `.trash/`. A take exists exactly when its sidecar does.

How a change stays whole when the process is killed at any instant:
- New file contents are written to temporary files named `.tmp-<pid>@<host>-...` first (`folder`).
- Then, under an exclusive lock on `.takestore/lock` (fcntl/msvcrt, so two processes or kernels can share
  one folder), the change is written down in the journal (`journal`) and its files are renamed into
  place in an order that keeps the take invisible until it is complete (the sidecar last when a take
  appears, first when it goes).
- Whoever takes the lock next (opening a store, any change, or a listing that sees a journal)
  first replays the entries a killed process left, then drops temporary files whose writer is gone.

`list()` is served from `.takestore/index.json` (`index`), a cache of checked sidecars. `revision`
changes whenever any process changes the store. A sidecar that cannot be used is skipped and
described in `problems`.

A folder may come from someone else, so the store believes nothing in it (see `folder` and
`journal`): links never lead it out of the folder, a journal is replayed only if this store wrote
it, the index and every sidecar are checked like input, and audio is checked against its sidecar
before it is decoded. A read-only folder is listed and loaded; changing it says it is read-only.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import re
import secrets
from pathlib import Path

import numpy as np

from ..arguments import path_argument
from ..errors import TakeStoreError
from .audio_io import (AudioFileError, check_audio_array, check_format, check_sample_rate, encode_audio,
                       read_expected_audio)
from .folder import (MAX_SIDECAR_BYTES, READ_ONLY_ERRNOS, FolderLock, StoreProblem, check_readable, create_new,
                     is_real_directory, own_directory, read_own, read_only_error, read_sidecar_json, shown,
                     temp_is_stale, temp_name, write_file)
from .index import TakeIndex
from .journal import TRASH, Journal, store_key
from .record import (AUDIO_EXTENSIONS, LATENTS_SUFFIX, MAX_NAME_CHARS, Take, check_record, check_take_id,
                     encode_record, is_take_id, jsonable)

_STORE_ID_RE = re.compile(r"[0-9a-f]{32}")


@contextlib.contextmanager
def _writing(folder: Path):
    """A write refused by the file system because the folder is read-only becomes a TakeStoreError saying so."""
    try:
        yield
    except OSError as exc:
        if exc.errno in READ_ONLY_ERRNOS:
            raise read_only_error(exc, folder) from None
        raise


class TakeStore:
    """A folder of takes that survives restarts and kills, shared safely by several processes.

    Iterating yields take ids, oldest first. `list()` returns sidecar records without loading
    audio; `problems` lists what in the folder could not be used (and was left untouched).
    """

    def __init__(self, folder, audio_format: str = "flac"):
        if not isinstance(audio_format, str) or audio_format not in AUDIO_EXTENSIONS:
            raise TakeStoreError(f"audio_format must be 'flac' or 'wav' (got {audio_format!r:.80})")
        self.folder = path_argument(folder, "folder", TakeStoreError, kind="folder")
        self.audio_format = audio_format
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TakeStoreError(f"cannot create the take folder {shown(self.folder)} ({exc.strerror})") from None
        if not self.folder.is_dir():
            raise TakeStoreError(f"folder {shown(self.folder)} is not a folder")
        self._root = os.path.realpath(self.folder)  # links that resolve outside this are never followed
        # The store's own files: lock, id, journal, index, revision counter (apart, so that writing the
        # index does not touch the take folder's modification time that `revision` watches).
        self._meta = self.folder / ".takestore"
        self._lock = FolderLock(self._meta, self.folder)
        self._journal = Journal(self.folder, self._meta / "journal")
        self._index = TakeIndex(self.folder, self._meta, self._root)
        self._problems: list[StoreProblem] = []
        self._open_problems: list[StoreProblem] = []  # found on opening and by recovery, kept for this object
        self.recovered: list[str] = []  # what recovery finished on this store object, in plain words
        if self._meta_usable():
            self._open_problems += self._journal.set_aside()
        try:
            with self._lock:
                self._journal.key = self._identity()
                self._recover()
        except TakeStoreError as exc:  # read-only, or the store's own folders are links: listed, not changed
            if self._meta_usable() and self._journal.pending():
                self._open_problems.append(StoreProblem(shown(self._journal.directory), "interrupted changes "
                                                        f"cannot be finished: {exc}"))

    # ------------------------------------------------------------------ paths
    @property
    def trash(self) -> Path:
        return self.folder / TRASH

    def _meta_usable(self) -> bool:
        return is_real_directory(self._meta)

    def _own_folder_problems(self) -> list[StoreProblem]:
        """The store's own folders that are links or files (three lstat calls)."""
        problems = []
        for path in (self._meta, self.trash) + ((self._journal.directory,) if self._meta_usable() else ()):
            try:
                own_directory(path)
            except TakeStoreError as exc:
                problems.append(StoreProblem(shown(path), str(exc)))
        return problems

    def _trash_usable(self, create: bool = False) -> bool:
        """Whether `.trash` is a real folder of the store (made if `create`); TakeStoreError if it is a link."""
        with _writing(self.folder):
            return own_directory(self.trash, create)

    def _sidecar(self, take_id: str, folder: Path | None = None) -> Path:
        return (folder or self.folder) / f"{take_id}.json"

    def _latents_path(self, take_id: str, folder: Path | None = None) -> Path:
        return (folder or self.folder) / f"{take_id}{LATENTS_SUFFIX}"

    def _files_of(self, take_id: str, folder: Path) -> list[Path]:
        """The take's files (or links) that exist in `folder`, sidecar first."""
        paths = [self._sidecar(take_id, folder), self._latents_path(take_id, folder)]
        paths += [folder / f"{take_id}.{ext}" for ext in AUDIO_EXTENSIONS]
        return [p for p in paths if os.path.islink(p) or p.is_file()]

    def _audio_path(self, take_id: str, folder: Path | None = None, record: dict | None = None) -> Path:
        folder = folder or self.folder
        names = [record["audio_file"]] if record and record.get("audio_file") else []
        names += [f"{take_id}.{ext}" for ext in AUDIO_EXTENSIONS]
        for name in names:
            if (folder / name).is_file():
                check_readable(folder / name, self._root)
                return folder / name
        raise TakeStoreError(f"take {take_id} has no audio file in {shown(folder)}")

    # ------------------------------------------------------------------ identity, journal and recovery
    def _identity(self) -> bytes:
        """The key this store signs its journal entries with (caller holds the lock): from the random id
        in `.takestore/id`, made on first use, and the identity of the `.takestore` folder itself."""
        path = self._meta / "id"
        raw = read_own(path, 64)
        store_id = raw.decode("ascii", "replace").strip() if raw else ""
        if not _STORE_ID_RE.fullmatch(store_id):
            store_id = secrets.token_hex(16)
            tmp = self._meta / temp_name("id")
            try:
                write_file(tmp, store_id.encode(), sync=True)
                os.replace(tmp, path)
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
        return store_key(store_id, self._meta)

    def _locked(self):
        """The folder's lock, with the journal's key known (a store opened read-only may have become writable)."""
        if self._journal.key is None:
            with self._lock:
                self._journal.key = self._identity()
        return self._lock

    def _run(self, operation: str, take_id: str, moves=(), removes=(), temps: list | None = None) -> None:
        """One change through the journal (caller holds the lock), then a new revision."""
        with _writing(self.folder):
            self._journal.run(operation, take_id, moves, removes, temps)
            self._bump_revision()

    def _recover(self) -> None:
        """Finish changes that a killed process left half done, then drop its temporary files.
        Caller holds the lock, so no live change is in progress in any process."""
        finished, problems = self._journal.recover()
        self.recovered += finished
        self._open_problems += problems
        for folder in (self.folder, self.trash, self._meta, self._journal.directory):
            if is_real_directory(folder):  # never a linked trash: its temporary files are not ours
                for tmp in folder.glob(".tmp-*"):
                    if not tmp.is_dir() and temp_is_stale(tmp):
                        with contextlib.suppress(OSError):
                            tmp.unlink(missing_ok=True)
        if finished:
            self._bump_revision()

    def _recover_if_needed(self) -> None:
        """A listing that sees a journal entry waits for the lock and finishes the change it describes."""
        if self._meta_usable() and self._journal.pending():
            try:
                with self._locked():
                    self._recover()
            except TakeStoreError:
                pass

    # ------------------------------------------------------------------ revision
    def _read_counter(self) -> int:
        raw = read_own(self._meta / "revision", 64) if self._meta_usable() else None
        try:
            return int(raw.strip() or 0) if raw else 0
        except ValueError:
            return 0

    def _bump_revision(self) -> None:
        tmp = self._meta / temp_name("revision")
        try:
            write_file(tmp, str(self._read_counter() + 1).encode())
            os.replace(tmp, self._meta / "revision")
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    @property
    def revision(self) -> str:
        """A cheap token (one small read, a few stats) that changes whenever any process changes the
        store through the API, and when files are added to or removed from the folder by hand."""
        stamps = []
        for folder, stat in ((self.folder, os.stat), (self.trash, os.lstat)):
            try:
                st = stat(folder)
                stamps.append(f"{st.st_mtime_ns:x}")
            except FileNotFoundError:
                stamps.append("-")
        return f"{self._read_counter()}:{':'.join(stamps)}"

    # ------------------------------------------------------------------ writing
    def _checked_record(self, take: Take, audio_name: str) -> dict:
        check_take_id(take.id)
        if take.parent_id is not None:
            check_take_id(take.parent_id, "parent_id")
        if not isinstance(take.name, str) or len(take.name) > MAX_NAME_CHARS:
            raise TakeStoreError(f"name must be text of at most {MAX_NAME_CHARS} characters (got {take.name!r:.60})")
        if isinstance(take.seed, bool) or not isinstance(take.seed, numbers.Integral):
            raise TakeStoreError(f"seed must be a whole number (got {take.seed!r:.60})")
        for key in ("task", "model", "sampling", "timings", "notes"):
            if not isinstance(getattr(take, key), dict):
                raise TakeStoreError(f"{key} must be a dict (got {type(getattr(take, key)).__name__})")
        if not hasattr(take.blueprint, "to_dict"):
            raise TakeStoreError(f"blueprint must be a Blueprint (got {type(take.blueprint).__name__})")
        record = {key: jsonable(value, key) for key, value in take.to_record().items()}
        record["audio_file"] = audio_name
        try:
            check_record(record)
        except TakeStoreError as exc:
            raise TakeStoreError(f"take {take.id} cannot be saved: {exc}") from None
        return record

    def _payload(self, record: dict, take_id: str) -> bytes:
        payload = encode_record(record)
        if len(payload) > MAX_SIDECAR_BYTES:
            raise TakeStoreError(f"take {take_id} cannot be saved: its sidecar would be {len(payload):,} bytes and a "
                                 f"sidecar may be at most {MAX_SIDECAR_BYTES:,} (large notes? keep data in files "
                                 "beside the store)")
        return payload

    def save(self, take: Take, format: str | None = None) -> Path:
        """Write the take (audio, latents, then the sidecar as the commit point); returns the audio path.

        Everything is checked before anything is written: the id (TAKE_ID_PATTERN), the audio
        (finite, `[channels, samples]`, at least one sample), the latents, and every field of the
        sidecar (numpy numbers become plain numbers; text that cannot be UTF-8 and NaN/Inf are
        refused naming the field; at most MAX_SIDECAR_BYTES in all). A save that fails or is killed
        leaves no trace of the take. Saving an id that is already in the store replaces that take.
        """
        if not isinstance(take, Take):
            raise TakeStoreError(f"take must be a Take (got {type(take).__name__}): save expects a Take")
        if format is not None and not isinstance(format, str):
            raise TakeStoreError(f"format must be 'flac', 'wav' or None (got {type(format).__name__})")
        try:
            format = check_format(format or self.audio_format)
            audio = check_audio_array(getattr(take, "audio", None), f"take {getattr(take, 'id', '?')!r:.80}: audio")
            if audio.shape != np.shape(take.audio):
                raise AudioFileError(f"take {take.id!r:.80}: audio must be [channels, samples] "
                                     f"(got shape {np.shape(take.audio)})")
            check_sample_rate(take.sample_rate, f"take {take.id!r:.80}: sample_rate")
        except AudioFileError as exc:
            raise TakeStoreError(str(exc)) from None
        latents = None
        if take.latents is not None:
            latents = np.asarray(take.latents)
            if latents.ndim != 2 or latents.size == 0 or latents.dtype.kind not in "biuf" \
                    or not np.isfinite(latents).all():
                raise TakeStoreError(f"take {take.id!r:.80}: latents must be a finite [frames, channels] array "
                                     f"(got shape {latents.shape}, dtype {latents.dtype})")
        audio_name = f"{take.id}.{format}"
        record = self._checked_record(take, audio_name)
        payload = self._payload(record, take.id)

        temps = []
        try:
            with _writing(self.folder):
                audio_tmp = self.folder / temp_name(audio_name)
                with create_new(audio_tmp) as f:
                    temps.append(audio_tmp)
                    encode_audio(f, audio, int(take.sample_rate), format, name=audio_tmp)
                moves = []
                if latents is not None:
                    from safetensors.numpy import save

                    # Serialised here and written by us: safetensors' save_file uses temporary files of
                    # its own (".tmpXXXXXX") that a kill would leave behind under a name we cannot own.
                    data = save({"latents": np.ascontiguousarray(latents, dtype=np.float32)})
                    latents_tmp = self.folder / temp_name("latents")
                    temps.append(latents_tmp)
                    write_file(latents_tmp, data)
                    moves.append((latents_tmp, self._latents_path(take.id)))
                sidecar_tmp = self.folder / temp_name("sidecar")
                temps.append(sidecar_tmp)
                write_file(sidecar_tmp, payload, sync=True)
                moves += [(audio_tmp, self.folder / audio_name), (sidecar_tmp, self._sidecar(take.id))]
            with self._locked():
                self._recover()
                stale = [p for p in self._files_of(take.id, self.folder)
                         if p.name != audio_name and not p.name.endswith(".json")
                         and not (latents is not None and p.name.endswith(LATENTS_SUFFIX))]
                self._run("save", take.id, moves, stale, temps)
        finally:
            for tmp in temps:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
        return self.folder / audio_name

    def _rewrite_sidecar(self, take_id: str, operation: str, change) -> dict:
        """Read the sidecar, apply `change(record)`, write it back atomically (the sidecar rename is
        the commit point); returns the new record."""
        check_take_id(take_id)
        with self._locked():
            self._recover()
            record = self.record(take_id)
            change(record)
            record = jsonable(record, "sidecar")
            payload = self._payload(record, take_id)
            temps = [self.folder / temp_name("sidecar")]
            try:
                with _writing(self.folder):
                    write_file(temps[0], payload, sync=True)
                self._run(operation, take_id, [(temps[0], self._sidecar(take_id))], temps=temps)
            finally:
                for tmp in temps:
                    with contextlib.suppress(OSError):
                        tmp.unlink(missing_ok=True)
        return record

    def rename(self, take_id: str, name: str) -> None:
        """Set the take's display name (text, at most MAX_NAME_CHARS characters; "" clears it)."""
        if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
            raise TakeStoreError(f"name must be text of at most {MAX_NAME_CHARS} characters (got {name!r:.60})")
        jsonable(name, "name")
        self._rewrite_sidecar(take_id, "rename", lambda record: record.update(name=name))

    def update_notes(self, take_id: str, **notes) -> dict:
        """Merge `notes` (JSON-friendly values; numpy numbers are converted, NaN/Inf refused naming the
        note) into the take's sidecar notes, atomically; returns them all."""
        checked = {key: jsonable(value, f"notes.{key}") for key, value in notes.items()}
        record = self._rewrite_sidecar(take_id, "update_notes",
                                       lambda record: record.update(notes={**(record.get("notes") or {}), **checked}))
        return record["notes"]

    def delete(self, take_id: str) -> str:
        """Move the take to `.trash/` (see `undelete`); a take of the same id already there is replaced."""
        check_take_id(take_id)
        with self._locked():
            self._recover()
            if not self._sidecar(take_id).is_file():  # an unusable sidecar may still be thrown away
                raise TakeStoreError(f"no take {take_id} in {shown(self.folder)}")
            self._trash_usable(create=True)
            files = self._files_of(take_id, self.folder)  # sidecar first: the take leaves listings at once
            names = {p.name for p in files}
            old = [p for p in self._files_of(take_id, self.trash) if p.name not in names]
            self._run("delete", take_id, [(p, self.trash / p.name) for p in files], old)
        return take_id

    def undelete(self, take_id: str) -> str:
        """Bring a deleted take back from `.trash/`."""
        check_take_id(take_id)
        with self._locked():
            self._recover()
            sidecar = self._sidecar(take_id, self.trash)
            if not self._trash_usable() or not sidecar.is_file():
                raise TakeStoreError(f"take {take_id} is not in the trash of {shown(self.folder)}")
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
        """Ids of the takes in the trash (sorted); none while `.trash` is not a real folder of the store."""
        if not is_real_directory(self.trash):
            return []
        return sorted(p.name[:-5] for p in self.trash.glob("*.json") if is_take_id(p.name[:-5]))

    def empty_trash(self) -> None:
        """Delete the trash for good (sidecars first, so no half take is ever listed as deleted)."""
        with self._locked():
            self._recover()
            if not self._trash_usable():
                return
            files = sorted((p for p in self.trash.iterdir() if os.path.islink(p) or p.is_file()),
                           key=lambda p: p.suffix != ".json")
            self._run("empty_trash", "*", removes=files)

    def export(self, take_id: str, path, format: str | None = None, bit_depth=None, extras: bool = True) -> Path:
        """Write the take to `path`: wav (bit_depth 16, 24 or "float"), flac (16, 24), mp3, ogg or opus, from
        the suffix unless `format` is given; with `extras` its `.lrc` and sidecar `.json` go beside it.
        Batches and lineages: `acestep_engine.takes.export.export_batch` / `export_lineage`."""
        from .export import export_take

        return export_take(self, take_id, path, format, bit_depth, extras)

    # ------------------------------------------------------------------ reading
    def _checked_file(self, path: Path) -> dict:
        check_readable(path, self._root)
        record = read_sidecar_json(path)
        try:
            check_record(record)
        except TakeStoreError as exc:
            raise TakeStoreError(f"the sidecar {shown(path)} is unusable: {exc}") from None
        if record["id"] != path.name[:-5]:
            raise TakeStoreError(f"the sidecar {shown(path)} holds the id {record['id']!r}, not its file name's")
        return record

    def record(self, take_id: str) -> dict:
        """The take's sidecar record (a fresh dict), checked; TakeStoreError if absent or unusable."""
        check_take_id(take_id)
        path = self._sidecar(take_id)
        if not path.is_file():
            raise TakeStoreError(f"no take {take_id} in {shown(self.folder)}")
        return self._checked_file(path)

    def _scan(self) -> list[dict]:
        """Usable records of every take, from the index where the sidecar is unchanged (same size,
        mtime and inode: a sidecar edited by hand, even in place, is read again)."""
        self._recover_if_needed()
        records, self._problems = self._index.scan(self._checked_file)
        return records

    @property
    def problems(self) -> list[StoreProblem]:
        """What a listing skips, as of now: unusable sidecars, sidecars without audio, stray audio
        files, links out of the store, the store's own folders when they are not real folders, and
        journal entries that were not replayed. Cheap: served from the index like `list()`."""
        self._scan()
        return list(self._problems) + self._own_folder_problems() + list(self._open_problems)

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
        """The take with its audio (and latents, when saved). Its audio file's sample rate, channels and
        length are checked against the sidecar before it is decoded; a mismatch is a TakeStoreError."""
        record = self.record(take_id)
        path = self._audio_path(take_id, record=record)
        try:
            audio = read_expected_audio(path, record["sample_rate"], record["channels"], record["samples"])
        except AudioFileError as exc:
            raise TakeStoreError(f"take {take_id}: {exc}") from None
        latents = None
        latents_path = self._latents_path(take_id)
        if latents_path.is_file():
            latents = self._load_latents(latents_path, record)
        return Take.from_record(record, audio, latents)

    def _load_latents(self, path: Path, record: dict):
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        check_readable(path, self._root)
        # Latents are far smaller than their audio (25 frames of 64 values a second against 48,000 samples
        # a channel); a file larger than the audio itself is not a take's latents.
        limit = (1 << 16) + 4 * record["samples"] * record["channels"]
        size = path.stat().st_size
        if size > limit:
            raise TakeStoreError(f"{shown(path)} is {size:,} bytes, more than the take's audio: not its latents")
        try:
            latents = load_file(str(path))["latents"]
        except (SafetensorError, OSError, KeyError, ValueError) as exc:
            raise TakeStoreError(f"{shown(path)} is unreadable ({type(exc).__name__}: {exc})") from None
        if latents.ndim != 2 or not np.isfinite(latents).all():
            raise TakeStoreError(f"{shown(path)} must hold finite latents [frames, channels] (got shape "
                                 f"{latents.shape})")
        return latents

    def lineage(self, take_id: str) -> list[str]:
        """Ids from the root ancestor down to `take_id`, following `parent_id`."""
        check_take_id(take_id)
        chain, current = [], take_id
        while current and current not in chain:
            chain.append(current)
            try:
                current = self.record(current).get("parent_id")
            except TakeStoreError:
                break
        return chain[::-1]

    def children(self, take_id: str) -> list[str]:
        """Ids of the takes made from `take_id` (its direct children), oldest first."""
        check_take_id(take_id)
        return [r["id"] for r in self.list(parent_id=take_id)]

    def __contains__(self, take_id) -> bool:
        return is_take_id(take_id) and self._sidecar(take_id).is_file()

    def __len__(self) -> int:
        return len(self.ids())

    def __iter__(self):
        return iter(self.ids())

    def __repr__(self) -> str:
        return f"TakeStore({shown(self.folder)!r}, {len(self)} takes)"
