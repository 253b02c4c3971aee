"""The attention path: fp16 on CUDA before Ampere takes its softmax in float32 (upstream's fix for NaN
latents on T4s), decided by a pure rule that runs here without a GPU, recorded on engine and take."""

import pytest
import torch

from acestep_engine import Blueprint, Engine, GenerationError
from acestep_engine.runtime import attention
from acestep_engine.runtime.attention import FP32_SOFTMAX, SDPA, attention_path, softmax_fp32_attention

BP = Blueprint(caption="lo-fi piano", bpm=90, duration=10)


@pytest.mark.parametrize("device, capability, dtype, path", [
    ("cuda", (7, 5), torch.float16, FP32_SOFTMAX),   # T4 (Colab's free GPU)
    ("cuda", (7, 0), torch.float16, FP32_SOFTMAX),   # V100
    ("cuda", (6, 1), "float16", FP32_SOFTMAX),       # Pascal, dtype by name
    ("cuda", None, torch.float16, FP32_SOFTMAX),     # capability unknown: the safe path
    ("cuda", (8, 0), torch.float16, SDPA),           # A100 in fp16: its fused kernels are fine
    ("cuda", (9, 0), torch.bfloat16, SDPA),
    ("cuda", (7, 5), torch.float32, SDPA),           # a T4 asked for fp32
    ("cpu", None, torch.float16, SDPA),
    ("cpu", None, torch.bfloat16, SDPA),
    ("mps", None, torch.float32, SDPA),
])
def test_the_dispatch_rule(device, capability, dtype, path):
    assert attention_path(device, capability, dtype) == path


@pytest.mark.parametrize("mask_kind", [None, "additive", "bool"])
def test_the_fp32_softmax_kernel_equals_sdpa_in_chunks_with_grouped_heads(mask_kind):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 37, 16, generator=g)
    k, v = torch.randn(2, 2, 37, 16, generator=g), torch.randn(2, 2, 37, 16, generator=g)
    mask = None
    if mask_kind is not None:
        keep = (torch.arange(37)[:, None] - torch.arange(37)[None]).abs() <= 5  # a sliding window
        mask = keep if mask_kind == "bool" else torch.zeros(37, 37).masked_fill(~keep, torch.finfo(torch.float32).min)
        mask = mask[None, None]
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3, enable_gqa=True)
    got = softmax_fp32_attention(q, k, v, mask, scale=0.3, chunk=8)  # 37 queries: five chunks, the last short
    assert torch.allclose(got, want, atol=1e-5)


def test_fp16_inputs_with_large_logits_give_the_float32_answer():
    # Logits in the thousands (q.k of 60-sized entries): the kernel takes fp16 tensors and returns
    # what float32 attention over the same values returns, up to fp16 rounding.
    g = torch.Generator().manual_seed(1)
    q, k = 60 * torch.randn(1, 2, 50, 16, generator=g).sign(), 60 * torch.randn(1, 2, 50, 16, generator=g).sign()
    v = torch.randn(1, 2, 50, 16, generator=g)
    out = softmax_fp32_attention(q.half(), k.half(), v.half(), scale=16 ** -0.5, chunk=16)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=16 ** -0.5)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert torch.allclose(out.float(), want, atol=1e-2)


def test_the_engine_runs_and_records_the_fp32_softmax_path(tiny_dir, turbo, monkeypatch):
    # What the loader decides for fp16 on a T4, forced onto a CPU engine: every ACE-Step attention of
    # the DiT checkpoint then runs the fp32-softmax kernel, the text encoder transformers' eager one.
    def t4(device, dtype):
        return attention_path("cuda", (7, 5), torch.float16)

    monkeypatch.setattr("acestep_engine.runtime.fast_paths.attention_path_for", t4)
    monkeypatch.setattr(attention, "attention_path_for", t4)
    engine = Engine.from_pretrained(tiny_dir, device="cpu", dtype="fp32")
    assert engine.attention == FP32_SOFTMAX and "attention fp32-softmax" in repr(engine)
    assert engine.models.text_encoder.config._attn_implementation == "eager"
    assert all(getattr(engine.models, name).acestep_attention == FP32_SOFTMAX
               for name in ("condition_encoder", "audio_tokenizer", "detokenizer"))
    calls = []
    monkeypatch.setattr("acestep_engine.runtime.fast_paths.softmax_fp32_attention",
                        lambda *a, **k: calls.append(1) or softmax_fp32_attention(*a, **k))

    def no_sdpa(*args, **kwargs):
        raise AssertionError("SDPA ran on the fp32-softmax path")

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", no_sdpa)
    take, = engine.generate(BP, seeds=3)
    monkeypatch.undo()
    assert calls and take.model["attention"] == FP32_SOFTMAX
    reference, = turbo.generate(BP, seeds=3)
    assert reference.model["attention"] == SDPA and turbo.attention == SDPA
    cosine = torch.nn.functional.cosine_similarity(torch.from_numpy(take.latents).flatten(),
                                                   torch.from_numpy(reference.latents).flatten(), dim=0)
    assert cosine > 0.9999  # the same numbers up to float32 rounding


def test_the_text_encoder_and_planner_use_eager_attention_on_that_path(monkeypatch):
    from acestep_engine.models.loader import transformers_attention

    assert transformers_attention("cpu", torch.float16) is None
    monkeypatch.setattr(attention, "device_capability", lambda device: (7, 5))
    assert transformers_attention("cuda", torch.float16) == "eager"
    assert transformers_attention("cuda", torch.bfloat16) is None


def test_nan_in_fp16_names_float32_as_the_fix(tiny_dir, turbo, monkeypatch):
    from acestep_engine.generation import pipeline

    def nan_denoise(*args, **kwargs):
        return torch.full((1, 250, turbo.latent_channels), float("nan"))

    monkeypatch.setattr(pipeline, "denoise", nan_denoise)
    with pytest.raises(GenerationError, match=r"NaN or Inf latents; try float32 \(dtype='fp32'\)"):
        turbo.generate(BP, seeds=1)
    half = Engine.from_pretrained(tiny_dir, device="cpu", dtype="fp16")
    with pytest.raises(GenerationError, match=r"NaN or Inf latents in float16, whose range this model can "
                                              r"overflow: load the engine in float32, .*dtype='fp32'"):
        half.generate(BP, seeds=1)
