"""The take folder's index: `.takestore/index.json`, a cache of checked sidecar records.

Each entry is keyed by its sidecar's size, mtime and inode: only a sidecar whose key changed
(even one edited in place) is read again, so listing a folder of a thousand takes reads one file.

The index is only a cache, and it lies in a folder that may come from someone else: every record
read from it is checked like a sidecar (`check_record`, and its id must be its entry's), an entry
that fails is dropped and its sidecar read again, and an index larger than its takes could make is
not read at all. A missing or damaged index is rebuilt from the sidecars; a read-only folder is
listed without one.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from ..errors import TakeStoreError
from .folder import StoreProblem, is_inside, is_real_directory, read_own, shown, temp_name, write_file
from .record import AUDIO_EXTENSIONS, LATENTS_SUFFIX, TAKE_ID_PATTERN, check_record, is_take_id

INDEX_VERSION = 2
INDEX_BASE_BYTES = 16 << 20
INDEX_BYTES_PER_TAKE = 64 << 10  # an index larger than this per sidecar in the folder is not ours


class TakeIndex:
    """The records of the takes in `folder`, served from `<meta>/index.json` where the sidecars are unchanged.

    `root` is the folder's resolved path: a file that is a link out of it is reported, never read."""

    def __init__(self, folder: Path, meta: Path, root: str):
        self.folder = folder
        self.meta = meta
        self.path = meta / "index.json"
        self.root = root
        self._cache: dict[str, tuple[tuple, dict | None, str | None]] = {}  # id -> (stat key, record, problem)
        self._key = None

    def scan(self, read_sidecar) -> tuple[list[dict], list[StoreProblem]]:
        """Usable records of every take (the cached dicts themselves: copy before handing them out) and
        what could not be used. `read_sidecar(path)` reads and checks a changed sidecar."""
        sidecars, others, problems = {}, set(), []
        with os.scandir(self.folder) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or not entry.is_file():  # is_file() stats only links
                    continue
                if entry.is_symlink() and not is_inside(entry.path, self.root):
                    problems.append(StoreProblem(shown(entry.path), f"is a link to {shown(os.path.realpath(entry.path))}"
                                                 ", outside the take store: not followed (copy the file in instead)"))
                    continue
                if not name.endswith(".json"):
                    others.add(name)
                elif not is_take_id(name[:-5]):
                    problems.append(StoreProblem(shown(entry.path), f"the file name is not a take id "
                                                 f"({TAKE_ID_PATTERN}), so it is not a take (left untouched)"))
                else:
                    try:
                        st = entry.stat()
                    except FileNotFoundError:
                        continue
                    sidecars[name[:-5]] = (st.st_size, st.st_mtime_ns, st.st_ino)
        self._load(len(sidecars))
        records, changed = [], set(self._cache) - set(sidecars)
        for take_id, key in sidecars.items():
            path = self.folder / f"{take_id}.json"
            cached = self._cache.get(take_id)
            if cached is None or cached[0] != key:
                changed.add(take_id)
                try:
                    cached = (key, read_sidecar(path), None)
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
                problems.append(StoreProblem(shown(self.folder / name), "has no sidecar, so it is not a take "
                                             "(left untouched)"))
        if changed:
            self._save()
        return records, problems

    def _load(self, takes: int) -> None:
        """Add the index's entries for takes not cached yet, each checked like a sidecar."""
        if not is_real_directory(self.meta):
            return
        try:
            st = os.lstat(self.path)
        except OSError:
            return
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        if key == self._key:
            return
        raw = read_own(self.path, INDEX_BASE_BYTES + takes * INDEX_BYTES_PER_TAKE)
        try:
            data = json.loads(raw) if raw is not None else None
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict) or data.get("version") != INDEX_VERSION or not isinstance(data.get("entries"), dict):
            return  # a damaged or foreign index is only a cache: the sidecars are read again
        for take_id, item in data["entries"].items():
            if take_id not in self._cache:
                entry = _checked_entry(take_id, item)
                if entry is not None:
                    self._cache[take_id] = entry
        self._key = key

    def _save(self) -> None:
        """Write the index (records only: a problem is found again by reading its sidecar). Skipped
        where the store cannot write (read-only, or `.takestore` is not a real folder)."""
        if not is_real_directory(self.meta):
            return
        data = {"version": INDEX_VERSION,
                "entries": {take_id: {"key": list(key), "record": record}
                            for take_id, (key, record, _) in self._cache.items() if record is not None}}
        tmp = self.meta / temp_name("index")
        try:
            write_file(tmp, json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
            os.replace(tmp, self.path)
            st = os.lstat(self.path)
            self._key = (st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError:  # a read-only folder is listed without an index
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


def _checked_entry(take_id, item):
    """(stat key, record, None) from one index entry, or None if any part of it is not what the index
    writes: the record must pass `check_record` and carry its entry's id."""
    if not is_take_id(take_id) or not isinstance(item, dict):
        return None
    key, record = item.get("key"), item.get("record")
    if not (isinstance(key, list) and len(key) == 3 and all(type(k) is int for k in key)):
        return None
    try:
        check_record(record)
    except TakeStoreError:
        return None
    if record["id"] != take_id:
        return None
    return tuple(key), record, None
