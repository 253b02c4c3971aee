"""Reading, converting and writing audio files (numpy arrays `[channels, samples]`, float32)."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import AceStepError


class AudioFileError(AceStepError, ValueError):
    """An audio file or array could not be used; the message names the path and the reason."""


def read_audio(path) -> tuple[np.ndarray, int]:
    """Read any file soundfile (wav, flac, ogg, ...) or librosa (mp3, ...) can decode."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"{path}: no such audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        audio = data.T
    except Exception:
        try:
            import librosa

            audio, rate = librosa.load(str(path), sr=None, mono=False)
            audio = np.atleast_2d(audio).astype(np.float32)
        except Exception as exc:
            raise AudioFileError(f"{path}: unreadable audio ({type(exc).__name__}: {exc})") from None
    if audio.shape[-1] == 0:
        raise AudioFileError(f"{path}: empty (0 samples)")
    return np.ascontiguousarray(audio, dtype=np.float32), int(rate)


def to_stereo(audio: np.ndarray) -> np.ndarray:
    """[n] or [ch, n] -> [2, n]: mono is duplicated, channels beyond two are dropped."""
    audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    if audio.shape[0] == 1:
        return np.repeat(audio, 2, axis=0)
    return audio[:2]


def resample(audio: np.ndarray, rate_from: int, rate_to: int) -> np.ndarray:
    if int(rate_from) == int(rate_to):
        return audio
    import librosa

    return librosa.resample(audio, orig_sr=int(rate_from), target_sr=int(rate_to), res_type="soxr_hq", axis=-1)


def _channels_first(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 1:
        return array[None]
    if array.ndim != 2:
        raise AudioFileError(f"audio arrays must have 1 or 2 dimensions (got shape {array.shape})")
    if array.shape[1] in (1, 2) and array.shape[0] > array.shape[1]:
        return array.T  # samples-major, as soundfile returns it
    return array


def load_source_audio(source, sample_rate: int) -> np.ndarray:
    """A path or `(array, rate)` -> float32 `[2, n]` at `sample_rate`, clamped to [-1, 1]."""
    if isinstance(source, (str, Path)):
        audio, rate = read_audio(source)
    elif isinstance(source, tuple) and len(source) == 2:
        audio, rate = _channels_first(source[0]), int(source[1])
        if audio.shape[-1] == 0:
            raise AudioFileError("the audio array is empty (0 samples)")
    else:
        raise AudioFileError(f"audio must be a file path or an (array, sample_rate) tuple (got {type(source).__name__})")
    audio = resample(to_stereo(audio), rate, sample_rate)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def write_audio(path, audio: np.ndarray, sample_rate: int, format: str | None = None) -> Path:
    """Write atomically: a temporary file in the same folder, then rename. FLAC is 24-bit, WAV float."""
    import soundfile as sf

    path = Path(path)
    format = (format or path.suffix.lstrip(".") or "flac").lower()
    if format not in ("flac", "wav"):
        raise AudioFileError(f"{path}: format must be 'flac' or 'wav' (got {format!r})")
    subtype = "PCM_24" if format == "flac" else "FLOAT"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f".{format}", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, np.asarray(audio, dtype=np.float32).T, int(sample_rate), subtype=subtype, format=format.upper())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV bytes, for notebook audio players."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.clip(np.asarray(audio, dtype=np.float32), -1, 1).T, int(sample_rate), subtype="PCM_16",
             format="WAV")
    return buffer.getvalue()
