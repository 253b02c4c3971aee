"""Which attention kernel the DiT runs, decided once per device and dtype, and the fp16-safe one.

    path = attention_path("cuda", (7, 5), torch.float16)    # "fp32-softmax": a T4 in fp16
    path = attention_path("cuda", (8, 0), torch.bfloat16)   # "sdpa"

On CUDA GPUs before Ampere (compute capability < 8: the T4 of Colab's free tier, V100, RTX 20xx)
there is no bf16, so "auto" picks fp16, and SDPA's fused fp16 softmax overflows on longer sequences:
the DiT's latents turn to NaN/Inf (upstream ACE-Step 1.5 issues 924 and 927). Upstream runs eager
attention there, which takes the softmax in float32; so does `softmax_fp32_attention` here, in
query chunks so that its score matrix stays small at 600 s. Everywhere else attention goes to SDPA.
The chosen path is recorded on the modules (`acestep_attention`), the engine and every take.
"""

from __future__ import annotations

import torch

SDPA = "sdpa"
FP32_SOFTMAX = "fp32-softmax"
PATHS = (SDPA, FP32_SOFTMAX)
QUERY_CHUNK = 1024  # query rows per score matrix: [B, heads, 1024, keys] in the model dtype and in fp32


def attention_path(device_type: str, capability: tuple[int, int] | None, dtype) -> str:
    """The attention path for modules in `dtype` on a device of `device_type` ("cuda", "cpu", "mps",
    ...) with CUDA compute `capability` (major, minor; None when unknown or not CUDA).

    fp16 on CUDA before compute capability 8 (or of unknown capability): FP32_SOFTMAX; else SDPA."""
    if device_type == "cuda" and _is_fp16(dtype) and (capability is None or tuple(capability) < (8, 0)):
        return FP32_SOFTMAX
    return SDPA


def _is_fp16(dtype) -> bool:
    return dtype == torch.float16 or str(dtype).replace("torch.", "") in ("float16", "fp16", "half")


def device_capability(device) -> tuple[int, int] | None:
    """CUDA compute capability of `device` (None for other devices, or when CUDA cannot say)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    try:
        return tuple(torch.cuda.get_device_capability(device))
    except (RuntimeError, AssertionError):
        return None


def attention_path_for(device, dtype) -> str:
    """`attention_path` of a concrete device (reads its compute capability)."""
    device = torch.device(device)
    return attention_path(device.type, device_capability(device), dtype)


def describe_path(path: str, device, dtype) -> str:
    """A short phrase for reprs and take records: the path and why."""
    if path == FP32_SOFTMAX:
        capability = device_capability(device)
        where = f"CUDA compute capability {capability[0]}.{capability[1]}" if capability else f"{device}"
        return f"{FP32_SOFTMAX} (fp16 on {where}: SDPA's fused fp16 softmax overflows there)"
    return SDPA


def softmax_fp32_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask=None,
                           scale: float | None = None, chunk: int = QUERY_CHUNK) -> torch.Tensor:
    """Attention with its softmax in float32, as eager attention computes it: `query` `[B, H, L, D]`,
    `key`/`value` `[B, Hkv, S, D]` (grouped: query head h reads key head h // (H / Hkv)), `mask` a
    boolean keep-mask or an additive float mask broadcastable to `[B, H, L, S]`. Returns `[B, H, L, D]`
    in the query's dtype. The matmuls stay in the model dtype (tensor cores); the queries are taken
    `chunk` rows at a time, so the score matrix never holds more than `chunk` rows."""
    heads, kv_heads = query.shape[1], key.shape[1]
    if kv_heads != heads:
        key = key.repeat_interleave(heads // kv_heads, dim=1)
        value = value.repeat_interleave(heads // kv_heads, dim=1)
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    key_t = key.transpose(-1, -2)
    out = torch.empty_like(query)
    for start in range(0, query.shape[2], chunk):
        rows = slice(start, start + chunk)
        scores = torch.matmul(query[:, :, rows] * scale, key_t).float()  # scaled first: smaller fp16 products
        if mask is not None:
            part = mask[..., rows, :] if mask.shape[-2] > 1 else mask
            scores = scores.masked_fill(~part, float("-inf")) if part.dtype == torch.bool else scores + part.float()
        weights = torch.softmax(scores, dim=-1).to(value.dtype)
        out[:, :, rows] = torch.matmul(weights, value)
    return out
