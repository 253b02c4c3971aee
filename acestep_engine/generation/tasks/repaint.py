"""Repaint and Extend: regenerate regions of a source, or grow it to the left and right.

Everything they do lives here: the plan (a canvas padded for outpainting, the regions silenced
in the source latents and marked in the chunk mask), the step hook (outside the regions the
state is reset to the noised clean source for the first steps: all of them in conservative
mode, `1 - strength` of them in balanced mode, none in aggressive mode; turbo variants skip the
reset after the final step as upstream's turbo loop does, base/sft variants apply it as
upstream's base loop does), the latent crossfade after the loop, and the waveform splice with
the source after decoding. The result keeps the source's loudness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...arguments import shown
from ...blueprint import REPAINT_INSTRUCTION
from ...errors import TaskError
from ..regions import Regions
from .base import MAX_SECONDS, Plan, Task, check_fraction, check_seconds, check_source, seconds_blueprint

REPAINT_MODES = ("balanced", "conservative", "aggressive")


def repaint_settings(mode: str, strength: float) -> tuple[float, int, float]:
    """(injection fraction, latent crossfade frames at 25 Hz, waveform crossfade seconds) per mode."""
    if mode == "aggressive":
        return 0.0, 0, 0.0
    if mode == "conservative":
        return 1.0, 25, 0.05
    inverse = 1.0 - strength
    return inverse, round(25 * inverse), 0.05 * inverse


@dataclass
class RepaintPlan(Plan):
    keep_latents: torch.Tensor | None = None  # the clean source latents of the whole canvas
    inside: np.ndarray | None = None  # bool [frames]: the regions
    injection_fraction: float = 0.0
    skip_final_injection: bool = False  # turbo: no reset after the last step (upstream's turbo loop)
    crossfade_frames: int = 0
    splice_audio: np.ndarray | None = None  # the padded source audio (None in aggressive mode)
    wav_crossfade_samples: int = 0
    hop_length: int = 1
    output_samples: int | None = None  # crop the decoded audio to this many samples
    prefix_audio: np.ndarray | None = None  # untouched source audio placed before the result (Extend)
    suffix_audio: np.ndarray | None = None
    keeps_loudness = True

    def step_hook(self, noise, settings):
        """Outside the regions, reset to `t' * noise + (1 - t') * source` after each of the first steps."""
        inject_steps = round(self.injection_fraction * settings.steps)
        if inject_steps <= 0:
            return None
        keep = self.keep_latents.unsqueeze(0).to(noise)
        regenerate = self.chunk_mask.unsqueeze(0) > 0
        last = settings.steps - 1

        def hook(step, t_next, x):
            if step >= inject_steps or (self.skip_final_injection and step == last):
                return x
            return torch.where(regenerate, x, t_next * noise + (1 - t_next) * keep)

        return hook

    def after_denoise(self, latents):
        """Latent crossfade: the source outside the regions, ramping over `crossfade_frames`."""
        if self.splice_audio is None:
            return latents
        soft = torch.from_numpy(soft_mask(self.inside, self.crossfade_frames)).to(latents)[None, :, None]
        return soft * latents + (1 - soft) * self.keep_latents.unsqueeze(0).to(latents)

    def finish(self, audio):
        if self.splice_audio is not None:
            inside = np.repeat(self.inside, self.hop_length)[: audio.shape[-1]]
            soft = soft_mask(inside, self.wav_crossfade_samples)
            new_peak = float(np.max(np.abs(audio * soft))) if audio.size else 0.0
            if new_peak > 1.0:  # scale only the new material; the kept audio stays as it was
                audio = audio / new_peak
            audio = (soft * audio + (1 - soft) * self.splice_audio[:, : audio.shape[-1]]).astype(np.float32)
        if self.output_samples is not None:
            audio = np.ascontiguousarray(audio[:, : self.output_samples])
        if self.prefix_audio is not None or self.suffix_audio is not None:
            parts = [p for p in (self.prefix_audio, audio, self.suffix_audio) if p is not None]
            audio = np.concatenate(parts, axis=-1).astype(np.float32)
        return audio


def soft_mask(inside: np.ndarray, ramp: int) -> np.ndarray:
    """1 where `inside`, falling linearly to 0 over `ramp` positions outside each boundary."""
    inside = np.asarray(inside) > 0.5
    if ramp <= 0 or inside.all() or not inside.any():
        return inside.astype(np.float32)
    from scipy.ndimage import distance_transform_edt

    distance = distance_transform_edt(~inside)  # positions from the nearest inside position
    return np.clip(1.0 - distance / (ramp + 1), 0.0, 1.0).astype(np.float32)


def _check_mode(mode, strength) -> None:
    if not isinstance(mode, str) or mode not in REPAINT_MODES:
        raise TaskError(f"mode must be one of {', '.join(REPAINT_MODES)} (got {mode!r:.80})")
    check_fraction("strength", strength)


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
    inserts: tuple = ()
    lyrics: str | None = None
    caption: str | None = None
    sections: tuple = ()
    name = "repaint"

    @classmethod
    def section(cls, take, section, lyrics=None, caption=None, *, sections=None, grow: bool = False,
                mode: str = "balanced", strength: float = 0.5, reference=None) -> "Repaint":
        """Regenerate a section of `take` by name ("chorus 2"), or several in one pass (a list of
        names with a list of lyrics, or a dict name -> lyrics), with new `lyrics` (None keeps them).

        The region is the section's span, with the mode's crossfade into its neighbours; the blueprint's
        lyrics are the take's with only those sections' lines replaced; `caption` (None keeps it) is
        the whole song's. The sections are the take's own (`take.notes["sections"]`, found by
        `acestep_engine.lm.take_sections(engine, take)`) or `sections`. Lyrics that need more time than
        the section has are refused with how much more; `grow=True` lengthens the section by that much
        (in whole bars) and moves the rest of the song later. The new take's `task["sections"]`
        records each section replaced, its span and its old and new lines."""
        from .by_section import repaint_sections

        return repaint_sections(cls, take, section, lyrics, caption, sections=sections, grow=grow, mode=mode,
                                strength=strength, reference=reference)

    def region_set(self) -> Regions:
        """The regions to repaint, in seconds of the source's timeline."""
        if not (isinstance(self.regions, (list, tuple)) and len(self.regions) == 0):  # regions were given
            if self.start is not None or self.end is not None:
                raise TaskError("give either start/end or regions, not both")
            return Regions.of(self.regions)
        if self.start is None or self.end is None:
            raise TaskError("repaint needs start and end (seconds) or regions=[(start, end), ...]")
        return Regions.of([(self.start, self.end)])

    def region_list(self) -> list[tuple[float, float]]:
        return list(self.region_set())

    def validate(self):
        self.check_common()
        check_source(self)
        _check_mode(self.mode, self.strength)
        self.region_set()
        check_inserts(self.inserts)
        check_text_edits(self)
        return self

    def plan(self, facts, blueprint):
        from ..sources import source_audio

        audio, take_id = source_audio(facts, self.source)
        audio, latents = with_gaps(facts, audio, take_latents(facts, self.source), self.inserts)
        blueprint = edited_blueprint(self, blueprint)
        duration = audio.shape[-1] / facts.sample_rate
        regions = self.region_set()
        for start, end in regions:
            if start < -MAX_SECONDS or end > duration + MAX_SECONDS or end - start > MAX_SECONDS:
                raise TaskError(f"region ({start}, {end}) must lie within -600..{duration + 600:.1f} s and be "
                                "at most 600 s long")
        left = max(0.0, -regions.start)
        right = max(0.0, regions.end - duration)
        return repaint_plan(facts, blueprint, audio, take_id, regions, left, right, self.mode, self.strength, latents)


@dataclass(frozen=True)
class Extend(Task):
    """Add `left` seconds before and/or `right` seconds after `source` (outpainting).

    The extended song is at most 600 s long. `context` limits how much of the source the model
    sees (the seconds next to the new part), which makes long songs cheaper to extend; the rest
    of the source is put back untouched around the result. Built on the repaint machinery.
    """

    source: object = None
    left: float = 0.0
    right: float = 30.0
    context: float | None = None
    mode: str = "balanced"
    strength: float = 0.5
    reference: object = None
    audio_codes: object = None
    inserts: tuple = ()
    lyrics: str | None = None
    caption: str | None = None
    sections: tuple = ()
    name = "extend"
    capability = "repaint"

    @classmethod
    def section(cls, take, lyrics: str, where: str = "end", seconds: float | None = None, *, sections=None,
                caption=None, context: float | None = None, mode: str = "balanced", strength: float = 0.5,
                reference=None) -> "Extend":
        """Add a section to `take`: `lyrics` is its `[tag]` line and its lines ("[bridge]\\n..."), `where`
        is "start", "end", "after <section>" or "before <section>" (names as in `take_sections`).

        `seconds` (None: from its lines at the take's pace, else two bars a line at the blueprint's BPM,
        rounded up to whole bars) is the new part's length; the rest of the song is kept (outside the
        new part and its crossfades, sample for sample) and the model sees it as context. The
        blueprint's lyrics get the new section at the same place; `task["sections"]` records it."""
        from .by_section import extend_section

        return extend_section(cls, take, lyrics, where, seconds, sections=sections, caption=caption,
                              context=context, mode=mode, strength=strength, reference=reference)

    def validate(self):
        self.check_common()
        check_source(self)
        check_seconds("left", self.left, 0.0, MAX_SECONDS)
        check_seconds("right", self.right, 0.0, MAX_SECONDS)
        inserts = check_inserts(self.inserts)
        if self.left == 0 and self.right == 0 and not inserts:
            raise TaskError("extend needs left or right to be more than 0 seconds (or inserts)")
        if self.context is not None:
            check_seconds("context", self.context, 1.0, MAX_SECONDS)
        _check_mode(self.mode, self.strength)
        check_text_edits(self)
        return self

    def plan(self, facts, blueprint):
        from ..sources import source_audio

        audio, take_id = source_audio(facts, self.source)
        gaps = check_inserts(self.inserts)
        audio, latents = with_gaps(facts, audio, take_latents(facts, self.source), gaps)
        blueprint = edited_blueprint(self, blueprint)
        rate = facts.sample_rate
        n = audio.shape[-1]
        left, right = float(self.left), float(self.right)
        room = MAX_SECONDS - n / rate
        if left + right > room + 1e-6:
            field, value = ("left + right", f"left={left:g}, right={right:g}") if left and right else \
                (("right", f"{right:g}") if right else ("left", f"{left:g}"))
            raise TaskError(f"{field} must be between 0 and {room:.2f} seconds for this {n / rate:.2f} s source "
                            f"(an extended song is at most {MAX_SECONDS:g} s) (got {value})")
        context = self.context if self.context is not None else MAX_SECONDS - left - right
        keep = int(round(context * rate))
        prefix = suffix = None
        if keep < n:
            if gaps:
                raise TaskError(f"context ({context:g} s) is shorter than the source ({n / rate:.1f} s): a context "
                                "window applies to extending at the start or the end, not to inserting")
            if left and right:
                raise TaskError(f"context ({context:g} s) is shorter than the source ({n / rate:.1f} s): "
                                "extend one side at a time")
            if right:
                prefix, audio = audio[:, : n - keep], audio[:, n - keep:]
            else:
                audio, suffix = audio[:, :keep], audio[:, keep:]
        duration = audio.shape[-1] / rate
        spans = ([(-left, 0.0)] if left else []) + gap_spans(facts, gaps) + \
            ([(duration, duration + right)] if right else [])
        hop = facts.hop_length
        if latents is not None and prefix is not None:
            latents = latents[prefix.shape[-1] // hop:] if prefix.shape[-1] % hop == 0 else None
        if latents is not None:
            latents = latents[: audio.shape[-1] // hop]
        plan = repaint_plan(facts, blueprint, audio, take_id, Regions.of(spans), left, right, self.mode,
                            self.strength, latents)
        plan.prefix_audio, plan.suffix_audio = prefix, suffix
        total = (plan.output_samples + (0 if prefix is None else prefix.shape[-1])
                 + (0 if suffix is None else suffix.shape[-1]))
        plan.blueprint = blueprint.replace(duration=min(MAX_SECONDS, max(10.0, round(total / rate, 2))))
        return plan


def check_inserts(inserts) -> tuple[tuple[float, float], ...]:
    """`inserts`: (at, seconds) pairs, each a gap of `seconds` (> 0) put into the source at `at` seconds."""
    hint = f"inserts must be (at, seconds) pairs, e.g. ((42.0, 8.0),) (got {shown(inserts)})"
    if isinstance(inserts, (str, bytes, dict)) or not hasattr(inserts, "__iter__"):
        raise TaskError(hint)
    out = []
    for item in inserts:
        if isinstance(item, (str, bytes, dict)) or not hasattr(item, "__iter__") or len(tuple(item)) != 2:
            raise TaskError(hint)
        at, seconds = tuple(item)
        out.append((check_seconds("insert at", at, 0.0, MAX_SECONDS),
                    check_seconds("insert seconds", seconds, 0.04, MAX_SECONDS)))
    return tuple(sorted(out))


def _gap_frames(facts, at: float, seconds: float) -> tuple[int, int]:
    """(frame where a gap goes, its length in frames): whole latent frames, so a take's latents are reused."""
    return int(round(at * facts.frame_rate)), max(1, int(round(seconds * facts.frame_rate)))


def with_gaps(facts, audio: np.ndarray, latents, inserts):
    """`audio` `[2, n]` (and its latents `[frames, C]`, or None) with silent gaps put in at each insert."""
    if not inserts:
        return audio, latents
    hop, n = facts.hop_length, audio.shape[-1]
    audio_parts, latent_parts, done_sample, done_frame = [], [], 0, 0
    for at, seconds in inserts:
        if at > n / facts.sample_rate + 1e-6:
            raise TaskError(f"insert at must lie within the {n / facts.sample_rate:.2f} s source (got {at:g})")
        frame, length = _gap_frames(facts, at, seconds)
        sample = min(n, frame * hop)
        audio_parts += [audio[:, done_sample:sample], np.zeros((audio.shape[0], length * hop), np.float32)]
        if latents is not None:
            latent_parts += [latents[done_frame:frame], facts.silence(length).to(latents)]
        done_sample, done_frame = sample, frame
    audio_parts.append(audio[:, done_sample:])
    if latents is not None:
        latent_parts.append(latents[done_frame:])
        latents = torch.cat(latent_parts)
    return np.ascontiguousarray(np.concatenate(audio_parts, axis=-1), dtype=np.float32), latents


def gap_spans(facts, inserts) -> list[tuple[float, float]]:
    """Where the gaps lie in the lengthened song (seconds), each as generated region."""
    spans, shift = [], 0
    for at, seconds in inserts:
        frame, length = _gap_frames(facts, at, seconds)
        spans.append(((frame + shift) / facts.frame_rate, (frame + shift + length) / facts.frame_rate))
        shift += length
    return spans


def check_text_edits(task) -> None:
    """The new whole-song `lyrics` and `caption` a section edit sets, checked as the blueprint checks them,
    and `sections`, its record of what was edited: one mapping per section, each naming it."""
    from ...blueprint import MAX_CAPTION_CHARS, MAX_LYRICS_CHARS

    for field, limit in (("lyrics", MAX_LYRICS_CHARS), ("caption", MAX_CAPTION_CHARS)):
        value = getattr(task, field)
        if value is None:
            continue
        if not isinstance(value, str):
            raise TaskError(f"{field} must be text or None (got {type(value).__name__} {shown(value)})")
        if len(value) >= limit:
            raise TaskError(f"{field} would be {len(value)} characters with the new section; it must be shorter "
                            f"than {limit}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TaskError(f"{field} holds a character that is not valid Unicode text ({exc.reason} at character "
                            f"{exc.start})") from None
    records = task.sections
    if not isinstance(records, (tuple, list)) or not all(
            isinstance(r, dict) and isinstance(r.get("section"), str) for r in records):
        raise TaskError("sections is the record of a section edit, made by Repaint.section or Extend.section: "
                        f"a tuple of mappings that each name their 'section' (got {shown(records)})")


def edited_blueprint(task, blueprint):
    """The blueprint with the task's new lyrics and caption (a section edit), else unchanged."""
    changes = {field: getattr(task, field) for field in ("lyrics", "caption") if getattr(task, field) is not None}
    return blueprint.replace(**changes) if changes else blueprint


def take_latents(facts, source) -> torch.Tensor | None:
    """The latents a take was decoded from, when these weights made it (exact reuse, no VAE encode)."""
    from ...takes.record import Take

    if (isinstance(source, Take) and source.latents is not None and source.sample_rate == facts.sample_rate
            and source.model.get("weights") == facts.fingerprint):
        return torch.from_numpy(np.asarray(source.latents)).to(facts.device, facts.dtype)
    return None


def repaint_plan(facts, blueprint, audio, take_id, regions: Regions, left, right, mode, strength,
                 take_latents=None) -> RepaintPlan:
    """Shared by Repaint and Extend: pad the canvas, silence the regions, mark them in the mask.

    A take's own latents are reused for the kept audio when the padding is whole frames (users ask
    for this "session latent" reuse; upstream re-encodes the decoded audio, which drifts).
    """
    from ..sources import Source, load_source

    rate, hop = facts.sample_rate, facts.hop_length
    left_samples, right_samples = int(round(left * rate)), int(round(right * rate))
    canvas = np.pad(audio, ((0, 0), (left_samples, right_samples)))
    total = canvas.shape[-1]
    if total / rate > MAX_SECONDS + 1e-6:
        raise TaskError(f"the repainted song must be at most 600 seconds long (got {total / rate:.1f} s)")
    padded = np.pad(canvas, ((0, 0), (0, (-total) % hop)))  # whole frames; cropped after decoding
    frames = padded.shape[-1] // hop
    if take_latents is not None and left_samples % hop == 0 and take_latents.shape[0] * hop <= audio.shape[-1]:
        lead = left_samples // hop
        tail = frames - lead - take_latents.shape[0]
        latents = torch.cat([facts.silence(lead), take_latents, facts.silence(max(0, tail))])[:frames]
        source = Source(padded, latents, take_id)
    else:
        source = load_source(facts, (padded, rate))
    inside = regions.shifted(left).frames(facts.frame_rate, frames)
    if not inside.any():
        raise TaskError("the regions cover no whole latent frame of the song")
    inside_t = torch.from_numpy(inside).to(facts.device)
    mask = inside_t.to(facts.dtype)[:, None].expand(-1, facts.latent_channels).contiguous()
    source_latents = torch.where(inside_t[:, None], facts.silence(frames), source.latents)
    injection, crossfade, wav_crossfade = repaint_settings(mode, strength)
    crossfade = round(crossfade * facts.frame_rate / 25.0)  # the mode table is in 25 Hz frames
    return RepaintPlan(seconds_blueprint(facts, blueprint, frames), frames, source_latents, mask,
                       REPAINT_INSTRUCTION, parent_id=take_id, keep_latents=source.latents, inside=inside,
                       injection_fraction=injection, skip_final_injection=facts.turbo,
                       crossfade_frames=crossfade, splice_audio=padded if mode != "aggressive" else None,
                       wav_crossfade_samples=int(round(wav_crossfade * rate)), hop_length=hop,
                       output_samples=total)
