"""Audio that a task starts from or is guided by: sources, reference audio and 5 Hz audio codes.

A source may be a `Take`, a path to any audio file soundfile or librosa can read, or an
`(array, sample_rate)` tuple; it is resampled to the models' rate in stereo. Functions here take
the loaded models' facts (`acestep_engine.generation.facts.ModelFacts`; an `Engine` has the same attributes).
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass

import numpy as np
import torch

from ..arguments import shown
from ..errors import TaskError
from ..takes.audio_io import AudioFileError, check_audio_array, load_source_audio, resample, to_stereo

MAX_SOURCE_SECONDS = 600.0
REFERENCE_WINDOWS = 3  # upstream builds 30 s of reference from three 10 s windows
_CODE_RE = re.compile(r"<\|audio_code_(\d+)\|>")


@dataclass
class Source:
    """Source audio `[2, samples]` at the models' rate, its latents `[frames, C]` and the take it came from."""

    audio: np.ndarray
    latents: torch.Tensor
    take_id: str | None = None

    @property
    def samples(self) -> int:
        return int(self.audio.shape[-1])


def source_audio(facts, source, what: str = "source") -> tuple[np.ndarray, str | None]:
    """Resolve a Take, path or (array, rate) into float32 `[2, n]` at `facts.sample_rate`."""
    from ..takes.record import Take

    try:
        if isinstance(source, Take):
            audio = check_audio_array(source.audio, f"the audio of take {source.id}")  # NaN/Inf refused here
            audio = resample(to_stereo(audio), source.sample_rate, facts.sample_rate)
            take_id = source.id
        else:
            audio = load_source_audio(source, facts.sample_rate)
            take_id = None
    except AudioFileError as exc:
        raise TaskError(f"{what}: {exc}") from None
    seconds = audio.shape[-1] / facts.sample_rate
    if seconds > MAX_SOURCE_SECONDS:
        raise TaskError(f"{what} must be at most {MAX_SOURCE_SECONDS:g} seconds long (got {seconds:.1f} s)")
    if audio.shape[-1] < facts.hop_length:
        raise TaskError(f"{what} is too short: {audio.shape[-1]} samples, less than one latent frame")
    return np.ascontiguousarray(audio, dtype=np.float32), take_id


def load_source(facts, source, what: str = "source") -> Source:
    """Audio plus latents. A take made by the same weights reuses its stored latents (exact, no encode)."""
    from ..takes.record import Take

    audio, take_id = source_audio(facts, source, what)
    frames = audio.shape[-1] // facts.hop_length
    if (isinstance(source, Take) and source.latents is not None and source.sample_rate == facts.sample_rate
            and source.model.get("weights") == facts.models.fingerprint and len(source.latents) == frames):
        latents = torch.from_numpy(np.asarray(source.latents)).to(facts.device, facts.dtype)
    else:
        latents = facts.encode_audio(audio)
    return Source(audio, latents, take_id)


def fit_latents(facts, latents: torch.Tensor, frames: int) -> torch.Tensor:
    """Crop, or pad with silence latents, to `frames` `[frames, C]`."""
    if latents.shape[0] >= frames:
        return latents[:frames]
    return torch.cat([latents, facts.silence(frames - latents.shape[0]).to(latents)])


def reference_latents(facts, reference) -> torch.Tensor:
    """Timbre reference: three windows from the front, middle and back thirds, `timbre_frames` long in all.

    Upstream picks the windows at random; we take the centre of each third so the same
    reference always gives the same conditions. Audio shorter than the total is tiled first.
    """
    from .conditioning import timbre_frames

    audio, _ = source_audio(facts, reference, "reference")
    total = timbre_frames(facts.models) * facts.hop_length
    window = total // REFERENCE_WINDOWS
    if audio.shape[-1] < total:
        audio = np.tile(audio, (1, int(np.ceil(total / audio.shape[-1]))))
    third = audio.shape[-1] / REFERENCE_WINDOWS
    pieces = []
    for k in range(REFERENCE_WINDOWS):
        centre = int((k + 0.5) * third)
        start = min(max(0, centre - window // 2), audio.shape[-1] - window)
        pieces.append(audio[:, start:start + window])
    clip = np.concatenate(pieces, axis=-1)
    clip = np.pad(clip, ((0, 0), (0, total - clip.shape[-1])))
    return facts.encode_audio(clip)[: timbre_frames(facts.models)]


def parse_audio_codes(codes, codebook_size: int) -> list[int]:
    """`"<|audio_code_12|><|audio_code_40211|>..."` (or a list of ints) -> ints clamped to the codebook."""
    if isinstance(codes, str):
        values = [int(v) for v in _CODE_RE.findall(codes)]
        if not values:
            raise TaskError("audio_codes must contain codes written as <|audio_code_N|> (found none)")
    else:
        if not isinstance(codes, (list, tuple)) or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                                           for v in codes):
            raise TaskError(f"audio_codes must be text of <|audio_code_N|> codes or a list of whole numbers "
                            f"(got {type(codes).__name__} {shown(codes)})")
        values = [int(v) for v in codes]
        if not values:
            raise TaskError("audio_codes must not be empty")
    return [min(max(v, 0), codebook_size - 1) for v in values]


@torch.no_grad()
def codes_to_hints(facts, codes) -> torch.Tensor:
    """Audio codes -> quantizer output -> detokenizer -> `[5 * N, C]` latent hints (upstream's cover source)."""
    tokenizer, detokenizer = facts.models.audio_tokenizer, facts.models.detokenizer
    if tokenizer is None or detokenizer is None:
        raise TaskError(f"the checkpoint {facts.variant.name} has no audio tokenizer/detokenizer weights, "
                        "so it cannot use audio codes or cover")
    values = parse_audio_codes(codes, tokenizer.quantizer.codebook_size)
    indices = torch.tensor(values, device=facts.device).view(1, -1, 1)
    quantized = tokenizer.quantizer.get_output_from_indices(indices).to(facts.dtype)
    return detokenizer(quantized)[0]


@torch.no_grad()
def fsq_round_trip(facts, latents: torch.Tensor) -> torch.Tensor:
    """Source latents `[T, C]` -> 5 Hz FSQ codes -> detokenized hints `[T, C]` (the cover source)."""
    tokenizer, detokenizer = facts.models.audio_tokenizer, facts.models.detokenizer
    if tokenizer is None or detokenizer is None:
        raise TaskError(f"the checkpoint {facts.variant.name} has no audio tokenizer/detokenizer weights, "
                        "so it cannot cover")
    quantized, _ = tokenizer.tokenize(latents.unsqueeze(0), silence_latent=facts.models.silence_latent)
    return detokenizer(quantized)[0, : latents.shape[0]]


@torch.no_grad()
def audio_to_codes(facts, audio_source) -> str:
    """Audio -> the 5 Hz code string the LM reads and writes (`<|audio_code_N|>...`)."""
    source = load_source(facts, audio_source)
    _, indices = facts.models.audio_tokenizer.tokenize(source.latents.unsqueeze(0),
                                                        silence_latent=facts.models.silence_latent)
    return "".join(f"<|audio_code_{int(i)}|>" for i in indices[0, :, 0].tolist())
