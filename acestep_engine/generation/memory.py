"""Memory tiers: estimate a request's peak memory before running it, and pick a plan that fits.

    plan = engine.plan_memory(Blueprint(duration=240), batch_size=4, memory_budget=8 * 2**30)
    plan.tier            # "all on device", "encoders and LM offloaded", "smaller VAE tiles",
                         # "DiT offloaded between stages" or "VAE on CPU"
    print(plan)          # the estimate per stage, the budget and what moves where

The estimate is the largest stage of one generation: planning (the 5 Hz LM, when one is given),
encoding (text encoder + condition encoder), denoising (the DiT with its activations for
duration x batch, doubled under guidance) and decoding (the VAE on one window, item by item).
Weights are the loaded modules' own bytes; activations follow the model widths in the configs,
with a 25 % margin. Tiers are tried cheapest first (reference 8 has the same steps: the text and
condition encoders and the LM offloaded between uses, smaller VAE tiles, the DiT offloaded between
stages, the VAE on the CPU); a request that fits none is refused before any work with `InsufficientMemoryError`, which gives
the estimate, the budget and the longest duration and largest batch that would fit.

On a CPU engine the "device" is the host, so moving a module "to the CPU" frees nothing: there the
offload tiers park the weights on disk instead (`acestep_engine.runtime.parking`: freed after their stage,
read back from the checkpoint files, usually from the page cache, when next needed), and the
"VAE on CPU" tier does not apply.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch

from ..errors import DeviceError, InsufficientMemoryError
from ..runtime import parking

GiB = 2 ** 30
MARGIN = 1.25  # activations: allocator slack and temporaries the count below does not name
SMALL_VAE_CHUNK = 64  # latent frames per decode window in the "smaller VAE tiles" tier
# Cumulative, cheapest change first: offloading the encoders costs one transfer per generation,
# smaller VAE tiles cost almost nothing, moving the DiT costs its 4 GB each way, and a VAE on the CPU
# is slow. (Upstream shrinks tiles after offloading the DiT; with the DiT resident the decode
# window is often the peak, so shrinking it first avoids the DiT transfers.)
TIERS = ("all on device", "encoders and LM offloaded", "smaller VAE tiles", "DiT offloaded between stages",
         "VAE on CPU")


def module_bytes(module) -> int:
    """Bytes of a module's parameters and buffers when resident, parked weights included (0 for None)."""
    if module is None:
        return 0
    return resident_bytes(module) + (parking.full_bytes(module) if parking.is_parked(module) else 0)


def resident_bytes(module) -> int:
    """Bytes a module holds in memory now (a parked module holds only what is not in its files)."""
    if module is None:
        return 0
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True)
class MemoryPlan:
    """Where each model lives during a generation, and the estimated peak on the device in bytes."""

    tier: str
    device: str
    budget: int
    estimate: int
    offload_text_encoder: bool = False  # text and condition encoders (and LM) on the CPU except while they run
    offload_dit: bool = False  # DiT on the CPU except while it denoises
    vae_on_cpu: bool = False
    decode_chunk: int | None = None  # latent frames per VAE window (None: the device default)
    stages: dict = field(default_factory=dict)  # stage -> estimated device bytes under this plan

    @property
    def fits(self) -> bool:
        return self.estimate <= self.budget

    def to_dict(self) -> dict:
        return {"tier": self.tier, "device": self.device, "budget_gib": round(self.budget / GiB, 2),
                "estimate_gib": round(self.estimate / GiB, 2), "offload_text_encoder": self.offload_text_encoder,
                "offload_dit": self.offload_dit, "vae_on_cpu": self.vae_on_cpu, "decode_chunk": self.decode_chunk}

    def __str__(self) -> str:
        stages = ", ".join(f"{name} {size / GiB:.2f}" for name, size in self.stages.items())
        return (f"{self.tier} on {self.device}: peak {self.estimate / GiB:.2f} GiB of {self.budget / GiB:.2f} GiB "
                f"(GiB by stage: {stages})")


@dataclass(frozen=True)
class Footprint:
    """Byte counts one plan is built from: resident weights per model, activations per stage."""

    dit: int
    tokenizers: int  # audio tokenizer and detokenizer (cover), kept beside the DiT's inputs
    condition_encoder: int
    text_encoder: int
    vae: int
    lm: int
    dit_activations: int
    encode_activations: int
    lm_activations: int
    vae_activations: dict  # decode chunk -> bytes


def _dtype_bytes(module) -> int:
    for p in module.parameters():
        return p.element_size()
    return 4


def dit_activation_bytes(config, frames: int, batch: int, guided: bool, element: int,
                         condition_tokens: int = 1024) -> int:
    """Peak DiT activations for one forward: the token stream, q/k/v, the MLP's three
    intermediate tensors, the dense sliding-window mask, and every layer's cached cross K/V."""
    rows = batch * (2 if guided else 1)
    tokens = math.ceil(frames / int(config.patch_size))
    h, inter = int(config.hidden_size), int(config.intermediate_size)
    heads, kv, hd = int(config.num_attention_heads), int(config.num_key_value_heads), int(config.head_dim)
    layers = int(config.num_hidden_layers)
    per_token = 6 * h + (heads + 2 * kv) * hd + 3 * inter
    stream = rows * tokens * per_token * element
    mask = tokens * tokens * element  # diffusers builds one [T, T] additive mask for non-flash backends
    cross_kv = layers * rows * condition_tokens * 2 * kv * hd * element
    latents = 6 * rows * frames * int(config.audio_acoustic_hidden_dim) * 4
    return int(MARGIN * (stream + mask + cross_kv + latents))


def vae_activation_bytes(vae_config, chunk: int, overlap: int, element: int) -> int:
    """Peak VAE decoder activations for one window of `chunk + 2 * overlap` latent frames: about five
    live tensors of the widest stage (channels x samples at that stage's rate)."""
    window = chunk + 2 * overlap
    multiples = [1] + list(vae_config.channel_multiples)
    ratios = list(vae_config.downsampling_ratios)[::-1]  # the decoder upsamples in reverse order
    width = int(vae_config.decoder_channels)
    widest, length = width * multiples[-1] * window, window
    for i, ratio in enumerate(ratios):
        length *= int(ratio)
        widest = max(widest, width * multiples[len(ratios) - i - 1] * length)
    audio = int(vae_config.audio_channels) * length * 4
    return int(MARGIN * (5 * widest * element + audio))


def lm_activation_bytes(lm, frames: int, frame_rate: float, guided: bool = True, element: int = 2) -> int:
    """The LM's KV cache for its prompt plus one code per 5 Hz frame, with guidance rows."""
    if lm is None:
        return 0
    cfg = lm.config
    context = 2048 + int(frames / frame_rate * 5)
    rows = 2 if guided else 1
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv = cfg.num_hidden_layers * 2 * rows * context * cfg.num_key_value_heads * hd * element
    logits = rows * cfg.vocab_size * 4 * 4
    return int(MARGIN * (kv + logits))


def footprint(models, frames: int, batch: int, guided: bool, lm=None, chunks=(None, SMALL_VAE_CHUNK),
              default_chunk: int = 256, overlap: int = 16) -> Footprint:
    from .conditioning import CAPTION_MAX_TOKENS, LYRIC_MAX_TOKENS

    element = _dtype_bytes(models.transformer)
    te = models.text_encoder
    te_rows = CAPTION_MAX_TOKENS + LYRIC_MAX_TOKENS
    encode = int(MARGIN * te_rows * te.config.hidden_size * 8 * element * (2 if guided else 1))
    vae_acts = {chunk: vae_activation_bytes(models.vae.config, chunk or default_chunk, overlap, element)
                for chunk in chunks}
    return Footprint(
        dit=module_bytes(models.transformer),
        tokenizers=module_bytes(models.audio_tokenizer) + module_bytes(models.detokenizer),
        condition_encoder=module_bytes(models.condition_encoder), text_encoder=module_bytes(te),
        vae=module_bytes(models.vae), lm=module_bytes(getattr(lm, "model", lm)),
        dit_activations=dit_activation_bytes(models.transformer.config, frames, batch, guided, element),
        encode_activations=encode,
        lm_activations=lm_activation_bytes(getattr(lm, "model", lm), frames, models.frame_rate, element=element),
        vae_activations=vae_acts)


def _tier_switches(tier: str, on_host: bool, parks: tuple[bool, bool] = (True, True)) -> dict:
    """The plan's switches; on the host a module is offloaded only if it can park (`parks`: the
    encoders, the DiT)."""
    level = TIERS.index(tier)
    return dict(offload_text_encoder=level >= 1 and (parks[0] or not on_host),
                offload_dit=level >= 3 and (parks[1] or not on_host),
                vae_on_cpu=level >= 4 and not on_host, decode_chunk=SMALL_VAE_CHUNK if level >= 2 else None)


def _stages(f: Footprint, tier: str, on_host: bool, parks: tuple[bool, bool] = (True, True)) -> dict:
    """Estimated device bytes per stage when running under `tier`."""
    s = _tier_switches(tier, on_host, parks)
    encoders = f.text_encoder + f.condition_encoder
    resident = f.tokenizers + (0 if s["offload_dit"] else f.dit) + (0 if s["vae_on_cpu"] else f.vae) \
        + (0 if s["offload_text_encoder"] else encoders + f.lm)
    stages = {}
    if f.lm:
        stages["plan"] = resident + (f.lm if s["offload_text_encoder"] else 0) + f.lm_activations
    stages["encode"] = resident + (encoders if s["offload_text_encoder"] else 0) + f.encode_activations
    stages["denoise"] = resident + (f.dit if s["offload_dit"] else 0) + f.dit_activations
    stages["decode"] = resident + (0 if s["vae_on_cpu"] else f.vae_activations[s["decode_chunk"]])
    return stages


def plan_tiers(models, device, frames: int, batch: int, guided: bool, budget: int, lm=None,
               parks: tuple[bool, bool] | None = None) -> list[MemoryPlan]:
    """Every tier's plan for this request, in order (cheapest change first). `parks`: whether the
    encoders and the DiT can park on the host (default: whether these modules were read from files)."""
    from ..models.vae_codec import DECODE_CHUNK, DEVICE_DECODE_CHUNK

    device = torch.device(device)
    on_host = device.type == "cpu"
    f = footprint(models, frames, batch, guided, lm, default_chunk=DEVICE_DECODE_CHUNK.get(device.type, DECODE_CHUNK))
    if parks is None:
        parks = (all(parking.is_parkable(m) for m in (models.text_encoder, models.condition_encoder)),
                 _dit_has_file(models))
    plans = []
    for tier in TIERS:
        if on_host and (tier == TIERS[4] or (tier == TIERS[1] and not parks[0])
                        or (tier == TIERS[3] and not all(parks))):
            continue  # on the host "offloaded" means parked on disk: only modules read from files can park
        stages = _stages(f, tier, on_host, parks)
        plans.append(MemoryPlan(tier=tier, device=str(device), budget=int(budget), estimate=max(stages.values()),
                                stages=stages, **_tier_switches(tier, on_host, parks)))
    return plans


def _dit_has_file(models) -> bool:
    from pathlib import Path

    paths = getattr(models, "paths", {}) or {}
    return bool(paths.get("transformer_files")) or (
        bool(paths.get("dit")) and (Path(paths["dit"]) / "model.safetensors").is_file())


def default_budget(device, models=None) -> int:
    """Free memory on `device` plus what this engine's models already hold there (they are counted
    in the estimate): CUDA from the driver, CPU from /proc/meminfo's MemAvailable."""
    device = torch.device(device)
    held = 0
    if models is not None:
        for module in (models.transformer, models.condition_encoder, models.text_encoder, models.vae,
                       models.audio_tokenizer, models.detokenizer):
            if module is not None and next(module.parameters()).device.type == device.type:
                held += resident_bytes(module)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + held)
    if device.type == "mps":
        recommended = getattr(torch.mps, "recommended_max_memory", None)
        if recommended is not None:
            return int(recommended())
    return int(_host_available() + held)


def meminfo_bytes(field: str) -> int | None:
    """A /proc/meminfo field ("MemAvailable", "MemTotal") in bytes, or None where there is none."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _host_available() -> int:
    available = meminfo_bytes("MemAvailable")
    if available is not None:
        return available
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # no way to know: assume enough, the estimate is still reported
        return 1 << 62


def parse_budget(memory_budget) -> int | None:
    """None, bytes (int), GiB (float) or a string like "8GB", "12 GiB", "512MB" -> bytes."""
    if memory_budget is None:
        return None
    if isinstance(memory_budget, bool):
        raise DeviceError(f"memory_budget must be bytes, GiB or a string like '8GB' (got {memory_budget!r:.80})")
    if isinstance(memory_budget, int):
        value = memory_budget
    elif isinstance(memory_budget, float):
        value = memory_budget * GiB
    elif isinstance(memory_budget, str):
        text = memory_budget.strip().lower().replace(" ", "")
        units = {"gib": GiB, "gb": GiB, "g": GiB, "mib": 2 ** 20, "mb": 2 ** 20, "m": 2 ** 20, "kib": 1024,
                 "kb": 1024, "b": 1}
        value = None
        for unit, scale in units.items():
            if text.endswith(unit):
                try:
                    value = float(text[: -len(unit)]) * scale
                except ValueError:
                    break
                break
        else:
            value = None
        if value is None:
            raise DeviceError(f"memory_budget must be bytes, GiB or a string like '8GB' (got {memory_budget!r:.80})")
    else:
        raise DeviceError(f"memory_budget must be bytes, GiB or a string like '8GB' (got {memory_budget!r:.80})")
    if not math.isfinite(value) or value <= 0:
        raise DeviceError(f"memory_budget must be a positive size (got {memory_budget!r:.80})")
    return int(value)


def choose_plan(models, device, frames: int, batch: int, guided: bool, budget: int, lm=None,
                frame_rate: float = 25.0, max_batch: int = 8) -> MemoryPlan:
    """The first tier that fits `budget`, or `InsufficientMemoryError` naming what would fit."""
    plans = plan_tiers(models, device, frames, batch, guided, budget, lm)
    for plan in plans:
        if plan.fits:
            return plan
    last = plans[-1]
    hints = []
    longest = _largest(lambda n: plan_tiers(models, device, n, batch, guided, budget, lm)[-1].fits,
                       1, frames - 1)
    if longest:
        hints.append(f"a duration of at most {longest / frame_rate:.0f} s at batch size {batch}")
    biggest = _largest(lambda b: plan_tiers(models, device, frames, b, guided, budget, lm)[-1].fits,
                       1, min(batch - 1, max_batch))
    if biggest:
        hints.append(f"batch size {biggest} at this duration")
    if lm is not None:
        hints.append("planning without the LM (or with a smaller one)")
    what = " or ".join(hints) if hints else "a device with more memory"
    raise InsufficientMemoryError(
        f"this request needs about {last.estimate / GiB:.2f} GiB on {last.device} even with every offload "
        f"({last.tier}: {', '.join(f'{k} {v / GiB:.2f}' for k, v in last.stages.items())} GiB), but the memory "
        f"budget is {budget / GiB:.2f} GiB. It would fit with {what}.")


def _largest(fits, low: int, high: int) -> int | None:
    """The largest n in [low, high] with fits(n) (fits is monotone decreasing), or None."""
    if high < low or not fits(low):
        return None
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


# --------------------------------------------------------------------------- applying a plan

class PlanRunner:
    """Moves modules between the CPU and the device around each stage, as a plan says; on the host
    (a CPU engine) the same switches park the modules' weights on disk instead (`parking`)."""

    def __init__(self, models, device, plan: MemoryPlan | None, planner=None):
        self.models, self.device, self.plan = models, torch.device(device), plan
        self.planner = planner  # its LM leaves the device with the encoders

    @property
    def on_host(self) -> bool:
        return self.device.type == "cpu"

    @property
    def decode_chunk(self):
        """Latent frames per VAE window under this plan ("auto": the VAE device's default)."""
        return self.plan.decode_chunk if self.plan is not None and self.plan.decode_chunk else "auto"

    def _encoders(self) -> list:
        """What leaves the device with the encoders. On the host the audio tokenizers park too: a parked
        module comes back by itself when called. A device moves only the two encoders, whose every use
        is inside the encode stage."""
        models = self.models
        extra = (models.audio_tokenizer, models.detokenizer) if self.on_host else ()
        return [m for m in (models.text_encoder, models.condition_encoder, *extra) if m is not None]

    def _stage_modules(self, name: str) -> list:
        plan = self.plan
        if plan is None:
            return []
        if name == "encode" and plan.offload_text_encoder:
            return self._encoders()
        if name == "denoise" and plan.offload_dit:
            return [self.models.transformer]
        return []

    @contextlib.contextmanager
    def stage(self, name: str):
        moved = self._stage_modules(name)
        if self.on_host:  # parked modules come back when first called (text2music never calls the tokenizers)
            try:
                yield
            finally:
                for module in moved:
                    parking.park(module)
            return
        for module in moved:
            module.to(self.device)
        try:
            yield
        finally:
            for module in moved:
                module.to("cpu")
            if moved and self.device.type == "cuda":
                torch.cuda.empty_cache()

    def settle(self) -> None:
        """Put every module where the plan keeps it between stages (before the first stage)."""
        plan = self.plan
        if plan is None:
            return
        if self.planner is not None and plan.offload_text_encoder:
            self.planner.put_away()
        if self.on_host:
            if plan.offload_dit:
                from ..models.loader import make_transformer_parkable

                make_transformer_parkable(self.models, next(self.models.transformer.parameters()).dtype)
            for module, parked in [(m, plan.offload_text_encoder) for m in self._encoders()] \
                    + [(self.models.transformer, plan.offload_dit)]:
                if parked:
                    parking.park(module)
                else:
                    parking.restore(module)
            return
        placement = [(self.models.text_encoder, not plan.offload_text_encoder),
                     (self.models.condition_encoder, not plan.offload_text_encoder),
                     (self.models.transformer, not plan.offload_dit),
                     (self.models.vae, not plan.vae_on_cpu)]
        for module, on_device in placement:
            module.to(self.device if on_device else "cpu")
