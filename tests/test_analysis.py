"""Measuring takes against their blueprint, on music synthesised here with a known tempo and key."""

import json

import numpy as np
import pytest

from acestep_engine import Blueprint, Take, TakeStore
from acestep_engine.takes import AudioFileError, new_take_id
from acestep_engine.takes.analysis import (Measurement, adherence, bpm_verdict, integrated_loudness, key_verdict,
                                           measure, measure_take, parse_key)

RATE = 48000
PROGRESSION = (0, 5, 7, 0)  # I IV V I (i iv V i in minor), one chord per bar


def synth_song(bpm: float, tonic: int, mode: str, seconds: float = 14.0, rate: int = RATE, lead_in: float = 0.0):
    """A click on every beat (accented downbeats) over one sustained chord per bar, stereo float32.
    `tonic` is a pitch class (0 = C, 9 = A); the V chord has a major third in minor too (harmonic minor)."""
    t = np.arange(int(seconds * rate)) / rate
    out = np.zeros_like(t)
    beat, bar = 60.0 / bpm, 240.0 / bpm
    for b in range(int(seconds / bar) + 1):
        degree = PROGRESSION[b % 4]
        third = 4 if mode == "major" or degree == 7 else 3
        root = tonic + degree
        start = lead_in + b * bar
        inside = (t >= start) & (t < start + bar)
        tt = t[inside] - start
        envelope = np.minimum(1.0, tt / 0.05) * np.exp(-tt / (1.5 * bar))
        for note in (root, root + third, root + 7, root + 12):
            freq = 220.0 * 2 ** ((note - 9) / 12)  # pitch class 9 is A3
            for harmonic, amp in ((1, 1.0), (2, 0.3), (3, 0.12)):
                out[inside] += 0.08 * amp * envelope * np.sin(2 * np.pi * freq * harmonic * tt)
    click = int(0.03 * rate)
    tt = np.arange(click) / rate
    for k in range(int(seconds / beat) + 1):
        start = int((lead_in + k * beat) * rate)
        if start + click > len(out):
            break
        out[start:start + click] += (0.5 if k % 4 == 0 else 0.3) * np.exp(-tt / 0.006) * np.sin(2 * np.pi * 1500 * tt)
    return (0.8 * np.stack([out, out])).astype(np.float32)


def as_take(audio, bpm=None, keyscale=None, rate=RATE):
    return Take(id=new_take_id(), audio=audio, sample_rate=rate, seed=1,
                blueprint=Blueprint(caption="synth", bpm=bpm, keyscale=keyscale, duration=30),
                task={"name": "text2music"}, model={}, sampling={}, timings={})


# The original and a tempo-shifted, transposed copy (+5 semitones, x1.25 tempo), plus two more keys.
SONGS = [(100, 9, "minor", "A minor"), (125, 2, "minor", "D minor"), (90, 0, "major", "C major"),
         (140, 9, "major", "A major")]


@pytest.fixture(scope="module")
def measured():
    return {(bpm, key): (synth_song(bpm, tonic, mode), measure((synth_song(bpm, tonic, mode), RATE)))
            for bpm, tonic, mode, key in SONGS}


@pytest.mark.parametrize("bpm,tonic,mode,key", SONGS)
def test_tempo_within_two_percent_and_key_exact(measured, bpm, tonic, mode, key):
    _, m = measured[(bpm, key)]
    assert m.bpm == pytest.approx(bpm, rel=0.02)
    assert m.key == key
    assert m.beats >= 10 and m.bpm_confidence > 0.8
    assert m.duration_s == pytest.approx(14.0) and m.sample_rate == RATE


def test_loudness_matches_pyloudnorm_and_peaks_are_reported(measured):
    import pyloudnorm

    audio, m = measured[(100, "A minor")]
    reference = pyloudnorm.Meter(RATE).integrated_loudness(audio.T.astype(np.float64))
    assert m.loudness_lufs == pytest.approx(reference, abs=0.5)
    quieter = measure((audio * 10 ** (-6 / 20), RATE))  # 6 dB down -> 6 LU down
    assert quieter.loudness_lufs == pytest.approx(m.loudness_lufs - 6.0, abs=0.05)
    assert m.sample_peak_db == pytest.approx(20 * np.log10(np.abs(audio).max()), abs=1e-3)
    assert m.true_peak_db >= m.sample_peak_db - 1e-6
    assert m.clipped_samples == 0 and not m.clipping
    hot = measure((np.clip(audio * 4, -1, 1), RATE))
    assert hot.clipped_samples > 0 and hot.clipping


def test_silence_at_start_and_end():
    audio = synth_song(120, 0, "major", seconds=8.0)
    padded = np.concatenate([np.zeros((2, RATE), np.float32), audio, np.zeros((2, 2 * RATE), np.float32)], axis=1)
    m = measure(padded, sample_rate=RATE)
    assert m.leading_silence_s == pytest.approx(1.0, abs=0.03)
    assert m.trailing_silence_s == pytest.approx(2.0, abs=0.35)  # the last chord's tail decays into it
    silent = measure((np.zeros((2, RATE), np.float32), RATE))
    assert silent.loudness_lufs is None and silent.bpm is None and silent.key is None
    assert silent.leading_silence_s == pytest.approx(1.0)


def test_adherence_verdict_flips_with_the_blueprint(measured):
    audio, m = measured[(100, "A minor")]
    take = as_take(audio, bpm=100, keyscale="A minor")
    good = adherence(take, m)
    assert (good.bpm_verdict, good.key_verdict, good.ok) == ("match", "exact", True)
    assert abs(good.bpm_error_pct) < 2
    assert adherence(as_take(audio, bpm=112, keyscale="A minor"), m).bpm_verdict == "off"
    assert adherence(as_take(audio, bpm=50, keyscale="A minor"), m).bpm_verdict == "double-time"
    assert adherence(as_take(audio, bpm=200, keyscale="A minor"), m).bpm_verdict == "half-time"
    assert adherence(as_take(audio, bpm=100, keyscale="C major"), m).key_verdict == "relative"
    wrong = adherence(as_take(audio, bpm=100, keyscale="F# major"), m)
    assert wrong.key_verdict == "wrong" and not wrong.ok
    open_ = adherence(as_take(audio), m)
    assert (open_.bpm_verdict, open_.key_verdict, open_.ok) == ("not asked", "not asked", True)
    assert "measured 100" in good.summary() and "exact" in good.summary()


def test_verdict_rules():
    assert bpm_verdict(120, 124.7) == ("match", pytest.approx(3.92, abs=0.01))
    assert bpm_verdict(120, 125.0)[0] == "off"
    assert bpm_verdict(120, None) == ("unmeasured", None)
    assert key_verdict("Gb major", "F# major") == "exact"  # enharmonic spellings are the same key
    assert key_verdict("E minor", "G major") == "relative"
    assert key_verdict("E minor", "E major") == "wrong"
    assert key_verdict("E minor", None) == "unmeasured"
    assert parse_key("B♭ minor") == (10, "minor")


def test_measurement_goes_into_the_sidecar_once(tmp_path, monkeypatch):
    store = TakeStore(tmp_path)
    take = as_take(synth_song(120, 7, "major", seconds=8.0), bpm=120, keyscale="G major")
    store.save(take)
    first = measure_take(store, take.id)
    record = json.loads((tmp_path / f"{take.id}.json").read_text())
    assert record["notes"]["measurement"] == first.to_dict()
    assert record["notes"]["adherence"]["bpm_verdict"] == "match"
    assert record["notes"]["adherence"]["key_verdict"] == "exact"
    import acestep_engine.takes.analysis as analysis

    monkeypatch.setattr(analysis, "measure", lambda *a, **k: pytest.fail("measured again"))
    assert measure_take(store, take.id) == first  # read back, not measured again
    assert Measurement.from_dict(first.to_dict()) == first
    assert adherence(store.load(take.id)).bpm_verdict == "match"  # uses the stored measurement


def test_bad_input_is_named():
    with pytest.raises(AudioFileError, match="sample_rate is needed"):
        measure(np.zeros(48000, np.float32))
    with pytest.raises(AudioFileError, match="NaN or Inf"):
        measure((np.full((2, 48000), np.nan, np.float32), RATE))
    with pytest.raises(AudioFileError, match="sample_rate must be between"):
        measure((np.zeros((2, 100), np.float32), 10))
    with pytest.raises(AudioFileError, match="empty"):
        measure((np.zeros((2, 0), np.float32), RATE))
    with pytest.raises(AudioFileError, match="must be a Take"):
        measure(42)
    assert integrated_loudness(np.zeros((2, 100), np.float32), RATE) is None  # shorter than one block
