"""Tiled VAE decoding and encoding, so that memory does not grow with the song's length.

Decoding works on windows of `chunk` latent frames with `overlap` frames of context on each
side; each window's centre is written into one preallocated output buffer (overlap-discard),
so the working memory is that of one window whatever the duration. The Oobleck decoder's
receptive field is a few latent frames, so the discarded margins hide any seam.
"""

from __future__ import annotations

import math

import numpy as np
import torch

DECODE_CHUNK = 256  # latent frames per window (about 10 s at 25 Hz)
DECODE_OVERLAP = 16
ENCODE_CHUNK_SECONDS = 30.0
ENCODE_OVERLAP_SECONDS = 2.0


def hop_length(vae) -> int:
    return math.prod(int(r) for r in vae.config.downsampling_ratios)


@torch.no_grad()
def decode(vae, latents: torch.Tensor, chunk: int | None = DECODE_CHUNK, overlap: int = DECODE_OVERLAP,
           out: np.ndarray | None = None, cancel=None) -> np.ndarray:
    """Latents `[frames, channels]` of one item -> float32 audio `[audio_channels, frames * hop]`.

    `chunk=None` decodes in one pass (the reference the tiled path is tested against).
    """
    frames = latents.shape[0]
    hop = hop_length(vae)
    dtype = next(vae.parameters()).dtype
    z = latents.T.unsqueeze(0).to(dtype)  # [1, C, T]
    if out is None:
        out = np.empty((int(vae.config.audio_channels), frames * hop), dtype=np.float32)
    if chunk is None or frames <= chunk:
        out[:] = _decode_window(vae, z, frames * hop)
        return out
    for start in range(0, frames, chunk):
        if cancel is not None and cancel.is_set():
            from .errors import GenerationCancelled

            raise GenerationCancelled("generation cancelled during VAE decoding")
        end = min(start + chunk, frames)
        left, right = max(0, start - overlap), min(frames, end + overlap)
        window = _decode_window(vae, z[:, :, left:right], (right - left) * hop)
        out[:, start * hop:end * hop] = window[:, (start - left) * hop:(end - left) * hop]
    return out


def _decode_window(vae, z: torch.Tensor, samples: int) -> np.ndarray:
    audio = vae.decode(z).sample[0]
    if audio.shape[-1] < samples:  # odd strides lose a sample or two per layer; pad with the edge
        audio = torch.nn.functional.pad(audio, (0, samples - audio.shape[-1]), mode="replicate")
    return audio[:, :samples].float().cpu().numpy()


@torch.no_grad()
def encode(vae, audio: torch.Tensor, sample_mean: bool = True, generator=None,
           chunk_seconds: float = ENCODE_CHUNK_SECONDS, overlap_seconds: float = ENCODE_OVERLAP_SECONDS) -> torch.Tensor:
    """Audio `[channels, samples]` at the VAE's rate -> latents `[frames, latent_channels]`.

    Upstream samples the posterior (`latent_dist.sample()`); we use its mean by default so the
    same source always gives the same latents (pass `sample_mean=False` for upstream behaviour).
    """
    hop = hop_length(vae)
    sr = int(vae.config.sampling_rate)
    param = next(vae.parameters())
    frames = audio.shape[-1] // hop
    audio = audio[:, : frames * hop].to(device=param.device, dtype=param.dtype).unsqueeze(0)
    chunk = max(1, int(chunk_seconds * sr) // hop)
    overlap = int(overlap_seconds * sr) // hop
    pieces = []
    for start in range(0, frames, chunk):
        end = min(start + chunk, frames)
        left, right = max(0, start - overlap), min(frames, end + overlap)
        dist = vae.encode(audio[:, :, left * hop:right * hop]).latent_dist
        z = dist.mean if sample_mean else dist.sample(generator)
        pieces.append(z[0, :, start - left:end - left])
    return torch.cat(pieces, dim=-1).T.contiguous()


def peak_normalize(audio: np.ndarray, target_db: float = -1.0) -> np.ndarray:
    """Scale so that the peak sits at `target_db` dBFS (in place; returns the array)."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0:
        audio *= (10.0 ** (target_db / 20.0)) / peak
    return audio
