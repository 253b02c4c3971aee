"""Takes (generated audio with full provenance) and the folder that keeps them.

On disk a take is `<id>.flac` (or .wav), an optional `<id>.latents.safetensors` and a JSON
sidecar `<id>.json` holding everything needed to reproduce it. The sidecar is written last and
atomically, so a take exists exactly when its sidecar does: a killed process leaves at most a
`.tmp-*` file behind, which the store ignores and cleans up.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .audio_io import read_audio, write_audio
from .errors import TakeStoreError

FORMAT_VERSION = 1


def new_take_id() -> str:
    """Unique and roughly time-sortable: `YYYYMMDD-HHMMSS-mmm-xxxx` (UTC, milliseconds, random)."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")[:-3] + "-" + secrets.token_hex(2)


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
        from .blueprint import Blueprint

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
        from .blueprint import Blueprint

        return cls(id=record["id"], audio=audio, sample_rate=int(record["sample_rate"]), seed=int(record["seed"]),
                   blueprint=Blueprint.from_dict(record["blueprint"]), task=record["task"], model=record["model"],
                   sampling=record["sampling"], timings=record.get("timings", {}), latents=latents,
                   parent_id=record.get("parent_id"), name=record.get("name", ""),
                   created=record.get("created", _now()), batch_index=int(record.get("batch_index", 0)),
                   notes=record.get("notes", {}))

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return (f"Take(id={self.id!r}, {label}{self.duration:.1f} s, seed={self.seed}, "
                f"{self.task.get('name', '?')})")


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class TakeStore:
    """A folder of takes that survives restarts. Iterating yields take ids, oldest first."""

    def __init__(self, folder, audio_format: str = "flac"):
        if audio_format not in ("flac", "wav"):
            raise TakeStoreError(f"audio_format must be 'flac' or 'wav' (got {audio_format!r})")
        self.folder = Path(folder)
        self.audio_format = audio_format
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob(".tmp-*"):  # from a process killed mid-save
            leftover.unlink(missing_ok=True)

    # ------------------------------------------------------------------ paths
    def _sidecar(self, take_id: str, folder: Path | None = None) -> Path:
        return (folder or self.folder) / f"{take_id}.json"

    def _latents_path(self, take_id: str, folder: Path | None = None) -> Path:
        return (folder or self.folder) / f"{take_id}.latents.safetensors"

    def _audio_path(self, take_id: str, folder: Path | None = None) -> Path:
        folder = folder or self.folder
        for ext in ("flac", "wav"):
            path = folder / f"{take_id}.{ext}"
            if path.is_file():
                return path
        raise TakeStoreError(f"take {take_id} has no audio file in {folder}")

    @property
    def trash(self) -> Path:
        return self.folder / ".trash"

    # ------------------------------------------------------------------ writing
    def save(self, take: Take, format: str | None = None) -> Path:
        """Write the take (audio, latents, then the sidecar). Returns the audio path."""
        format = format or self.audio_format
        audio_path = write_audio(self.folder / f"{take.id}.{format}", take.audio, take.sample_rate, format)
        if take.latents is not None:
            from safetensors.numpy import save_file

            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=self.folder)
            os.close(fd)
            try:
                save_file({"latents": np.ascontiguousarray(take.latents, dtype=np.float32)}, tmp)
                os.replace(tmp, self._latents_path(take.id))
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        record = take.to_record()
        record["audio_file"] = audio_path.name
        _atomic_write_text(self._sidecar(take.id), json.dumps(record, indent=2, ensure_ascii=False))
        return audio_path

    def rename(self, take_id: str, name: str) -> None:
        record = self.record(take_id)
        record["name"] = str(name)
        _atomic_write_text(self._sidecar(take_id), json.dumps(record, indent=2, ensure_ascii=False))

    def update_notes(self, take_id: str, **notes) -> dict:
        """Merge `notes` (JSON-friendly values) into the take's sidecar notes, atomically; returns them all."""
        record = self.record(take_id)
        record["notes"] = {**(record.get("notes") or {}), **notes}
        _atomic_write_text(self._sidecar(take_id), json.dumps(record, indent=2, ensure_ascii=False))
        return record["notes"]

    def delete(self, take_id: str) -> str:
        """Move the take to `.trash/` (see `undelete`)."""
        self.record(take_id)
        self.trash.mkdir(exist_ok=True)
        # The sidecar goes first, so the take disappears from listings at once.
        for path in (self._sidecar(take_id), self._latents_path(take_id), self._audio_path(take_id)):
            if path.exists():
                os.replace(path, self.trash / path.name)
        return take_id

    def undelete(self, take_id: str) -> str:
        sidecar = self._sidecar(take_id, self.trash)
        if not sidecar.is_file():
            raise TakeStoreError(f"take {take_id} is not in the trash of {self.folder}")
        for path in (self._audio_path(take_id, self.trash), self._latents_path(take_id, self.trash), sidecar):
            if path.exists():
                os.replace(path, self.folder / path.name)
        return take_id

    def empty_trash(self) -> None:
        shutil.rmtree(self.trash, ignore_errors=True)

    def export(self, take_id: str, path, format: str | None = None, bit_depth=None, extras: bool = True) -> Path:
        """Write the take to `path`: wav (bit_depth 16, 24 or "float"), flac (16, 24), mp3, ogg or opus, from
        the suffix unless `format` is given; with `extras` its `.lrc` and sidecar `.json` go beside it.
        Batches and lineages: `acestep_engine.export.export_batch` / `export_lineage`."""
        from .export import export_take

        return export_take(self, take_id, path, format, bit_depth, extras)

    # ------------------------------------------------------------------ reading
    def ids(self) -> list[str]:
        return sorted(p.name[:-5] for p in self.folder.glob("*.json") if not p.name.startswith(".tmp-"))

    def record(self, take_id: str) -> dict:
        path = self._sidecar(take_id)
        if not path.is_file():
            raise TakeStoreError(f"no take {take_id} in {self.folder}")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TakeStoreError(f"the sidecar {path} is corrupt ({exc})") from None

    def list(self, task: str | None = None, parent_id: str | None = None, search: str | None = None) -> list[dict]:
        """Sidecar records (no audio loaded), oldest first (creation time, then batch index), optionally filtered."""
        records = []
        for take_id in self.ids():
            try:
                record = self.record(take_id)
            except TakeStoreError as exc:
                warnings.warn(str(exc), stacklevel=2)
                continue
            if task and record.get("task", {}).get("name") != task:
                continue
            if parent_id and record.get("parent_id") != parent_id:
                continue
            if search:
                haystack = " ".join([record.get("name", ""), record.get("id", ""),
                                     record.get("blueprint", {}).get("caption", "")]).lower()
                if search.lower() not in haystack:
                    continue
            records.append(record)
        return sorted(records, key=lambda r: (r.get("created", ""), r.get("batch_index", 0), r["id"]))

    def load(self, take_id: str) -> Take:
        record = self.record(take_id)
        audio, _ = read_audio(self._audio_path(take_id))
        latents = None
        if self._latents_path(take_id).is_file():
            from safetensors.numpy import load_file

            latents = load_file(str(self._latents_path(take_id)))["latents"]
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

    def __contains__(self, take_id: str) -> bool:
        return self._sidecar(take_id).is_file()

    def __len__(self) -> int:
        return len(self.ids())

    def __iter__(self):
        return iter(self.ids())

    def __repr__(self) -> str:
        return f"TakeStore({str(self.folder)!r}, {len(self)} takes)"
