"""What every task shares: the `Task` base class (fields, checks, record) and the `Plan` a task
hands the pipeline, whose methods are the steering points with text2music's behaviour as default.

A plan's steering, in the order the pipeline calls it:
    start(noise, settings)          -> (x, settings)   the starting point (default: pure noise)
    step_inputs(conditions, batch, settings) -> inputs(step) -> (context latents, conditions)
    step_hook(noise, settings)      -> hook(step, t_next, x) -> x, or None
    after_denoise(latents)          -> latents          (default: unchanged)
    finish(audio)                   -> audio            one decoded item (default: unchanged)
A task overrides only what it changes, in its own file.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, fields
from typing import Callable

import numpy as np
import torch

from ...blueprint import TRACK_NAMES, Blueprint
from ...errors import TaskError

MAX_SECONDS = 600.0
MIN_SECONDS = 10.0

# instruction -> conditions of one item (the pipeline encodes the blueprint's caption and lyrics with it)
ConditionsFor = Callable[[str], object]


@dataclass
class Plan:
    """A task's plan. Latents are `[frames, C]` in the model dtype; `chunk_mask` is 1 where the
    model generates and 0 where it keeps the source."""

    blueprint: Blueprint  # with the duration the result will have
    frames: int
    source_latents: torch.Tensor
    chunk_mask: torch.Tensor
    instruction: str
    parent_id: str | None = None
    keeps_loudness = False  # True: the result is not peak-normalised (it keeps its source's level)

    def context(self, source: torch.Tensor, batch: int) -> torch.Tensor:
        """Context latents `[batch, frames, 2C]`: source latents then the chunk mask."""
        return torch.cat([source, self.chunk_mask], dim=-1).unsqueeze(0).expand(batch, -1, -1)

    def start(self, noise: torch.Tensor, settings):
        return noise, settings

    def step_inputs(self, conditions_for: ConditionsFor, batch: int, settings):
        inputs = (self.context(self.source_latents, batch), conditions_for(self.instruction).repeat(batch))
        return lambda step: inputs

    def step_hook(self, noise: torch.Tensor, settings):
        return None

    def after_denoise(self, latents: torch.Tensor) -> torch.Tensor:
        return latents

    def finish(self, audio: np.ndarray) -> np.ndarray:
        return audio


@dataclass(frozen=True)
class Task:
    """Fields every task accepts: `reference` audio (timbre/style) and 5 Hz `audio_codes`."""

    name = "task"
    capability = "task"  # what the checkpoint must support (in `variant.tasks`); the name unless set
    accepts_audio_codes = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "capability" not in cls.__dict__:
            cls.capability = cls.name

    def validate(self) -> "Task":
        """Check the fields (before any work); returns the task. Subclasses call `check_common`."""
        self.check_common()
        return self

    def check_common(self) -> None:
        """The fields every task may have, by type, before any work: `source` and `reference` audio,
        `audio_codes`."""
        for name in ("source", "reference"):
            check_audio_input(name, getattr(self, name, None))
        codes = getattr(self, "audio_codes", None)
        if codes is not None and not self.accepts_audio_codes:
            raise TaskError(f"audio_codes apply to text2music and cover, not {self.name}")
        if codes is not None and not (isinstance(codes, str) or isinstance(codes, (list, tuple)) and all(
                isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in codes)):
            raise TaskError(f"audio_codes must be text of <|audio_code_N|> codes or a list of whole numbers "
                            f"(got {type(codes).__name__} {codes!r:.80})")

    def parts(self) -> tuple["Task", ...]:
        """The tasks `Engine.generate` runs for this one, in order (ExtractAll: one per track)."""
        return (self,)

    def to_dict(self) -> dict:
        """Parameters as JSON-friendly values; sources are recorded by take id or path."""
        out = {"name": self.name}
        for f in fields(self):
            out[f.name] = describe(getattr(self, f.name))
        return out

    def plan(self, facts, blueprint: Blueprint) -> Plan:  # pragma: no cover - abstract
        """`facts`: an `acestep_engine.generation.facts.ModelFacts` (rate, hop, channels, silence, encode)."""
        raise NotImplementedError


def describe(value):
    from pathlib import Path

    from ...takes.record import Take
    from ..regions import Regions

    if isinstance(value, Take):
        return {"take": value.id}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Regions):
        return value.to_list()
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], np.ndarray):
        return {"array": list(value[0].shape), "sample_rate": int(value[1])}
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    return value


class DeferredSource:
    """A source named now and loaded when the task runs (a render plan's take id): `validate()`
    accepts it; whoever runs the task replaces it with the audio first."""


def check_audio_input(name: str, value) -> None:
    """`value` must be None, a Take, the path of an existing audio file, an (array, sample_rate) tuple,
    or a DeferredSource."""
    from pathlib import Path

    from ...takes.record import Take

    if value is None or isinstance(value, (Take, DeferredSource)):
        return
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], (np.ndarray, list, torch.Tensor)) \
            and isinstance(value[1], numbers.Real):
        return  # the array and the rate are checked where they are read
    if isinstance(value, (str, os.PathLike)):
        try:
            if Path(value).is_file():
                return
            problem = "no such file"
        except (OSError, ValueError) as exc:
            problem = getattr(exc, "strerror", None) or str(exc)
        raise TaskError(f"{name} {str(value)!r:.80} is not an audio file ({problem})")
    raise TaskError(f"{name} must be a Take, an audio file path or an (array, sample_rate) tuple "
                    f"(got {type(value).__name__} {value!r:.80})")


def check_source(task: Task) -> None:
    if getattr(task, "source", None) is None:
        raise TaskError(f"{task.name} needs a source (a Take, an audio file or (array, rate))")


def check_fraction(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise TaskError(f"{name} must be between 0 and 1 (got {value!r:.80})")


def check_seconds(name: str, value, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not lo <= value <= hi:
        raise TaskError(f"{name} must be between {lo:g} and {hi:g} seconds (got {value!r:.80})")
    return float(value)


def check_track(track) -> None:
    if not isinstance(track, str) or track not in TRACK_NAMES:
        raise TaskError(f"track must be one of {', '.join(TRACK_NAMES)} (got {track!r:.80})")


def check_tracks(tracks) -> None:
    if isinstance(tracks, str) or not isinstance(tracks, (list, tuple)):
        raise TaskError(f"tracks must be a list of track names such as ('drums', 'bass') (got {tracks!r:.80})")
    if not tracks:
        raise TaskError(f"tracks must name at least one of {', '.join(TRACK_NAMES)} (got {tuple(tracks)!r:.80})")
    for track in tracks:
        check_track(track)


def seconds_blueprint(facts, blueprint: Blueprint, frames: int) -> Blueprint:
    """The blueprint with the duration a source implies (kept within the blueprint's 10-600 s)."""
    return blueprint.replace(duration=min(MAX_SECONDS, max(MIN_SECONDS, round(frames / facts.frame_rate, 2))))
