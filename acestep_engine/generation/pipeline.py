"""One generation, as ordered stages read top to bottom:

    check -> plan -> conditions -> noise -> denoise -> decode -> finish

`Engine.generate` does the check (argument types and ranges, `GenerationSettings`, the variant
that can run the task) and calls `run` for each part of the task (ExtractAll: one per track).
Everything a task changes is its `Plan`'s steering (see `acestep_engine.generation.tasks.base`); the
stages below are the same for every task.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..errors import GenerationError
from ..models import vae_codec
from ..progress import Progress
from ..runtime.compiling import compiled_call
from ..takes.record import Take, new_take_id
from .conditioning import caption_tokens, encode_conditions
from .sampling import denoise
from .sources import reference_latents


def run(facts, task, blueprint, settings, seeds: list[int], report, cancel, model_record: dict,
        memory=None, only: int | None = None) -> list[Take]:
    """Takes of one checked task. `facts`: `ModelFacts`; `settings`: `GenerationSettings`;
    `report(Progress)`; `cancel`: an Event or None; `model_record`: what `take.model` says;
    `memory`: a `memory.PlanRunner` that moves models around each stage as its plan says (or None);
    `only`: denoise the whole batch but decode and return only the item at this index (a replay).

    Each take's `sampling` holds the batch's seeds (`batch_seeds`): items of a batch share every
    matrix product, so a take is reproduced bit for bit by its whole batch, not by its seed alone."""
    from .memory import PlanRunner

    memory = memory or PlanRunner(facts.models, facts.device, None)
    started = time.perf_counter()
    batch = len(seeds)
    report(Progress("encode", 0, settings.steps, 0, batch, "encoding conditions"))
    with memory.stage("encode"):
        plan = task.plan(facts, blueprint)
        conditions_for = condition_encoder(facts, plan.blueprint, getattr(task, "reference", None))
        noise = make_noise(facts, seeds, plan.frames)
        x, settings = plan.start(noise, settings)
        inputs = plan.step_inputs(conditions_for, batch, settings)
    encoded = time.perf_counter()

    with memory.stage("denoise"):
        latents, compile_s = compiled_call(facts.models.transformer, lambda: denoise_latents(
            facts, plan, x, noise, inputs, settings, seeds, report, cancel))
    denoised = time.perf_counter()

    if plan.keeps_loudness:
        settings = settings.keeping_loudness()
    items = range(batch) if only is None else [only]
    audios = {i: decode_item(facts, plan, latents[i], settings, cancel, lambda: report(
        Progress("decode", settings.steps, settings.steps, i, batch, f"decoding {i + 1}/{batch}")),
        chunk=memory.decode_chunk)
        for i in items}
    finished = time.perf_counter()
    report(Progress("done", settings.steps, settings.steps, batch, batch, "done"))

    timings = {"encode_s": encoded - started, "denoise_s": denoised - encoded,
               "decode_s": finished - denoised, "total_s": finished - started}
    if compile_s:
        timings["compile_s"] = compile_s  # inside denoise_s: the first generation compiles the DiT
    sampling = {**settings.record(), "batch_seeds": [int(s) for s in seeds]}
    return [Take(id=new_take_id(), audio=audios[i], sample_rate=facts.sample_rate, seed=seeds[i],
                 blueprint=plan.blueprint, task=task.to_dict(), model=model_record, sampling=dict(sampling),
                 timings=timings, latents=latents[i].float().cpu().numpy(), parent_id=plan.parent_id,
                 batch_index=i)
            for i in items]


# --------------------------------------------------------------------------- conditions

def condition_encoder(facts, blueprint, reference=None):
    """`conditions_for(instruction, pad_like=None)` -> `Conditions` of one item for this blueprint.

    `pad_like` names another instruction whose caption length the caption is right-padded to
    (upstream's batch padding, which its DiT attends to)."""
    references = [reference_latents(facts, reference)] if reference is not None else None
    lyrics = blueprint.lyric_prompt()

    def conditions_for(instruction: str, pad_like: str | None = None):
        tokens = caption_tokens(facts.models, blueprint.caption_prompt(pad_like)) if pad_like else 0
        return encode_conditions(facts.models, [blueprint.caption_prompt(instruction)], [lyrics], references,
                                 min_caption_tokens=tokens)

    return conditions_for


# --------------------------------------------------------------------------- noise

def make_noise(facts, seeds: list[int], frames: int) -> torch.Tensor:
    """Starting noise `[B, frames, C]` exactly as upstream draws it: one generator per item on the
    model's device, seeded with the item's seed, `randn([1, frames, C])` in the model dtype."""
    parts = []
    for seed in seeds:
        generator = torch.Generator(device=facts.device).manual_seed(int(seed))
        parts.append(torch.randn((1, frames, facts.latent_channels), generator=generator, device=facts.device,
                                 dtype=facts.dtype))
    return torch.cat(parts)


def sde_noise(facts, seeds: list[int], frames: int):
    """Fresh SDE noise per step from per-item generators seeded apart from the starting noise."""
    generators = [torch.Generator(device=facts.device).manual_seed((int(s) + 0x5DE) % 2 ** 63) for s in seeds]

    def draw():
        return torch.cat([torch.randn((1, frames, facts.latent_channels), generator=g, device=facts.device,
                                      dtype=facts.dtype) for g in generators])

    return draw


# --------------------------------------------------------------------------- denoise

def denoise_latents(facts, plan, x, noise, inputs, settings, seeds, report, cancel) -> torch.Tensor:
    """The shared loop with the plan's step hook, then the plan's own post-processing."""
    batch = x.shape[0]

    def on_step(step, total):
        report(Progress("denoise", step, total, 0, batch, f"step {step}/{total}"))

    latents = denoise(facts.models.transformer, x, inputs, settings.sampler(),
                      step_hook=plan.step_hook(noise, settings), on_step=on_step, cancel=cancel,
                      sde_noise=sde_noise(facts, seeds, plan.frames))
    if not torch.isfinite(latents).all():
        raise non_finite_error("the model produced NaN or Inf latents", facts.dtype)
    return plan.after_denoise(latents)


# --------------------------------------------------------------------------- decode and finish

def decode_item(facts, plan, latents: torch.Tensor, settings, cancel, announce, chunk="auto") -> np.ndarray:
    """One item: tiled VAE decode (`chunk` latent frames per window), the plan's finish (splice,
    crop), then loudness."""
    announce()
    options = {} if chunk == "auto" else {"chunk": chunk}
    audio = vae_codec.decode(facts.models.vae, latents, cancel=cancel, **options)
    if not np.isfinite(audio).all():
        raise non_finite_error("the VAE produced NaN or Inf audio", facts.dtype)
    return finish_audio(plan.finish(audio), settings.normalize, settings.normalization_db)


def non_finite_error(what: str, dtype) -> GenerationError:
    """The error for NaN/Inf output: in fp16 it names float32 as the fix (fp16's range is what overflows)."""
    if dtype == torch.float16:
        return GenerationError(f"{what} in float16, whose range this model can overflow: load the engine in "
                               "float32, Engine.from_pretrained(..., dtype='fp32') (bf16 where the GPU has it)")
    return GenerationError(f"{what}; try float32 (dtype='fp32') or another seed")


def finish_audio(audio: np.ndarray, normalize: bool, target_db: float) -> np.ndarray:
    """Peak-normalise to `target_db` dBFS, or only scale down what would clip; silence is an error."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < 1e-6:
        raise GenerationError("the generated audio is silent (peak below -120 dBFS)")
    if normalize:
        return vae_codec.peak_normalize(audio, target_db)
    if peak > 1.0:
        audio /= peak
    return audio
