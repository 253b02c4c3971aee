"""SDE and Heun sampling, cross-attention K/V reuse, and loading the variant a task needs."""

import numpy as np
import pytest
import torch

from acestep_engine import Blueprint, Cover, Engine, Extract, TaskError
from acestep_engine.runtime import reuse_condition_projections

BP = Blueprint(caption="glassy ambient", duration=10.0)


def count_calls(module, monkeypatch):
    calls = []
    forward = module.forward
    monkeypatch.setattr(module, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    return calls


def test_sde_is_seeded_and_differs_from_ode(turbo):
    a, = turbo.generate(BP, seeds=3, method="sde")
    b, = turbo.generate(BP, seeds=3, method="sde")
    ode, = turbo.generate(BP, seeds=3)
    assert np.array_equal(a.latents, b.latents) and not np.allclose(a.latents, ode.latents)
    assert a.sampling["method"] == "sde"


def test_heun_adds_a_corrector_call_per_step(turbo, monkeypatch):
    calls = count_calls(turbo.models.transformer, monkeypatch)
    take, = turbo.generate(BP, seeds=3, solver="heun")
    assert len(calls) == 8 + 7  # no corrector on the last step (to t = 0)
    assert take.sampling["solver"] == "heun"
    with pytest.raises(TaskError, match="solver must be 'euler' or 'heun'"):
        turbo.generate(BP, solver="rk4")


def test_cross_attention_projections_run_once_per_generation(turbo, monkeypatch):
    to_k = count_calls(turbo.models.transformer.layers[0].cross_attn.to_k, monkeypatch)
    embed = count_calls(turbo.models.transformer.condition_embedder, monkeypatch)
    turbo.generate(BP, seeds=3)
    assert len(to_k) == 1 and len(embed) == 1  # 8 steps, one projection


def test_cover_switch_recomputes_the_projections(turbo, monkeypatch):
    source, = turbo.generate(BP, seeds=4)
    to_v = count_calls(turbo.models.transformer.layers[1].cross_attn.to_v, monkeypatch)
    turbo.generate(BP, Cover(source, strength=0.5), seeds=3)
    assert len(to_v) == 2


def test_reuse_gives_identical_velocities(turbo):
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(1, 40, 16, generator=g), torch.randn(1, 40, 32, generator=g)
    enc, t = torch.randn(1, 9, 32, generator=g), torch.tensor([0.6])
    x, ctx, enc, t = (v.to(turbo.dtype) for v in (x, ctx, enc, t))
    model = turbo.models.transformer
    plain = model(x, t, t, enc, ctx, return_dict=False)[0]
    with reuse_condition_projections(model):
        first = model(x, t, t, enc, ctx, return_dict=False)[0]
        second = model(x * 0.5, t, t, enc, ctx, return_dict=False)[0]
    assert torch.equal(first, plain)
    assert torch.equal(second, model(x * 0.5, t, t, enc, ctx, return_dict=False)[0])
    assert "condition_embedder.weight" in model.state_dict()  # modules are restored afterwards


def test_base_only_task_loads_the_base_variant_when_allowed(tiny_dir):
    engine = Engine.from_pretrained(tiny_dir, device="cpu", allow_download=True)
    source, = engine.generate(BP, seeds=1)
    take, = engine.generate(BP, Extract(source, "drums"), seeds=1, steps=1)
    assert take.model["variant"] == "acestep-v15-base" and take.parent_id == source.id
    base = engine.with_variant("acestep-v15-base")
    assert base.models.vae is engine.models.vae and base.models.text_encoder is engine.models.text_encoder
    assert engine.with_variant("acestep-v15-base") is base


def test_missing_variant_is_named_when_downloads_are_off(tiny16_dir):
    engine = Engine.from_pretrained(tiny16_dir, device="cpu")
    source, = engine.generate(BP, seeds=1)
    with pytest.raises(TaskError, match="needs the acestep-v15-base checkpoint"):
        engine.generate(BP, Extract(source, "drums"))
