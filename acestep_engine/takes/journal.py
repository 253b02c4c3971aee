"""The take folder's journal: how a change of several files stays whole when the process is killed.

A change is written down as one entry in `.takestore/journal/` (write, fsync, rename: the entry
exists whole or not at all) before its renames and removals are made, and the entry is removed
once they are. Whoever holds the folder's lock next replays the entries a killed process left:
every rename is idempotent, so a take ends fully present or fully in the trash.

A journal is a list of commands, so it is believed only when this store wrote it:
- Every entry carries a marker: an HMAC of its content under a key made of the store's id
  (`.takestore/id`) and the identity (inode) of its `.takestore` folder. A copy of the folder (a zip,
  a sync to another disk) gets a new `.takestore` folder, so entries shipped with it, or written by
  hand, fail the marker: they are reported in `problems` and set aside, never replayed.
- An entry that passes is also checked against what the store's own changes can be: a save, rename
  or note update moves its own temporary files onto one take's files; a delete or undelete moves one
  take's files between the store and `.trash/`; emptying the trash removes files in `.trash/`. Every
  path is a plain name in the store or in `.trash/` (a real folder of the store, never a link).
  Replay never removes a take's sidecar, and never replaces one with anything but the entry's own
  temporary file.

Entries name files relative to the store, so a folder moved or mounted elsewhere on the same disk
after a kill is still recovered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

from ..errors import TakeStoreError
from .folder import StoreProblem, is_real_directory, own_directory, read_own, shown, temp_name, write_file
from .record import AUDIO_EXTENSIONS, LATENTS_SUFFIX, is_take_id

JOURNAL_VERSION = 2
MAX_ENTRY_BYTES = 16 << 20  # an entry that empties a trash of 100,000 files is about 6 MB
TRASH = ".trash"
OPERATIONS = ("save", "rename", "update_notes", "delete", "undelete", "empty_trash")
_TAKE_SUFFIXES = (".json", LATENTS_SUFFIX) + tuple(f".{ext}" for ext in AUDIO_EXTENSIONS)


def _is_file_of(name: str, take_id: str) -> bool:
    return any(name == take_id + suffix for suffix in _TAKE_SUFFIXES)


def _plain_name(name) -> bool:
    """A file name without a folder: no separator of this system, not "." or ".."."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and os.sep not in name \
        and (os.altsep is None or os.altsep not in name) and "\x00" not in name


class Journal:
    """The journal of the store at `folder`, kept in `directory` (its `.takestore/journal`).

    `key` (from the store's id, see `store_key`) signs and checks entries; None for a store that cannot
    be written (nothing is replayed then). Callers hold the folder's lock for `run` and `recover`."""

    def __init__(self, folder: Path, directory: Path, key: bytes | None = None):
        self.folder = folder
        self.directory = directory
        self.key = key

    # ------------------------------------------------------------------ writing
    def run(self, operation: str, take_id: str, moves=(), removes=(), temps: list | None = None) -> None:
        """Apply renames then removals as one change that survives a kill at any point.

        `moves` are (source, target) paths, all sources fully written. Once the entry is down, the
        temporary files in `temps` belong to it (the list is emptied): if this process dies or fails
        from here on, the next change by anyone finishes the job."""
        if self.key is None:
            raise TakeStoreError(f"the take store {shown(self.folder)} has no identity (.takestore/id): it cannot be "
                                 "changed")
        entry = self.sign({"version": JOURNAL_VERSION, "op": operation, "id": take_id, "pid": os.getpid(),
                           "moves": [[self._relative(src), self._relative(dst)] for src, dst in moves],
                           "removes": [self._relative(p) for p in removes]})
        plan = self._plan(entry)  # our own changes pass the same check as a replayed entry
        self._check_targets(plan[0])  # refused before the entry exists: nothing to finish later
        own_directory(self.directory, create=True)
        name = f"{time.time_ns():020d}-{secrets.token_hex(4)}.json"
        tmp = self.directory / temp_name("journal")
        try:
            write_file(tmp, json.dumps(entry).encode(), sync=True)
            os.replace(tmp, self.directory / name)
        finally:
            tmp.unlink(missing_ok=True)
        if temps is not None:
            temps.clear()
        self._apply(plan)
        (self.directory / name).unlink()

    def _relative(self, path: Path) -> str:
        return Path(path).relative_to(self.folder).as_posix()

    def sign(self, entry: dict) -> dict:
        """`entry` with the marker that makes it this store's own (its "mac")."""
        return {**entry, "mac": self._mac(entry)}

    def _mac(self, entry: dict) -> str:
        body = json.dumps({k: v for k, v in entry.items() if k != "mac"}, sort_keys=True, separators=(",", ":"))
        return hmac.new(self.key, body.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    # ------------------------------------------------------------------ checking an entry
    def _place(self, relative) -> tuple[bool, str]:
        """(in the trash?, plain file name) of a path an entry names; TakeStoreError for any other path."""
        parts = relative.split("/") if isinstance(relative, str) else None
        if parts and len(parts) == 1 and _plain_name(parts[0]):
            return False, parts[0]
        if parts and len(parts) == 2 and parts[0] == TRASH and _plain_name(parts[1]):
            return True, parts[1]
        raise TakeStoreError(f"names {relative!r:.80}, which is neither a file of the store nor of its trash")

    def _plan(self, entry) -> tuple[list, list]:
        """The entry's moves and removals as paths, once every one is a change the store itself makes;
        TakeStoreError saying which is not."""
        if not isinstance(entry, dict) or not isinstance(entry.get("moves"), list) \
                or not isinstance(entry.get("removes"), list):
            raise TakeStoreError("is not a journal entry of this version")
        op, take_id = entry.get("op"), entry.get("id")
        if op not in OPERATIONS:
            raise TakeStoreError(f"names an unknown change {op!r:.40}")
        if op != "empty_trash" and not is_take_id(take_id):
            raise TakeStoreError(f"names no valid take id ({take_id!r:.40})")
        moves, removes = [], []
        for move in entry["moves"]:
            if not (isinstance(move, list) and len(move) == 2):
                raise TakeStoreError(f"has a move that is not [source, target]: {move!r:.80}")
            (src_trash, src), (dst_trash, dst) = self._place(move[0]), self._place(move[1])
            temp = not src_trash and src.startswith(".tmp-")
            if op in ("save", "rename", "update_notes"):
                ok = temp and not dst_trash and _is_file_of(dst, take_id) \
                    and (op == "save" or dst == f"{take_id}.json")
            elif op in ("delete", "undelete"):
                ok = src == dst and _is_file_of(src, take_id) and (src_trash, dst_trash) == (op == "undelete",
                                                                                             op == "delete")
            else:
                ok = False
            if not ok:
                raise TakeStoreError(f"moves {move[0]!r:.60} to {move[1]!r:.60}, which no {op} of take {take_id} does")
            moves.append((self._path(src_trash, src), self._path(dst_trash, dst), temp))
        for relative in entry["removes"]:
            trash, name = self._place(relative)
            if op == "empty_trash":
                ok = trash
            else:
                ok = op in ("save", "delete") and trash == (op == "delete") and _is_file_of(name, take_id) \
                    and not name.endswith(".json")
            if not ok:
                raise TakeStoreError(f"removes {relative!r:.60}, which no {op} removes")
            removes.append(self._path(trash, name))
        return moves, removes

    def _path(self, trash: bool, name: str) -> Path:
        return self.folder / TRASH / name if trash else self.folder / name

    # ------------------------------------------------------------------ replaying
    def _check_targets(self, moves) -> None:
        """TakeStoreError, before anything moves, if a move cannot be made as the store makes it: through a
        trash that is not a real folder, onto a folder, or over a sidecar with a file it did not write."""
        for src, dst, temp in moves:
            for path in (src, dst):
                if path.parent != self.folder:
                    own_directory(path.parent, create=path is dst)  # a linked trash is refused here
            if os.path.isdir(dst) and not os.path.islink(dst):
                raise TakeStoreError(f"would move {shown(src.name)} onto the folder {shown(dst)}")
            if not temp and dst.parent == self.folder and dst.name.endswith(".json") \
                    and os.path.lexists(src) and os.path.lexists(dst):
                raise TakeStoreError(f"would replace the sidecar {shown(dst)} with a file it did not write")

    def _apply(self, plan) -> list[str]:
        """Make the planned moves then removals (each idempotent); returns the sources already absent."""
        moves, removes = plan
        self._check_targets(moves)
        missing = []
        for src, dst, _ in moves:
            if os.path.lexists(src):
                os.replace(src, dst)  # renames a link itself, never what it points to
            elif not os.path.lexists(dst):
                missing.append(shown(src.name))
        for path in removes:
            if (path.parent == self.folder or own_directory(path.parent)) and not (
                    os.path.isdir(path) and not os.path.islink(path)):
                path.unlink(missing_ok=True)  # removes a link itself, never what it points to
        return missing

    def pending(self) -> bool:
        """Whether an entry waits to be replayed (a listing that sees one takes the lock and recovers)."""
        try:
            return is_real_directory(self.directory) and any(p.suffix == ".json" for p in self.directory.iterdir())
        except OSError:  # a journal we may not read (permissions) may hold entries: say so, never guess
            return True

    def set_aside(self) -> list[StoreProblem]:
        """Entries set aside earlier (`*.bad`): reported on every opening until someone removes them."""
        try:
            if not is_real_directory(self.directory):
                return []
            return [StoreProblem(shown(p), "a journal entry set aside earlier (not replayed; remove it once "
                                 "checked)") for p in sorted(self.directory.glob("*.json.bad"))]
        except OSError:
            return []

    def recover(self) -> tuple[list[str], list[StoreProblem]]:
        """Finish the changes that killed processes of this store left half done. Returns what was
        finished, in plain words, and the entries that were not replayed (set aside as `<name>.bad`)."""
        finished, problems = [], []
        if not own_directory(self.directory):
            return finished, problems
        try:
            paths = sorted(self.directory.glob("*.json"))
        except OSError as exc:
            return finished, [StoreProblem(shown(self.directory), f"the journal cannot be read ({exc.strerror}): "
                                                                  "interrupted changes were not finished")]
        for path in paths:
            try:
                plan = self._check(path)
                missing = self._apply(plan[1])
            except TakeStoreError as exc:
                problems.append(self._set_aside(path, str(exc)))
                continue
            except OSError as exc:  # a file the system refuses to move: kept, tried again at the next opening
                problems.append(StoreProblem(shown(path), f"a change of the store could not be finished "
                                             f"({exc.strerror or exc}: {shown(exc.filename or '')}); it is kept "
                                             "and tried again when the store is next opened"))
                continue
            note = f"finished an interrupted {plan[0]['op']} of take {plan[0]['id']}"
            if missing:
                note += f" (already absent: {', '.join(missing)})"
            finished.append(note)
            path.unlink()
        return finished, problems

    def _check(self, path: Path):
        raw = read_own(path, MAX_ENTRY_BYTES)
        if raw is None:
            raise TakeStoreError("is a link, not a regular file, or larger than a journal entry can be")
        try:
            entry = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):
            raise TakeStoreError("is not JSON") from None
        mac = entry.get("mac") if isinstance(entry, dict) else None
        if self.key is None or not isinstance(mac, str) or not hmac.compare_digest(mac, self._mac(entry)):
            raise TakeStoreError("was not written by this store (its marker does not match: an entry copied "
                                 "with the folder from elsewhere, or written by hand)")
        return entry, self._plan(entry)

    def _set_aside(self, path: Path, reason: str) -> StoreProblem:
        try:
            os.replace(path, path.with_name(path.name + ".bad"))
            done = f"set aside as {shown(path.name)}.bad"
        except OSError as exc:
            done = f"left in place ({exc.strerror})"
        return StoreProblem(shown(path), f"a journal entry that {reason}: not replayed, {done}")


def store_key(store_id: str, meta: Path) -> bytes:
    """The key journal entries are signed with: the store's id and the identity of its own folder."""
    inode = os.lstat(meta).st_ino
    return hashlib.sha256(f"acestep-takestore:{store_id}:{inode}".encode()).digest()
