"""Memory tiers: estimates at real model sizes (weights on the meta device), plans, refusals, and the
plan applied by generation."""

import types

import numpy as np
import pytest
import torch

from acestep_engine.blueprint import Blueprint
from acestep_engine.errors import DeviceError, InsufficientMemoryError
from acestep_engine.generation import memory
from acestep_engine.models import REAL_SIZE_DIT, REAL_SIZE_TEXT_ENCODER, REAL_SIZE_VAE

GiB = 2 ** 30


@pytest.fixture(scope="module")
def real_size():
    """The official 2B turbo DiT, VAE, Qwen3-Embedding-0.6B and a 1.7B LM in bf16, without memory."""
    from diffusers import AutoencoderOobleck
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    from acestep_engine.models.loader import build_modules

    with torch.device("meta"):
        modules = build_modules(REAL_SIZE_DIT)
        vae = AutoencoderOobleck(**REAL_SIZE_VAE)
        text = Qwen3Model(Qwen3Config(**REAL_SIZE_TEXT_ENCODER))
        lm = Qwen3ForCausalLM(Qwen3Config(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                                          num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                                          vocab_size=217204, tie_word_embeddings=True))
    for module in (*modules.values(), vae, text, lm):
        module.to(torch.bfloat16)
    models = types.SimpleNamespace(transformer=modules["transformer"], condition_encoder=modules["condition_encoder"],
                                   audio_tokenizer=modules["audio_tokenizer"], detokenizer=modules["detokenizer"],
                                   vae=vae, text_encoder=text, frame_rate=25.0)
    return models, lm


def test_real_size_footprint_matches_the_published_sizes(real_size):
    models, lm = real_size
    f = memory.footprint(models, frames=750, batch=1, guided=False, lm=lm)
    # Reference 8: DiT checkpoint about 4.7 GB in bf16, VAE 0.34 GB, text encoder 1.2 GB, 1.7B LM about 3.5 GB.
    assert 4.0 * GiB < f.dit + f.condition_encoder + f.tokenizers < 4.8 * GiB
    assert 0.25 * GiB < f.vae < 0.4 * GiB and 1.0 * GiB < f.text_encoder < 1.3 * GiB and 3.2 * GiB < f.lm < 3.8 * GiB
    longer = memory.footprint(models, frames=15000, batch=1, guided=False)
    bigger = memory.footprint(models, frames=750, batch=4, guided=True)
    assert longer.dit_activations > 5 * f.dit_activations and bigger.dit_activations > 7 * f.dit_activations
    assert longer.vae_activations == f.vae_activations  # the decode window does not grow with the duration


@pytest.mark.parametrize("budget_gib, tier", [(12, "all on device"), (8, "encoders and LM offloaded"),
                                              (5, "DiT offloaded between stages"), (4.5, "VAE on CPU")])
def test_four_budgets_choose_the_expected_tiers(real_size, budget_gib, tier):
    models, lm = real_size
    plan = memory.choose_plan(models, "cuda", frames=750, batch=1, guided=False, budget=int(budget_gib * GiB), lm=lm)
    assert plan.tier == tier and plan.fits and plan.estimate <= budget_gib * GiB
    level = memory.TIERS.index(tier)
    assert plan.offload_text_encoder == (level >= 1) and plan.offload_dit == (level >= 3)
    assert plan.vae_on_cpu == (level >= 4) and (plan.decode_chunk == memory.SMALL_VAE_CHUNK) == (level >= 2)
    assert tier in str(plan) and "GiB" in str(plan)


def test_smaller_vae_tiles_when_the_decode_window_is_the_peak(real_size):
    models, _ = real_size
    plans = memory.plan_tiers(models, "cuda", frames=750, batch=1, guided=False, budget=GiB)
    assert plans[0].stages["decode"] == plans[0].estimate  # a 30 s take: the 288-frame window peaks
    assert plans[2].stages["decode"] < plans[1].stages["decode"]


def test_an_impossible_request_is_refused_with_numbers(real_size):
    models, lm = real_size
    with pytest.raises(InsufficientMemoryError) as info:
        memory.choose_plan(models, "cuda", frames=15000, batch=8, guided=True, budget=6 * GiB, lm=lm)
    message = str(info.value)
    assert "needs about" in message and "budget is 6.00 GiB" in message and "even with every offload" in message
    assert "a duration of at most" in message and "at batch size 8" in message and "batch size" in message
    assert "without the LM" in message
    with pytest.raises(InsufficientMemoryError, match="a device with more memory"):
        memory.choose_plan(models, "cuda", frames=750, batch=1, guided=False, budget=GiB)


def test_cpu_plans_offload_only_what_can_park(real_size):
    models, _ = real_size  # modules built in memory, read from no file: nothing can park
    plans = memory.plan_tiers(models, "cpu", frames=750, batch=1, guided=False, budget=64 * GiB)
    assert [p.tier for p in plans] == ["all on device", "smaller VAE tiles"]
    assert not any(p.offload_dit or p.offload_text_encoder or p.vae_on_cpu for p in plans)


def test_cpu_plans_park_the_encoders_and_the_dit_of_a_loaded_engine(tiny_dir):
    from acestep_engine import Engine

    engine = Engine.from_pretrained(tiny_dir, device="cpu", dtype="fp32")
    plans = memory.plan_tiers(engine.models, "cpu", engine.frames_for(10), 1, False, GiB)
    assert [p.tier for p in plans] == ["all on device", "encoders and LM offloaded", "smaller VAE tiles",
                                       "DiT offloaded between stages"]
    assert not any(p.vae_on_cpu for p in plans)
    assert plans[1].stages["denoise"] < plans[0].stages["denoise"]  # the encoders are not resident while it runs
    assert plans[3].stages["decode"] < plans[2].stages["decode"]  # nor is the DiT while the VAE decodes


@pytest.mark.parametrize("tier", ["encoders and LM offloaded", "DiT offloaded between stages"])
def test_parked_generation_equals_resident_and_frees_the_weights(tiny_dir, turbo, tier):
    from acestep_engine import Engine
    from acestep_engine.runtime import parking

    engine = Engine.from_pretrained(tiny_dir, device="cpu", dtype="fp32")
    bp = Blueprint(caption="parked pads", duration=10)
    plans = {p.tier: p for p in memory.plan_tiers(engine.models, "cpu", engine.frames_for(10), 1, False, GiB)}
    encoders = (engine.models.text_encoder, engine.models.condition_encoder)
    full = [memory.resident_bytes(m) for m in encoders]
    engine.memory_budget = plans[tier].estimate
    take, = engine.generate(bp, seeds=11)
    resident, = turbo.generate(bp, seeds=11)
    assert engine.last_memory_plan.tier == tier
    assert (take.latents == resident.latents).all()
    if tier == "encoders and LM offloaded":
        assert (take.audio == resident.audio).all()
    else:  # this tier also decodes in smaller VAE windows
        np.testing.assert_allclose(take.audio, resident.audio, atol=1e-3)
    for module, size in zip(encoders, full):  # parked after their stage: only buffers stay
        assert parking.is_parked(module) and sum(p.numel() for p in module.parameters()) == 0
        assert memory.resident_bytes(module) == sum(b.numel() * b.element_size() for b in module.buffers())
        assert memory.module_bytes(module) == size  # estimates still count the whole module
    assert parking.is_parked(engine.models.transformer) == (tier == "DiT offloaded between stages")
    again, = engine.generate(bp, seeds=11)  # restored from the files for the next request
    assert (again.latents == take.latents).all()

    # Anything that calls a parked module outside the pipeline gets it restored first, also from
    # inside inference_mode (the planner's loop), with weights that are not inference tensors.
    ids = torch.tensor([[1, 2, 3]])
    with torch.inference_mode():
        out = engine.models.text_encoder(input_ids=ids).last_hidden_state
    assert not parking.is_parked(engine.models.text_encoder)
    assert not any(p.is_inference() for p in engine.models.text_encoder.parameters())
    assert torch.equal(out, turbo.models.text_encoder(input_ids=ids).last_hidden_state)

    engine.memory_budget = None  # a roomy plan keeps everything resident again
    engine.generate(bp, seeds=1)
    assert not any(parking.is_parked(m) for m in (*encoders, engine.models.transformer))


@pytest.mark.parametrize("value, expected", [(2 ** 20, 2 ** 20), (1.5, int(1.5 * GiB)), ("8GB", 8 * GiB),
                                             ("512 MiB", 512 * 2 ** 20), (None, None)])
def test_memory_budget_spellings(value, expected):
    assert memory.parse_budget(value) == expected


@pytest.mark.parametrize("value", [0, -1, "lots", True, float("nan"), [8]])
def test_bad_memory_budgets_are_named(value):
    with pytest.raises(DeviceError, match="memory_budget must be"):
        memory.parse_budget(value)


def test_engine_plans_and_applies_the_plan(turbo, monkeypatch):
    bp = Blueprint(caption="pads", duration=10)
    roomy = turbo.plan_memory(bp, batch_size=2)
    assert roomy.tier == "all on device" and roomy.device == "cpu"
    cuda = [p.estimate for p in memory.plan_tiers(turbo.models, "cuda", turbo.frames_for(10), 1, False, 1)]
    tight = turbo.plan_memory(bp, memory_budget=cuda[3], device="cuda")
    assert tight.tier == "DiT offloaded between stages"
    with pytest.raises(InsufficientMemoryError, match="budget is"):
        turbo.plan_memory(bp, memory_budget=1024)

    # The plan is applied by generation: a refused request does no work, a small-tile plan decodes in small windows.
    from acestep_engine.models import vae_codec

    monkeypatch.setattr(turbo, "memory_budget", 1024)
    with pytest.raises(InsufficientMemoryError):
        turbo.generate(bp, seeds=1)
    host = {p.tier: p.estimate for p in memory.plan_tiers(turbo.models, "cpu", turbo.frames_for(10), 1, False, 1,
                                                          lm=turbo.planner)}
    monkeypatch.setattr(turbo, "memory_budget", host["smaller VAE tiles"])
    chunks = []
    original = vae_codec.decode

    def watch(vae, latents, chunk="auto", **kwargs):
        chunks.append(chunk)
        return original(vae, latents, chunk=chunk, **kwargs)

    monkeypatch.setattr(vae_codec, "decode", watch)
    take, = turbo.generate(bp, seeds=1)
    assert turbo.last_memory_plan.tier == "smaller VAE tiles" and chunks == [memory.SMALL_VAE_CHUNK]
    assert take.audio.shape[-1] == turbo.frames_for(10) * turbo.hop_length


def test_device_summary_for_a_header(turbo, monkeypatch):
    from acestep_engine.runtime import device_summary

    summary = device_summary(turbo)
    assert summary["device"] == "cpu" and summary["memory_tier"] == "all on device"
    assert summary["dtype"] == str(turbo.dtype)[6:] and summary["dtype_choice"] == turbo.dtype_choice
    assert summary["recommended_lm"] == "acestep-5Hz-lm-0.6B" and summary["memory_budget_gib"] > 0
    tight = turbo.plan_memory(Blueprint(duration=30)).estimate + GiB  # no room for an LM beside the request
    monkeypatch.setattr(turbo, "memory_budget", tight)
    summary = device_summary(turbo)
    assert summary["recommended_lm"] is None and "not enough memory" in summary["recommended_lm_why"]
