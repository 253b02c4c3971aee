"""What the machine can do: which models fit a GPU (upstream's tiers), and which dtype "auto" means.

    dit, lm = recommend_models(gpu_gib=15)     # Colab T4 -> ("acestep-v15-turbo", "acestep-5Hz-lm-1.7B")
    dtype, why = resolve_dtype("cpu")          # bf16 on CPUs with AVX512-BF16 or AMX, else fp32
"""

from __future__ import annotations

from ..errors import DeviceError

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
    return auto_dtype_choice(device)[0]


def auto_dtype_choice(device):
    """(dtype, why) for "auto" on `device`; `why` is a short phrase for reprs and take records."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if major >= 8:
            return torch.bfloat16, f"CUDA compute capability {major}.{minor} has bf16"
        return torch.float16, f"CUDA compute capability {major}.{minor} lacks bf16"
    if device.type == "cpu":
        if cpu_has_native_bf16():
            return torch.bfloat16, "CPU multiplies bf16 natively (AVX512-BF16/AMX)"
        return torch.float32, "CPU lacks native bf16 (it would be emulated, slower than fp32)"
    if device.type == "mps":
        # Untested here (no Apple GPU): upstream users report fp16 NaNs, and bf16 needs macOS 14+.
        return torch.float32, "MPS: fp16 gives NaNs upstream, bf16 unverified"
    return torch.float32, f"{device.type}: no faster dtype known"


DTYPE_NAMES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
               "half": "float16", "fp32": "float32", "float32": "float32", "float": "float32"}


def resolve_dtype(device, dtype="auto"):
    """(torch dtype, how it was chosen) for a user's `dtype`: "auto"/None, a name of DTYPE_NAMES, or a
    torch floating dtype. "auto" gives `auto_dtype_choice`'s reason; anything else "requested"."""
    import torch

    if dtype is None or (isinstance(dtype, str) and dtype.lower() == "auto"):
        chosen, why = auto_dtype_choice(device)
        return chosen, f"auto: {why}"
    if isinstance(dtype, str):
        name = DTYPE_NAMES.get(dtype.lower())
        if name is None:
            raise DeviceError(f"dtype must be one of auto, {', '.join(DTYPE_NAMES)} or a torch dtype (got {dtype!r})")
        return getattr(torch, name), "requested"
    if isinstance(dtype, torch.dtype) and dtype in (torch.float32, torch.bfloat16, torch.float16):
        return dtype, "requested"
    raise DeviceError(f"dtype must be one of auto, {', '.join(DTYPE_NAMES)} or torch.float32/bfloat16/float16 "
                      f"(got {dtype!r})")


def dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def device_summary(engine, seconds: float = 30.0, batch_size: int = 1) -> dict:
    """What a header shows about where `engine` runs: device, dtype (and why), memory budget, the memory
    tier a `seconds`-long request of `batch_size` gets, and the LM size to plan with: upstream's tiers
    for the GPU's memory (none below 6 GiB); on a CPU the 0.6B LM when the budget holds it beside the
    request (it plans about 5 codes per second on 2 cores with native bf16), else none."""
    import torch

    from ..blueprint import Blueprint
    from ..errors import InsufficientMemoryError

    device = torch.device(engine.device)
    gpu_gib = 0.0
    if device.type == "cuda":
        gpu_gib = torch.cuda.get_device_properties(device).total_memory / 2 ** 30
    try:
        plan = engine.plan_memory(Blueprint(duration=seconds), batch_size)
        tier, budget, estimate = plan.tier, plan.budget, plan.estimate
    except InsufficientMemoryError as exc:
        tier, budget, estimate = f"does not fit: {exc}", None, None
    if device.type == "cuda":
        lm = recommend_models(gpu_gib)[1]
        why = f"upstream's tier for {gpu_gib:.0f} GiB of GPU memory"
    elif budget is not None and budget - estimate >= CPU_LM_HEADROOM_GIB * 2 ** 30:
        lm, why = "acestep-5Hz-lm-0.6B", "the smallest LM; the host memory holds it beside this request"
    else:
        lm, why = None, "not enough memory beside this request" if device.type == "cpu" else "untested device"
    return {"device": str(device), "dtype": dtype_name(engine.dtype), "dtype_choice": engine.dtype_choice,
            "memory_budget_gib": None if budget is None else round(budget / 2 ** 30, 1), "memory_tier": tier,
            "seconds": seconds, "batch_size": batch_size, "recommended_lm": lm, "recommended_lm_why": why}


CPU_LM_HEADROOM_GIB = 2.0  # the 0.6B LM in bf16 (1.3 GB) with its KV cache and logits
