"""Tiled VAE decoding and encoding, so that memory does not grow with the song's length.

Decoding works on windows of `chunk` latent frames with `overlap` frames of context on each
side; each window's centre is written into one preallocated output buffer (overlap-discard),
so the working memory is that of one window whatever the duration. The Oobleck decoder's
receptive field is about 8 latent frames each side, so the discarded margins hide any seam.
A `cancel` event is checked before every window, so a cancel waits for one window at most.
The VAE itself runs through `fast_paths` (folded weight norm, fused Snake, channels-last), its
windows' activations in memory mapped for them (`heap.mapped_large_buffers`), not in the heap.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..runtime.fast_paths import run_decoder, run_encoder
from ..runtime.heap import mapped_large_buffers

DECODE_CHUNK = 256  # latent frames per window on the CPU (about 10 s at 25 Hz)
DECODE_OVERLAP = 16
DEVICE_DECODE_CHUNK = {"cpu": DECODE_CHUNK, "cuda": 512, "mps": 512}
ENCODE_CHUNK_SECONDS = 30.0
ENCODE_OVERLAP_SECONDS = 2.0


def hop_length(vae) -> int:
    return math.prod(int(r) for r in vae.config.downsampling_ratios)


def default_decode_chunk(vae) -> int:
    """Latent frames per decode window for the VAE's device (larger on GPUs, where launches cost more)."""
    return DEVICE_DECODE_CHUNK.get(next(vae.parameters()).device.type, DECODE_CHUNK)


def _check_cancel(cancel, what: str) -> None:
    if cancel is not None and cancel.is_set():
        from ..errors import GenerationCancelled

        raise GenerationCancelled(f"generation cancelled during VAE {what}")


@torch.no_grad()
def decode(vae, latents: torch.Tensor, chunk: int | str | None = "auto", overlap: int = DECODE_OVERLAP,
           out: np.ndarray | None = None, cancel=None) -> np.ndarray:
    """Latents `[frames, channels]` of one item -> float32 audio `[audio_channels, frames * hop]`.

    `chunk`: latent frames per window ("auto": `default_decode_chunk`); `chunk=None` decodes in one
    pass (the reference the tiled path is tested against). `cancel` is checked before each window.
    """
    frames = latents.shape[0]
    hop = hop_length(vae)
    param = next(vae.parameters())
    z = latents.T.unsqueeze(0).to(device=param.device, dtype=param.dtype)  # [1, C, T]
    if out is None:
        out = np.empty((int(vae.config.audio_channels), frames * hop), dtype=np.float32)
    if chunk == "auto":
        chunk = default_decode_chunk(vae)
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be a whole number of latent frames >= 1, 'auto' or None (got {chunk!r:.80})")
    with mapped_large_buffers():
        if chunk is None or frames <= chunk:
            _check_cancel(cancel, "decoding")
            out[:] = _decode_window(vae, z, frames * hop)
            return out
        for start in range(0, frames, chunk):
            _check_cancel(cancel, "decoding")
            end = min(start + chunk, frames)
            left, right = max(0, start - overlap), min(frames, end + overlap)
            window = _decode_window(vae, z[:, :, left:right], (right - left) * hop)
            out[:, start * hop:end * hop] = window[:, (start - left) * hop:(end - left) * hop]
    return out


def _decode_window(vae, z: torch.Tensor, samples: int) -> np.ndarray:
    audio = run_decoder(vae, z)[0]
    if audio.shape[-1] < samples:  # odd strides lose a sample or two per layer; pad with the edge
        audio = torch.nn.functional.pad(audio, (0, samples - audio.shape[-1]), mode="replicate")
    return audio[:, :samples].float().cpu().numpy()


@torch.no_grad()
def encode(vae, audio: torch.Tensor, sample_mean: bool = True, generator=None,
           chunk_seconds: float = ENCODE_CHUNK_SECONDS, overlap_seconds: float = ENCODE_OVERLAP_SECONDS,
           cancel=None) -> torch.Tensor:
    """Audio `[channels, samples]` at the VAE's rate -> latents `[frames, latent_channels]`.

    Upstream samples the posterior (`latent_dist.sample()`); we use its mean by default so the
    same source always gives the same latents (pass `sample_mean=False` for upstream behaviour).
    `cancel` is checked before each window.
    """
    from diffusers.models.autoencoders.autoencoder_oobleck import OobleckDiagonalGaussianDistribution

    hop = hop_length(vae)
    sr = int(vae.config.sampling_rate)
    param = next(vae.parameters())
    frames = audio.shape[-1] // hop
    audio = audio[:, : frames * hop].to(device=param.device, dtype=param.dtype).unsqueeze(0)
    chunk = max(1, int(chunk_seconds * sr) // hop)
    overlap = int(overlap_seconds * sr) // hop
    pieces = []
    with mapped_large_buffers():
        for start in range(0, frames, chunk):
            end = min(start + chunk, frames)
            left, right = max(0, start - overlap), min(frames, end + overlap)
            _check_cancel(cancel, "encoding")
            dist = OobleckDiagonalGaussianDistribution(run_encoder(vae, audio[:, :, left * hop:right * hop]))
            z = dist.mean if sample_mean else dist.sample(generator)
            pieces.append(z[0, :, start - left:end - left])
    return torch.cat(pieces, dim=-1).T.contiguous()


def peak_normalize(audio: np.ndarray, target_db: float = -1.0) -> np.ndarray:
    """Scale so that the peak sits at `target_db` dBFS (in place; returns the array)."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0:
        audio *= (10.0 ** (target_db / 20.0)) / peak
    return audio
