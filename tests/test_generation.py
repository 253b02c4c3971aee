"""text2music through the real loader and the shared pipeline, on tiny checkpoints."""

import threading

import numpy as np
import pytest
import torch

from acestep_engine import Blueprint, BlueprintError, Engine, GenerationCancelled, Progress, TaskError, Text2Music
from acestep_engine.models import vae_codec

BP = Blueprint(caption="dusty lo-fi piano, vinyl crackle", lyrics="[verse]\nlast train is gone",
               bpm=84, keyscale="F minor", timesignature=4, duration=10.0, language="en")


@pytest.fixture(scope="module")
def turbo32(tiny_dir):
    """fp32 whatever "auto" picks on this CPU: for tests whose point is numerical agreement."""
    return Engine.from_pretrained(tiny_dir, dit="acestep-v15-turbo", device="cpu", dtype="fp32")


def test_text2music_shapes_and_record(turbo):
    (take,) = turbo.generate(BP, seeds=7)
    assert take.audio.dtype == np.float32 and take.audio.shape == (2, 10 * 48000)
    assert take.sample_rate == 48000 and take.latents.shape == (250, 16)
    assert take.seed == 7 and take.blueprint == BP.validate() and take.parent_id is None
    assert take.task == {"name": "text2music", "reference": None, "audio_codes": None}
    assert take.model["variant"] == "acestep-v15-turbo" and len(take.model["weights"]) == 16
    assert take.sampling["steps"] == 8 and take.sampling["shift"] == 3.0 and take.sampling["guidance"] == 1.0
    assert take.sampling["timesteps"][:3] == pytest.approx([1.0, 0.95455, 0.9], abs=1e-5)
    assert set(take.timings) == {"encode_s", "denoise_s", "decode_s", "total_s"}
    assert np.max(np.abs(take.audio)) == pytest.approx(10 ** (-1 / 20), rel=1e-5)  # -1 dBFS


def test_same_seed_same_audio_and_different_seed_differs(turbo):
    a, = turbo.generate(BP, seeds=[11])
    b, = turbo.generate(BP, seeds=[11])
    c, = turbo.generate(BP, seeds=[12])
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.latents, b.latents)
    assert not np.allclose(a.latents, c.latents)


def test_noise_is_drawn_like_upstream(turbo):
    noise = turbo.make_noise([5, 9], 250)
    for i, seed in enumerate([5, 9]):
        g = torch.Generator("cpu").manual_seed(seed)
        assert torch.equal(noise[i:i + 1], torch.randn((1, 250, 16), generator=g, dtype=turbo.dtype))


def test_batch_gives_one_take_per_seed(turbo32):
    takes = turbo32.generate(BP, batch_size=3, seeds=[1, 2, 3])
    assert [t.seed for t in takes] == [1, 2, 3] and [t.batch_index for t in takes] == [0, 1, 2]
    single, = turbo32.generate(BP, seeds=[2])
    # Batching only changes float summation order, not the sample.
    np.testing.assert_allclose(takes[1].latents, single.latents, atol=1e-4)
    assert len({t.id for t in takes}) == 3


def test_random_seeds_are_recorded_and_reproduce(turbo):
    first, second = turbo.generate(BP, batch_size=2)
    assert first.seed != second.seed
    replay = turbo.generate(BP, batch_size=2, seeds=[first.seed, second.seed])
    assert np.array_equal(replay[1].audio, second.audio)


def test_int_seed_counts_up_through_the_batch(turbo):
    assert Engine.resolve_seeds(40, 3) == [40, 41, 42]


def test_progress_reports_every_step_and_item(turbo):
    events = []
    turbo.generate(BP, batch_size=2, seeds=[1, 2], progress=events.append)
    assert all(isinstance(e, Progress) for e in events)
    steps = [e.step for e in events if e.stage == "denoise"]
    assert steps == list(range(1, 9))
    assert [e.item for e in events if e.stage == "decode"] == [0, 1]
    assert events[-1].stage == "done" and events[-1].fraction == 1.0
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions)


def test_cancel_stops_between_steps(turbo):
    cancel = threading.Event()
    seen = []

    def progress(p):
        seen.append(p.step)
        if p.stage == "denoise" and p.step == 3:
            cancel.set()

    with pytest.raises(GenerationCancelled, match="before step 4 of 8"):
        turbo.generate(BP, progress=progress, cancel=cancel)
    assert max(seen) == 3


def test_bad_input_is_refused_with_the_field_named(turbo):
    with pytest.raises(BlueprintError, match="bpm"):
        turbo.generate(Blueprint(bpm=512))
    with pytest.raises(TaskError, match=r"batch_size must be between 1 and 8 \(got 9\)"):
        turbo.generate(BP, batch_size=9)
    with pytest.raises(TaskError, match="guidance must be 1.0 on the turbo variant"):
        turbo.generate(BP, guidance=7.0)
    with pytest.raises(TaskError, match="seeds must hold one seed per batch item"):
        turbo.generate(BP, batch_size=2, seeds=[1])
    with pytest.raises(TaskError, match="shift must be between 1 and 5"):
        turbo.generate(BP, shift=9)


def test_turbo_snaps_shift_and_honours_steps_with_an_even_schedule(turbo):
    settings = turbo.sampler_settings(shift=2.2)
    assert settings.steps == 8 and settings.shift == 2.0
    assert settings.schedule[:-1] == pytest.approx([1.0, 0.93333, 0.85714, 0.76923, 0.66667, 0.54545, 0.4,
                                                    0.22222], abs=1e-5)
    # steps is honoured as upstream's MLX path does: linspace(1, 0, N + 1), then the snapped shift
    three = turbo.sampler_settings(steps=3, shift=3.0)
    assert three.schedule == pytest.approx([1.0, 6 / 7, 0.6, 0.0], abs=1e-12)
    calls = []
    forward = turbo.models.transformer.forward
    turbo.models.transformer.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
    try:
        take, = turbo.generate(BP, seeds=1, steps=3)
    finally:
        del turbo.models.transformer.forward
    assert len(calls) == 3 and take.sampling["steps"] == 3


def test_base_preset_uses_guidance_with_two_branches_per_step(base, monkeypatch):
    assert (base.preset.steps, base.preset.shift, base.preset.guidance) == (50, 1.0, 7.0)
    batch_sizes = []
    forward = base.models.transformer.forward

    def spy(*args, **kwargs):
        batch_sizes.append(kwargs["hidden_states"].shape[0])
        return forward(*args, **kwargs)

    monkeypatch.setattr(base.models.transformer, "forward", spy)
    take, = base.generate(BP, seeds=3, steps=4)
    assert batch_sizes == [2, 2, 2, 2]  # cond and uncond in one batched call
    assert take.sampling["guidance"] == 7.0 and take.sampling["guidance_method"] == "apg"
    batch_sizes.clear()
    base.generate(BP, seeds=3, steps=4, guidance_interval=(0.0, 0.5))
    assert batch_sizes == [1, 1, 2, 2]  # t = 1.0, 0.75 fall outside the interval


def test_guidance_changes_the_result(base):
    guided, = base.generate(BP, seeds=3, steps=4)
    plain, = base.generate(BP, seeds=3, steps=4, guidance=1.0)
    assert not np.allclose(guided.latents, plain.latents)


def test_non_default_audio_format(tiny16_dir):
    engine = Engine.from_pretrained(tiny16_dir, device="cpu")
    take, = engine.generate(BP.replace(duration=10.3), seeds=1)
    assert take.sample_rate == 16000
    assert take.latents.shape == (515, 8)  # 10.3 s at 50 Hz: an odd frame count
    assert take.audio.shape == (2, 515 * 320)


def test_tiled_decode_matches_untiled(turbo32):
    take, = turbo32.generate(BP.replace(duration=24), seeds=4, normalize=False)
    latents = torch.from_numpy(take.latents)
    whole = vae_codec.decode(turbo32.models.vae, latents, chunk=None)
    tiled = vae_codec.decode(turbo32.models.vae, latents, chunk=128, overlap=16)
    assert np.max(np.abs(whole - tiled)) < 1e-4 * np.max(np.abs(whole))


def test_decode_memory_is_bounded_by_the_window(turbo, monkeypatch):
    """A 600 s decode only ever runs the VAE on windows of chunk + 2 * overlap frames."""
    widths = []

    class Out:
        def __init__(self, sample):
            self.sample = sample

    def fake_decode(z):
        widths.append(z.shape[-1])
        return Out(torch.zeros(1, 2, z.shape[-1] * 1920))

    monkeypatch.setattr(turbo.models.vae, "decode", fake_decode)
    out = vae_codec.decode(turbo.models.vae, torch.zeros(15000, 16))
    assert out.shape == (2, 15000 * 1920)
    assert max(widths) == vae_codec.DECODE_CHUNK + 2 * vae_codec.DECODE_OVERLAP


def test_normalisation_can_be_switched_off(turbo):
    loud, = turbo.generate(BP, seeds=8)
    raw, = turbo.generate(BP, seeds=8, normalize=False)
    assert np.max(np.abs(raw.audio)) <= 1.0
    np.testing.assert_allclose(loud.audio / np.max(np.abs(loud.audio)), raw.audio / np.max(np.abs(raw.audio)),
                               atol=1e-5)


def test_silent_output_raises(turbo, monkeypatch):
    from acestep_engine import GenerationError

    monkeypatch.setattr(vae_codec, "decode", lambda vae, latents, cancel=None: np.zeros((2, 480000), np.float32))
    with pytest.raises(GenerationError, match="silent"):
        turbo.generate(BP, seeds=1)


def test_nan_latents_raise(turbo, monkeypatch):
    from acestep_engine import GenerationError
    from acestep_engine.generation import pipeline

    monkeypatch.setattr(pipeline, "denoise", lambda *a, **k: torch.full((1, 250, 16), float("nan")))
    with pytest.raises(GenerationError, match="NaN"):
        turbo.generate(BP, seeds=1)


def test_demo_engine_is_written_on_first_use(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ACESTEP_DEMO_DIR", str(tmp_path / "demo"))
    engine = Engine.demo(device="cpu")
    assert engine.is_demo and "makes noise" in caplog.text
    assert (tmp_path / "demo" / "acestep-v15-turbo" / "model.safetensors").is_file()
    assert "random weights" in repr(engine)
    take, = engine.generate(BP, seeds=1)
    assert take.audio.shape == (2, 480000) and take.model["demo"] is True


def test_durations_at_both_ends_of_the_range(turbo, monkeypatch):
    assert turbo.frames_for(600) == 15000 and turbo.frames_for(10) == 250
    take, = turbo.generate(BP.replace(duration=10.04), seeds=1)
    assert take.latents.shape[0] == 250


def test_custom_timesteps_snap_to_the_turbo_grid(turbo):
    settings = turbo.sampler_settings(timesteps=[1.0, 0.81, 0.31])
    assert settings.schedule == pytest.approx([1.0, 5 / 6, 0.3, 0.0], abs=1e-12)
    with pytest.raises(TaskError, match="timesteps must be strictly decreasing"):
        turbo.sampler_settings(timesteps=[0.5, 0.9])


def test_text2music_task_round_trips():
    from acestep_engine.generation import task_from_dict

    assert task_from_dict(Text2Music().to_dict()) == Text2Music()
