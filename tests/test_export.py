"""Export round trips (each format written and read back), extras beside the audio, batches and lineages."""

import json
import zipfile

import numpy as np
import pytest
import soundfile as sf

from acestep_engine import Blueprint, Take, TakeStore, TakeStoreError
from acestep_engine.takes import new_take_id
from acestep_engine.takes.export import batch_of, export_batch, export_lineage, export_takes


def make_take(rate=48000, seconds=0.75, parent_id=None, name="", batch_index=0, timings=None, seed=0):
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    audio = np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)])
    audio = (audio + rng.uniform(-0.05, 0.05, audio.shape)).astype(np.float32)
    return Take(id=new_take_id(), audio=audio, sample_rate=rate, seed=seed, name=name,
                blueprint=Blueprint(caption="export test", lyrics="[verse]\nla la"), task={"name": "text2music"},
                model={}, sampling={}, timings=timings or {"total_s": float(seed)}, parent_id=parent_id,
                batch_index=batch_index)


@pytest.fixture()
def store(tmp_path):
    # WAV-backed store: the take's samples are exactly what was generated, so lossless exports compare exactly.
    return TakeStore(tmp_path / "takes", audio_format="wav")


CASES = [("wav", 16, 2.0 ** -15), ("wav", 24, 2.0 ** -23), ("wav", "float", 0.0), ("flac", 16, 2.0 ** -15),
         ("flac", 24, 2.0 ** -23), ("mp3", None, None), ("ogg", None, None), ("opus", None, None)]


@pytest.mark.parametrize("format,bit_depth,step", CASES)
def test_round_trip_each_format(store, tmp_path, format, bit_depth, step):
    take = make_take()
    store.save(take)
    path = store.export(take.id, tmp_path / "out" / f"song.{format}", bit_depth=bit_depth)
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    assert rate == 48000 and data.shape == (take.audio.shape[1], 2)  # duration equal
    if step is not None:  # lossless: the samples, to one step of the format's resolution (libsndfile
        # scales by 2**(bits-1) - 1 on writing and 2**(bits-1) on reading)
        np.testing.assert_allclose(data.T, take.audio, atol=step * 1.01, rtol=0)
        if step == 0.0:
            assert np.array_equal(data.T, take.audio)
    else:  # lossy, but the same music: strongly correlated
        assert np.corrcoef(data[:, 0], take.audio[0])[0, 1] > 0.9


def test_lossy_formats_resample_rates_their_encoder_refuses(store, tmp_path):
    take = make_take(rate=44100)
    store.save(take)
    opus = store.export(take.id, tmp_path / "a.opus")
    assert sf.info(str(opus)).samplerate == 48000
    assert sf.info(str(opus)).duration == pytest.approx(take.duration, abs=1e-3)
    mp3 = store.export(take.id, tmp_path / "a.mp3")
    assert sf.info(str(mp3)).samplerate == 44100 and sf.info(str(mp3)).frames == take.audio.shape[1]


def test_lrc_and_sidecar_go_beside_the_audio(store, tmp_path):
    take = make_take(name="My Song")
    store.save(take)
    plain = store.export(take.id, tmp_path / "plain.flac")
    assert not plain.with_suffix(".lrc").exists()
    assert json.loads(plain.with_suffix(".json").read_text())["id"] == take.id
    store.update_notes(take.id, lrc="[00:01.00]la la")
    path = store.export(take.id, tmp_path / "with.flac")
    assert path.with_suffix(".lrc").read_text() == "[00:01.00]la la\n"
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["exported_as"] == {"file": "with.flac", "format": "flac", "bit_depth": None}
    bare = store.export(take.id, tmp_path / "bare.wav", extras=False)
    assert not bare.with_suffix(".lrc").exists() and not bare.with_suffix(".json").exists()


def test_batch_and_lineage_to_folder_and_zip(store, tmp_path):
    root = make_take(name="root", seed=1)
    batch = [make_take(parent_id=root.id, batch_index=i, timings={"total_s": 9.0}, seed=9) for i in range(3)]
    batch[1].name = "middle/one"
    child = make_take(parent_id=batch[1].id, seed=2)
    for take in [root, *batch, child]:
        store.save(take)
    store.update_notes(child.id, lrc="[00:00.50]hello")
    assert batch_of(store, batch[2].id) == [t.id for t in batch]

    folder = export_batch(store, batch[0].id, tmp_path / "batch", format="flac", bit_depth=16)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [t["id"] for t in manifest["takes"]] == [t.id for t in batch]
    assert manifest["takes"][1]["file"] == "02-middle_one.flac"  # names made safe for file systems
    assert sorted(p.name for p in folder.glob("*.flac")) == ["01-" + batch[0].id + ".flac", "02-middle_one.flac",
                                                             "03-" + batch[2].id + ".flac"]

    archive = export_lineage(store, child.id, tmp_path / "zips" / "history.zip", format="mp3")
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        manifest = json.loads(z.read("manifest.json"))
    assert [t["id"] for t in manifest["takes"]] == [root.id, batch[1].id, child.id]
    assert "01-root.mp3" in names and "03-" + child.id + ".lrc" in names and "01-root.json" in names
    assert manifest["takes"][2]["lrc"] == "03-" + child.id + ".lrc"
    assert not list((tmp_path / "zips").glob(".tmp-*"))  # nothing left behind


def test_bad_requests_are_named(store, tmp_path):
    take = make_take()
    store.save(take)
    with pytest.raises(TakeStoreError, match="format must be one of"):
        store.export(take.id, tmp_path / "song.aiff")
    with pytest.raises(TakeStoreError, match="bit_depth for wav must be one of 16, 24, float"):
        store.export(take.id, tmp_path / "song.wav", bit_depth=8)
    with pytest.raises(TakeStoreError, match="bit_depth applies to wav and flac only"):
        store.export(take.id, tmp_path / "song.mp3", bit_depth=16)
    with pytest.raises(TakeStoreError, match="no take nope"):
        export_takes(store, [take.id, "nope"], tmp_path / "x")
    assert not (tmp_path / "x").exists()  # checked before anything was written
    with pytest.raises(TakeStoreError, match="at least one take"):
        export_takes(store, [], tmp_path / "y")


def test_exported_files_get_the_permissions_a_new_file_gets_like_the_takes(tmp_path, turbo):
    """mkstemp makes 0o600 files: an export (audio, .lrc, .json, zip) must be as readable as the takes."""
    import os
    import stat

    from acestep_engine import Blueprint, TakeStore
    from acestep_engine.takes import export_batch

    store = TakeStore(tmp_path / "takes")
    take, = turbo.generate(Blueprint(caption="perms", duration=10.0), seeds=1, steps=2)
    take.notes["lrc"] = "[00:01.00]line\n"
    store.save(take)
    umask = os.umask(0o027)
    try:
        expected = 0o666 & ~0o027
        written = [store.export(take.id, tmp_path / "out" / f"song.{fmt}") for fmt in ("wav", "mp3", "opus")]
        written += [tmp_path / "out" / "song.lrc", tmp_path / "out" / "song.json",
                    export_batch(store, take.id, tmp_path / "out" / "batch.zip")]
    finally:
        os.umask(umask)
    assert {path.name: oct(stat.S_IMODE(path.stat().st_mode)) for path in written} == \
        {path.name: oct(expected) for path in written}
