"""Take store: atomic writes, reload after restart, rename, delete/undelete, export, lineage; audio I/O."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from acestep_engine import Blueprint, Take, TakeStore, TakeStoreError
from acestep_engine.takes import new_take_id
from acestep_engine.takes.audio_io import AudioFileError, load_source_audio, read_audio, to_stereo, wav_bytes


def make_take(parent_id=None, seconds=1.0, rate=48000, seed=3, caption="test take"):
    rng = np.random.default_rng(seed)
    audio = (rng.uniform(-0.5, 0.5, size=(2, int(seconds * rate)))).astype(np.float32)
    return Take(id=new_take_id(), audio=audio, sample_rate=rate, seed=seed, blueprint=Blueprint(caption=caption),
                task={"name": "text2music"}, model={"variant": "acestep-v15-turbo", "weights": "abc"},
                sampling={"steps": 8, "shift": 3.0}, timings={"total_s": 1.0},
                latents=rng.standard_normal((25, 16)).astype(np.float32), parent_id=parent_id)


def test_round_trip_and_reload(tmp_path):
    store = TakeStore(tmp_path)
    take = make_take()
    path = store.save(take)
    assert path.suffix == ".flac" and take.id in store and len(store) == 1
    again = TakeStore(tmp_path).load(take.id)  # a new store object: as after a restart
    np.testing.assert_allclose(again.audio, take.audio, atol=2e-7 * 64)  # 24-bit FLAC
    assert np.array_equal(again.latents, take.latents)
    assert again.to_record() == take.to_record()
    record = json.loads((tmp_path / f"{take.id}.json").read_text())
    assert record["blueprint"]["caption"] == "test take" and record["seed"] == 3 and record["format_version"] == 1


def test_wav_store_is_exact(tmp_path):
    store = TakeStore(tmp_path, audio_format="wav")
    take = make_take()
    store.save(take)
    assert np.array_equal(store.load(take.id).audio, take.audio)


def test_rename_delete_undelete(tmp_path):
    store = TakeStore(tmp_path)
    take = make_take()
    store.save(take)
    store.rename(take.id, "keeper")
    assert TakeStore(tmp_path).load(take.id).name == "keeper"
    store.delete(take.id)
    assert take.id not in store and store.ids() == []
    with pytest.raises(TakeStoreError, match=f"no take {take.id} in"):
        store.load(take.id)
    store.undelete(take.id)
    assert store.load(take.id).name == "keeper"
    store.delete(take.id)
    store.empty_trash()
    with pytest.raises(TakeStoreError, match="not in the trash"):
        store.undelete(take.id)


def test_export(tmp_path):
    store = TakeStore(tmp_path / "store")
    take = make_take(seconds=0.5)
    store.save(take)
    for name in ("out.wav", "out.flac"):
        path = store.export(take.id, tmp_path / name)
        info = sf.info(str(path))
        assert info.samplerate == 48000 and info.frames == 24000 and info.channels == 2


def test_lineage_and_children(tmp_path):
    store = TakeStore(tmp_path)
    a = make_take()
    b = make_take(parent_id=a.id)
    c = make_take(parent_id=b.id)
    for t in (a, b, c):
        store.save(t)
    assert store.lineage(c.id) == [a.id, b.id, c.id]
    assert store.children(a.id) == [b.id]
    assert [r["id"] for r in store.list(parent_id=b.id)] == [c.id]


def test_list_filters_without_loading_audio(tmp_path):
    store = TakeStore(tmp_path)
    store.save(make_take(caption="rainy lo-fi"))
    store.save(make_take(caption="metal riff"))
    assert [r["blueprint"]["caption"] for r in store.list(search="LO-FI")] == ["rainy lo-fi"]
    assert len(store.list(task="text2music")) == 2 and store.list(task="cover") == []


def test_crash_during_save_leaves_no_visible_take(tmp_path, monkeypatch):
    store = TakeStore(tmp_path)
    take = make_take()
    real_replace = os.replace

    def crash_on_sidecar(src, dst):
        if str(dst).endswith(".json"):
            raise KeyboardInterrupt("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_sidecar)
    with pytest.raises(KeyboardInterrupt):
        store.save(take)
    monkeypatch.setattr(os, "replace", real_replace)
    assert store.ids() == [] and take.id not in TakeStore(tmp_path)


def test_leftover_temp_files_are_ignored_and_cleaned_once_old(tmp_path):
    leftover = tmp_path / ".tmp-abc.json"  # an older version's temporary name: no owner recorded
    leftover.write_text("{half")
    assert TakeStore(tmp_path).ids() == [] and leftover.exists()  # it might still be being written
    os.utime(leftover, (0, 0))
    assert TakeStore(tmp_path).ids() == [] and not leftover.exists()


def test_corrupt_sidecar_is_skipped_and_reported(tmp_path):
    store = TakeStore(tmp_path)
    good = make_take()
    store.save(good)
    (tmp_path / "broken.json").write_text("{not json")
    assert [r["id"] for r in store.list()] == [good.id]
    assert [p.path for p in store.problems] == [str(tmp_path / "broken.json")]
    assert "broken.json is not valid JSON" in str(store.problems[0])
    with pytest.raises(TakeStoreError, match="is not valid JSON"):
        store.load("broken")


def test_take_repr_and_ids():
    take = make_take()
    assert repr(take).startswith(f"Take(id='{take.id}', 1.0 s, seed=3, text2music")
    assert new_take_id() != new_take_id()


def test_read_audio_formats(tmp_path):
    tone = (0.3 * np.sin(np.linspace(0, 200, 8000))).astype(np.float32)
    for name in ("a.wav", "a.flac", "a.ogg"):
        sf.write(str(tmp_path / name), np.stack([tone, tone]).T, 8000)
        audio, rate = read_audio(tmp_path / name)
        assert rate == 8000 and audio.shape == (2, 8000) and audio.dtype == np.float32


def test_unreadable_and_empty_files(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"definitely not audio")
    with pytest.raises(AudioFileError, match="junk.wav: unreadable audio"):
        read_audio(tmp_path / "junk.wav")
    sf.write(str(tmp_path / "empty.wav"), np.zeros((0, 2), np.float32), 8000)
    with pytest.raises(AudioFileError, match="empty.wav: empty"):
        read_audio(tmp_path / "empty.wav")
    with pytest.raises(AudioFileError, match="no such audio file"):
        read_audio(tmp_path / "missing.wav")


def test_stereo_and_resampling():
    assert to_stereo(np.ones(10)).shape == (2, 10)
    assert to_stereo(np.ones((6, 10))).shape == (2, 10)
    mono = np.sin(np.linspace(0, 100, 16000)).astype(np.float32)
    out = load_source_audio((mono, 16000), 48000)
    assert out.shape == (2, 48000)
    samples_major = np.stack([mono, mono], axis=1) * 3  # [n, 2], out of range
    out = load_source_audio((samples_major, 16000), 16000)
    assert out.shape == (2, 16000) and np.max(np.abs(out)) <= 1.0


def test_wav_bytes_play_back():
    import io

    data = wav_bytes(np.zeros((2, 100), np.float32), 48000)
    audio, rate = sf.read(io.BytesIO(data))
    assert rate == 48000 and audio.shape == (100, 2)
