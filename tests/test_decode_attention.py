"""The LM's one-token bf16 decode attention (`acestep_engine.lm.decode_attention`): the steps SDPA
would run with GQA in its slow CPU kernel fold the query heads and attend without a mask, bit for
bit what transformers' folded road for padded batches gives with an all-true mask; every other call
is transformers' SDPA function as it is."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen3Config
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask
from transformers.models.qwen3.modeling_qwen3 import Qwen3Attention

from acestep_engine.lm import decode_attention as module
from acestep_engine.lm.decode_attention import NAME, decode_attention


def _attention():
    config = Qwen3Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         num_hidden_layers=1, vocab_size=32)
    config._attn_implementation = "sdpa"
    return Qwen3Attention(config, layer_idx=0).eval()


def _inputs(queries=1, dtype=torch.bfloat16, rows=3, keys=37):
    torch.manual_seed(0)
    return (torch.randn(rows, 4, queries, 16).to(dtype), torch.randn(rows, 2, keys, 16).to(dtype),
            torch.randn(rows, 2, keys, 16).to(dtype))


@pytest.mark.parametrize("keys,cache_view", [(37, False), (37, True), (600, True)])
def test_an_unmasked_one_token_bf16_step_attends_as_a_padded_batch_does(keys, cache_view):
    attn = _attention()
    query, key, value = _inputs(keys=keys)
    if cache_view:  # as the growing KV cache hands them out: views of buffers with spare room
        key = torch.cat([key, torch.randn(3, 2, 50, 16).to(key.dtype)], dim=2)[:, :, :keys]
        value = torch.cat([value, torch.randn(3, 2, 50, 16).to(value.dtype)], dim=2)[:, :, :keys]
    everything = torch.ones(3, 1, 1, keys, dtype=torch.bool)
    with torch.no_grad():
        ours, _ = module._one_token_attention(attn, query, key, value, None, scaling=0.25)
        folded, _ = sdpa_attention_forward(attn, query, key, value, everything, scaling=0.25)
        exact, _ = sdpa_attention_forward(attn, query.float(), key.float(), value.float(), None, scaling=0.25)
    assert ours.shape == (3, 1, 4, 16) and torch.equal(ours, folded)
    assert (ours.float() - exact).abs().max() < 1e-2


@pytest.mark.parametrize("case", ["masked", "prompt", "fp32"])
def test_every_other_call_is_sdpas_own(case):
    attn = _attention()
    queries = 4 if case == "prompt" else 1
    query, key, value = _inputs(queries=queries, dtype=torch.float32 if case == "fp32" else torch.bfloat16)
    mask = None
    if case == "masked":
        mask = torch.ones(3, 1, 1, 37, dtype=torch.bool)
        mask[0, ..., :5] = False
    with torch.no_grad():
        ours, _ = module._one_token_attention(attn, query, key, value, mask, scaling=0.25)
        sdpa, _ = sdpa_attention_forward(attn, query, key, value, mask, scaling=0.25)
    assert torch.equal(ours, sdpa)


def test_the_block_switches_sdpa_models_only_and_puts_them_back():
    from transformers import AttentionInterface, AttentionMaskInterface

    attn = _attention()
    with decode_attention(attn):
        assert attn.config._attn_implementation == NAME
        assert AttentionInterface()[NAME] is module._one_token_attention
        assert AttentionMaskInterface()[NAME] is sdpa_mask
    assert attn.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError), decode_attention(attn):
        raise RuntimeError("stop")
    assert attn.config._attn_implementation == "sdpa"
    attn.config._attn_implementation = "eager"  # fp16 safety (runtime.attention) stays as it is
    with decode_attention(attn):
        assert attn.config._attn_implementation == "eager"
    other = _attention()
    with decode_attention(other, enabled=False):
        assert other.config._attn_implementation == "sdpa"
