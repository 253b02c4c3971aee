"""Generation tasks. Each task says how to build the source latents, chunk mask and instruction;
the conditioning, denoising loop and decoding are shared (see `Engine.generate`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import torch

from .blueprint import TEXT2MUSIC_INSTRUCTION, Blueprint

if TYPE_CHECKING:
    from .engine import Engine


@dataclass
class TaskPlan:
    """What a task hands the shared pipeline, for one batch item.

    `source_latents` and `chunk_mask` are `[frames, C]` in the model dtype; the mask is 1 where
    the model should generate and 0 where it should keep the source.
    """

    blueprint: Blueprint  # possibly with the duration the source implies
    frames: int  # latent frames of the result
    source_latents: torch.Tensor
    chunk_mask: torch.Tensor
    instruction: str
    parent_id: str | None = None
    extras: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Text2Music:
    """Generate a song from the blueprint alone: silence as source, every frame generated."""

    name = "text2music"

    def validate(self) -> "Text2Music":
        return self

    def to_dict(self) -> dict:
        return {"name": self.name, **asdict(self)}

    def plan(self, engine: "Engine", blueprint: Blueprint) -> TaskPlan:
        frames = engine.frames_for(blueprint.duration)
        source = engine.silence(frames)
        mask = torch.ones_like(source)
        return TaskPlan(blueprint, frames, source, mask, TEXT2MUSIC_INSTRUCTION)


TASKS = {"text2music": Text2Music}


def task_from_dict(data: dict):
    """Rebuild a task from `to_dict()` output (used to replay a take)."""
    data = dict(data)
    name = data.pop("name", None)
    if name not in TASKS:
        raise ValueError(f"task name must be one of {', '.join(TASKS)} (got {name!r})")
    return TASKS[name](**data)
