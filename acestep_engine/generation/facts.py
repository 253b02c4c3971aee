"""What tasks and sources need from the loaded models, without the Engine around them.

Tasks plan with these facts (rate, hop, channels, silence, encode); they never import the
engine, so the engine can import the tasks and nothing imports back.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import TaskError
from ..models import vae_codec
from .conditioning import silence_frames

MAX_SECONDS = 24 * 3600  # a duration beyond a day is not a song


@dataclass(frozen=True)
class ModelFacts:
    """The loaded models (`models`), where they run (`device`, `dtype`) and the facts derived from them."""

    models: object  # acestep_engine.models.loader.LoadedModels
    device: torch.device
    dtype: torch.dtype

    @property
    def sample_rate(self) -> int:
        return self.models.sample_rate

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame (1920 for the official VAE)."""
        return self.models.hop_length

    @property
    def frame_rate(self) -> float:
        """Latent frames per second (25 for the official VAE)."""
        return self.models.frame_rate

    @property
    def latent_channels(self) -> int:
        return self.models.latent_channels

    @property
    def variant(self):
        return self.models.variant

    @property
    def turbo(self) -> bool:
        return bool(self.models.variant.turbo)

    @property
    def fingerprint(self) -> str:
        return self.models.fingerprint

    def frames_for(self, seconds: float) -> int:
        """Latent frames for a duration, as upstream: `round(seconds, 1) * rate // hop`."""
        if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real) or not 0 <= seconds <= MAX_SECONDS:
            raise TaskError(f"seconds must be a number from 0 to {MAX_SECONDS:g} (got {seconds!r:.80})")
        return int(round(float(seconds), 1) * self.sample_rate) // self.hop_length

    def silence(self, frames: int) -> torch.Tensor:
        """`[frames, C]` silence latents in the model dtype."""
        return silence_frames(self.models, frames)

    def encode_audio(self, audio: np.ndarray) -> torch.Tensor:
        """Float32 audio `[2, samples]` at `sample_rate` -> latents `[samples // hop, C]` (tiled VAE, mean)."""
        tensor = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        return vae_codec.encode(self.models.vae, tensor).to(self.device, self.dtype)
