"""Reading, converting and writing audio files (numpy arrays `[channels, samples]`, float32).

Every door checks what comes in: sample rates are positive whole numbers, arrays are numeric,
finite and channels-first, and file errors name the file.
"""

from __future__ import annotations

import io
import math
import numbers
import os
import tempfile
from pathlib import Path

import numpy as np

from ..arguments import path_argument
from ..errors import AceStepError

MAX_CHANNELS = 8  # an array with more rows than this is taken to be samples-major, i.e. the wrong way round
SAMPLE_RATE_RANGE = (1, 1_536_000)  # Hz, inclusive
FORMATS = ("flac", "wav")


class AudioFileError(AceStepError, ValueError):
    """An audio file or array could not be used; the message names the path and the reason."""


def check_sample_rate(value, what: str = "sample_rate") -> int:
    """A whole number of Hz in SAMPLE_RATE_RANGE (44100, 48000.0 and numpy integers are accepted)."""
    lo, hi = SAMPLE_RATE_RANGE
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise AudioFileError(f"{what} must be a whole number of Hz between {lo} and {hi} (got {value!r:.80})")
    if not lo <= int(value) <= hi:
        raise AudioFileError(f"{what} must be between {lo} and {hi} Hz (got {value})")
    return int(value)


def check_audio_array(array, what: str = "audio") -> np.ndarray:
    """A numeric, finite, non-empty array -> float32 `[channels, samples]`.

    1-D arrays are mono. `[samples, 1]` and `[samples, 2]` (soundfile's layout) are transposed; any
    other array with more than MAX_CHANNELS rows is refused as the wrong way round.
    """
    if isinstance(array, (str, bytes)) or array is None:
        raise AudioFileError(f"{what} must be a numeric array [channels, samples] (got {type(array).__name__})")
    try:
        raw = np.asarray(array)
    except Exception as exc:  # ragged nested lists and the like
        raise AudioFileError(f"{what} is not an array of numbers ({type(exc).__name__}: {exc})") from None
    if raw.dtype.kind not in "biuf":
        raise AudioFileError(f"{what} must hold real numbers (got dtype {raw.dtype})")
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, refused below
        audio = raw.astype(np.float32, copy=False)
    if audio.ndim == 1:
        audio = audio[None]
    elif audio.ndim != 2:
        raise AudioFileError(f"{what} must have 1 or 2 dimensions [channels, samples] (got shape {raw.shape})")
    elif audio.shape[1] in (1, 2) and audio.shape[0] > audio.shape[1]:
        audio = audio.T  # samples-major, as soundfile returns it
    elif audio.shape[0] > MAX_CHANNELS:
        raise AudioFileError(f"{what} has the wrong shape {raw.shape}: arrays are channels first [channels, samples] "
                             f"with at most {MAX_CHANNELS} channels (transpose it: array.T)")
    if audio.shape[-1] == 0:
        raise AudioFileError(f"{what} is empty (0 samples)")
    if not np.isfinite(audio).all():
        bad = int(np.size(audio) - np.count_nonzero(np.isfinite(audio)))
        raise AudioFileError(f"{what} holds {bad} NaN or infinite samples; audio must be finite")
    return np.ascontiguousarray(audio, dtype=np.float32)


def _as_path(path, what: str = "path") -> Path:
    return path_argument(path, what, AudioFileError)


def read_audio(path) -> tuple[np.ndarray, int]:
    """Read any file soundfile (wav, flac, ogg, ...) or librosa (mp3, ...) can decode -> (`[ch, n]`, rate)."""
    import soundfile as sf

    path = _as_path(path)
    if not path.is_file():
        raise AudioFileError(f"path {path}: no such audio file")
    try:
        with open(path, "rb") as f:  # Python's open takes any name the OS gives (soundfile's wants UTF-8)
            data, rate = sf.read(f, dtype="float32", always_2d=True)
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
    if not np.isfinite(audio).all():
        raise AudioFileError(f"{path}: holds NaN or infinite samples")
    if not rate or rate <= 0:
        raise AudioFileError(f"{path}: declares a sample rate of {rate} Hz")
    return np.ascontiguousarray(audio, dtype=np.float32), int(rate)


def to_stereo(audio: np.ndarray) -> np.ndarray:
    """[n] or [ch, n] -> [2, n]: mono is duplicated, channels beyond two are dropped."""
    audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    if audio.shape[0] == 1:
        return np.repeat(audio, 2, axis=0)
    return audio[:2]


def resample(audio: np.ndarray, rate_from: int, rate_to: int) -> np.ndarray:
    rate_from, rate_to = check_sample_rate(rate_from, "rate_from"), check_sample_rate(rate_to, "rate_to")
    if rate_from == rate_to:
        return audio
    import librosa

    return librosa.resample(audio, orig_sr=rate_from, target_sr=rate_to, res_type="soxr_hq", axis=-1)


def load_source_audio(source, sample_rate: int) -> np.ndarray:
    """A path or `(array, rate)` -> float32 `[2, n]` at `sample_rate`, clamped to [-1, 1]."""
    sample_rate = check_sample_rate(sample_rate)
    if isinstance(source, (str, os.PathLike)):
        audio, rate = read_audio(source)
    elif isinstance(source, tuple) and len(source) == 2:
        rate = check_sample_rate(source[1], "the sample rate of the (array, sample_rate) tuple")
        audio = check_audio_array(source[0], "the audio array")
    else:
        raise AudioFileError(f"audio must be a file path or an (array, sample_rate) tuple (got {type(source).__name__})")
    audio = resample(to_stereo(audio), rate, sample_rate)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def check_format(format, path=None) -> str:
    where = f"{path}: " if path is not None else ""
    if not isinstance(format, str) or format.lower() not in FORMATS:
        raise AudioFileError(f"{where}format must be 'flac' or 'wav' (got {format!r:.80})")
    return format.lower()


def encode_audio(path, audio: np.ndarray, sample_rate: int, format: str, name=None) -> None:
    """Write straight to `path`, a path or a file opened "w+b" (no temporary file; callers that need
    atomicity rename afterwards); `name` is the path to name in errors when `path` is a file.
    FLAC is 24-bit PCM, WAV 32-bit float. The audio must already be checked."""
    import soundfile as sf

    subtype = "PCM_24" if format == "flac" else "FLOAT"
    target = str(path) if isinstance(path, (str, os.PathLike)) else path
    try:
        sf.write(target, np.asarray(audio, dtype=np.float32).T, int(sample_rate), subtype=subtype,
                 format=format.upper())
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioFileError(f"{name or path}: could not be written ({exc})") from None


def _described(rate: int, channels: int, samples: int) -> str:
    return (f"{rate} Hz, {channels} channel{'s' if channels != 1 else ''}, {samples:,} samples "
            f"({samples / rate:.2f} s)")


def read_expected_audio(path, sample_rate: int, channels: int, samples: int) -> np.ndarray:
    """Read a file that should hold `samples` frames of `channels` channels at `sample_rate` Hz (what a
    take's sidecar says) -> float32 `[channels, samples]`.

    The header is read first (soundfile's `info`), and at most `samples` + 1 frames are ever decoded,
    so a file that is not what its sidecar says (another rate, other channels, minutes instead of
    seconds, a header that lies about its length) costs no more than the take it claims to be.
    AudioFileError names the file and both descriptions on any mismatch."""
    import soundfile as sf

    path = _as_path(path)
    expected = _described(sample_rate, channels, samples)
    try:
        with open(path, "rb") as raw, sf.SoundFile(raw) as f:
            found = (f.samplerate, f.channels, f.frames)
            if found != (sample_rate, channels, samples):
                raise AudioFileError(f"{path} does not match its sidecar: the file holds {_described(*found)}; "
                                     f"the sidecar says {expected}")
            data = f.read(samples + 1, dtype="float32", always_2d=True)
    except AudioFileError:
        raise
    except Exception as exc:  # soundfile raises several types for damaged files
        raise AudioFileError(f"{path}: unreadable audio ({type(exc).__name__}: {exc})") from None
    if data.shape[0] != samples:
        raise AudioFileError(f"{path} does not match its sidecar: its header says {samples:,} samples but it "
                             f"holds {'more' if data.shape[0] > samples else f'only {data.shape[0]:,}'}; the "
                             f"sidecar says {expected}")
    if not np.isfinite(data).all():
        raise AudioFileError(f"{path}: holds NaN or infinite samples")
    return np.ascontiguousarray(data.T, dtype=np.float32)


def write_audio(path, audio: np.ndarray, sample_rate: int, format: str | None = None) -> Path:
    """Write atomically: a temporary file in the same folder, then rename. FLAC is 24-bit, WAV float."""
    path = _as_path(path)
    format = check_format(format or path.suffix.lstrip(".") or "flac", path)
    audio = check_audio_array(audio)
    sample_rate = check_sample_rate(sample_rate)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f".{format}", dir=path.parent)
    os.close(fd)
    try:
        encode_audio(tmp, audio, sample_rate, format)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV bytes, for notebook audio players."""
    import soundfile as sf

    sample_rate = check_sample_rate(sample_rate)
    if isinstance(audio, np.ndarray) and audio.dtype.kind == "f":
        audio = np.nan_to_num(audio)  # a player shows NaN as silence rather than refusing
    audio = check_audio_array(audio)
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1, 1).T, sample_rate,
             subtype="PCM_16", format="WAV")
    return buffer.getvalue()
