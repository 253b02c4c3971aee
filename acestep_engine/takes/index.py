"""The take folder's index: `.takestore/index.json`, a cache of checked sidecar records.

Each entry is keyed by its sidecar's size, mtime and inode: only a sidecar whose key changed
(even one edited in place) is read again, so listing a folder of a thousand takes reads one file.
A missing or damaged index is rebuilt from the sidecars.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import TakeStoreError
from .folder import StoreProblem, temp_name
from .record import AUDIO_EXTENSIONS, LATENTS_SUFFIX, TAKE_ID_PATTERN, is_take_id

INDEX_VERSION = 1


class TakeIndex:
    """The records of the takes in `folder`, served from `path` where the sidecars are unchanged."""

    def __init__(self, folder: Path, path: Path):
        self.folder = folder
        self.path = path
        self._cache: dict[str, tuple[tuple, dict | None, str | None]] = {}  # id -> (stat key, record, problem)
        self._key = None

    def scan(self, read_sidecar) -> tuple[list[dict], list[StoreProblem]]:
        """Usable records of every take (the cached dicts themselves: copy before handing them out) and
        what could not be used. `read_sidecar(path)` reads and checks a changed sidecar."""
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
        self._load()
        records, problems, changed = [], [], set(self._cache) - set(sidecars)
        for take_id, key in sidecars.items():
            path = self.folder / f"{take_id}.json"
            cached = self._cache.get(take_id)
            if cached is None or cached[0] != key:
                changed.add(take_id)
                try:
                    if not is_take_id(take_id):
                        raise TakeStoreError(f"{path}: the file name is not a take id ({TAKE_ID_PATTERN})")
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
                problems.append(StoreProblem(str(self.folder / name), "has no sidecar, so it is not a take "
                                             "(left untouched)"))
        if changed:
            self._save()
        return records, problems

    def _load(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        if key == self._key:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") != INDEX_VERSION:
                return
            for take_id, item in data["entries"].items():
                if take_id not in self._cache:
                    self._cache[take_id] = (tuple(item["key"]), item.get("record"), item.get("problem"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return  # a damaged index is only a cache: the sidecars are read again
        self._key = key

    def _save(self) -> None:
        data = {"version": INDEX_VERSION,
                "entries": {take_id: {"key": list(key), "record": record, "problem": problem}
                            for take_id, (key, record, problem) in self._cache.items()}}
        tmp = self.path.parent / temp_name("index")
        try:
            tmp.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, self.path)
            st = os.stat(self.path)
            self._key = (st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError:  # a read-only folder is listed without an index
            tmp.unlink(missing_ok=True)
