"""Which models fit a machine before anything is downloaded: the DiT, the planner LM, the dtype and
the memory tier.

    plan = plan_machine(COLAB_T4)      # Colab's free tier: a T4 (15 GB, no bf16) with 12.7 GB of RAM
    plan.dit, plan.lm, plan.dtype, plan.memory.tier
    print(plan)                        # what was picked, the GPU and RAM peaks, and what did not fit

The models are built at their published sizes on the meta device (no memory, no weights), and the
tiers are `memory.plan_tiers`, the same estimate `Engine.plan_memory` makes for loaded models. A GPU
machine has a second limit the device budget does not see: its host RAM holds what a tier keeps off
the GPU (the offloaded encoders and LM, the DiT between stages, the VAE and its activations on the
CPU) and, while loading, each checkpoint, which is read into host memory before it moves to the GPU.
A plan fits when both fit. The LM is the largest that fits, from the size upstream's tiers give the
GPU (`recommend_models`) downwards; on a CPU the 0.6B LM when it fits, as the workbench's header says.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass

from ..errors import InsufficientMemoryError
from ..models import LM_VARIANTS, REAL_SIZE_DIT, REAL_SIZE_TEXT_ENCODER, REAL_SIZE_VAE, VARIANTS
from ..runtime.hardware import recommend_models
from ..runtime.quiet import quiet_loading
from .memory import GiB, Footprint, MemoryPlan, footprint, meminfo_bytes, plan_tiers

# What a GPU machine's RAM holds besides the models: the kernel with torch, CUDA, transformers and
# diffusers loaded, and on Colab the runtime's own processes (an estimate: ~1.2 GiB idle VM, ~0.4 GiB
# of imports, ~1 GiB of CUDA libraries and context on the host side).
HOST_RESERVE = 3.0 * GiB
CUDA_RESERVE = 0.5 * GiB  # the CUDA context and cuBLAS workspace on the GPU itself

# Published shapes (reference 2.8 and the Qwen3 bases the 5 Hz LMs are fine-tuned from).
XL_DIT = dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=32, num_attention_heads=32,
              encoder_hidden_size=2048, encoder_intermediate_size=6144, encoder_num_attention_heads=16,
              encoder_num_key_value_heads=8)
LM_SHAPES = {
    "acestep-5Hz-lm-0.6B": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16),
    "acestep-5Hz-lm-1.7B": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16),
    "acestep-5Hz-lm-4B": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32),
}
LM_VOCAB = 217204  # Qwen3's 151,669 tokens and 65,535 audio-code tokens


@dataclass(frozen=True)
class Machine:
    """What a machine offers, in bytes: GPU memory (0 without a GPU), host RAM, and whether it
    multiplies bf16 natively (CUDA compute capability 8 or more; AVX512-BF16 or AMX on a CPU)."""

    name: str
    gpu_bytes: int
    ram_bytes: int
    bf16: bool

    def __post_init__(self):
        for field, value in (("gpu_bytes", self.gpu_bytes), ("ram_bytes", self.ram_bytes)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{field} must be a number of bytes, 0 or more (got {value!r})")
        if self.ram_bytes <= 0:
            raise ValueError(f"ram_bytes must be more than 0 (got {self.ram_bytes!r})")

    @property
    def dtype(self) -> str:
        if self.gpu_bytes:
            return "bfloat16" if self.bf16 else "float16"
        return "bfloat16" if self.bf16 else "float32"

    @classmethod
    def this_one(cls) -> "Machine":
        """The machine this process runs on: the first CUDA GPU if there is one, and the RAM in /proc/meminfo."""
        import torch

        from ..runtime.hardware import cpu_has_native_bf16

        ram = _total_ram()
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            return cls(props.name, int(props.total_memory), ram, props.major >= 8)
        return cls("CPU", 0, ram, cpu_has_native_bf16())

    def __str__(self) -> str:
        gpu = f"{self.gpu_bytes / GiB:.2f} GiB GPU" if self.gpu_bytes else "no GPU"
        return f"{self.name} ({gpu}{'' if self.bf16 else ', no bf16'}, {self.ram_bytes / GiB:.1f} GiB RAM)"


# Colab's free tier: a T4 (nvidia-smi says 15360 MiB; CUDA reports 14.75 GiB, the "total capacity" of
# Colab's out-of-memory messages), compute capability 7.5 (no bf16), and 12.7 GiB of system RAM.
COLAB_T4 = Machine("Colab free tier, T4", gpu_bytes=int(14.75 * GiB), ram_bytes=int(12.7 * GiB), bf16=False)


def _total_ram() -> int:
    total = meminfo_bytes("MemTotal")
    if total is not None:
        return total
    import os

    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


@dataclass(frozen=True)
class MachinePlan:
    """The models for a machine and the memory tier one request of `seconds` x `batch_size` runs in."""

    machine: Machine
    dit: str
    lm: str | None
    dtype: str
    seconds: float
    batch_size: int
    memory: MemoryPlan  # the tier, with the GPU (or host) estimate per stage and the budget
    host_peak: int  # RAM the models need on a GPU machine (loading or offloaded), with HOST_RESERVE
    host_budget: int
    not_fitting: tuple[str, ...] = ()  # larger LMs that were tried first, and why they did not fit

    def to_dict(self) -> dict:
        return {"machine": self.machine.name, "dit": self.dit, "lm": self.lm, "dtype": self.dtype,
                "seconds": self.seconds, "batch_size": self.batch_size, "tier": self.memory.tier,
                "gpu_estimate_gib": round(self.memory.estimate / GiB, 2) if self.machine.gpu_bytes else None,
                "host_peak_gib": round(self.host_peak / GiB, 2), "memory": self.memory.to_dict()}

    def __str__(self) -> str:
        lm = f"the {self.lm.rsplit('-', 1)[-1]} LM" if self.lm else "no LM"
        where = "GPU" if self.machine.gpu_bytes else "RAM"
        lines = [f"{self.machine}: {self.dit} in {self.dtype} with {lm}; a {self.seconds:g} s take x "
                 f"{self.batch_size} runs with {self.memory.tier}, {where} peak {self.memory.estimate / GiB:.1f} of "
                 f"{self.memory.budget / GiB:.1f} GiB"
                 + (f", RAM {self.host_peak / GiB:.1f} of {self.machine.ram_bytes / GiB:.1f} GiB"
                    if self.machine.gpu_bytes else "")]
        lines += [f"  not {reason}" for reason in self.not_fitting]
        return "\n".join(lines)


def paper_models(dit: str = "acestep-v15-turbo", lm: str | None = None, dtype: str = "bfloat16"):
    """(models, lm) at their published sizes on the meta device, in `dtype`: what `memory.plan_tiers`
    reads from loaded models (module bytes and configs), with no memory and no weights. Loaded from
    checkpoint files they could park on a CPU machine: plan them with `parks=(True, True)`."""
    if dit not in VARIANTS:
        raise ValueError(f"dit must be one of {', '.join(VARIANTS)} (got {dit!r})")
    if lm is not None and lm not in LM_SHAPES:
        raise ValueError(f"lm must be None or one of {', '.join(LM_VARIANTS)} (got {lm!r})")
    return _paper_dit(dit, dtype), (None if lm is None else _paper_lm(lm, dtype))


@functools.lru_cache(maxsize=8)  # only read, and building a 2B DiT on the meta device takes a while
def _paper_dit(dit: str, dtype: str):
    import torch
    from diffusers import AutoencoderOobleck
    from transformers import Qwen3Config, Qwen3Model

    from ..models.loader import build_modules

    config = dict(REAL_SIZE_DIT, **(XL_DIT if VARIANTS[dit].size == "4B" else {}))
    with torch.device("meta"), quiet_loading():
        modules = build_modules(config)
        vae = AutoencoderOobleck(**REAL_SIZE_VAE)
        text = Qwen3Model(Qwen3Config(**REAL_SIZE_TEXT_ENCODER))
        for module in (*modules.values(), vae, text):
            module.to(getattr(torch, dtype))
    return types.SimpleNamespace(transformer=modules["transformer"], condition_encoder=modules["condition_encoder"],
                                 audio_tokenizer=modules["audio_tokenizer"], detokenizer=modules["detokenizer"],
                                 vae=vae, text_encoder=text, frame_rate=25.0, paths={})


@functools.lru_cache(maxsize=8)
def _paper_lm(lm: str, dtype: str):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    with torch.device("meta"), quiet_loading():
        model = Qwen3ForCausalLM(Qwen3Config(**LM_SHAPES[lm], num_key_value_heads=8, head_dim=128,
                                             vocab_size=LM_VOCAB, tie_word_embeddings=True))
        return model.to(getattr(torch, dtype))


def host_peak(plan: MemoryPlan, f: Footprint) -> int:
    """RAM a GPU machine needs under `plan`: the larger of loading (the DiT checkpoint, or the LM, is
    read into host memory before it moves to the GPU) and running (what the tier keeps off the GPU),
    with HOST_RESERVE."""
    loading = max(f.dit + f.condition_encoder + f.tokenizers, f.lm)
    kept = 0
    if plan.offload_text_encoder:
        kept += f.text_encoder + f.condition_encoder + f.lm
    if plan.offload_dit:
        kept += f.dit
    if plan.vae_on_cpu:
        kept += f.vae + f.vae_activations[plan.decode_chunk]
    return int(HOST_RESERVE + max(loading, kept))


def _lm_candidates(machine: Machine, lm) -> list[str | None]:
    if lm != "auto":
        if lm is not None and lm not in LM_VARIANTS:
            raise ValueError(f"lm must be 'auto', None or one of {', '.join(LM_VARIANTS)} (got {lm!r})")
        return [lm]
    names = list(LM_VARIANTS)  # smallest first
    ceiling = recommend_models(machine.gpu_bytes / GiB)[1] if machine.gpu_bytes else names[0]
    if ceiling is None:
        return [None]
    return [*reversed(names[: names.index(ceiling) + 1]), None]


def plan_machine(machine: Machine | None = None, seconds: float = 120.0, batch_size: int = 1,
                 dit: str = "acestep-v15-turbo", lm="auto") -> MachinePlan:
    """The plan for one request of `seconds` x `batch_size` on `machine` (default: this one): `dit`
    (checked to fit), the largest LM that fits beside it (`lm="auto"`; or a name, or None for none),
    the dtype the machine multiplies natively, and the cheapest memory tier whose GPU estimate and
    host RAM both fit. Raises `InsufficientMemoryError` with the numbers when nothing fits."""
    from ..blueprint import Blueprint

    if dit not in VARIANTS:
        raise ValueError(f"dit must be one of {', '.join(VARIANTS)} (got {dit!r})")
    machine = machine or Machine.this_one()
    Blueprint(duration=seconds).validate()  # the duration range, named as the editor names it
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= 8:
        raise ValueError(f"batch_size must be a whole number between 1 and 8 (got {batch_size!r})")
    on_gpu = machine.gpu_bytes > 0
    device = "cuda" if on_gpu else "cpu"
    host_budget = int(machine.ram_bytes - HOST_RESERVE)
    budget = int(machine.gpu_bytes - CUDA_RESERVE) if on_gpu else host_budget
    guided = VARIANTS[dit].preset.guidance > 1
    frames = int(round(seconds * 25))
    refused = []
    for name in _lm_candidates(machine, lm):
        models, planner = paper_models(dit, name, machine.dtype)
        plans = plan_tiers(models, device, frames, batch_size, guided, budget, planner, parks=(True, True))
        f = footprint(models, frames, batch_size, guided, planner)
        ram_short = None  # the first tier that fits the GPU but not the RAM
        for plan in plans:
            peak = host_peak(plan, f) if on_gpu else plan.estimate + int(HOST_RESERVE)
            if plan.fits and peak <= machine.ram_bytes:
                return MachinePlan(machine, dit, name, machine.dtype, float(seconds), batch_size, plan,
                                   peak, host_budget, tuple(refused))
            if plan.fits and ram_short is None:
                ram_short = (plan, peak)
        refused.append(_why_not(name, plans[-1], ram_short, machine))
    raise InsufficientMemoryError(f"{dit} does not fit {machine} for a {seconds:g} s take x {batch_size}: "
                                  + "; ".join(refused))


def _why_not(lm, last: MemoryPlan, ram_short, machine: Machine) -> str:
    what = f"with the {lm.rsplit('-', 1)[-1]} LM" if lm else "without an LM"
    if ram_short is not None:
        plan, peak = ram_short
        return (f"{what}: {plan.tier} fits the GPU but needs {peak / GiB:.1f} GiB of the "
                f"{machine.ram_bytes / GiB:.1f} GiB RAM")
    return f"{what}: needs {last.estimate / GiB:.1f} GiB even with {last.tier}, the budget is {last.budget / GiB:.1f} GiB"
