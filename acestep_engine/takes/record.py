"""A take and its record: what one generated result is, how it is written down in its JSON sidecar
(`Take.to_record`) and what makes a sidecar record usable (`check_record`).

Ids are plain file stems (TAKE_ID_PATTERN), so a take id can never name a path outside its folder.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from ..blueprint import Blueprint
from ..errors import BlueprintError, TakeStoreError
from .audio_io import MAX_CHANNELS, SAMPLE_RATE_RANGE

FORMAT_VERSION = 1
TAKE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}"  # no dots, no separators: a take id is a plain file stem
_TAKE_ID_RE = re.compile(TAKE_ID_PATTERN)
MAX_NAME_CHARS = 256
SEED_RANGE = (-(2 ** 63), 2 ** 64 - 1)  # any 64-bit seed, signed or not
MAX_BATCH_INDEX = 1 << 20
MAX_SAMPLES = 1 << 40  # frames per channel: about 265 days at 48 kHz
AUDIO_EXTENSIONS = ("flac", "wav")
LATENTS_SUFFIX = ".latents.safetensors"


def is_take_id(text) -> bool:
    """Whether `text` is a take id (TAKE_ID_PATTERN): a plain file stem, safe to put in a path."""
    return isinstance(text, str) and _TAKE_ID_RE.fullmatch(text) is not None


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
    if not is_take_id(take_id):
        raise TakeStoreError(f"{what} {take_id!r:.200} is not valid: ids match {TAKE_ID_PATTERN} "
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
        if not isinstance(self.blueprint, Blueprint):
            raise TakeStoreError(f"take {self.id!r:.80}: blueprint must be a Blueprint (got "
                                 f"{type(self.blueprint).__name__})")
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

def jsonable(value, where: str):
    """`value` as plain JSON types: numpy scalars and arrays converted, tuples as lists. Refuses
    non-finite numbers, text that is not valid Unicode (lone surrogates) and other types, naming `where`."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TakeStoreError(f"{where} holds text that cannot be written as UTF-8 ({exc.reason} at "
                                 f"character {exc.start}: {value[exc.start:exc.end]!r:.80})") from None
        return value
    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, (bytes, complex)):
            raise TakeStoreError(f"{where} must be a JSON value (got numpy {type(value).__name__})")
        return jsonable(value, where)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        if not math.isfinite(value):
            raise TakeStoreError(f"{where} must be a finite number (got {value!r:.80})")
        return float(value)
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist(), where)
    if isinstance(value, (list, tuple)):
        return [jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, np.generic):
                key = key.item()
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TakeStoreError(f"{where} has a key {key!r} of type {type(key).__name__}; keys must be text")
            key = jsonable(str(key), f"{where} key")
            out[key] = jsonable(item, f"{where}.{key}")
        return out
    raise TakeStoreError(f"{where} must hold only JSON values (text, numbers, lists, mappings); "
                         f"got {type(value).__name__}")


def _expect(record: dict, key: str, types, label: str, optional: bool = False):
    value = record.get(key)
    if value is None:
        if optional:
            return None
        raise TakeStoreError(f"lacks the field {key!r}" if key not in record else f"field {key!r} must be {label} "
                             "(got null)")
    if not isinstance(value, types) or (isinstance(value, bool) and types is not bool):
        raise TakeStoreError(f"field {key!r} must be {label} (got {type(value).__name__} {value!r:.60})")
    return value


def _whole(record: dict, key: str, lo: int, hi: int, optional: bool = False):
    value = _expect(record, key, int, f"a whole number from {lo} to {hi}", optional)
    if value is not None and not lo <= value <= hi:
        raise TakeStoreError(f"field {key!r} must be from {lo} to {hi} (got {value:.6g})")
    return value


def check_record(record) -> dict:
    """Raise TakeStoreError (without a path; the caller adds it) if a sidecar record is unusable; return it.

    Every field a listing, a filter or a load reads is checked for its type and range, so a record
    that passes (from a sidecar or from the index) can be used without further checks."""
    if not isinstance(record, dict):
        raise TakeStoreError(f"must hold a JSON object (got {type(record).__name__})")
    take_id = check_take_id(_expect(record, "id", str, "text"), "field 'id'")
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
    _whole(record, "seed", *SEED_RANGE)
    _whole(record, "batch_index", 0, MAX_BATCH_INDEX, optional=True)
    _whole(record, "sample_rate", *SAMPLE_RATE_RANGE)
    _whole(record, "channels", 1, MAX_CHANNELS)
    _whole(record, "samples", 1, MAX_SAMPLES)
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
    if audio_file is not None and audio_file not in (f"{take_id}.flac", f"{take_id}.wav"):
        raise TakeStoreError(f"field 'audio_file' must be {take_id}.flac or .wav (got {audio_file!r:.60})")
    return record


def encode_record(record: dict) -> bytes:
    """A checked record as the bytes of its sidecar (UTF-8 JSON, indented, no NaN)."""
    return json.dumps(record, indent=2, ensure_ascii=False, allow_nan=False).encode("utf-8")
