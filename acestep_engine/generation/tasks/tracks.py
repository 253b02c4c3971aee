"""Track tasks of the base checkpoint: Extract, ExtractAll, Lego and Complete.

They share one plan: the source's latents as context, an instruction naming the track(s), and a
chunk mask that is all ones (Lego: ones in `[start, end)` only). Lego does not silence its
source in the region (upstream lego semantics). Steering: the base `Plan` defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...blueprint import complete_instruction, extract_instruction, lego_instruction
from ...errors import TaskError
from ..regions import Regions
from .base import Plan, Task, check_source, check_track, check_tracks, seconds_blueprint


def source_plan(facts, blueprint, source_spec, instruction: str, region: Regions | None = None) -> Plan:
    from ..sources import load_source

    source = load_source(facts, source_spec)
    frames = source.latents.shape[0]
    mask = torch.ones_like(source.latents)
    if region is not None:
        seconds = source.samples / facts.sample_rate
        (start, end), = region
        if end > seconds + 1e-6:
            raise TaskError(f"end must be between {start:g} and {seconds:.2f} seconds (the source's length) "
                            f"(got {end:g})")
        inside = torch.from_numpy(region.frames(facts.frame_rate, frames)).to(mask.device)
        if not inside.any():
            raise TaskError(f"the region ({start}, {end}) covers no latent frame of the {seconds:.1f} s source")
        mask = mask * inside[:, None].to(mask.dtype)
    return Plan(seconds_blueprint(facts, blueprint, frames), frames, source.latents, mask, instruction,
                parent_id=source.take_id)


@dataclass(frozen=True)
class Extract(Task):
    """Pull one track (e.g. vocals) out of `source`. Needs the base checkpoint."""

    source: object = None
    track: str = "vocals"
    reference: object = None
    audio_codes: object = None
    name = "extract"

    def validate(self):
        self.check_common()
        check_source(self)
        check_track(self.track)
        return self

    def plan(self, facts, blueprint):
        return source_plan(facts, blueprint, self.source, extract_instruction(self.track))


@dataclass(frozen=True)
class ExtractAll(Task):
    """Extract several tracks; `Engine.generate` returns the takes of every track, track by track."""

    source: object = None
    tracks: tuple = ("vocals", "drums", "bass")
    reference: object = None
    audio_codes: object = None
    name = "extract_all"
    capability = "extract"

    def validate(self):
        self.check_common()
        check_source(self)
        check_tracks(self.tracks)
        return self

    def subtasks(self) -> list[Extract]:
        return [Extract(self.source, track, self.reference, self.audio_codes) for track in self.tracks]

    def parts(self) -> tuple[Task, ...]:
        return tuple(self.subtasks())


@dataclass(frozen=True)
class Lego(Task):
    """Generate one `track` over the source's context, optionally only in `[start, end)` seconds
    (0 <= start < end <= the source's length). Needs the base checkpoint."""

    source: object = None
    track: str = "drums"
    start: float | None = None
    end: float | None = None
    reference: object = None
    audio_codes: object = None
    name = "lego"

    def validate(self):
        self.check_common()
        check_source(self)
        check_track(self.track)
        if (self.start is None) != (self.end is None):
            raise TaskError("lego needs both start and end, or neither (the whole source)")
        if self.start is not None:
            region = Regions.of([(self.start, self.end)])
            if region.start < 0:
                raise TaskError(f"start must be between 0 and the source's length in seconds (got {self.start!r:.80})")
        return self

    def plan(self, facts, blueprint):
        region = None if self.start is None else Regions.of([(self.start, self.end)])
        return source_plan(facts, blueprint, self.source, lego_instruction(self.track), region)


@dataclass(frozen=True)
class Complete(Task):
    """Write an accompaniment (`tracks`, at least one) for a vocal or instrument `source`.
    Needs the base checkpoint."""

    source: object = None
    tracks: tuple = ("drums", "bass")
    reference: object = None
    audio_codes: object = None
    name = "complete"

    def validate(self):
        self.check_common()
        check_source(self)
        check_tracks(self.tracks)
        return self

    def plan(self, facts, blueprint):
        return source_plan(facts, blueprint, self.source, complete_instruction(self.tracks))
