"""Faster ways to run diffusers' and transformers' modules, applied once at load (no forked models).

The modules stay diffusers' own and their weights stay the checkpoint's; what changes is how the
hot pieces execute:

- DiT (`prepare_transformer`): the token stream made contiguous after the patchify convolution
  (diffusers transposes the conv output, and every later elementwise op kept that transposed
  layout, so each linear layer fell back to a batched matmul that copied its whole weight on
  every call); RMSNorm through `torch.nn.functional.rms_norm`; rotary embeddings applied in the
  model dtype (no fp32 round trip); attention straight to SDPA (its CPU flash kernel in bf16) when
  diffusers' native backend is active, diffusers' own dispatch (flash, sage, ...) otherwise. In fp16
  on CUDA before Ampere attention takes its softmax in float32 instead (`attention.attention_path`),
  in the DiT and in the condition encoder and audio (de)tokenizer (`prepare_attention`), with or
  without the other fast paths: that one is about correct numbers, not speed.
- VAE (`prepare_vae`): weight norm folded into plain conv weights once (the stock module recomputes
  `g * v / |v|` on every call); Snake `x + sin(a x)^2 / b` with `exp(a)` and `1 / (exp(b) + 1e-9)`
  precomputed and evaluated in one fused kernel (`torch.compile`, where it compiles) or in two
  in-place passes (eager fallback); convolutions run as 2-D convolutions over a height-1,
  channels-last tensor, the layout oneDNN's CPU kernels are fastest in; residual units keep one
  activation fewer alive (`_lean_residual_class`), the same values with less peak memory.

Switches: `ACESTEP_FAST_PATHS=0` (or `enabled=False`) keeps the stock execution;
`ACESTEP_COMPILE_KERNELS=1` compiles the fused Snake with `torch.compile` (falling back to the eager
form, with a log line, where inductor cannot build). It is off by default: compiling costs tens of
seconds on a small CPU at the first decode, and its gain over the eager form was not measured here.
"""

from __future__ import annotations

import functools
import logging
import os
import threading

import torch
from torch import nn

from .attention import FP32_SOFTMAX, PATHS, SDPA, attention_path_for, softmax_fp32_attention

log = logging.getLogger(__name__)

ENV_FAST_PATHS = "ACESTEP_FAST_PATHS"
ENV_COMPILE_KERNELS = "ACESTEP_COMPILE_KERNELS"
MIN_CHANNELS_LAST_WIDTH = 32  # decoder channels from which the 2-D channels-last layout pays on CPU


def fast_paths_enabled() -> bool:
    return os.environ.get(ENV_FAST_PATHS, "1").lower() not in ("0", "false", "no", "off")


# --------------------------------------------------------------------------- DiT

def _tokens_contiguous(module, inputs, output):
    # The model transposes this [B, C, T] output to [B, T, C]; store it as [B, T, C] so that view is contiguous.
    return output.transpose(1, 2).contiguous().transpose(1, 2)


def _rms_norm_forward(self, hidden_states):
    if self.weight is None or getattr(self, "bias", None) is not None or hidden_states.dtype != self.weight.dtype:
        return type(self).forward(self, hidden_states)
    return torch.nn.functional.rms_norm(hidden_states, (hidden_states.shape[-1],), self.weight, self.eps)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Qwen3-layout RoPE on `[B, L, H, D]` in x's dtype; cos/sin `[L, D]` (halves repeated)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return torch.addcmul(x * cos[:, None, :], rotated, sin[:, None, :])


def _attention_processor_class():
    from diffusers.models.transformers.ace_step_transformer import (AceStepAttnProcessor2_0,
                                                                    _get_current_attention_backend)

    class FastAceStepAttnProcessor(AceStepAttnProcessor2_0):
        """diffusers' ACE-Step processor; on the native backend (`fast`) it calls SDPA itself with bf16
        RoPE, and on the FP32_SOFTMAX path it computes attention with a float32 softmax."""

        def __init__(self, path: str = SDPA, fast: bool = True):
            super().__init__()
            self.path, self.fast = path, fast

        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                     image_rotary_emb=None):
            native = _get_current_attention_backend(self).value == "native" and self._parallel_config is None
            if self.path != FP32_SOFTMAX and not (self.fast and native):
                return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask,
                                        image_rotary_emb)
            is_cross = attn.is_cross_attention and encoder_hidden_states is not None
            kv_input = encoder_hidden_states if is_cross else hidden_states
            query = attn.norm_q(attn.to_q(hidden_states).unflatten(-1, (attn.heads, attn.head_dim)))
            key = attn.norm_k(attn.to_k(kv_input).unflatten(-1, (attn.kv_heads, attn.head_dim)))
            value = attn.to_v(kv_input).unflatten(-1, (attn.kv_heads, attn.head_dim))
            if not is_cross and image_rotary_emb is not None:
                cos, sin = (t.to(query.dtype) for t in image_rotary_emb)
                query, key = _rotate(query, cos, sin), _rotate(key, cos, sin)
            query, key, value = query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)
            if self.path == FP32_SOFTMAX:
                out = softmax_fp32_attention(query, key, value, attention_mask, attn.scaling)
            else:
                out = torch.nn.functional.scaled_dot_product_attention(
                    query, key, value, attn_mask=attention_mask, dropout_p=attn.dropout if attn.training else 0.0,
                    scale=attn.scaling, enable_gqa=attn.heads != attn.kv_heads)
            out = out.transpose(1, 2).flatten(2, 3)
            return attn.to_out[1](attn.to_out[0](out))

    return FastAceStepAttnProcessor


def _module_attention_path(module: nn.Module, attention: str | None) -> str:
    if attention is None:
        parameter = next(module.parameters(), None)
        if parameter is None:
            return SDPA
        return attention_path_for(parameter.device, parameter.dtype)
    if attention not in PATHS:
        raise ValueError(f"attention must be one of {', '.join(PATHS)} or None (got {attention!r})")
    return attention


def prepare_attention(module: nn.Module, attention: str | None = None) -> nn.Module:
    """Give every ACE-Step attention in `module` (condition encoder, audio tokenizer, detokenizer) the
    attention path its device and dtype need (`attention`: a path of `attention.PATHS`, or None to
    decide from the module's weights); SDPA leaves diffusers' processors as they are. Returns it."""
    from diffusers.models.transformers.ace_step_transformer import AceStepAttention

    path = _module_attention_path(module, attention)
    if path != SDPA:
        processor_class = _attention_processor_class()
        for child in module.modules():
            if isinstance(child, AceStepAttention):
                child.set_processor(processor_class(path, fast=False))
    module.acestep_attention = path
    return module


def prepare_transformer(transformer: nn.Module, enabled: bool | None = None, attention: str | None = None) -> nn.Module:
    """Make diffusers' AceStepTransformer1DModel (in place) run closer to the matmul rate; returns it.

    `attention`: the attention path (None: `attention.attention_path` of its weights' device and dtype),
    recorded as `transformer.acestep_attention`."""
    enabled = fast_paths_enabled() if enabled is None else enabled
    if getattr(transformer, "acestep_attention", None) is not None:
        return transformer
    import types

    from diffusers.models.normalization import RMSNorm
    from diffusers.models.transformers.ace_step_transformer import AceStepAttention

    path = _module_attention_path(transformer, attention)
    if enabled:
        transformer.proj_in_conv.register_forward_hook(_tokens_contiguous)
    processor_class = _attention_processor_class()
    for module in transformer.modules():
        if isinstance(module, RMSNorm) and enabled:
            module.forward = types.MethodType(_rms_norm_forward, module)
        elif isinstance(module, AceStepAttention) and (enabled or path != SDPA):
            module.set_processor(processor_class(path, fast=enabled))
    transformer.acestep_fast = enabled
    transformer.acestep_attention = path
    return transformer


# --------------------------------------------------------------------------- Snake

def _snake_eager(x: torch.Tensor, alpha: torch.Tensor, inv_beta: torch.Tensor, out=None) -> torch.Tensor:
    y = torch.mul(x, alpha)
    y.sin_().square_()
    return torch.addcmul(x, y, inv_beta, out=y if out is None else out)


class _SnakeKernel:
    """The fused Snake, compiled on first use where inductor works; eager otherwise (and said once)."""

    def __init__(self):
        self._compiled = None
        self._failed = not _compile_wanted()
        self._lock = threading.Lock()

    def __call__(self, x, alpha, inv_beta):
        if not self._failed and not torch.is_grad_enabled():
            fn = self._compiled or self._compile()
            if fn is not None:
                try:
                    return fn(x, alpha, inv_beta)
                except Exception as exc:  # a backend that compiled but cannot run here
                    self._give_up(exc)
        return _snake_eager(x, alpha, inv_beta)

    def _compile(self):
        with self._lock:
            if self._compiled is None and not self._failed:
                try:
                    self._compiled = torch.compile(_snake_math, dynamic=True, fullgraph=True)
                except Exception as exc:
                    self._give_up(exc)
            return self._compiled

    def _give_up(self, exc):
        self._failed = True
        log.info("Snake kernel not compiled (%s: %s); using the eager formulation", type(exc).__name__, exc)

    @property
    def mode(self) -> str:
        return "eager" if self._failed else "compiled"


def _snake_math(x, alpha, inv_beta):
    return x + inv_beta * torch.sin(alpha * x) ** 2


def _compile_wanted() -> bool:
    if os.environ.get(ENV_COMPILE_KERNELS, "0").lower() in ("0", "false", "no", "off"):
        return False
    try:
        import torch._inductor  # noqa: F401  (absent or broken on some builds)
    except Exception:
        return False
    return True


SNAKE = _SnakeKernel()


class FusedSnake(nn.Module):
    """Snake1d with its exponentials precomputed; `alpha`/`beta` keep the checkpoint's (log-scale) values."""

    def __init__(self, snake: nn.Module, four_d: bool = False):
        super().__init__()
        self.alpha = snake.alpha
        self.beta = snake.beta
        self.logscale = snake.logscale
        self.four_d = four_d
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        """Recompute the scales from `alpha`/`beta` (after loading other weights into them)."""
        alpha = self.alpha.float().exp() if self.logscale else self.alpha.float()
        beta = self.beta.float().exp() if self.logscale else self.beta.float()
        shape = (1, -1, 1, 1) if self.four_d else (1, -1, 1)
        self.register_buffer("alpha_scale", alpha.reshape(shape).to(self.alpha.dtype), persistent=False)
        self.register_buffer("inv_beta", (beta + 1e-9).reciprocal().reshape(shape).to(self.alpha.dtype),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return SNAKE(x, self.alpha_scale, self.inv_beta)

    def apply_(self, x: torch.Tensor) -> torch.Tensor:
        """Snake of `x` written into `x` (the same values as `forward`); for a tensor nothing else holds."""
        if torch.is_grad_enabled() or SNAKE.mode != "eager":
            return self(x)
        return _snake_eager(x, self.alpha_scale, self.inv_beta, out=x)


# --------------------------------------------------------------------------- residual units

@functools.cache
def _lean_residual_class(base):
    """diffusers' OobleckResidualUnit computing the same values with one activation-sized tensor
    fewer alive: the second Snake runs in place on the first convolution's output (nothing else
    holds it) and the residual sum is added into the second convolution's output (x + y and y + x
    are the same numbers). The stock forward keeps the first convolution's output alive through the
    second Snake and convolution, four full-rate tensors at once in the VAE's last stage (141 MB each
    for a 10 s window in bf16); this keeps three."""

    class LeanResidualUnit(base):
        def forward(self, hidden_state):
            if torch.is_grad_enabled() or not isinstance(self.snake2, FusedSnake):
                return super().forward(hidden_state)
            out = self.conv1(self.snake1(hidden_state))
            out = self.conv2(self.snake2.apply_(out))
            padding = (hidden_state.shape[-1] - out.shape[-1]) // 2
            if padding > 0:
                hidden_state = hidden_state[..., padding:-padding]
            return out.add_(hidden_state)

    return LeanResidualUnit


# --------------------------------------------------------------------------- convolutions

def _fold_weight_norm(module: nn.Module) -> bool:
    from torch.nn.utils import parametrize

    if parametrize.is_parametrized(module, "weight"):
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        return True
    if hasattr(module, "weight_g"):
        torch.nn.utils.remove_weight_norm(module)
        return True
    return False


def _stock_state_dict_hook(folded: list[str]):
    """Write folded (and 2-D) conv weights back as diffusers' `weight_g`/`weight_v`, so that
    `save_pretrained` of a prepared VAE gives a checkpoint the stock class loads."""

    def hook(module, state_dict, prefix, local_metadata):
        for name in folded:
            key = f"{prefix}{name}.weight"
            if key not in state_dict:
                continue
            weight = state_dict.pop(key)
            if weight.ndim == 4:
                weight = weight.squeeze(2).contiguous()
            state_dict[f"{prefix}{name}.weight_v"] = weight
            state_dict[f"{prefix}{name}.weight_g"] = torch.norm_except_dim(weight, 2, 0)
        return state_dict

    return hook


def _as_2d(conv: nn.Module) -> nn.Module:
    """The same 1-D convolution as a (1, k) 2-D one, weights channels-last."""
    transposed = isinstance(conv, nn.ConvTranspose1d)
    cls = nn.ConvTranspose2d if transposed else nn.Conv2d
    kwargs = dict(kernel_size=(1, conv.kernel_size[0]), stride=(1, conv.stride[0]), padding=(0, conv.padding[0]),
                  dilation=(1, conv.dilation[0]), groups=conv.groups, bias=conv.bias is not None,
                  device="meta")
    if transposed:
        kwargs["output_padding"] = (0, conv.output_padding[0])
    new = cls(conv.in_channels, conv.out_channels, **kwargs)
    weight = conv.weight.detach().unsqueeze(2).contiguous(memory_format=torch.channels_last)
    new.weight = nn.Parameter(weight, requires_grad=False)
    if conv.bias is not None:
        new.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
    return new


def _replace_children(root: nn.Module, convert) -> None:
    for name, child in list(root.named_children()):
        replacement = convert(child)
        if replacement is not None:
            setattr(root, name, replacement)
        else:
            _replace_children(child, convert)


# --------------------------------------------------------------------------- VAE

def prepare_vae(vae: nn.Module, enabled: bool | None = None, layout: str = "auto") -> nn.Module:
    """Make `vae` (diffusers' AutoencoderOobleck, in place) fast for inference; returns it.

    `layout`: "2d" (height-1 channels-last convolutions: oneDNN's fast layout on CPU), "1d" (the
    stock layout) or "auto" (2d on CPU for VAEs of the official width, 1d otherwise).
    """
    enabled = fast_paths_enabled() if enabled is None else enabled
    if not enabled or getattr(vae, "acestep_fast", None):
        return vae
    from diffusers.models.autoencoders.autoencoder_oobleck import OobleckResidualUnit, Snake1d

    device = next(vae.parameters()).device
    if layout == "auto":
        # oneDNN's channels-last kernels win at the official widths (128 channels and up) and lose on
        # the handful of channels of test-sized VAEs; cuDNN's 1-D kernels are already good.
        wide = int(getattr(vae.config, "decoder_channels", 0)) >= MIN_CHANNELS_LAST_WIDTH
        layout = "2d" if device.type == "cpu" and wide else "1d"
    if layout not in ("1d", "2d"):
        raise ValueError(f"layout must be 'auto', '1d' or '2d' (got {layout!r})")
    folded = []
    for name, module in vae.named_modules():
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)) and _fold_weight_norm(module):
            folded.append(name)

    def convert(child):
        if isinstance(child, Snake1d):
            return FusedSnake(child, four_d=layout == "2d")
        if layout == "2d" and isinstance(child, (nn.Conv1d, nn.ConvTranspose1d)):
            return _as_2d(child)
        return None

    with torch.no_grad():
        _replace_children(vae, convert)
    for module in vae.modules():
        if type(module) is OobleckResidualUnit:
            module.__class__ = _lean_residual_class(OobleckResidualUnit)
    vae.to(device).requires_grad_(False)
    vae._register_state_dict_hook(_stock_state_dict_hook(folded))
    vae.acestep_fast = layout
    return vae


def vae_layout(vae) -> str:
    """"2d" once `prepare_vae` turned the convolutions into channels-last 2-D ones, else "1d"."""
    return "2d" if getattr(vae, "acestep_fast", None) == "2d" else "1d"


def run_decoder(vae, z: torch.Tensor) -> torch.Tensor:
    """Latents `[B, C, T]` -> audio `[B, channels, samples]`, whichever layout `vae` runs in."""
    if vae_layout(vae) == "2d":
        x = z.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        out = vae.decode(x).sample
        return out.squeeze(2) if out.ndim == 4 else out
    return vae.decode(z).sample


def run_encoder(vae, audio: torch.Tensor) -> torch.Tensor:
    """Audio `[B, channels, samples]` -> the encoder's raw output `[B, 2 * C, frames]` (mean and scale)."""
    if vae_layout(vae) == "2d":
        x = audio.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        return vae.encoder(x).squeeze(2)
    return vae.encoder(audio)
