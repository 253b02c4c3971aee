"""Measure a take (tempo, key, loudness, peaks, silence) and compare it with its blueprint.

    m = measure(take)                      # or measure("song.flac"), measure((array, 48000))
    m.bpm, m.key, m.loudness_lufs          # 121.9, "A minor", -9.8
    a = adherence(take)                    # asked vs measured: "match" / "double-time" / "off", key "exact" / ...
    m = measure_take(store, take_id)       # measured once, then read back from the take's sidecar

Tempo is librosa's beat tracker refined by a straight-line fit through the beat times (the
tracker alone quantises to its hop, about 2 % at 120 BPM); a tempo measured at twice or half
the asked one is named as such rather than called wrong. Key is the mean constant-Q chroma
correlated with the Krumhansl-Kessler key profiles (24 keys). Loudness is ITU-R BS.1770-4
integrated loudness (pyloudnorm); true peak is the sample peak of a 4x oversampled copy.
No torch here.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from .audio_io import AudioFileError, read_audio

MEASUREMENT_VERSION = 1
ANALYSIS_RATE = 22050  # tempo and key are measured on a mono copy at this rate
BPM_TOLERANCE = 0.04  # a measured tempo within 4 % of the asked one matches
SILENCE_DB = -60.0  # frames quieter than this (RMS, dBFS) count as silence
CLIP_LEVEL = 0.999  # samples at or above this magnitude count as clipped

PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MINOR_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTAL = {"": 0, "#": 1, "♯": 1, "b": -1, "♭": -1}
# Krumhansl & Kessler (1982) probe-tone ratings, tonic first.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@dataclass(frozen=True)
class Measurement:
    """What a take sounds like, in plain units. None where a value cannot be measured
    (no beats found, silence, audio shorter than the 0.4 s loudness block)."""

    duration_s: float
    sample_rate: int
    bpm: float | None  # beats per minute, from the fitted beat period
    bpm_confidence: float  # share of beat intervals within 5 % of the fitted period (0-1)
    beats: int
    key: str | None  # e.g. "A minor", in the blueprint's spelling
    key_confidence: float  # correlation of the chroma with the best key profile (-1..1)
    key_runner_up: str | None
    loudness_lufs: float | None  # integrated loudness, LUFS
    sample_peak_db: float | None  # dBFS; None for digital silence
    true_peak_db: float | None  # dBTP (4x oversampled)
    clipped_samples: int  # samples (any channel) at or above CLIP_LEVEL
    leading_silence_s: float
    trailing_silence_s: float
    version: int = MEASUREMENT_VERSION

    @property
    def clipping(self) -> bool:
        return self.clipped_samples > 0 or (self.true_peak_db is not None and self.true_peak_db > 0.0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Measurement":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def summary(self) -> str:
        parts = [f"{self.bpm:.1f} BPM" if self.bpm else "no steady beat",
                 self.key or "no clear key",
                 f"{self.loudness_lufs:.1f} LUFS" if self.loudness_lufs is not None else "silent",
                 f"true peak {self.true_peak_db:+.1f} dBTP" if self.true_peak_db is not None else "no peak"]
        if self.clipping:
            parts.append(f"clipping ({self.clipped_samples} samples)")
        return ", ".join(parts)


# ---------------------------------------------------------------------------------- input
def _audio_of(source, sample_rate) -> tuple[np.ndarray, int]:
    """A Take, a path, `(array, rate)` or an array with `sample_rate` -> float32 `[channels, samples]`, rate."""
    from .record import Take

    if isinstance(source, Take):
        audio, rate = source.audio, source.sample_rate
    elif isinstance(source, (str, Path)):
        audio, rate = read_audio(source)
    elif isinstance(source, tuple) and len(source) == 2:
        audio, rate = source
    elif isinstance(source, np.ndarray):
        if sample_rate is None:
            raise AudioFileError("sample_rate is needed to measure a bare array (got None)")
        audio, rate = source, sample_rate
    else:
        raise AudioFileError(f"audio must be a Take, a file path, an (array, sample_rate) tuple or an array "
                             f"(got {type(source).__name__})")
    if sample_rate is not None and not isinstance(source, np.ndarray) and int(sample_rate) != int(rate):
        raise AudioFileError(f"sample_rate {sample_rate} contradicts the audio's own rate {rate}")
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer, float)) or not 1000 <= rate <= 384000:
        raise AudioFileError(f"sample_rate must be between 1000 and 384000 Hz (got {rate!r:.80})")
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2:
        raise AudioFileError(f"audio must have 1 or 2 dimensions (got shape {audio.shape})")
    if audio.shape[1] in (1, 2) and audio.shape[0] > audio.shape[1]:  # samples-major, as soundfile returns it
        audio = audio.T
    if audio.shape[-1] == 0:
        raise AudioFileError("audio is empty (0 samples)")
    if not np.isfinite(audio).all():
        raise AudioFileError("audio contains NaN or Inf samples")
    return np.ascontiguousarray(audio), int(rate)


# ---------------------------------------------------------------------------------- measuring
def measure(source, sample_rate: int | None = None) -> Measurement:
    """Measure tempo, key, loudness, peaks and silence of `source`: a Take, a file path, an
    `(array, sample_rate)` tuple, or a float array `[channels, samples]` / `[samples]` with `sample_rate`."""
    import librosa

    audio, rate = _audio_of(source, sample_rate)
    mono = audio.mean(axis=0)
    y = librosa.resample(mono, orig_sr=rate, target_sr=ANALYSIS_RATE, res_type="soxr_hq") \
        if rate != ANALYSIS_RATE else mono
    bpm, confidence, beats = _tempo(y)
    key, key_conf, runner_up = _key(y)
    peak = float(np.max(np.abs(audio)))
    true_peak = _true_peak(audio)
    leading, trailing = _silence(mono, rate)
    return Measurement(
        duration_s=audio.shape[-1] / rate, sample_rate=rate, bpm=bpm, bpm_confidence=confidence, beats=beats,
        key=key, key_confidence=key_conf, key_runner_up=runner_up, loudness_lufs=integrated_loudness(audio, rate),
        sample_peak_db=_db(peak), true_peak_db=_db(true_peak), clipped_samples=int(np.sum(np.abs(audio) >= CLIP_LEVEL)),
        leading_silence_s=leading, trailing_silence_s=trailing)


def _db(amplitude: float) -> float | None:
    return round(20.0 * math.log10(amplitude), 3) if amplitude > 0 else None


def _tempo(y: np.ndarray) -> tuple[float | None, float, int]:
    import librosa

    hop = 256  # 11.6 ms at 22.05 kHz
    if len(y) < 4 * hop:
        return None, 0.0, 0
    onset = librosa.onset.onset_strength(y=y, sr=ANALYSIS_RATE, hop_length=hop)
    _, beats = librosa.beat.beat_track(onset_envelope=onset, sr=ANALYSIS_RATE, hop_length=hop, units="time")
    beats = np.asarray(beats, dtype=np.float64)
    if len(beats) < 4:
        return None, 0.0, int(len(beats))
    intervals = np.diff(beats)
    period = float(np.median(intervals))
    # Number each beat by the periods elapsed (a skipped beat counts two), then fit a line.
    index = np.round((beats - beats[0]) / period)
    slope, _ = np.polyfit(index, beats, 1)
    if not slope > 0:
        return None, 0.0, int(len(beats))
    steady = float(np.mean(np.abs(intervals / slope - 1.0) < 0.05))
    return round(60.0 / float(slope), 2), round(steady, 3), int(len(beats))


def _key(y: np.ndarray) -> tuple[str | None, float, str | None]:
    import librosa

    if len(y) < 2048 or float(np.max(np.abs(y))) < 1e-4:
        return None, 0.0, None
    with warnings.catch_warnings():  # noise-like audio has no pitches to estimate the tuning from
        warnings.simplefilter("ignore", UserWarning)
        chroma = librosa.feature.chroma_cqt(y=y, sr=ANALYSIS_RATE, hop_length=4096)
    profile = chroma.mean(axis=1)
    if not np.isfinite(profile).all() or profile.std() < 1e-9:
        return None, 0.0, None
    scores = []
    for mode, template in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
        for tonic in range(12):
            r = float(np.corrcoef(profile, np.roll(template, tonic))[0, 1])
            scores.append((r, key_name(tonic, mode)))
    scores.sort(reverse=True)
    return scores[0][1], round(scores[0][0], 4), scores[1][1]


def key_name(tonic: int, mode: str) -> str:
    """Pitch class (0 = C) and mode -> the blueprint's spelling, e.g. (9, "minor") -> "A minor"."""
    names = PITCH_NAMES if mode == "major" else MINOR_NAMES
    return f"{names[tonic % 12]} {mode}"


def parse_key(keyscale: str) -> tuple[int, str]:
    """"F# minor" / "Gb major" / "B♭ minor" -> (pitch class, mode)."""
    from ..blueprint import Blueprint

    normal = Blueprint(keyscale=keyscale).validate().keyscale if keyscale else None
    if normal is None:
        raise AudioFileError(f"keyscale must name a key such as 'A minor' (got {keyscale!r:.80})")
    note, mode = normal.split(" ")
    return (_PITCH_CLASS[note[0]] + _ACCIDENTAL[note[1:]]) % 12, mode


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float | None:
    """ITU-R BS.1770-4 integrated loudness (LUFS) of `[channels, samples]`; None when silent or
    shorter than one 400 ms block."""
    import pyloudnorm

    if audio.shape[-1] < int(0.4 * sample_rate) + 1:
        return None
    value = float(pyloudnorm.Meter(sample_rate).integrated_loudness(np.asarray(audio, dtype=np.float64).T))
    return round(value, 3) if math.isfinite(value) else None


def _true_peak(audio: np.ndarray, chunk: int = 1 << 18, pad: int = 64) -> float:
    """Peak magnitude of a 4x oversampled copy, computed in overlapping chunks to bound memory."""
    from scipy.signal import resample_poly

    peak = 0.0
    n = audio.shape[-1]
    for start in range(0, n, chunk):
        lo, hi = max(0, start - pad), min(n, start + chunk + pad)
        up = resample_poly(audio[:, lo:hi].astype(np.float64), 4, 1, axis=-1)
        keep = up[:, 4 * (start - lo): 4 * (min(n, start + chunk) - lo)]
        if keep.size:
            peak = max(peak, float(np.max(np.abs(keep))))
    return max(peak, float(np.max(np.abs(audio))))


def _silence(mono: np.ndarray, rate: int) -> tuple[float, float]:
    """Seconds of silence (RMS below SILENCE_DB in 20 ms frames) before the first and after the last sound."""
    frame = max(1, int(0.02 * rate))
    count = len(mono) // frame
    duration = len(mono) / rate
    if count == 0:
        return duration, duration
    rms = np.sqrt(np.mean(mono[: count * frame].reshape(count, frame).astype(np.float64) ** 2, axis=1))
    loud = np.nonzero(rms > 10 ** (SILENCE_DB / 20))[0]
    if len(loud) == 0:
        return round(duration, 3), round(duration, 3)
    return round(loud[0] * frame / rate, 3), round(max(0.0, duration - (loud[-1] + 1) * frame / rate), 3)


# ---------------------------------------------------------------------------------- against the blueprint
@dataclass(frozen=True)
class Adherence:
    """Asked (blueprint) against measured. Verdicts:
    bpm: "match" (within 4 %), "double-time" / "half-time" (an octave off), "off", "not asked", "unmeasured";
    key: "exact", "relative" (the relative major/minor), "wrong", "not asked", "unmeasured"."""

    bpm_asked: int | None
    bpm_measured: float | None
    bpm_verdict: str
    bpm_error_pct: float | None  # measured against asked (after the octave, for double/half-time)
    key_asked: str | None
    key_measured: str | None
    key_verdict: str
    loudness_lufs: float | None
    true_peak_db: float | None
    clipping: bool

    @property
    def ok(self) -> bool:
        """Nothing asked was missed: tempo and key match where they were asked, and no clipping."""
        return (self.bpm_verdict in ("match", "not asked") and self.key_verdict in ("exact", "not asked")
                and not self.clipping)

    def to_dict(self) -> dict:
        return dict(asdict(self), ok=self.ok)

    @classmethod
    def from_dict(cls, data: dict) -> "Adherence":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def summary(self) -> str:
        if self.bpm_verdict == "not asked":
            bpm = f"{self.bpm_measured:.0f} BPM (not asked)" if self.bpm_measured else "BPM not asked"
        elif self.bpm_measured is None:
            bpm = f"asked {self.bpm_asked} BPM, no steady beat"
        else:
            bpm = f"asked {self.bpm_asked} / measured {self.bpm_measured:.1f} BPM: {self.bpm_verdict}"
        if self.key_verdict == "not asked":
            key = f"{self.key_measured} (not asked)" if self.key_measured else "key not asked"
        else:
            key = f"asked {self.key_asked} / measured {self.key_measured or 'none'}: {self.key_verdict}"
        loud = f"{self.loudness_lufs:.1f} LUFS" if self.loudness_lufs is not None else "silent"
        return f"{bpm}; {key}; {loud}" + ("; clipping" if self.clipping else "")


def bpm_verdict(asked, measured) -> tuple[str, float | None]:
    """(verdict, error %) of a measured tempo against the asked one (see `Adherence`)."""
    if asked is None:
        return "not asked", None
    if measured is None:
        return "unmeasured", None
    for verdict, factor in (("match", 1.0), ("double-time", 2.0), ("half-time", 0.5)):
        error = measured / (asked * factor) - 1.0
        if abs(error) <= BPM_TOLERANCE:
            return verdict, round(100.0 * error, 2)
    return "off", round(100.0 * (measured / asked - 1.0), 2)


def key_verdict(asked, measured) -> str:
    """"exact", "relative", "wrong", "not asked" or "unmeasured" (see `Adherence`)."""
    if not asked:
        return "not asked"
    if not measured:
        return "unmeasured"
    (a, a_mode), (m, m_mode) = parse_key(asked), parse_key(measured)
    if (a, a_mode) == (m, m_mode):
        return "exact"
    if a_mode != m_mode and (a_mode == "major" and m == (a + 9) % 12 or a_mode == "minor" and m == (a + 3) % 12):
        return "relative"
    return "wrong"


def adherence(take, measurement: Measurement | None = None, blueprint=None) -> Adherence:
    """Compare `take`'s blueprint (or `blueprint`) with its measurement: the one given, the one in the
    take's sidecar notes, or a fresh one."""
    if measurement is None:
        stored = (getattr(take, "notes", None) or {}).get("measurement")
        if stored and stored.get("version") == MEASUREMENT_VERSION:
            measurement = Measurement.from_dict(stored)
        else:
            measurement = measure(take)
    bp = (blueprint or take.blueprint).validate()
    verdict, error = bpm_verdict(bp.bpm, measurement.bpm)
    return Adherence(bpm_asked=bp.bpm, bpm_measured=measurement.bpm, bpm_verdict=verdict, bpm_error_pct=error,
                     key_asked=bp.keyscale, key_measured=measurement.key,
                     key_verdict=key_verdict(bp.keyscale, measurement.key),
                     loudness_lufs=measurement.loudness_lufs, true_peak_db=measurement.true_peak_db,
                     clipping=measurement.clipping)


def measure_take(store, take_id: str, refresh: bool = False) -> Measurement:
    """The take's measurement, read from its sidecar; measured (and saved there with its adherence)
    when missing, outdated or `refresh` is set. Older takes are measured on first request."""
    record = store.record(take_id)
    stored = (record.get("notes") or {}).get("measurement")
    if stored and stored.get("version") == MEASUREMENT_VERSION and not refresh:
        return Measurement.from_dict(stored)
    take = store.load(take_id)
    measurement = measure(take)
    store.update_notes(take_id, measurement=measurement.to_dict(),
                       adherence=adherence(take, measurement).to_dict())
    return measurement
