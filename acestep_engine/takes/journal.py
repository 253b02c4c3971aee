"""The take folder's journal: how a change of several files stays whole when the process is killed.

A change is written down as one entry in `.takestore/journal/` (write, fsync, rename: the entry
exists whole or not at all) before its renames and removals are made, and the entry is removed
once they are. Whoever holds the folder's lock next replays the entries a killed process left:
every rename is idempotent, so a take ends fully present or fully in the trash.

Entries name files relative to the store, so a folder moved or mounted elsewhere (a synced
drive) after a kill is still recovered.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

from ..errors import TakeStoreError
from .folder import StoreProblem, temp_name, write_file


class Journal:
    """The journal of the store at `folder`, kept in `directory` (its `.takestore/journal`).

    Callers hold the folder's lock for `run` and `recover`; `pending` needs no lock."""

    def __init__(self, folder: Path, directory: Path):
        self.folder = folder
        self.directory = directory

    def run(self, operation: str, take_id: str, moves=(), removes=(), temps: list | None = None) -> None:
        """Apply renames then removals as one change that survives a kill at any point.

        `moves` are (source, target) paths, all sources fully written. Once the entry is down, the
        temporary files in `temps` belong to it (the list is emptied): if this process dies or fails
        from here on, the next change by anyone finishes the job."""
        entry = {"op": operation, "id": take_id, "pid": os.getpid(),
                 "moves": [[self._relative(src), self._relative(dst)] for src, dst in moves],
                 "removes": [self._relative(p) for p in removes]}
        self.directory.mkdir(exist_ok=True)
        name = f"{time.time_ns():020d}-{secrets.token_hex(4)}.json"
        tmp = self.directory / temp_name("journal")
        try:
            write_file(tmp, json.dumps(entry).encode(), sync=True)
            os.replace(tmp, self.directory / name)
        finally:
            tmp.unlink(missing_ok=True)
        if temps is not None:
            temps.clear()
        self._replay(entry)
        (self.directory / name).unlink()

    def _relative(self, path: Path) -> str:
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

    def pending(self) -> bool:
        """Whether an entry waits to be replayed (a listing that sees one takes the lock and recovers)."""
        return self.directory.is_dir() and any(p.suffix == ".json" for p in self.directory.iterdir())

    def recover(self) -> tuple[list[str], list[StoreProblem]]:
        """Finish the changes that killed processes left half done. Returns what was finished, in plain
        words, and the entries that could not be used (moved aside as `<name>.bad`)."""
        finished, problems = [], []
        if not self.directory.is_dir():
            return finished, problems
        for path in sorted(self.directory.glob("*.json")):
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
                problems.append(StoreProblem(str(path), "unusable journal entry (moved aside)"))
                os.replace(path, path.with_name(path.name + ".bad"))
                continue
            note = f"finished an interrupted {entry.get('op')} of take {entry.get('id')}"
            if missing:
                note += f" (already absent: {', '.join(missing)})"
            finished.append(note)
            path.unlink()
        return finished, problems
