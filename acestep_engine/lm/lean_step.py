"""One-token decode steps of a Qwen3 LM without transformers' module plumbing (a CPU fast path).

A guided decode step of the 0.6B LM is 197 matrix products and some 1,400 small operations. Called
through transformers' modules, each of the 28 decoder layers also pays its decorators, keyword
plumbing, hook checks and attention dispatch, and the model builds its padding mask again every
step and SDPA turns it into an additive one in every layer: about 8-12 ms of an 80-90 ms step on
the 2-core EPYC here. `LeanStep` runs the same operations in the same order on the same modules'
weights (their `forward`s: packed layers stay packed), so its hidden states are bit-identical to
the stock forward's (tests compare them), and it builds SDPA's additive padding mask once per step.

    step = LeanStep.of(model)                         # None unless `model` is a plain Qwen3 LM on a CPU
    hidden = step(input_ids, attention_mask, positions, cache)   # [rows, 1, hidden], one token per row

It serves only what it was checked for: transformers' own Qwen3 classes with plain linear layers and
no hub kernels, full attention everywhere, SDPA, inference, one new token per row, a cache already filled by a
stock forward, and no hooks besides parking's (a parked model is run by the stock forward, which
restores it). Anything else, or `ACESTEP_FAST_PATHS=0`, gets None and the stock forward.
"""

from __future__ import annotations

import torch
from torch import nn

from ..runtime.fast_paths import fast_paths_enabled
from .decode_attention import NAME as DECODE_ATTENTION, folded_attention


def _qwen3_classes():
    from transformers.models.qwen3 import modeling_qwen3 as qwen3

    return qwen3


def _only_parking_hooks(root: nn.Module) -> bool:
    from torch.nn.modules import module as torch_module

    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        return False
    for sub in root.modules():
        if sub._forward_hooks or getattr(sub, "_forward_hooks_with_kwargs", None) \
                or any(not getattr(hook, "acestep_parking", False) for hook in sub._forward_pre_hooks.values()):
            return False
    return True


class LeanStep:
    """See the module docstring."""

    def __init__(self, lm: nn.Module, inner: nn.Module):
        self.lm = lm
        self.inner = inner
        self.layers = list(inner.layers[: inner.config.num_hidden_layers])

    @classmethod
    def of(cls, model: nn.Module) -> "LeanStep | None":
        """A LeanStep for `model` (a Qwen3ForCausalLM or its Qwen3Model), or None where it does not apply."""
        if not fast_paths_enabled():
            return None
        try:
            qwen3 = _qwen3_classes()
        except ImportError:
            return None
        inner = model.model if type(model) is qwen3.Qwen3ForCausalLM else model
        if type(inner) is not qwen3.Qwen3Model or inner.training \
                or getattr(model, "use_kernels", False) or getattr(inner, "use_kernels", False):  # hub kernels
            return None
        config = inner.config
        if getattr(config, "_attn_implementation", None) not in ("sdpa", DECODE_ATTENTION) \
                or any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or ()) \
                or len(inner.layers) != config.num_hidden_layers:
            return None
        for layer in inner.layers:
            attention, mlp = layer.self_attn, layer.mlp
            if type(layer) is not qwen3.Qwen3DecoderLayer or type(attention) is not qwen3.Qwen3Attention \
                    or type(mlp) is not qwen3.Qwen3MLP:
                return None
            linears = (attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj,
                       mlp.gate_proj, mlp.up_proj, mlp.down_proj)
            if any(type(linear) is not nn.Linear for linear in linears):
                return None
        if any(p.device.type != "cpu" for p in inner.parameters()) or not _only_parking_hooks(model):
            return None
        return cls(model, inner)

    def applies(self, input_ids: torch.Tensor, cache) -> bool:
        """Whether this step can run: one token per row, after a stock forward filled `cache`."""
        from ..runtime import parking

        layers = getattr(cache, "layers", None)
        return input_ids.dim() == 2 and input_ids.shape[1] == 1 and not torch.is_grad_enabled() \
            and layers is not None and len(layers) == len(self.layers) \
            and all(layer.is_initialized for layer in layers) and not parking.is_parked(self.lm)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor,
                 cache) -> torch.Tensor:
        """The final-norm hidden states `[rows, 1, hidden]` of one new token per row (the stock
        `Qwen3Model.forward(...).last_hidden_state`); `attention_mask` `[rows, cached + 1]` (0: padding)."""
        inner = self.inner
        hidden = inner.embed_tokens(input_ids)
        cos, sin = inner.rotary_emb(hidden, positions)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        mask = None
        if not bool(attention_mask.all()):  # padded rows: what SDPA makes of the stock boolean mask, once
            mask = torch.zeros(attention_mask.shape[0], 1, 1, attention_mask.shape[1], dtype=hidden.dtype,
                               device=hidden.device).masked_fill_(attention_mask[:, None, None, :] == 0, float("-inf"))
        rows = hidden.shape[0]
        fold_unmasked = hidden.dtype == torch.bfloat16 and inner.config._attn_implementation == DECODE_ATTENTION
        for index, layer in enumerate(self.layers):
            attention, mlp = layer.self_attn, layer.mlp
            residual = hidden
            hidden = layer.input_layernorm.forward(hidden)
            heads = (rows, 1, -1, attention.head_dim)
            query = attention.q_norm.forward(attention.q_proj.forward(hidden).view(heads)).transpose(1, 2)
            key = attention.k_norm.forward(attention.k_proj.forward(hidden).view(heads)).transpose(1, 2)
            value = attention.v_proj.forward(hidden).view(heads).transpose(1, 2)
            query = query * cos + _rotate_half(query) * sin
            key = key * cos + _rotate_half(key) * sin
            key, value = cache.update(key, value, index)
            out = _attend(query, key, value, mask, attention.scaling, fold_unmasked)
            hidden = residual + attention.o_proj.forward(out.reshape(rows, 1, -1).contiguous())
            residual = hidden
            hidden = layer.post_attention_layernorm.forward(hidden)
            hidden = residual + mlp.down_proj.forward(
                mlp.act_fn(mlp.gate_proj.forward(hidden)) * mlp.up_proj.forward(hidden))
        return inner.norm.forward(hidden)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _attend(query, key, value, mask, scaling, fold_unmasked: bool) -> torch.Tensor:
    """`[rows, 1, heads, dim]` attention of one query token per row, as the stock path computes it:
    with a padding mask (or without one where `decode_attention` does so, `fold_unmasked`) each
    group's query heads folded into the query axis, otherwise SDPA's own grouped-query attention."""
    grouped = key.shape[1] != query.shape[1]
    if grouped and (mask is not None or fold_unmasked):
        return folded_attention(query, key, value, mask, scaling)
    out = nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scaling,
                                                     enable_gqa=grouped)
    return out.transpose(1, 2)
