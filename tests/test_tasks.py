"""Editing tasks on tiny turbo and base checkpoints: shapes, preservation, conditions seen by the model."""

import numpy as np
import pytest
import soundfile as sf
import torch

from acestep_engine import Blueprint, Complete, Cover, Extend, Extract, ExtractAll, Lego, Repaint, TaskError, Text2Music
from acestep_engine.generation import parse_audio_codes

BP = Blueprint(caption="warm analog synth pop", lyrics="[verse]\nneon rain", bpm=110, duration=12.0, language="en")


@pytest.fixture(scope="module")
def source(turbo):
    take, = turbo.generate(BP, seeds=21)
    return take


class Spy:
    """Records what the DiT sees at every call."""

    def __init__(self, engine, monkeypatch):
        self.calls = []
        forward = engine.models.transformer.forward

        def spy(*args, **kwargs):
            self.calls.append({k: kwargs[k].detach().clone() for k in
                               ("hidden_states", "timestep", "context_latents", "encoder_hidden_states")})
            return forward(*args, **kwargs)

        monkeypatch.setattr(engine.models.transformer, "forward", spy)


def _outside(length, rate, regions, margin):
    keep = np.ones(length, bool)
    for s, e in regions:
        keep[max(0, int((s - margin) * rate)):int((e + margin) * rate)] = False
    return keep


@pytest.mark.parametrize("mode", ["balanced", "conservative"])
def test_repaint_keeps_everything_outside_the_region_exactly(turbo, source, mode):
    out, = turbo.generate(BP, Repaint(source, 4.0, 6.0, mode=mode), seeds=1)
    assert out.audio.shape == source.audio.shape and out.parent_id == source.id
    keep = _outside(out.audio.shape[-1], 48000, [(4.0, 6.0)], 0.05 + 1 / 25)
    assert np.array_equal(out.audio[:, keep], source.audio[:, keep])  # sample-exact, loudness included
    inside = slice(int(4.2 * 48000), int(5.8 * 48000))
    assert not np.allclose(out.audio[:, inside], source.audio[:, inside])


def test_repaint_several_regions_in_one_pass(turbo, source, monkeypatch):
    spy = Spy(turbo, monkeypatch)
    regions = [(1.0, 2.0), (7.0, 8.5)]
    out, = turbo.generate(BP, Repaint(source, regions=regions), seeds=2)
    assert len(spy.calls) == 8  # one generation, not one per region
    mask = spy.calls[0]["context_latents"][0, :, 16]
    assert mask[25:50].eq(1).all() and mask[175:212].eq(1).all() and mask[60:170].eq(0).all()
    keep = _outside(out.audio.shape[-1], 48000, regions, 0.05 + 1 / 25)
    assert np.array_equal(out.audio[:, keep], source.audio[:, keep])
    for s, e in regions:
        part = slice(int((s + 0.1) * 48000), int((e - 0.1) * 48000))
        assert not np.allclose(out.audio[:, part], source.audio[:, part])


def test_repaint_region_is_silenced_in_the_source_latents(turbo, source, monkeypatch):
    spy = Spy(turbo, monkeypatch)
    turbo.generate(BP, Repaint(source, 4.0, 6.0), seeds=1)
    src = spy.calls[0]["context_latents"][0, :, :16]
    silence = turbo.silence(src.shape[0])
    assert torch.equal(src[100:150], silence[100:150])
    assert torch.allclose(src[:100], torch.from_numpy(source.latents[:100]))


def test_outpainting_lengthens_the_song(turbo, source):
    right, = turbo.generate(BP, Repaint(source, 12.0, 17.0), seeds=3)
    assert right.audio.shape[-1] == source.audio.shape[-1] + 5 * 48000
    n = int(11.9 * 48000)
    assert np.array_equal(right.audio[:, :n], source.audio[:, :n])
    left, = turbo.generate(BP, Repaint(source, -3.0, 0.0), seeds=3)
    assert left.audio.shape[-1] == source.audio.shape[-1] + 3 * 48000
    assert np.array_equal(left.audio[:, int(3.1 * 48000):], source.audio[:, int(0.1 * 48000):])
    assert left.blueprint.duration == pytest.approx(15.0)


def test_extend_both_sides_and_with_a_context_window(turbo, source):
    both, = turbo.generate(BP, Extend(source, left=2.0, right=4.0), seeds=4)
    assert both.audio.shape[-1] == source.audio.shape[-1] + 6 * 48000
    windowed, = turbo.generate(BP, Extend(source, right=5.0, context=6.0), seeds=4)
    assert windowed.audio.shape[-1] == source.audio.shape[-1] + 5 * 48000
    # Everything before the context window comes back untouched.
    assert np.array_equal(windowed.audio[:, : 6 * 48000], source.audio[:, : 6 * 48000])
    assert windowed.latents.shape[0] == (6 + 5) * 25
    with pytest.raises(TaskError, match="extend one side at a time"):
        turbo.generate(BP, Extend(source, left=1.0, right=1.0, context=5.0))


@pytest.mark.parametrize("strength, cover_steps", [(1.0, 8), (0.5, 4), (0.0, 0)])
def test_cover_strength_decides_how_many_steps_see_the_source(turbo, source, monkeypatch, strength, cover_steps):
    spy = Spy(turbo, monkeypatch)
    out, = turbo.generate(BP, Cover(source, strength=strength), seeds=5)
    assert out.parent_id == source.id and out.audio.shape == source.audio.shape
    silence = turbo.silence(out.latents.shape[0])
    sees_source = [not torch.equal(c["context_latents"][0, :, :16], silence) for c in spy.calls]
    assert sees_source == [True] * cover_steps + [False] * (8 - cover_steps)
    if 0 < cover_steps < 8:  # the caption prompt switches to the text2music instruction too
        assert not torch.equal(spy.calls[0]["encoder_hidden_states"], spy.calls[-1]["encoder_hidden_states"])


def test_cover_source_is_the_fsq_round_trip(turbo, source, monkeypatch):
    spy = Spy(turbo, monkeypatch)
    turbo.generate(BP, Cover(source), seeds=5)
    hints = spy.calls[0]["context_latents"][0, :, :16]
    latents = torch.from_numpy(source.latents)
    assert not torch.allclose(hints, latents)  # quantised, not the raw latents
    q, _ = turbo.models.audio_tokenizer.tokenize(latents[None], silence_latent=turbo.models.silence_latent)
    assert torch.allclose(hints, turbo.models.detokenizer(q)[0, : latents.shape[0]])


def test_cover_noise_strength_starts_from_the_noised_source(turbo, source, monkeypatch):
    spy = Spy(turbo, monkeypatch)
    turbo.generate(BP, Cover(source, noise_strength=0.5), seeds=6)
    assert len(spy.calls) == 2  # t = 0.5 then 0.3 of the shift-3 table
    assert spy.calls[0]["timestep"][0].item() == pytest.approx(0.5)
    noise = turbo.make_noise([6], source.latents.shape[0])
    expected = 0.5 * noise + 0.5 * torch.from_numpy(source.latents)[None]
    assert torch.allclose(spy.calls[0]["hidden_states"], expected, atol=1e-6)


def test_reference_audio_changes_the_conditions(turbo, source, monkeypatch):
    spy = Spy(turbo, monkeypatch)
    turbo.generate(BP, Text2Music(), seeds=7)
    turbo.generate(BP, Text2Music(reference=source), seeds=7)
    plain, guided = spy.calls[0]["encoder_hidden_states"], spy.calls[8]["encoder_hidden_states"]
    assert plain.shape == guided.shape and not torch.allclose(plain, guided)


def test_audio_codes_parse_clamp_and_reach_the_detokenizer(turbo, monkeypatch):
    assert parse_audio_codes("<|audio_code_5|>x<|audio_code_70000|><|audio_code_0|>", 64000) == [5, 63999, 0]
    with pytest.raises(TaskError, match="found none"):
        parse_audio_codes("no codes here", 64000)
    seen = []
    forward = turbo.models.detokenizer.forward
    monkeypatch.setattr(turbo.models.detokenizer, "forward", lambda x: seen.append(x.shape) or forward(x))
    codes = "".join(f"<|audio_code_{i * 997 % 64000}|>" for i in range(55))  # 11 s of 5 Hz codes
    take, = turbo.generate(BP, Text2Music(audio_codes=codes), seeds=8)
    assert seen == [torch.Size([1, 55, 32])]
    assert take.latents.shape[0] == 275 and take.blueprint.duration == pytest.approx(11.0)


@pytest.mark.parametrize("task", [Extract(None), Lego(None), Complete(None)])
def test_base_only_tasks_name_the_variant_to_load(turbo, source, task):
    import dataclasses

    with pytest.raises(TaskError, match="needs the acestep-v15-base checkpoint"):
        turbo.generate(BP, dataclasses.replace(task, source=source))


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("make", [
    lambda s: Extract(s, "vocals"), lambda s: Lego(s, "drums"), lambda s: Lego(s, "bass", start=2.0, end=5.0),
    lambda s: Complete(s, ("drums", "bass")), lambda s: Cover(s, strength=0.5), lambda s: Repaint(s, 3.0, 5.0),
])
def test_every_task_runs_in_batches_on_base(base, source, make, batch):
    takes = base.generate(BP, make(source), batch_size=batch, seeds=list(range(batch)), steps=2)
    assert len(takes) == batch and [t.seed for t in takes] == list(range(batch))
    for take in takes:
        assert take.audio.shape == source.audio.shape and take.parent_id == source.id
        assert np.isfinite(take.audio).all()


def test_lego_region_mask(base, source, monkeypatch):
    spy = Spy(base, monkeypatch)
    base.generate(BP, Lego(source, "guitar", start=2.0, end=4.0), seeds=1, steps=1)
    mask = spy.calls[0]["context_latents"][0, :, 16]
    assert mask[50:100].eq(1).all() and mask[:50].eq(0).all() and mask[100:].eq(0).all()
    src = spy.calls[0]["context_latents"][0, :, :16]
    assert torch.allclose(src, torch.from_numpy(source.latents))  # lego does not silence its source


def test_extract_all_returns_one_take_per_track(base, source):
    takes = base.generate(BP, ExtractAll(source, tracks=("vocals", "drums")), seeds=3, steps=1)
    assert [t.task["track"] for t in takes] == ["vocals", "drums"]


def test_sources_from_files_and_arrays(turbo, tmp_path):
    rng = np.random.default_rng(0)
    audio = (0.2 * rng.standard_normal((44100 * 11, 2))).astype(np.float32)
    sf.write(str(tmp_path / "song.wav"), audio, 44100)
    from_file, = turbo.generate(BP, Cover(tmp_path / "song.wav"), seeds=1)
    assert from_file.audio.shape[-1] == 11 * 25 * 1920 and from_file.parent_id is None
    assert from_file.blueprint.duration == pytest.approx(11.0)  # taken from the source
    from_array, = turbo.generate(BP, Cover((audio[:, 0], 44100)), seeds=1)
    assert from_array.audio.shape == from_file.audio.shape
    assert from_array.task["source"] == {"array": [44100 * 11], "sample_rate": 44100}


def test_odd_lengths_and_lengths_off_the_code_grid(turbo):
    rng = np.random.default_rng(1)
    audio = 0.1 * rng.standard_normal((2, 257 * 1920)).astype(np.float32)  # 257 frames: odd, not a multiple of 5
    take, = turbo.generate(BP, Cover((audio, 48000)), seeds=1)
    assert take.latents.shape[0] == 257
    edit, = turbo.generate(BP, Repaint((audio, 48000), 2.0, 3.0), seeds=1)
    assert edit.audio.shape == audio.shape


def test_bad_task_input_is_refused(turbo, source, tmp_path):
    with pytest.raises(TaskError, match=r"region end must be after its start \(got start=5.0, end=5.0\)"):
        turbo.generate(BP, Repaint(source, 5.0, 5.0))
    with pytest.raises(TaskError, match="track must be one of woodwinds"):
        turbo.generate(BP, Extract(source, "kazoo"))
    with pytest.raises(TaskError, match="mode must be one of balanced"):
        turbo.generate(BP, Repaint(source, 1.0, 2.0, mode="gentle"))
    with pytest.raises(TaskError, match="strength must be between 0 and 1"):
        turbo.generate(BP, Cover(source, strength=1.5))
    (tmp_path / "bad.mp3").write_bytes(b"not audio at all")
    with pytest.raises(TaskError, match="bad.mp3: unreadable audio"):
        turbo.generate(BP, Cover(tmp_path / "bad.mp3"))
    long = np.zeros((2, 601 * 1000), np.float32)
    with pytest.raises(TaskError, match=r"source must be at most 600 seconds long \(got 601.0 s\)"):
        turbo.generate(BP, Cover((long, 1000)))
    with pytest.raises(TaskError, match="must lie within"):
        turbo.generate(BP, Repaint(source, -700.0, 1.0))
    with pytest.raises(TaskError, match="audio_codes apply to text2music and cover"):
        turbo.generate(BP, Repaint(source, 1.0, 2.0, audio_codes="<|audio_code_1|>"))


def test_tasks_replay_from_their_record(turbo, source):
    from acestep_engine.generation import task_from_dict

    out, = turbo.generate(BP, Repaint(source, regions=[(1.0, 2.0)], mode="conservative"), seeds=9)
    task = task_from_dict(out.task, resolve_take=lambda take_id: source)
    again, = turbo.generate(out.blueprint, task, seeds=9)
    assert np.array_equal(again.audio, out.audio)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("make", [
    lambda s: Text2Music(), lambda s: Cover(s, strength=0.7, noise_strength=0.2), lambda s: Repaint(s, 1.0, 2.0),
    lambda s: Repaint(s, regions=[(0.0, 1.0), (9.0, 14.0)]), lambda s: Extend(s, left=1.0, right=2.0),
])
def test_every_turbo_task_runs_in_batches(turbo, source, make, batch):
    takes = turbo.generate(BP, make(source), batch_size=batch, seeds=list(range(10, 10 + batch)))
    assert len(takes) == batch and len({t.id for t in takes}) == batch
    for take in takes:
        assert np.isfinite(take.audio).all() and take.audio.shape[0] == 2
        assert take.latents.shape[0] * 1920 >= take.audio.shape[-1] - 1920 or take.task["name"] == "extend"


def test_songs_near_the_600_second_limit(turbo):
    long, = turbo.generate(BP.replace(duration=599.9), seeds=1)
    assert long.latents.shape[0] == 14997 and long.audio.shape[-1] == 14997 * 1920
    tail, = turbo.generate(BP, Repaint(long, 590.0, 600.0), seeds=2)
    assert tail.audio.shape[-1] == 600 * 48000  # outpainted to exactly the limit
    keep = int(589.9 * 48000)
    assert np.array_equal(tail.audio[:, :keep], long.audio[:, :keep])
    with pytest.raises(TaskError, match="an extended song is at most 600 s"):
        turbo.generate(BP, Extend(long, right=5.0, context=600.0))
