"""The front door: load a checkpoint set once, then `generate(blueprint, task)` -> takes.

    engine = Engine.from_pretrained("checkpoints")        # or Engine.demo()
    takes = engine.generate(Blueprint(caption="lo-fi piano", duration=30), batch_size=2)

Generation reads like a pipeline: validate -> task plan (source latents, mask, instruction) ->
conditions -> noise -> denoising loop -> tiled VAE decode -> normalised takes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from . import vae_codec
from .blueprint import TEXT2MUSIC_INSTRUCTION, Blueprint
from .checkpoints import default_checkpoints_dir, ensure_checkpoints, is_diffusers_layout
from .conditioning import encode_conditions, silence_frames
from .errors import GenerationError, TaskError
from .hardware import dtype_name
from .loader import LoadedModels, load_diffusers_format, load_official, resolve_device_and_dtype
from .progress import Progress, TqdmProgress
from .sampling import SamplerSettings, denoise
from .schedules import make_schedule
from .takes import Take, new_take_id
from .sources import reference_latents
from .tasks import ExtractAll, Text2Music
from .variants import SamplingPreset, variant_for_task

MAX_BATCH = 8
DEMO_NOTICE = ("Demo checkpoint: tiny random weights, so it makes noise, not music. "
               "Point Engine.from_pretrained at the real ACE-Step 1.5 weights for songs.")
ENV_DEMO_DIR = "ACESTEP_DEMO_DIR"


def demo_checkpoints_dir() -> Path:
    """`$ACESTEP_DEMO_DIR`, else `~/.cache/acestep-workbench/demo-v2`."""
    env = os.environ.get(ENV_DEMO_DIR)
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "acestep-workbench" / "demo-v2"


@contextlib.contextmanager
def _quiet_loading():
    """Silence library chatter (dtype notes, tiny progress bars) while loading our own checkpoints."""
    from diffusers.utils import logging as dlogging
    from transformers.utils import logging as tlogging

    old = dlogging.get_verbosity(), tlogging.get_verbosity()
    dlogging.set_verbosity_error()
    tlogging.set_verbosity_error()
    tlogging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*weight_norm.*")
            yield
    finally:
        dlogging.set_verbosity(old[0])
        tlogging.set_verbosity(old[1])
        tlogging.enable_progress_bar()


class Engine:
    """An ACE-Step 1.5 DiT with its VAE and text encoder, ready to generate takes."""

    def __init__(self, models: LoadedModels, device: torch.device, dtype: torch.dtype,
                 allow_download: bool = False, dtype_choice: str = "requested"):
        self.models = models
        self.device = device
        self.dtype = dtype
        self.dtype_choice = dtype_choice  # "requested", or "auto: <why this dtype on this device>"
        self.allow_download = allow_download
        self.is_demo = bool(models.config.get("acestep_workbench_random_weights", False))
        self._lock = threading.Lock()  # one generation at a time: the sampler patches modules while it runs
        self._variants: dict[str, "Engine"] = {}
        self._adapters = None  # LoRA adapters on the DiT (created on first use)
        self._training = False  # True while acestep_engine.lora.train holds the DiT

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, checkpoints_dir: str | Path | None = None, dit: str = "acestep-v15-turbo",
                        device="auto", dtype="auto", allow_download: bool = False) -> "Engine":
        """Load `dit` (a folder under `checkpoints_dir`) with `vae/` and `Qwen3-Embedding-0.6B/`.

        `checkpoints_dir` defaults to `$ACESTEP_CHECKPOINTS_DIR` or `./checkpoints`. It may also be a
        diffusers-format repository. Missing files are downloaded only with `allow_download=True`;
        otherwise the error lists them with the command that fetches them. `device="auto"` picks
        CUDA, then MPS, then CPU; `dtype="auto"` (or None) picks bf16 on CUDA GPUs that have it
        (fp16 on older ones) and on CPUs that multiply bf16 natively (AVX512-BF16 or AMX), fp32 on
        other CPUs and MPS; `dtype="fp32"` forces full precision. `engine.dtype_choice` says why.
        """
        device, dtype, dtype_choice = resolve_device_and_dtype(device, dtype)
        root = Path(checkpoints_dir) if checkpoints_dir else default_checkpoints_dir()
        with _quiet_loading():
            if is_diffusers_layout(root):
                models = load_diffusers_format(root, device, dtype)
            else:
                ensure_checkpoints(root, dit=dit, allow_download=allow_download)
                models = load_official(root, dit, device, dtype)
        engine = cls(models, device, dtype, allow_download=allow_download, dtype_choice=dtype_choice)
        if engine.is_demo:
            logging.getLogger(__name__).warning(DEMO_NOTICE)
        return engine

    @classmethod
    def demo(cls, device="auto", dtype="auto", variant: str = "turbo") -> "Engine":
        """The embedded demo checkpoint (written on first use, in the official layout)."""
        from .testing import DIT_FOLDERS, write_tiny_checkpoints

        root = demo_checkpoints_dir()
        folder = DIT_FOLDERS[variant]
        if not (root / folder / "model.safetensors").is_file() or not (root / "vae").is_dir():
            with _quiet_loading():
                write_tiny_checkpoints(root, variant=variant, preset="demo", seed=1234)
        return cls.from_pretrained(root, dit=folder, device=device, dtype=dtype)

    def with_variant(self, dit: str, allow_download: bool | None = None) -> "Engine":
        """An engine for another DiT variant of the same checkpoints folder, sharing this one's VAE and
        text encoder (loaded once, kept for reuse). Downloads it only if allowed."""
        from .checkpoints import components_for
        from .loader import load_dit

        if dit == self.variant.name:
            return self
        if dit not in self._variants:
            root = Path(self.models.paths["checkpoints"])
            allow = self.allow_download if allow_download is None else allow_download
            missing = components_for(dit)[0].missing(root)
            if missing:
                ensure_checkpoints(root, dit=dit, allow_download=allow)
            with _quiet_loading():
                cfg, modules, silence, fingerprint = load_dit(root / dit, self.device, self.dtype)
            from dataclasses import replace as dc_replace

            from .variants import resolve_variant

            models = dc_replace(self.models, transformer=modules["transformer"],
                                condition_encoder=modules["condition_encoder"],
                                audio_tokenizer=modules["audio_tokenizer"], detokenizer=modules["detokenizer"],
                                silence_latent=silence, config=cfg, variant=resolve_variant(dit, cfg),
                                fingerprint=fingerprint, paths=dict(self.models.paths, dit=str(root / dit)))
            self._variants[dit] = Engine(models, self.device, self.dtype, self.allow_download, self.dtype_choice)
        return self._variants[dit]

    # ------------------------------------------------------------------ facts from the configs
    @property
    def variant(self):
        return self.models.variant

    @property
    def preset(self) -> SamplingPreset:
        return self.models.variant.preset

    @property
    def sample_rate(self) -> int:
        return self.models.sample_rate

    @property
    def hop_length(self) -> int:
        return self.models.hop_length

    @property
    def frame_rate(self) -> float:
        return self.models.frame_rate

    @property
    def latent_channels(self) -> int:
        return self.models.latent_channels

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.models.variant.tasks

    def can(self, task) -> bool:
        """Whether the loaded variant can run `task` (a task object or a task name)."""
        name = task if isinstance(task, str) else getattr(task, "capability", task.name)
        return {"extend": "repaint", "extract_all": "extract"}.get(name, name) in self.tasks

    def check_capability(self, task) -> None:
        if not self.can(task):
            name = task if isinstance(task, str) else task.name
            needed = variant_for_task(name)
            raise TaskError(f"the task {name} needs the {needed} checkpoint; {self.variant.name} can run: "
                            f"{', '.join(self.tasks)}. Load it with Engine.from_pretrained(..., dit='{needed}')")

    def frames_for(self, seconds: float) -> int:
        """Latent frames for a duration, as upstream: `round(seconds, 1) * rate // hop`."""
        return int(round(float(seconds), 1) * self.sample_rate) // self.hop_length

    def silence(self, frames: int) -> torch.Tensor:
        """`[frames, C]` silence latents in the model dtype."""
        return silence_frames(self.models, frames)

    def describe(self) -> dict:
        return {"variant": self.variant.name, "weights": self.models.fingerprint, "dtype": dtype_name(self.dtype),
                "dtype_choice": self.dtype_choice, "device": str(self.device), "demo": self.is_demo, "checkpoints": self.models.paths.get("checkpoints"),
                "loras": self.loras()}

    def __repr__(self) -> str:
        demo = ", demo (random weights)" if self.is_demo else ""
        return (f"Engine({self.variant.name}, {self.sample_rate} Hz, {self.latent_channels} latent channels, "
                f"{self.device}, {dtype_name(self.dtype)}{' (auto)' if self.dtype_choice.startswith('auto') else ''}"
                f"{demo})")

    # ------------------------------------------------------------------ LoRA adapters
    # Changes wait for a running generation (the lock), so a take never mixes two adapter states.
    @property
    def adapters(self):
        """The `acestep_engine.lora.AdapterSet` of this engine's DiT."""
        if self._adapters is None:
            from .lora.adapters import AdapterSet

            self._adapters = AdapterSet(self.models.transformer)
        return self._adapters

    @property
    def busy(self) -> bool:
        """True while a generation or a LoRA training run uses the DiT."""
        return self._lock.locked()

    def load_lora(self, path, name: str | None = None, scale: float = 1.0) -> str:
        """Load a peft LoRA folder (ours or upstream's) onto the DiT; returns its name (default: the
        folder's name). `scale` multiplies the adapter's effect: 0 gives the base model exactly."""
        with self._lock:
            return self.adapters.load(path, name, scale).name

    def set_lora_scale(self, scale: float, name: str | None = None) -> None:
        """Scale one adapter (or, with name=None, every loaded adapter); -4 to 4, 0 switches it off."""
        with self._lock:
            self.adapters.set_scale(scale, name)

    def loras(self) -> list[dict]:
        """Loaded adapters as `{"name", "path", "scale", "fingerprint", "rank"}`, in loading order."""
        return self._adapters.describe() if self._adapters is not None else []

    def unload_lora(self, name: str | None = None) -> None:
        """Remove one adapter (or all with name=None); the DiT's layers become the original ones."""
        with self._lock:
            self.adapters.unload(name)

    # ------------------------------------------------------------------ generation
    def sampler_settings(self, steps=None, shift=None, guidance=None, guidance_method=None,
                         guidance_interval=(0.0, 1.0), timesteps=None, method="ode",
                         solver="euler") -> SamplerSettings:
        """The variant's preset with any overrides applied (and checked)."""
        preset = self.preset
        steps = preset.steps if steps is None else int(steps)
        shift = preset.shift if shift is None else float(shift)
        guidance = preset.guidance if guidance is None else float(guidance)
        if self.variant.turbo and guidance > 1.0:
            raise TaskError(f"guidance must be 1.0 on the turbo variant {self.variant.name}: its guidance is "
                            f"distilled into the weights (got {guidance})")
        if not 1 <= steps <= 200:
            raise TaskError(f"steps must be between 1 and 200 (got {steps})")
        if not 1.0 <= shift <= 5.0:
            raise TaskError(f"shift must be between 1 and 5 (got {shift})")
        if not 1.0 <= guidance <= 15.0:
            raise TaskError(f"guidance must be between 1 and 15 (got {guidance})")
        chosen_guidance = guidance_method or preset.guidance_method
        if chosen_guidance not in ("apg", "cfg"):
            raise TaskError(f"guidance_method must be 'apg' or 'cfg' (got {chosen_guidance!r})")
        start, end = guidance_interval
        if not 0.0 <= start <= end <= 1.0:
            raise TaskError(f"guidance_interval must satisfy 0 <= start <= end <= 1 (got {guidance_interval})")
        if method not in ("ode", "sde"):
            raise TaskError(f"method must be 'ode' or 'sde' (got {method!r})")
        if solver not in ("euler", "heun"):
            raise TaskError(f"solver must be 'euler' or 'heun' (got {solver!r})")
        try:
            schedule = make_schedule(self.variant.turbo, steps, shift, timesteps)
        except ValueError as exc:
            raise TaskError(str(exc)) from None
        return SamplerSettings(schedule, guidance, chosen_guidance, (float(start), float(end)), method, solver)

    def make_noise(self, seeds: list[int], frames: int) -> torch.Tensor:
        """Starting noise `[B, frames, C]` exactly as upstream draws it: one generator per item on the
        model's device, seeded with the item's seed, `randn([1, frames, C])` in the model dtype."""
        parts = []
        for seed in seeds:
            generator = torch.Generator(device=self.device).manual_seed(int(seed))
            parts.append(torch.randn((1, frames, self.latent_channels), generator=generator,
                                     device=self.device, dtype=self.dtype))
        return torch.cat(parts)

    @staticmethod
    def resolve_seeds(seeds, batch_size: int) -> list[int]:
        """None -> random seeds; an int -> seed, seed+1, ...; a list -> one seed per item."""
        if seeds is None:
            return [secrets.randbelow(2 ** 32) for _ in range(batch_size)]
        if isinstance(seeds, (int, np.integer)):
            seeds = [int(seeds) + i for i in range(batch_size)]
        seeds = [int(s) for s in seeds]
        if len(seeds) != batch_size:
            raise TaskError(f"seeds must hold one seed per batch item: {batch_size} (got {len(seeds)})")
        if any(not 0 <= s < 2 ** 63 for s in seeds):
            raise TaskError(f"seeds must be between 0 and 2**63 - 1 (got {seeds})")
        return seeds

    def encode_audio(self, audio: np.ndarray) -> torch.Tensor:
        """Float32 audio `[2, samples]` at `sample_rate` -> latents `[samples // hop, C]` (tiled VAE, mean)."""
        tensor = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        return vae_codec.encode(self.models.vae, tensor).to(self.dtype)

    def generate(self, blueprint: Blueprint, task=None, batch_size: int = 1, seeds=None, progress=None,
                 cancel=None, *, steps=None, shift=None, guidance=None, guidance_method=None,
                 guidance_interval=(0.0, 1.0), timesteps=None, method: str = "ode", solver: str = "euler",
                 normalize: bool = True, normalization_db: float = -1.0) -> list[Take]:
        """Generate `batch_size` takes (1-8) of `blueprint` with `task` (default `Text2Music()`).

        `seeds`: None (random, recorded), an int (seed, seed+1, ...) or one int per item.
        `progress`: a callable receiving `Progress` per denoising step and per decoded item, or
        True for a tqdm bar. `cancel`: a `threading.Event`; setting it stops between steps with
        `GenerationCancelled` and returns nothing. `steps`, `shift`, `guidance` override the
        variant's preset; `method` ("ode"/"sde") and `solver` ("euler"/"heun") pick the sampler
        (SDE noise is seeded from the item's seed, unlike upstream's global RNG). Audio is float32 `[channels, samples]` at `sample_rate`, peak
        normalised to `normalization_db` dBFS unless `normalize=False` (repaint and extend keep
        the source's loudness). `ExtractAll` returns the takes of each track in turn.
        """
        task = task if task is not None else Text2Music()
        if isinstance(task, ExtractAll):
            task.validate()
            self.check_capability(task)
            kwargs = dict(batch_size=batch_size, seeds=seeds, progress=progress, cancel=cancel, steps=steps,
                          shift=shift, guidance=guidance, guidance_method=guidance_method,
                          guidance_interval=guidance_interval, timesteps=timesteps, method=method, solver=solver,
                          normalize=normalize, normalization_db=normalization_db)
            return [take for sub in task.subtasks() for take in self.generate(blueprint, sub, **kwargs)]
        started = time.perf_counter()
        if not isinstance(blueprint, Blueprint):
            raise TaskError(f"blueprint must be a Blueprint (got {type(blueprint).__name__})")
        blueprint = blueprint.validate()
        task.validate()
        if not self.can(task) and self.allow_download:
            needed = variant_for_task(task.name)
            return self.with_variant(needed).generate(
                blueprint, task, batch_size, seeds, progress, cancel, steps=steps, shift=shift, guidance=guidance,
                guidance_method=guidance_method, guidance_interval=guidance_interval, timesteps=timesteps,
                method=method, solver=solver, normalize=normalize, normalization_db=normalization_db)
        self.check_capability(task)
        if self._training:
            raise GenerationError("a LoRA training run is using this engine's DiT: wait for it or stop it first")
        with self._lock:
            return self._generate(blueprint, task, batch_size, seeds, progress, cancel, started, steps, shift,
                                  guidance, guidance_method, guidance_interval, timesteps, method, solver, normalize,
                                  normalization_db)

    def _generate(self, blueprint, task, batch_size, seeds, progress, cancel, started, steps, shift, guidance,
                  guidance_method, guidance_interval, timesteps, method, solver, normalize, normalization_db):
        if getattr(task, "audio_codes", None) is not None and task.name not in ("text2music", "cover"):
            raise TaskError(f"audio_codes apply to text2music and cover, not {task.name}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or not 1 <= batch_size <= MAX_BATCH:
            raise TaskError(f"batch_size must be between 1 and {MAX_BATCH} (got {batch_size!r})")
        seeds = self.resolve_seeds(seeds, batch_size)
        settings = self.sampler_settings(steps, shift, guidance, guidance_method, guidance_interval, timesteps,
                                         method, solver)
        report = TqdmProgress() if progress is True else (progress or (lambda p: None))

        report(Progress("encode", 0, settings.steps, 0, batch_size, "encoding conditions"))
        plan = task.plan(self, blueprint)
        references = None
        if getattr(task, "reference", None) is not None:
            references = [reference_latents(self, task.reference)] * batch_size
        noise = self.make_noise(seeds, plan.frames)
        x, settings = self._starting_point(plan, noise, settings)
        inputs = self._step_inputs(plan, batch_size, settings, references)
        encoded = time.perf_counter()

        def on_step(step, total):
            report(Progress("denoise", step, total, 0, batch_size, f"step {step}/{total}"))

        latents = denoise(self.models.transformer, x, inputs, settings, step_hook=self._injection(plan, noise, settings),
                          on_step=on_step, cancel=cancel, sde_noise=self._sde_noise(seeds, plan.frames))
        _check_finite(latents, "latents")
        latents = self._blend_kept_latents(plan, latents)
        denoised = time.perf_counter()

        audios = []
        for i in range(batch_size):
            report(Progress("decode", settings.steps, settings.steps, i, batch_size, f"decoding {i + 1}/{batch_size}"))
            audio = vae_codec.decode(self.models.vae, latents[i], cancel=cancel)
            keep_loudness = plan.normalize is False
            audios.append(self._finish(plan, audio, normalize and not keep_loudness, normalization_db))
        finished = time.perf_counter()
        report(Progress("done", settings.steps, settings.steps, batch_size, batch_size, "done"))

        timings = {"encode_s": encoded - started, "denoise_s": denoised - encoded,
                   "decode_s": finished - denoised, "total_s": finished - started}
        sampling = {"steps": settings.steps, "shift": shift if shift is not None else self.preset.shift,
                    "guidance": settings.guidance, "guidance_method": settings.guidance_method,
                    "guidance_interval": list(settings.guidance_interval),
                    "timesteps": [float(t) for t in settings.schedule], "method": settings.method,
                    "solver": settings.solver,
                    "normalize": normalize and plan.normalize is not False, "normalization_db": normalization_db}
        return [Take(id=new_take_id(), audio=audios[i], sample_rate=self.sample_rate, seed=seeds[i],
                     blueprint=plan.blueprint, task=task.to_dict(), model=self.describe(), sampling=sampling,
                     timings=timings, latents=latents[i].float().cpu().numpy(), parent_id=plan.parent_id,
                     batch_index=i)
                for i in range(batch_size)]

    def _sde_noise(self, seeds, frames):
        """Fresh SDE noise per step from per-item generators seeded apart from the starting noise."""
        generators = [torch.Generator(device=self.device).manual_seed((int(s) + 0x5DE) % 2 ** 63) for s in seeds]

        def draw():
            return torch.cat([torch.randn((1, frames, self.latent_channels), generator=g, device=self.device,
                                          dtype=self.dtype) for g in generators])

        return draw

    # ------------------------------------------------------------------ task steering (shared)
    def _starting_point(self, plan, noise, settings):
        """Pure noise, or (cover noise_strength) the noised source at the nearest schedule time."""
        if plan.start_latents is None:
            return noise, settings
        target = 1.0 - plan.start_level
        times = settings.schedule[:-1]
        index = min(range(len(times)), key=lambda i: abs(times[i] - target))
        t = times[index]
        start = t * noise + (1.0 - t) * plan.start_latents.unsqueeze(0).to(noise)
        trimmed = SamplerSettings(settings.schedule[index:], settings.guidance, settings.guidance_method,
                                  settings.guidance_interval)
        return start, trimmed

    def _step_inputs(self, plan, batch, settings, references):
        """Context latents and conditions per step; a cover switches to text2music after its share of steps."""
        def encode(instruction):
            return encode_conditions(self.models, [plan.blueprint.caption_prompt(instruction)],
                                     [plan.blueprint.lyric_prompt()], references[:1] if references else None)

        def context_of(source):
            ctx = torch.cat([source, plan.chunk_mask], dim=-1).unsqueeze(0)
            return ctx.expand(batch, -1, -1).to(self.dtype)

        main = (context_of(plan.source_latents), encode(plan.instruction).repeat(batch))
        if plan.switch_fraction is None or plan.switch_fraction >= 1.0:
            return lambda i: main
        late = (context_of(self.silence(plan.frames)), encode(TEXT2MUSIC_INSTRUCTION).repeat(batch))
        switch = int(settings.steps * plan.switch_fraction)
        return lambda i: main if i < switch else late

    def _injection(self, plan, noise, settings):
        """Repaint step injection: outside the mask, reset to the noised clean source for the first steps."""
        if plan.keep_latents is None or plan.injection_fraction <= 0:
            return None
        inject_steps = round(plan.injection_fraction * settings.steps)
        keep = plan.keep_latents.unsqueeze(0).to(noise)
        regenerate = plan.chunk_mask.unsqueeze(0) > 0

        def hook(i, t_next, x):
            if i >= inject_steps:
                return x
            return torch.where(regenerate, x, t_next * noise + (1 - t_next) * keep)

        return hook

    def _blend_kept_latents(self, plan, latents):
        """Repaint latent crossfade: keep the source outside the mask, ramping over `crossfade_frames`."""
        if plan.keep_latents is None or plan.splice_audio is None:
            return latents
        soft = _soft_mask(plan.chunk_mask[:, 0].float().cpu().numpy(), plan.crossfade_frames)
        soft = torch.from_numpy(soft).to(latents)[None, :, None]
        return soft * latents + (1 - soft) * plan.keep_latents.unsqueeze(0).to(latents)

    def _finish(self, plan, audio, normalize, target_db):
        if not np.isfinite(audio).all():
            raise GenerationError("the VAE produced NaN or Inf audio; try float32 (dtype='fp32')")
        if plan.splice_audio is not None:
            frames = plan.chunk_mask[:, 0].float().cpu().numpy()
            inside = np.repeat(frames, self.hop_length)[: audio.shape[-1]]
            soft = _soft_mask(inside, int(round(plan.wav_crossfade_s * self.sample_rate)))
            new_peak = float(np.max(np.abs(audio * soft))) if audio.size else 0.0
            if new_peak > 1.0:  # scale only the new material; the kept audio stays as it was
                audio = audio / new_peak
            audio = (soft * audio + (1 - soft) * plan.splice_audio[:, : audio.shape[-1]]).astype(np.float32)
        if plan.output_samples is not None:
            audio = np.ascontiguousarray(audio[:, : plan.output_samples])
        if plan.prefix_audio is not None or plan.suffix_audio is not None:
            parts = [p for p in (plan.prefix_audio, audio, plan.suffix_audio) if p is not None]
            audio = np.concatenate(parts, axis=-1).astype(np.float32)
        return _finish_audio(audio, normalize, target_db)


def _soft_mask(inside: np.ndarray, ramp: int) -> np.ndarray:
    """1 where `inside`, falling linearly to 0 over `ramp` positions outside each boundary."""
    inside = inside > 0.5
    if ramp <= 0 or inside.all() or not inside.any():
        return inside.astype(np.float32)
    from scipy.ndimage import distance_transform_edt

    distance = distance_transform_edt(~inside)  # positions from the nearest inside position
    return np.clip(1.0 - distance / (ramp + 1), 0.0, 1.0).astype(np.float32)


def _check_finite(tensor: torch.Tensor, what: str) -> None:
    if not torch.isfinite(tensor).all():
        raise GenerationError(f"the model produced NaN or Inf {what}; try float32 (dtype='fp32') or another seed")


def _finish_audio(audio: np.ndarray, normalize: bool, target_db: float) -> np.ndarray:
    if not np.isfinite(audio).all():
        raise GenerationError("the VAE produced NaN or Inf audio; try float32 (dtype='fp32')")
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < 1e-6:
        raise GenerationError("the generated audio is silent (peak below -120 dBFS)")
    if normalize:
        return vae_codec.peak_normalize(audio, target_db)
    if peak > 1.0:
        audio /= peak
    return audio
