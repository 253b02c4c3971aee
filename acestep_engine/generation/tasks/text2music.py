"""Text2Music: a song from the blueprint alone (silence as source, every frame generated).

With `audio_codes` (5 Hz codes from the planner) the codes' detokenized hints are the source and
the cover instruction is used, as upstream does; the take's duration is then that of the codes,
and the recorded blueprint says so. Steering: the base `Plan` defaults (pure noise, one set of
inputs for every step, no hook).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...blueprint import COVER_INSTRUCTION, TEXT2MUSIC_INSTRUCTION
from ...errors import TaskError
from .base import MAX_SECONDS, MIN_SECONDS, Plan, Task, seconds_blueprint


@dataclass(frozen=True)
class Text2Music(Task):
    """Generate from the blueprint alone; `reference` audio steers the timbre, `audio_codes` the music."""

    reference: object = None
    audio_codes: object = None
    name = "text2music"
    accepts_audio_codes = True

    def plan(self, facts, blueprint):
        if self.audio_codes is None:
            frames = facts.frames_for(blueprint.duration)
            source = facts.silence(frames)
            return Plan(blueprint, frames, source, torch.ones_like(source), TEXT2MUSIC_INSTRUCTION)
        from ..sources import codes_to_hints

        hints = codes_to_hints(facts, self.audio_codes)
        frames = hints.shape[0]
        seconds = frames / facts.frame_rate
        if not MIN_SECONDS <= round(seconds, 2) <= MAX_SECONDS:
            raise TaskError(f"audio_codes give {seconds:.2f} s of music; a take must be {MIN_SECONDS:g} to "
                            f"{MAX_SECONDS:g} s long (the planner writes duration x 5 codes)")
        return Plan(seconds_blueprint(facts, blueprint, frames), frames, hints, torch.ones_like(hints),
                    COVER_INSTRUCTION)
