"""Each task's steering, as upstream does it; regions as one type; every setting that cannot act is refused."""

import math

import numpy as np
import pytest
import torch

from acestep_engine import Blueprint, Complete, Cover, Extend, Lego, Repaint, TaskError, Text2Music
from acestep_engine.blueprint import COVER_INSTRUCTION, TEXT2MUSIC_INSTRUCTION
from acestep_engine.generation import Regions, pipeline
from acestep_engine.generation.conditioning import caption_tokens
from acestep_engine.generation.tasks.repaint import soft_mask

BP = Blueprint(caption="steering check", duration=12.0)


@pytest.fixture(scope="module")
def source(turbo):
    take, = turbo.generate(BP, seeds=21)
    return take


def _capture_denoised(monkeypatch):
    """The loop's output before the task's latent crossfade."""
    seen = []
    original = pipeline.denoise
    monkeypatch.setattr(pipeline, "denoise", lambda *a, **k: seen.append(original(*a, **k)) or seen[-1])
    return seen


def test_turbo_conservative_repaint_skips_the_injection_after_the_last_step(turbo, source, monkeypatch):
    seen = _capture_denoised(monkeypatch)
    out, = turbo.generate(BP, Repaint(source, 4.0, 6.0, mode="conservative"), seeds=1)
    keep = torch.from_numpy(source.latents)
    last = seen[0][0]
    outside = np.ones(300, bool)
    outside[100:150] = False
    # as upstream's turbo loop: the last update is not reset to the source outside the region ...
    assert not torch.allclose(last[outside], keep[outside])
    # ... so the crossfade ramps (25 frames each side) blend the model's last step with the source
    soft = torch.from_numpy(soft_mask(~outside, 25))[:, None]
    expected = soft * last + (1 - soft) * keep
    np.testing.assert_allclose(out.latents, expected.numpy(), atol=1e-6)
    ramp = slice(151, 174)
    assert not np.allclose(out.latents[ramp], source.latents[ramp])
    assert np.array_equal(out.latents[:74], source.latents[:74])  # beyond the ramps: the source


def test_base_conservative_repaint_injects_after_every_step(base, source, monkeypatch):
    seen = _capture_denoised(monkeypatch)
    out, = base.generate(BP, Repaint(source, 4.0, 6.0, mode="conservative"), seeds=1, steps=2)
    last = seen[0][0]
    outside = np.ones(300, bool)
    outside[100:150] = False
    injected = out.latents[outside]
    # upstream's base loop resets the outside to the clean source after the final step too
    assert np.allclose(last[outside].numpy(), injected, atol=1e-6)


@pytest.mark.parametrize("option", [dict(solver="heun"), dict(method="sde")])
def test_cover_noise_keeps_the_solver_and_method(turbo, source, monkeypatch, option):
    euler, = turbo.generate(BP, Cover(source, noise_strength=0.3), seeds=6)
    calls = []
    forward = turbo.models.transformer.forward
    monkeypatch.setattr(turbo.models.transformer, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    other, = turbo.generate(BP, Cover(source, noise_strength=0.3), seeds=6, **option)
    assert not np.allclose(other.latents, euler.latents)
    key, value = next(iter(option.items()))
    assert other.sampling[key] == value and euler.sampling[key] in ("euler", "ode")
    # t = 0.75 of the shift-3 table is nearest 1 - 0.3: four steps remain, and the record says so
    assert other.sampling["steps"] == 4 and other.sampling["timesteps"][0] == pytest.approx(0.75)
    assert len(calls) == (4 + 3 if key == "solver" else 4)


def test_cover_switch_pads_the_text2music_caption_like_upstream(turbo, source, monkeypatch):
    models = turbo.models
    cover_len = caption_tokens(models, BP.caption_prompt(COVER_INSTRUCTION))
    plain_len = caption_tokens(models, BP.caption_prompt(TEXT2MUSIC_INSTRUCTION))
    assert plain_len < cover_len  # as with the official tokenizer
    states = []
    forward = models.transformer.forward
    monkeypatch.setattr(models.transformer, "forward",
                        lambda *a, **k: states.append(k["encoder_hidden_states"]) or forward(*a, **k))
    turbo.generate(BP, Cover(source, strength=0.5), seeds=5)
    assert states[0].shape == states[-1].shape  # the late (text2music) conditions carry the pads
    assert not torch.equal(states[0], states[-1])


def test_regions_convert_in_one_place():
    regions = Regions.of([(4.0, 6.0), (-3.0, 0.0)])
    assert (regions.start, regions.end) == (-3.0, 6.0) and len(regions) == 2
    assert Regions.of((1.0, 2.0)).spans == ((1.0, 2.0),)
    shifted = regions.shifted(3.0)
    assert shifted.spans == ((7.0, 9.0), (0.0, 3.0))
    mask = shifted.frames(25.0, 250)
    assert mask[175:225].all() and mask[:75].all() and not mask[75:175].any() and not mask[225:].any()
    assert Regions.of([(0.5, 1.0)]).samples(16000) == [(8000, 16000)]
    assert Regions.of([(0.01, 0.03)]).frames(25.0, 10).tolist() == [False] * 10  # no whole frame
    assert Regions.of(regions) is regions and regions.to_list() == [[4.0, 6.0], [-3.0, 0.0]]


@pytest.mark.parametrize("value, message", [
    ("1-5", "regions must be a list of \\(start, end\\) pairs"),
    ([(1.0, 2.0, 3.0)], "regions must be a list"),
    ([1.0], "regions must be a list"),
    ([(1.0, math.nan)], "region end must be a finite number of seconds"),
    ([(3.0, 1.0)], r"region end must be after its start \(got start=3.0, end=1.0\)"),
])
def test_bad_regions_are_refused(turbo, source, value, message):
    with pytest.raises(TaskError, match=message):
        turbo.generate(BP, Repaint(source, regions=value))


def test_settings_that_cannot_act_are_refused(turbo, base, source):
    with pytest.raises(TaskError, match=r"right must be between 0 and 588.00 seconds for this 12.00 s source"):
        turbo.generate(BP, Extend(source, right=600))
    with pytest.raises(TaskError, match=r"left \+ right must be between 0 and 588.00 seconds .* \(got left=590"):
        turbo.generate(BP, Extend(source, left=590.0, right=1.0))
    with pytest.raises(TaskError, match=r"start must be between 0 and the source's length in seconds \(got -5\)"):
        base.generate(BP, Lego(source, "drums", start=-5, end=100))
    with pytest.raises(TaskError, match=r"end must be between 2 and 12.00 seconds \(the source's length\) \(got 100\)"):
        base.generate(BP, Lego(source, "drums", start=2, end=100))
    with pytest.raises(TaskError, match="tracks must name at least one of"):
        base.generate(BP, Complete(source, tracks=()))
    with pytest.raises(TaskError, match="tracks must be a list of track names"):
        base.generate(BP, Complete(source, tracks="drums"))
    with pytest.raises(TaskError, match=r"audio_codes give 0.20 s of music; a take must be 10 to 600 s long"):
        turbo.generate(BP, Text2Music(audio_codes="<|audio_code_1|>"))
    with pytest.raises(TaskError, match=r"left must be between 0 and 600 seconds \(got nan\)"):
        turbo.generate(BP, Extend(source, left=math.nan))


def test_extend_up_to_exactly_600_seconds(turbo, source):
    task = Extend(source, right=600 - source.duration)
    plan = task.plan(turbo.facts, BP)
    assert plan.output_samples == 600 * 48000 and plan.blueprint.duration == 600.0


def test_tasks_plan_with_the_models_facts_not_the_engine(turbo, source):
    plan = Repaint(source, 4.0, 6.0).plan(turbo.facts, BP)
    assert plan.frames == 300 and plan.inside[100:150].all() and plan.keeps_loudness
    assert turbo.can(Extend(source)) and turbo.can("extend") and not turbo.can("lego") and not turbo.can("kazoo")


def test_nan_in_a_take_used_as_source_is_refused_where_it_enters(turbo, source):
    import dataclasses

    bad = dataclasses.replace(source, audio=np.full_like(source.audio, np.nan), latents=None)
    with pytest.raises(TaskError, match="source: the audio of take .* NaN or infinite samples"):
        turbo.generate(BP, Repaint(bad, 1.0, 2.0))
    with pytest.raises(TaskError, match="reference: the audio of take"):
        turbo.generate(BP, Text2Music(reference=bad))
