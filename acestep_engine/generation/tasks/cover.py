"""Cover: re-imagine a source with the blueprint's caption and metadata, keeping its structure.

Everything a cover does lives here: its plan (the FSQ round trip of the source, or detokenized
`audio_codes`, as the source latents), its starting point (`noise_strength` > 0: the noised
source at the schedule time nearest `1 - noise_strength`, with every other setting kept), and
its per-step inputs (after `strength` of the steps the conditions switch to plain text2music:
silence as source, the text2music caption padded to the cover caption's token length as
upstream's batch padding does, since the DiT attends to those pads).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...blueprint import COVER_INSTRUCTION, TEXT2MUSIC_INSTRUCTION
from .base import Plan, Task, check_fraction, seconds_blueprint


@dataclass
class CoverPlan(Plan):
    switch_fraction: float = 1.0  # share of the steps that see the source
    start_latents: torch.Tensor | None = None  # the clean source, when starting from its noised version
    start_level: float = 0.0  # noise_strength
    silence_latents: torch.Tensor | None = None  # the source of the text2music phase

    def start(self, noise, settings):
        """Pure noise, or the noised source at the schedule time nearest `1 - noise_strength`."""
        if self.start_latents is None:
            return noise, settings
        target = 1.0 - self.start_level
        times = settings.schedule[:-1]
        index = min(range(len(times)), key=lambda i: abs(times[i] - target))
        t = times[index]
        start = t * noise + (1.0 - t) * self.start_latents.unsqueeze(0).to(noise)
        return start, settings.started_at(index)  # solver, method and guidance stay as chosen

    def step_inputs(self, conditions_for, batch, settings):
        main = (self.context(self.source_latents, batch), conditions_for(self.instruction).repeat(batch))
        switch = int(settings.steps * self.switch_fraction)
        if switch >= settings.steps:
            return lambda step: main
        silence = self.silence_latents
        late = (self.context(silence, batch),
                conditions_for(TEXT2MUSIC_INSTRUCTION, pad_like=self.instruction).repeat(batch))
        return lambda step: main if step < switch else late


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
    accepts_audio_codes = True

    def validate(self):
        self.check_common()
        if self.source is None and self.audio_codes is None:
            from ...errors import TaskError

            raise TaskError("cover needs a source (a Take, an audio file or (array, rate)) or audio_codes")
        check_fraction("strength", self.strength)
        check_fraction("noise_strength", self.noise_strength)
        return self

    def plan(self, facts, blueprint):
        from ..sources import codes_to_hints, fit_latents, fsq_round_trip, load_source

        source = load_source(facts, self.source) if self.source is not None else None
        if self.audio_codes is not None:
            hints = codes_to_hints(facts, self.audio_codes)
            frames = source.latents.shape[0] if source is not None else hints.shape[0]
            hints = fit_latents(facts, hints, frames)
        else:
            hints = fsq_round_trip(facts, source.latents)
            frames = hints.shape[0]
        noised = source is not None and self.noise_strength > 0
        return CoverPlan(seconds_blueprint(facts, blueprint, frames), frames, hints, torch.ones_like(hints),
                         COVER_INSTRUCTION, parent_id=source.take_id if source else None,
                         switch_fraction=float(self.strength),
                         start_latents=source.latents if noised else None,
                         start_level=float(self.noise_strength), silence_latents=facts.silence(frames))
