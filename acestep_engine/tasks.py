"""Generation tasks. Each task builds a `TaskPlan`: its source latents, chunk mask, instruction
and schedule edits. Conditioning, the denoising loop and decoding are shared (`Engine.generate`).

Behaviour follows upstream ACE-Step 1.5 (reference 4.3-4.8), with these deliberate differences:
- source audio is VAE-encoded with the posterior mean, not a sample, so a source always gives
  the same latents;
- the timbre reference takes its three windows from the centres of the front, middle and back
  thirds instead of random positions, for the same reason;
- repaint uses the explicit 0/1 chunk mask, reuses a take's own latents when it can, and keeps
  the source's loudness (see `Repaint`);
- `audio_codes` are accepted by text2music and cover (upstream turns both into a cover); the
  other tasks refuse them with a clear error rather than silently becoming a cover.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np
import torch

from .blueprint import (COVER_INSTRUCTION, REPAINT_INSTRUCTION, TEXT2MUSIC_INSTRUCTION, TRACK_NAMES, Blueprint,
                        complete_instruction, extract_instruction, lego_instruction)
from .errors import TaskError

if TYPE_CHECKING:
    from .engine import Engine

REPAINT_MODES = ("balanced", "conservative", "aggressive")


@dataclass
class TaskPlan:
    """What a task hands the shared pipeline. Latents are `[frames, C]` in the model dtype.

    `chunk_mask` is 1 where the model generates and 0 where it keeps the source. The optional
    fields describe the task-specific steering the shared loop applies.
    """

    blueprint: Blueprint  # with the duration the source implies
    frames: int
    source_latents: torch.Tensor
    chunk_mask: torch.Tensor
    instruction: str
    parent_id: str | None = None
    # Cover: after this fraction of the steps the conditions switch to plain text2music.
    switch_fraction: float | None = None
    # Start from `start_latents` noised to the schedule time nearest `start_level` (cover noise).
    start_latents: torch.Tensor | None = None
    start_level: float | None = None
    # Repaint: clean source latents re-injected outside the mask for the first steps, latent
    # crossfade after the loop, waveform splice with `splice_audio` after decoding.
    keep_latents: torch.Tensor | None = None
    injection_fraction: float = 0.0
    crossfade_frames: int = 0
    splice_audio: np.ndarray | None = None
    wav_crossfade_s: float = 0.0
    output_samples: int | None = None  # crop the decoded audio to this many samples
    normalize: bool | None = None  # False: keep the source's loudness
    prefix_audio: np.ndarray | None = None  # untouched source audio placed before the result (Extend)
    suffix_audio: np.ndarray | None = None


@dataclass(frozen=True)
class Task:
    """Fields every task accepts: `reference` audio (timbre/style) and 5 Hz `audio_codes`."""

    name = "task"
    capability = "task"  # what the checkpoint must support (its `variant.tasks`); the name unless set

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "capability" not in cls.__dict__:
            cls.capability = cls.name

    def validate(self) -> "Task":
        return self

    def parts(self) -> tuple["Task", ...]:
        """The tasks `Engine.generate` runs for this one, in order (ExtractAll: one per track)."""
        return (self,)

    def to_dict(self) -> dict:
        """Parameters as JSON-friendly values; sources are recorded by take id or path."""
        out = {"name": self.name}
        for f in fields(self):
            out[f.name] = _describe(getattr(self, f.name))
        return out

    def plan(self, engine: "Engine", blueprint: Blueprint) -> TaskPlan:  # pragma: no cover - abstract
        raise NotImplementedError


def _describe(value):
    from pathlib import Path

    from .takes import Take

    if isinstance(value, Take):
        return {"take": value.id}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], np.ndarray):
        return {"array": list(value[0].shape), "sample_rate": int(value[1])}
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    return value


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise TaskError(f"{name} must be between 0 and 1 (got {value!r})")


def _check_track(track) -> None:
    if track not in TRACK_NAMES:
        raise TaskError(f"track must be one of {', '.join(TRACK_NAMES)} (got {track!r})")


def _seconds_blueprint(engine, blueprint: Blueprint, frames: int) -> Blueprint:
    return blueprint.replace(duration=min(600.0, max(10.0, round(frames / engine.frame_rate, 2))))


@dataclass(frozen=True)
class Text2Music(Task):
    """Generate from the blueprint alone: silence as source, every frame generated.

    With `audio_codes` (5 Hz codes from the planner) the codes are rendered through the cover
    path, as upstream does; the duration is then that of the codes.
    """

    reference: object = None
    audio_codes: object = None
    name = "text2music"

    def plan(self, engine, blueprint):
        if self.audio_codes is not None:
            from .sources import codes_to_hints

            hints = codes_to_hints(engine, self.audio_codes)
            frames = hints.shape[0]
            mask = torch.ones_like(hints)
            return TaskPlan(_seconds_blueprint(engine, blueprint, frames), frames, hints, mask, COVER_INSTRUCTION,
                            switch_fraction=1.0)
        frames = engine.frames_for(blueprint.duration)
        source = engine.silence(frames)
        return TaskPlan(blueprint, frames, source, torch.ones_like(source), TEXT2MUSIC_INSTRUCTION)


@dataclass(frozen=True)
class Cover(Task):
    """Re-imagine `source` with the blueprint's caption and metadata, keeping its structure.

    The source latents go through the checkpoint's FSQ tokenizer and detokenizer (or
    `audio_codes`, if given, replace them). `strength` is the fraction of steps that see the
    source ("keep structure" at 1, "restyle" towards 0); after it the conditions switch to
    text2music. `noise_strength` > 0 starts from the noised source instead of pure noise.
    """

    source: object = None
    strength: float = 1.0
    noise_strength: float = 0.0
    reference: object = None
    audio_codes: object = None
    name = "cover"

    def validate(self):
        if self.source is None and self.audio_codes is None:
            raise TaskError("cover needs a source (a Take, an audio file or (array, rate)) or audio_codes")
        _check_fraction("strength", self.strength)
        _check_fraction("noise_strength", self.noise_strength)
        return self

    def plan(self, engine, blueprint):
        from .sources import codes_to_hints, fsq_round_trip, load_source

        source = load_source(engine, self.source) if self.source is not None else None
        if self.audio_codes is not None:
            hints = codes_to_hints(engine, self.audio_codes)
            frames = source.latents.shape[0] if source is not None else hints.shape[0]
            hints = _fit(hints, frames, engine)
        else:
            hints = fsq_round_trip(engine, source.latents)
            frames = hints.shape[0]
        return TaskPlan(_seconds_blueprint(engine, blueprint, frames), frames, hints, torch.ones_like(hints),
                        COVER_INSTRUCTION, parent_id=source.take_id if source else None,
                        switch_fraction=float(self.strength),
                        start_latents=source.latents if (source is not None and self.noise_strength > 0) else None,
                        start_level=float(self.noise_strength) if self.noise_strength > 0 else None)


def _fit(latents: torch.Tensor, frames: int, engine) -> torch.Tensor:
    """Crop, or pad with silence latents, to `frames`."""
    if latents.shape[0] >= frames:
        return latents[:frames]
    return torch.cat([latents, engine.silence(frames - latents.shape[0]).to(latents)])


def repaint_settings(mode: str, strength: float) -> tuple[float, int, float]:
    """(injection fraction, latent crossfade frames at 25 Hz, waveform crossfade seconds) per mode."""
    if mode == "aggressive":
        return 0.0, 0, 0.0
    if mode == "conservative":
        return 1.0, 25, 0.05
    inverse = 1.0 - strength
    return inverse, round(25 * inverse), 0.05 * inverse


@dataclass(frozen=True)
class Repaint(Task):
    """Regenerate `[start, end)` seconds of `source` (or several `regions` in one pass).

    `start < 0` or `end > duration` extends the song to the left or right (outpainting).
    Differences from upstream, on purpose: the chunk mask is always the explicit 0/1 mask (not
    the current upstream "auto" all-ones quirk); the result is not peak-normalised, so outside
    the regions and their crossfades it equals the source sample for sample (only newly
    generated audio is scaled down if it would clip).
    Modes: aggressive (no blending), conservative (full re-injection, 1 s latent and 50 ms
    waveform crossfades), balanced (default; `strength` 0..1 trades keeping for regenerating).
    """

    source: object = None
    start: float | None = None
    end: float | None = None
    mode: str = "balanced"
    strength: float = 0.5
    regions: tuple = ()
    reference: object = None
    audio_codes: object = None
    name = "repaint"

    def region_list(self) -> list[tuple[float, float]]:
        if self.regions:
            if self.start is not None or self.end is not None:
                raise TaskError("give either start/end or regions, not both")
            return [(float(s), float(e)) for s, e in self.regions]
        if self.start is None or self.end is None:
            raise TaskError("repaint needs start and end (seconds) or regions=[(start, end), ...]")
        return [(float(self.start), float(self.end))]

    def validate(self):
        if self.source is None:
            raise TaskError("repaint needs a source (a Take, an audio file or (array, rate))")
        if self.mode not in REPAINT_MODES:
            raise TaskError(f"mode must be one of {', '.join(REPAINT_MODES)} (got {self.mode!r})")
        _check_fraction("strength", self.strength)
        for start, end in self.region_list():
            if not (math.isfinite(start) and math.isfinite(end)):
                raise TaskError(f"region bounds must be finite seconds (got {start}, {end})")
            if end <= start:
                raise TaskError(f"region end must be after its start (got start={start}, end={end})")
        return self

    def plan(self, engine, blueprint):
        from .sources import source_audio

        audio, take_id = source_audio(engine, self.source)
        duration = audio.shape[-1] / engine.sample_rate
        regions = self.region_list()
        for start, end in regions:
            if start < -600 or end > duration + 600 or end - start > 600:
                raise TaskError(f"region ({start}, {end}) must lie within -600..{duration + 600:.1f} s and be "
                                "at most 600 s long")
        left = max(0.0, -min(s for s, _ in regions))
        right = max(0.0, max(e for _, e in regions) - duration)
        return _repaint_plan(engine, blueprint, audio, take_id, regions, left, right, self.mode, self.strength,
                             _take_latents(engine, self.source))


def _take_latents(engine, source) -> torch.Tensor | None:
    """The latents a take was decoded from, when this engine's weights made it (exact reuse, no VAE encode)."""
    from .takes import Take

    if (isinstance(source, Take) and source.latents is not None and source.sample_rate == engine.sample_rate
            and source.model.get("weights") == engine.models.fingerprint):
        return torch.from_numpy(np.asarray(source.latents)).to(engine.device, engine.dtype)
    return None


def _repaint_plan(engine, blueprint, audio, take_id, regions, left, right, mode, strength, take_latents=None):
    """Shared by Repaint and Extend: pad the canvas, silence the regions, mark them in the mask.

    A take's own latents are reused for the kept audio when the padding is whole frames (users ask
    for this "session latent" reuse; upstream re-encodes the decoded audio, which drifts).
    """
    from .sources import load_source

    rate, hop = engine.sample_rate, engine.hop_length
    left_samples, right_samples = int(round(left * rate)), int(round(right * rate))
    canvas = np.pad(audio, ((0, 0), (left_samples, right_samples)))
    total = canvas.shape[-1]
    if total / rate > 600.0 + 1e-6:
        raise TaskError(f"the repainted song must be at most 600 seconds long (got {total / rate:.1f} s)")
    padded = np.pad(canvas, ((0, 0), (0, (-total) % hop)))  # whole frames; cropped after decoding
    frames = padded.shape[-1] // hop
    if take_latents is not None and left_samples % hop == 0 and take_latents.shape[0] * hop <= audio.shape[-1]:
        lead = left_samples // hop
        tail = frames - lead - take_latents.shape[0]
        latents = torch.cat([engine.silence(lead), take_latents, engine.silence(max(0, tail))])[:frames]
        from .sources import Source

        source = Source(padded, latents, take_id)
    else:
        source = load_source(engine, (padded, rate))
    inside = torch.zeros(frames, dtype=torch.bool, device=engine.device)
    for start, end in regions:
        a = int(math.floor((start + left) * engine.frame_rate))
        b = int(math.floor((end + left) * engine.frame_rate))
        inside[max(0, a):max(0, min(frames, b))] = True
    if not inside.any():
        raise TaskError("the regions cover no whole latent frame of the song")
    mask = inside.to(engine.dtype)[:, None].expand(-1, engine.latent_channels)
    silence = engine.silence(frames)
    source_latents = torch.where(inside[:, None], silence, source.latents)
    injection, crossfade, wav_crossfade = repaint_settings(mode, strength)
    crossfade = round(crossfade * engine.frame_rate / 25.0)  # the mode table is in 25 Hz frames
    return TaskPlan(_seconds_blueprint(engine, blueprint, frames), frames, source_latents, mask.contiguous(),
                    REPAINT_INSTRUCTION, parent_id=take_id, keep_latents=source.latents, injection_fraction=injection,
                    crossfade_frames=crossfade, splice_audio=padded if mode != "aggressive" else None,
                    wav_crossfade_s=wav_crossfade, output_samples=total, normalize=False)


@dataclass(frozen=True)
class Extend(Task):
    """Add `left` seconds before and/or `right` seconds after `source` (outpainting).

    `context` limits how much of the source the model sees (the seconds next to each new part),
    so even a 9-minute song can be extended within the 600 s window; the rest of the source is
    put back untouched around the result. Built on the repaint machinery over a padded canvas.
    """

    source: object = None
    left: float = 0.0
    right: float = 30.0
    context: float | None = None
    mode: str = "balanced"
    strength: float = 0.5
    reference: object = None
    audio_codes: object = None
    name = "extend"
    capability = "repaint"  # what the checkpoint must support

    def validate(self):
        if self.source is None:
            raise TaskError("extend needs a source (a Take, an audio file or (array, rate))")
        for name in ("left", "right"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 600.0:
                raise TaskError(f"{name} must be between 0 and 600 seconds (got {value!r})")
        if self.left == 0 and self.right == 0:
            raise TaskError("extend needs left or right to be more than 0 seconds")
        if self.context is not None and not (isinstance(self.context, (int, float)) and 1.0 <= self.context <= 600):
            raise TaskError(f"context must be between 1 and 600 seconds (got {self.context!r})")
        if self.mode not in REPAINT_MODES:
            raise TaskError(f"mode must be one of {', '.join(REPAINT_MODES)} (got {self.mode!r})")
        _check_fraction("strength", self.strength)
        return self

    def plan(self, engine, blueprint):
        from .sources import source_audio

        audio, take_id = source_audio(engine, self.source)
        rate = engine.sample_rate
        n = audio.shape[-1]
        context = self.context if self.context is not None else 600.0 - self.left - self.right
        keep = int(round(context * rate))
        prefix = suffix = None
        if keep < n:
            if self.left and self.right:
                raise TaskError(f"context ({context:g} s) is shorter than the source ({n / rate:.1f} s): "
                                "extend one side at a time")
            if self.right:
                prefix, audio = audio[:, : n - keep], audio[:, n - keep:]
            else:
                audio, suffix = audio[:, :keep], audio[:, keep:]
        duration = audio.shape[-1] / rate
        regions = []
        if self.left:
            regions.append((-float(self.left), 0.0))
        if self.right:
            regions.append((duration, duration + float(self.right)))
        take_latents = _take_latents(engine, self.source)
        hop = engine.hop_length
        if take_latents is not None and prefix is not None:
            aligned = prefix.shape[-1] % hop == 0
            take_latents = take_latents[prefix.shape[-1] // hop:] if aligned else None
        if take_latents is not None:
            take_latents = take_latents[: audio.shape[-1] // hop]
        plan = _repaint_plan(engine, blueprint, audio, take_id, regions, float(self.left), float(self.right),
                             self.mode, self.strength, take_latents)
        plan.prefix_audio, plan.suffix_audio = prefix, suffix
        total = (plan.output_samples + (0 if prefix is None else prefix.shape[-1])
                 + (0 if suffix is None else suffix.shape[-1]))
        plan.blueprint = blueprint.replace(duration=min(600.0, max(10.0, round(total / rate, 2))))
        return plan


def _source_task_plan(engine, blueprint, source_spec, instruction, region=None):
    from .sources import load_source

    source = load_source(engine, source_spec)
    frames = source.latents.shape[0]
    mask = torch.ones_like(source.latents)
    if region is not None:
        start, end = region
        a = max(0, int(math.floor(start * engine.frame_rate)))
        b = min(frames, int(math.floor(end * engine.frame_rate)))
        if b <= a:
            raise TaskError(f"the region ({start}, {end}) covers no latent frame of the {frames / engine.frame_rate:.1f} s source")
        mask = torch.zeros_like(source.latents)
        mask[a:b] = 1
    return TaskPlan(_seconds_blueprint(engine, blueprint, frames), frames, source.latents, mask, instruction,
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
        if self.source is None:
            raise TaskError("extract needs a source (a Take, an audio file or (array, rate))")
        _check_track(self.track)
        return self

    def plan(self, engine, blueprint):
        return _source_task_plan(engine, blueprint, self.source, extract_instruction(self.track))


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
        if self.source is None:
            raise TaskError("extract_all needs a source (a Take, an audio file or (array, rate))")
        if not self.tracks:
            raise TaskError("tracks must name at least one track")
        for track in self.tracks:
            _check_track(track)
        return self

    def subtasks(self) -> list[Extract]:
        return [Extract(self.source, track, self.reference, self.audio_codes) for track in self.tracks]

    def parts(self) -> tuple[Task, ...]:
        return tuple(self.subtasks())


@dataclass(frozen=True)
class Lego(Task):
    """Generate one `track` over the source's context, optionally only in `[start, end)` seconds.
    Needs the base checkpoint. The source is not silenced in the region (upstream lego semantics)."""

    source: object = None
    track: str = "drums"
    start: float | None = None
    end: float | None = None
    reference: object = None
    audio_codes: object = None
    name = "lego"

    def validate(self):
        if self.source is None:
            raise TaskError("lego needs a source (a Take, an audio file or (array, rate))")
        _check_track(self.track)
        if (self.start is None) != (self.end is None):
            raise TaskError("lego needs both start and end, or neither (the whole source)")
        if self.start is not None and self.end <= self.start:
            raise TaskError(f"region end must be after its start (got start={self.start}, end={self.end})")
        return self

    def plan(self, engine, blueprint):
        region = None if self.start is None else (float(self.start), float(self.end))
        return _source_task_plan(engine, blueprint, self.source, lego_instruction(self.track), region)


@dataclass(frozen=True)
class Complete(Task):
    """Write an accompaniment (`tracks`) for a vocal or instrument `source`. Needs the base checkpoint."""

    source: object = None
    tracks: tuple = ("drums", "bass")
    reference: object = None
    audio_codes: object = None
    name = "complete"

    def validate(self):
        if self.source is None:
            raise TaskError("complete needs a source (a Take, an audio file or (array, rate))")
        for track in self.tracks:
            _check_track(track)
        return self

    def plan(self, engine, blueprint):
        return _source_task_plan(engine, blueprint, self.source, complete_instruction(self.tracks))


TASKS = {cls.name: cls for cls in (Text2Music, Cover, Repaint, Extend, Extract, ExtractAll, Lego, Complete)}


def task_from_dict(data: dict, resolve_take=None):
    """Rebuild a task from `to_dict()` output. `resolve_take(id)` turns recorded take ids back into takes."""
    data = dict(data)
    name = data.pop("name", None)
    if name not in TASKS:
        raise TaskError(f"task name must be one of {', '.join(TASKS)} (got {name!r})")
    for key, value in list(data.items()):
        if isinstance(value, dict) and set(value) == {"take"}:
            if resolve_take is None:
                raise TaskError(f"the task's {key} is take {value['take']}: pass resolve_take to rebuild it")
            data[key] = resolve_take(value["take"])
        elif isinstance(value, list) and key in ("regions", "tracks"):
            data[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return TASKS[name](**data)
