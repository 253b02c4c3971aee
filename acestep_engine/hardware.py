"""Which DiT variant and 5 Hz LM fit a GPU (upstream's memory tiers, reference 8, rounded down).

    dit, lm = recommend_models(gpu_gib=15)     # Colab T4 -> ("acestep-v15-turbo", "acestep-5Hz-lm-1.7B")
"""

from __future__ import annotations

# (minimum GPU memory in GiB, DiT folder, LM folder or None), best first. The 2B DiT with its VAE
# and text encoder needs about 4 GiB in bf16/fp16; the LMs add about 1.3, 3.5 and 8 GiB.
TIERS = (
    (24.0, "acestep-v15-turbo", "acestep-5Hz-lm-4B"),
    (12.0, "acestep-v15-turbo", "acestep-5Hz-lm-1.7B"),
    (6.0, "acestep-v15-turbo", "acestep-5Hz-lm-0.6B"),
    (0.0, "acestep-v15-turbo", None),
)


def recommend_models(gpu_gib: float) -> tuple[str, str | None]:
    """(DiT folder, LM folder or None) for a GPU with `gpu_gib` GiB (0 for CPU-only: no LM)."""
    if gpu_gib is None or gpu_gib < 0:
        raise ValueError(f"gpu_gib must be a memory size in GiB, 0 or more (got {gpu_gib!r})")
    for minimum, dit, lm in TIERS:
        if gpu_gib >= minimum:
            return dit, lm
    raise AssertionError("unreachable: the last tier starts at 0 GiB")


def cpu_has_native_bf16() -> bool:
    """True where this CPU multiplies bf16 natively (AVX512-BF16 or AMX), by torch's own CPU report.

    Without it torch emulates bf16 matmuls, which is slower than fp32, so "auto" stays on fp32 there.
    """
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in probes:
        probe = getattr(torch.cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except Exception:  # a torch build without the probe, or a CPU it cannot query
            continue
    return False


def auto_dtype(device):
    """The dtype "auto" means on `device`: bf16 on CUDA with compute capability >= 8 (fp16 before),
    bf16 on CPUs with native bf16, fp32 on other CPUs and on MPS (fp16 NaNs reported upstream)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return torch.bfloat16 if major >= 8 else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32
