"""The LM's lean one-token decode step (`acestep_engine.lm.lean_step`): the stock forward's hidden
states bit for bit, in the planner's loop and outside it, and the stock forward wherever it does
not apply."""

from __future__ import annotations

import contextlib

import pytest
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from acestep_engine import Blueprint
from acestep_engine.lm.decode_attention import decode_attention
from acestep_engine.lm.growing_cache import growing_cache
from acestep_engine.lm.lean_step import LeanStep
from acestep_engine.runtime.packed_linear import packable, packed_linears

DTYPES = [torch.float32] + ([torch.bfloat16] if packable(torch.bfloat16, "cpu") else [])


def _lm(dtype=torch.float32, **config):
    torch.manual_seed(0)
    settings = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                    tie_word_embeddings=True)
    model = Qwen3ForCausalLM(Qwen3Config(**{**settings, **config}))
    model.config._attn_implementation = "sdpa"
    return model.to(dtype).eval()


def _prompt(padded: bool):
    ids = torch.randint(0, 300, (2, 23), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    if padded:
        mask[1, :9] = 0  # the unconditional prompt of a guided batch is shorter
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def _decode_both_ways(model, padded: bool, steps: int = 6):
    """Feeds the same tokens to the stock forward and to the lean step, each with its own cache
    (both filled by the same stock prompt forward); returns their hidden states per step."""
    ids, mask, positions = _prompt(padded)
    caches = growing_cache(), growing_cache()
    for cache in caches:
        model.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                    past_key_values=cache)
    step = LeanStep.of(model)
    assert step is not None
    stock, lean = [], []
    for token in torch.randint(0, 300, (steps, 2, 1), generator=torch.Generator().manual_seed(2)):
        mask = torch.cat([mask, torch.ones(2, 1, dtype=mask.dtype)], dim=1)
        positions = positions[:, -1:] + 1
        stock.append(model.model(input_ids=token, attention_mask=mask, position_ids=positions, use_cache=True,
                                 past_key_values=caches[0]).last_hidden_state)
        assert step.applies(token, caches[1])
        lean.append(step(token, mask, positions, caches[1]))
    return stock, lean


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("in_the_loop", [False, True])
def test_the_lean_step_gives_the_stock_hidden_states_bit_for_bit(dtype, padded, in_the_loop):
    model = _lm(dtype)
    # in_the_loop: as the planner's loop runs it, with packed layers and the folded one-token attention
    loop = contextlib.ExitStack()
    if in_the_loop:
        loop.enter_context(packed_linears(model.model, rows=2))
        loop.enter_context(decode_attention(model))
    with loop, torch.inference_mode():
        stock, lean = _decode_both_ways(model, padded)
    for step, (a, b) in enumerate(zip(stock, lean)):
        assert a.shape == b.shape == (2, 1, 64)
        assert torch.equal(a, b), f"step {step}: {(a.float() - b.float()).abs().max()}"


def test_grouped_heads_equal_to_key_heads_attend_unfolded():
    model = _lm(num_key_value_heads=4)
    with torch.no_grad():
        stock, lean = _decode_both_ways(model, padded=True, steps=3)
    assert all(torch.equal(a, b) for a, b in zip(stock, lean))


@pytest.fixture
def lean_calls(monkeypatch):
    calls = []
    real = LeanStep.__call__
    monkeypatch.setattr(LeanStep, "__call__", lambda self, *a: calls.append(a[0].shape) or real(self, *a))
    return calls


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_the_planner_steps_lean_and_writes_the_stock_codes(planner, monkeypatch, lean_calls, guidance):
    blueprint = Blueprint(caption="warm lo-fi piano", lyrics="[verse]\nrain on the window", bpm=90,
                          keyscale="C major", timesignature=4, duration=12, language="en")
    planner.bring_back()
    fast = planner.codes(blueprint, seed=11, guidance=guidance)
    rows = 2 if guidance > 1 else 1
    assert len(lean_calls) >= 60 and set(lean_calls) == {(rows, 1)}  # every code after the prompt's forward
    monkeypatch.setenv("ACESTEP_FAST_PATHS", "0")
    lean_calls.clear()
    assert planner.codes(blueprint, seed=11, guidance=guidance) == fast
    assert not lean_calls


def test_the_thinking_phase_steps_lean_and_plans_the_stock_blueprint(planner, monkeypatch, lean_calls):
    idea = Blueprint(caption="a slow waltz for a rainy afternoon", duration=10)
    planner.bring_back()
    fast = planner.plan(idea, seed=5)
    assert lean_calls
    monkeypatch.setenv("ACESTEP_FAST_PATHS", "0")
    lean_calls.clear()
    assert planner.plan(idea, seed=5) == fast and not lean_calls


def test_what_the_lean_step_was_not_checked_for_gets_the_stock_forward(monkeypatch):
    assert LeanStep.of(_lm()) is not None
    assert LeanStep.of(_lm().model) is not None  # the inner model serves as well
    eager = _lm()
    eager.config._attn_implementation = "eager"
    assert LeanStep.of(eager) is None
    sliding = _lm(layer_types=["sliding_attention", "full_attention", "full_attention"], sliding_window=8,
                  use_sliding_window=True)
    assert LeanStep.of(sliding) is None
    hooked = _lm()
    hooked.model.layers[1].mlp.register_forward_hook(lambda *a: None)
    assert LeanStep.of(hooked) is None
    pre_hooked = _lm()
    pre_hooked.model.layers[0].self_attn.q_proj.register_forward_pre_hook(lambda *a: None)
    assert LeanStep.of(pre_hooked) is None

    class Adapted(torch.nn.Linear):  # a layer wrapped by an adapter: its forward is not a plain product
        pass

    adapted = _lm()
    old = adapted.model.layers[2].mlp.up_proj
    adapted.model.layers[2].mlp.up_proj = Adapted(old.in_features, old.out_features, bias=False)
    assert LeanStep.of(adapted) is None
    training = _lm().train()
    assert LeanStep.of(training) is None
    kernelized = _lm()
    kernelized._use_kernels = True  # what `use_kernels=True` leaves: hub kernels replace some operations
    assert LeanStep.of(kernelized) is None
    monkeypatch.setenv("ACESTEP_FAST_PATHS", "0")
    assert LeanStep.of(_lm()) is None


def test_a_step_it_cannot_take_is_left_to_the_stock_forward():
    model = _lm()
    step = LeanStep.of(model)
    ids, mask, positions = _prompt(padded=True)
    cache = growing_cache()
    with torch.no_grad():
        assert not step.applies(ids, cache)  # the prompt: many tokens, an empty cache
        model.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                    past_key_values=cache)
        assert step.applies(ids[:, :1], cache)
        assert not step.applies(ids[:, :2], cache)  # a forced run of two tokens
    assert not step.applies(ids[:, :1], cache)  # gradients on


def test_a_parked_lm_is_left_to_the_stock_forward_which_restores_it(tiny_dir, turbo, monkeypatch, lean_calls):
    from acestep_engine.lm import Planner
    from acestep_engine.models import LM_FOLDER, write_lm
    from acestep_engine.runtime import parking

    if not (tiny_dir / LM_FOLDER / "model.safetensors").is_file():
        write_lm(tiny_dir / LM_FOLDER)
    planner = Planner.from_pretrained(LM_FOLDER, checkpoints_dir=tiny_dir, device="cpu", offload=True)
    blueprint = Blueprint(caption="slow piano", bpm=70, keyscale="D minor", timesignature=3, duration=10)
    fast = planner.codes(blueprint, seed=3)
    assert parking.is_parked(planner.model) and lean_calls  # parking's hooks do not keep it from running lean
    planner.bring_back()
    step, cache, token = LeanStep.of(planner.model), growing_cache(), torch.zeros(1, 1, dtype=torch.long)
    with torch.no_grad():
        planner.model.model(input_ids=token, use_cache=True, past_key_values=cache)
        assert step.applies(token, cache)
        planner.put_away()
        assert not step.applies(token, cache)
    monkeypatch.setenv("ACESTEP_FAST_PATHS", "0")
    assert planner.codes(blueprint, seed=3) == fast

