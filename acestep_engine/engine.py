"""The front door: load a checkpoint set once, then `generate(blueprint, task)` -> takes.

    engine = Engine.from_pretrained("checkpoints")        # or Engine.demo()
    takes = engine.generate(Blueprint(caption="lo-fi piano", duration=30), batch_size=2)

`generate` checks everything at the door (types, ranges, settings, the variant that can run the
task) and hands each part of the task to `acestep_engine.generation.pipeline.run`: plan -> conditions ->
noise -> denoise -> decode -> finish. Tasks plan with `self.facts` and never import the engine.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from pathlib import Path

import numpy as np
import torch

from .arguments import flag_argument, path_argument, shown, text_argument
from .blueprint import Blueprint
from .errors import CheckpointError, GenerationError, LoRAError, TaskError
from .generation import pipeline
from .generation.facts import ModelFacts
from .generation.settings import (MAX_BATCH, GenerationSettings, check_batch_size, check_cancel, check_progress,
                                  check_setting_names, resolve_seeds)
from .generation.tasks import TASKS, Task, Text2Music
from .models.checkpoints import default_checkpoints_dir, ensure_checkpoints, is_diffusers_layout
from .models.loader import LoadedModels, load_diffusers_format, load_official, resolve_device_and_dtype
from .models.variants import SamplingPreset, variant_for_task
from .runtime.hardware import dtype_name
from .runtime.quiet import quiet_loading
from .takes.record import Take

DEMO_NOTICE = ("Demo checkpoint: tiny random weights, so it makes noise, not music. "
               "Point Engine.from_pretrained at the real ACE-Step 1.5 weights for songs.")
_DIT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _from_facts(name: str, doc: str) -> property:
    """An Engine property that reads the same-named fact of `engine.facts` (one definition of each)."""
    return property(lambda engine: getattr(engine.facts, name), doc=doc)


class Engine:
    """An ACE-Step 1.5 DiT with its VAE and text encoder, ready to generate takes."""

    def __init__(self, models: LoadedModels, device: torch.device, dtype: torch.dtype,
                 allow_download: bool = False, dtype_choice: str = "requested"):
        self.models = models
        self.device = device
        self.dtype = dtype
        self.dtype_choice = dtype_choice  # "requested", or "auto: <why this dtype on this device>"
        self.memory_budget = None  # None: the device's free memory (see plan_memory)
        self.last_memory_plan = None
        self.allow_download = allow_download
        self.is_demo = bool(models.config.get("acestep_workbench_random_weights", False))
        self._lock = threading.Lock()  # one generation at a time: the sampler patches modules while it runs
        self._variants: dict[str, "Engine"] = {}
        self._adapters = None  # LoRA adapters on the DiT (created on first use)
        self._holder = None  # who holds the DiT through exclusive(), e.g. a LoRA training run
        self._compile_option = False
        self.planner = None  # the Planner attached to this engine (Planner.attach): memory plans count its LM

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, checkpoints_dir: str | Path | None = None, dit: str = "acestep-v15-turbo",
                        device="auto", dtype="auto", allow_download: bool = False,
                        memory_budget=None, compile=False) -> "Engine":
        """Load `dit` (a folder under `checkpoints_dir`) with `vae/` and `Qwen3-Embedding-0.6B/`.

        `checkpoints_dir` defaults to `$ACESTEP_CHECKPOINTS_DIR` or `./checkpoints`. It may also be a
        diffusers-format repository. Missing files are downloaded only with `allow_download=True`;
        otherwise the error lists them with the command that fetches them. `device="auto"` picks
        CUDA, then MPS, then CPU; `dtype="auto"` (or None) picks bf16 on CUDA GPUs that have it
        (fp16 on older ones) and on CPUs that multiply bf16 natively (AVX512-BF16 or AMX), fp32 on
        other CPUs and MPS; `dtype="fp32"` forces full precision. `engine.dtype_choice` says why.
        `memory_budget` (bytes, GiB as a float, or "8GB"; default: the device's free memory) bounds
        every generation's estimated peak: see `plan_memory`. `compile=True` compiles the DiT's
        blocks with torch.compile (inductor; or a backend name or callable) on first use: see
        `acestep_engine.runtime.compiling` and `engine.compilation`.
        """
        from .generation.memory import parse_budget
        from .runtime.compiling import check_compile_option

        budget = parse_budget(memory_budget)
        check_compile_option(compile)
        _check_dit_name(dit)
        flag_argument(allow_download, "allow_download", CheckpointError)
        device, dtype, dtype_choice = resolve_device_and_dtype(device, dtype)
        blank = checkpoints_dir is None or isinstance(checkpoints_dir, str) and checkpoints_dir == ""
        root = default_checkpoints_dir() if blank else \
            path_argument(checkpoints_dir, "checkpoints_dir", CheckpointError, kind="folder")
        with quiet_loading():
            if is_diffusers_layout(root):
                models = load_diffusers_format(root, device, dtype)
            else:
                ensure_checkpoints(root, dit=dit, allow_download=allow_download)
                models = load_official(root, dit, device, dtype)
        engine = cls(models, device, dtype, allow_download=allow_download, dtype_choice=dtype_choice)
        engine.memory_budget = budget
        engine.compile_dit(compile)
        if engine.is_demo:
            logging.getLogger(__name__).warning(DEMO_NOTICE)
        return engine

    @classmethod
    def demo(cls, device="auto", dtype="auto", variant: str = "turbo") -> "Engine":
        """The embedded demo checkpoint (written on first use, in the official layout)."""
        from .models.tiny_checkpoints import DIT_FOLDERS, demo_checkpoints_dir, write_tiny_checkpoints

        root = demo_checkpoints_dir()
        folder = DIT_FOLDERS[text_argument(variant, "variant", CheckpointError, choices=tuple(DIT_FOLDERS))]
        if not (root / folder / "model.safetensors").is_file() or not (root / "vae").is_dir():
            with quiet_loading():
                write_tiny_checkpoints(root, variant=variant, preset="demo", seed=1234)
        return cls.from_pretrained(root, dit=folder, device=device, dtype=dtype)

    def with_variant(self, dit: str, allow_download: bool | None = None) -> "Engine":
        """An engine for another DiT variant of the same checkpoints folder, sharing this one's VAE and
        text encoder (loaded once, kept for reuse). Downloads it only if allowed."""
        from .models.checkpoints import components_for
        from .models.loader import load_dit

        _check_dit_name(dit)
        if allow_download is not None:
            flag_argument(allow_download, "allow_download", CheckpointError)
        if dit == self.variant.name:
            return self
        if dit not in self._variants:
            root = Path(self.models.paths["checkpoints"])
            allow = self.allow_download if allow_download is None else allow_download
            missing = components_for(dit)[0].missing(root)
            if missing:
                ensure_checkpoints(root, dit=dit, allow_download=allow)
            with quiet_loading():
                cfg, modules, silence, fingerprint = load_dit(root / dit, self.device, self.dtype)
            from dataclasses import replace as dc_replace

            from .models.variants import resolve_variant

            models = dc_replace(self.models, transformer=modules["transformer"],
                                condition_encoder=modules["condition_encoder"],
                                audio_tokenizer=modules["audio_tokenizer"], detokenizer=modules["detokenizer"],
                                silence_latent=silence, config=cfg, variant=resolve_variant(dit, cfg),
                                fingerprint=fingerprint, paths=dict(self.models.paths, dit=str(root / dit)))
            from .models.loader import make_parkable
            from .models.variants import TEXT_ENCODER_DIR

            make_parkable(models, root / TEXT_ENCODER_DIR, self.dtype)
            self._variants[dit] = Engine(models, self.device, self.dtype, self.allow_download, self.dtype_choice)
            self._variants[dit].memory_budget = self.memory_budget
            self._variants[dit].compile_dit(self._compile_option)
        return self._variants[dit]

    def compile_dit(self, compile=True) -> None:
        """Compile the DiT's blocks with torch.compile (see `acestep_engine.runtime.compiling`); the graphs
        are built by the next generation and reused by every later one. False does nothing."""
        from .runtime.compiling import compile_transformer

        if compile is False or compile is None or self.compilation is not None:
            return
        with self._lock:
            compile_transformer(self.models.transformer, compile)
            self._compile_option = compile

    @property
    def compilation(self):
        """`DitCompilation` (backend, graphs compiled, seconds spent compiling, error) or None."""
        return getattr(self.models.transformer, "acestep_compilation", None)

    # ------------------------------------------------------------------ facts from the configs
    @property
    def facts(self) -> ModelFacts:
        """What tasks plan with (rate, hop, channels, silence, encode); they never see the engine."""
        return ModelFacts(self.models, self.device, self.dtype)

    variant = _from_facts("variant", "The loaded DiT variant (name, turbo, tasks, sampling preset).")
    sample_rate = _from_facts("sample_rate", "Audio samples per second (48000 for the official VAE).")
    hop_length = _from_facts("hop_length", "Audio samples per latent frame (1920 for the official VAE).")
    frame_rate = _from_facts("frame_rate", "Latent frames per second (25 for the official VAE).")
    latent_channels = _from_facts("latent_channels", "Channels of a latent frame (64 for the official VAE).")

    @property
    def preset(self) -> SamplingPreset:
        return self.models.variant.preset

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.models.variant.tasks

    def can(self, task) -> bool:
        """Whether the loaded variant can run `task` (a task object or a task name)."""
        if isinstance(task, str):
            if task not in TASKS:
                return False
            task = TASKS[task]
        if not isinstance(task, Task) and not (isinstance(task, type) and issubclass(task, Task)):
            raise TaskError(f"task must be a task object or one of the names {', '.join(TASKS)} "
                            f"(got {type(task).__name__} {shown(task)})")
        return task.capability in self.tasks

    def check_capability(self, task) -> None:
        if not self.can(task):
            name = task if isinstance(task, str) else task.name
            needed = variant_for_task(TASKS[name].capability if name in TASKS else name)
            raise TaskError(f"the task {name} needs the {needed} checkpoint; {self.variant.name} can run: "
                            f"{', '.join(self.tasks)}. Load it with Engine.from_pretrained(..., dit='{needed}')")

    def frames_for(self, seconds: float) -> int:
        """Latent frames for a duration, as upstream: `round(seconds, 1) * rate // hop`."""
        return self.facts.frames_for(seconds)

    def silence(self, frames: int) -> torch.Tensor:
        """`[frames, C]` silence latents in the model dtype."""
        return self.facts.silence(frames)

    @property
    def attention(self) -> str:
        """The DiT's attention path (`acestep_engine.runtime.attention`): "sdpa", or "fp32-softmax" in
        fp16 on CUDA GPUs before Ampere, where SDPA's fp16 softmax overflows. Every take records it."""
        from .runtime.attention import SDPA

        return getattr(self.models.transformer, "acestep_attention", None) or SDPA

    def describe(self) -> dict:
        return {"variant": self.variant.name, "weights": self.models.fingerprint, "dtype": dtype_name(self.dtype),
                "dtype_choice": self.dtype_choice, "device": str(self.device), "attention": self.attention,
                "demo": self.is_demo, "checkpoints": self.models.paths.get("checkpoints"),
                "loras": self.loras(),
                **({"compile": self.compilation.backend} if self.compilation and self.compilation.active else {})}

    def __repr__(self) -> str:
        demo = ", demo (random weights)" if self.is_demo else ""
        return (f"Engine({self.variant.name}, {self.sample_rate} Hz, {self.latent_channels} latent channels, "
                f"{self.device}, {dtype_name(self.dtype)}{' (auto)' if self.dtype_choice.startswith('auto') else ''}"
                f"{'' if self.attention == 'sdpa' else ', attention ' + self.attention}"
                f"{', compiled' if self.compilation and self.compilation.active else ''}{demo})")

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
        path = path_argument(path, "path", LoRAError)  # the folder, or one of its two files
        if name is not None:
            text_argument(name, "name", LoRAError)
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
        if name is not None:
            text_argument(name, "name", LoRAError)
        with self._lock:
            self.adapters.unload(name)

    # ------------------------------------------------------------------ generation
    def settings(self, settings: GenerationSettings | None = None, **overrides) -> GenerationSettings:
        """This variant's preset with `overrides` applied (or `settings` with them), checked once."""
        check_setting_names(overrides)
        if settings is None:
            return GenerationSettings.build(self.variant, **overrides)
        if not isinstance(settings, GenerationSettings):
            raise TaskError(f"settings must be a GenerationSettings (got {type(settings).__name__})")
        if settings.turbo != self.variant.turbo:
            kind = "a turbo" if settings.turbo else "a base/sft"
            raise TaskError(f"settings were built for {kind} variant, but {self.variant.name} runs this task: "
                            "build them with GenerationSettings.build(engine.variant, ...)")
        return settings.replace(**overrides) if overrides else settings

    def sampler_settings(self, steps=None, shift=None, guidance=None, guidance_method=None,
                         guidance_interval=(0.0, 1.0), timesteps=None, method="ode",
                         solver="euler") -> GenerationSettings:
        """The variant's preset with any overrides applied (and checked); see `settings()`."""
        return self.settings(steps=steps, shift=shift, guidance=guidance, guidance_method=guidance_method,
                             guidance_interval=guidance_interval, timesteps=timesteps, method=method, solver=solver)

    @contextlib.contextmanager
    def exclusive(self, reason: str = "another job"):
        """Hold this engine's DiT alone for the block: waits for a running generation to finish,
        then refuses new ones (`GenerationError` naming `reason`) until the block ends. A compiled
        DiT runs eagerly inside the block: training and forward hooks need the plain modules."""
        eager = torch.compiler.set_stance("force_eager") if self.compilation else contextlib.nullcontext()
        with self._lock, eager:
            self._holder = reason
            try:
                yield self
            finally:
                self._holder = None

    def make_noise(self, seeds: list[int], frames: int) -> torch.Tensor:
        """Starting noise `[B, frames, C]` exactly as upstream draws it (see `pipeline.make_noise`)."""
        return pipeline.make_noise(self.facts, seeds, frames)

    @staticmethod
    def resolve_seeds(seeds, batch_size: int) -> list[int]:
        """None -> random seeds; an int -> seed, seed+1, ...; a list -> one seed per item."""
        return resolve_seeds(seeds, batch_size)

    def encode_audio(self, audio: np.ndarray) -> torch.Tensor:
        """Float32 audio `[2, samples]` at `sample_rate` -> latents `[samples // hop, C]` (tiled VAE, mean)."""
        return self.facts.encode_audio(audio)

    def generate(self, blueprint: Blueprint, task=None, batch_size: int = 1, seeds=None, progress=None,
                 cancel=None, *, settings: GenerationSettings | None = None, **overrides) -> list[Take]:
        """Generate `batch_size` takes (1-8) of `blueprint` with `task` (default `Text2Music()`).

        `seeds`: None (random, recorded), an int (seed, seed+1, ...) or one whole number per item.
        `progress`: a callable receiving `Progress` per denoising step and per decoded item, or
        True for a tqdm bar. `cancel`: a `threading.Event`; setting it stops between steps with
        `GenerationCancelled` and returns nothing. `settings` (a `GenerationSettings`) or the
        keyword overrides `steps`, `shift`, `guidance`, `guidance_method`, `guidance_interval`,
        `timesteps`, `method` ("ode"/"sde"), `solver` ("euler"/"heun"), `normalize` and
        `normalization_db` change the variant's preset (see `acestep_engine.generation.settings`; SDE noise is
        seeded from the item's seed, unlike upstream's global RNG). Audio is float32
        `[channels, samples]` at `sample_rate`, peak normalised to `normalization_db` dBFS unless
        `normalize=False` (repaint and extend keep the source's loudness). `ExtractAll` returns the
        takes of each track in turn. A task this variant cannot run loads the variant that can
        when the engine allows downloads, else it is refused naming the checkpoint to load.
        """
        # check: everything is refused before any work starts
        task = _check_task(task)
        if not isinstance(blueprint, Blueprint):
            raise TaskError(f"blueprint must be a Blueprint (got {type(blueprint).__name__})")
        blueprint = blueprint.validate()
        batch_size = check_batch_size(batch_size)
        seeds = resolve_seeds(seeds, batch_size)
        report = check_progress(progress)
        check_cancel(cancel)
        engine = self
        if not self.can(task) and self.allow_download:
            engine = self.with_variant(variant_for_task(task.capability))
        engine.check_capability(task)
        settings = engine.settings(settings, **overrides)
        return engine._run(blueprint, task, seeds, settings, report, cancel)

    def _run(self, blueprint, task, seeds, settings, report, cancel, only: int | None = None) -> list[Take]:
        if self._holder is not None:
            raise GenerationError(f"{self._holder} is using this engine's DiT: wait for it or stop it first")
        memory = self._memory_runner(blueprint, len(seeds), settings.guidance > 1.0)  # refuses before any work
        takes = []
        with self._lock:
            for part in task.parts():  # ExtractAll: one Extract per track; every other task: itself
                takes += pipeline.run(self.facts, part, blueprint, settings, seeds, report, cancel,
                                      self.describe(), memory=memory, only=only)
        return takes

    def render_many(self, jobs, store, *, progress=None, cancel=None, strict: bool = False, max_batch: int = MAX_BATCH,
                    name: str | None = None):
        """Render a plan (a `.jsonl`/`.csv` path, or a list of plan lines as dicts) into `store` (a
        `TakeStore` or folder), skipping the takes it has; returns the `RenderSummary`. Under
        `accelerate launch` each process renders its share. See `acestep_engine.render.render_many`."""
        from .render.runner import render_many

        return render_many(self, jobs, store, progress=progress, cancel=cancel, strict=strict,
                           max_batch=max_batch, name=name)

    def replay(self, take: Take, resolve_take=None, progress=None, cancel=None) -> Take:
        """Generate `take` again from its record: blueprint, task, settings and seed, in the batch it was
        made in (`take.sampling["batch_seeds"]`, decoding only this take), so the result equals it bit
        for bit on the same device, dtype and weights, in every dtype. Generating the seed alone
        differs from a batch item in bf16 and fp16 (batching changes float summation order). The
        replay costs the whole batch's denoising. `resolve_take(take_id)` finds a source take the task
        names (cover, repaint, ...). Refused when the weights, dtype or LoRAs are not the take's."""
        from .generation.tasks import task_from_dict

        if not isinstance(take, Take):
            raise TaskError(f"take must be a Take (got {type(take).__name__})")
        model = take.model or {}
        engine = self if model.get("variant", self.variant.name) == self.variant.name \
            else self.with_variant(model["variant"])
        made = {k: model.get(k) for k in ("weights", "dtype", "loras")}
        here = {k: engine.describe().get(k) for k in made}
        for key in made:
            if made[key] is not None and made[key] != here[key]:
                raise TaskError(f"take {take.id} was made with {key} {made[key]!r}, this engine has {here[key]!r}: "
                                "a replay needs the same weights, dtype and LoRAs")
        seeds = [int(s) for s in (take.sampling or {}).get("batch_seeds") or [take.seed]]
        index = int(take.batch_index) if len(seeds) > 1 else 0
        if not 0 <= index < len(seeds) or seeds[index] != take.seed:
            raise TaskError(f"take {take.id}: batch_index {take.batch_index} and seed {take.seed} do not match its "
                            f"batch_seeds {seeds}")
        check_cancel(cancel)
        task = task_from_dict(take.task, resolve_take=resolve_take).validate()
        settings = GenerationSettings.from_record(engine.variant, take.sampling)
        return engine._run(take.blueprint.validate(), task, seeds, settings, check_progress(progress), cancel,
                           only=index)[0]

    # ------------------------------------------------------------------ memory tiers
    def plan_memory(self, blueprint: Blueprint, batch_size: int = 1, memory_budget=None, planner=None,
                    device=None, guided: bool | None = None):
        """The memory plan (`acestep_engine.generation.memory.MemoryPlan`) for generating `batch_size` takes of
        `blueprint`: the first tier whose estimated peak fits `memory_budget` (bytes, GiB as a float,
        or "8GB"; default `engine.memory_budget`, else the device's free memory plus what this engine
        holds). `planner` adds its LM; `device` plans for another device (e.g. "cuda" from a CPU
        engine). Raises `InsufficientMemoryError` with the estimate, the budget and what would fit."""
        from .generation.memory import choose_plan, default_budget, parse_budget
        from .generation.settings import MAX_BATCH

        if not isinstance(blueprint, Blueprint):
            raise TaskError(f"blueprint must be a Blueprint (got {type(blueprint).__name__})")
        batch_size = check_batch_size(batch_size)
        device = self.device if device is None else torch.device(device)
        budget = parse_budget(memory_budget if memory_budget is not None else self.memory_budget)
        if budget is None:
            budget = default_budget(device, self.models) if device == self.device else default_budget(device)
        guided = self.preset.guidance > 1.0 if guided is None else bool(guided)
        frames = self.frames_for(blueprint.validate().duration)
        return choose_plan(self.models, device, frames, batch_size, guided, budget, lm=planner,
                           frame_rate=self.frame_rate, max_batch=MAX_BATCH)

    def _memory_runner(self, blueprint, batch_size, guided):
        from .generation.memory import PlanRunner

        planner = self.planner if self.planner is not None and self.planner.offload is not True else None
        plan = self.plan_memory(blueprint, batch_size, guided=guided, planner=planner)
        self.last_memory_plan = plan
        runner = PlanRunner(self.models, self.device, plan, planner=planner)
        runner.settle()
        return runner


def _check_dit_name(dit) -> str:
    """A DiT is a folder of the checkpoints folder: a plain folder name."""
    text_argument(dit, "dit", CheckpointError)
    if not _DIT_NAME_RE.fullmatch(dit):
        raise CheckpointError(f"dit must be the name of a DiT folder such as 'acestep-v15-turbo' (letters, digits, "
                              f"'.', '_' and '-', at most 128 characters; got {shown(dit)})")
    return dit


def _check_task(task):
    """A task object (default `Text2Music()`), validated; names and dicts are refused with a hint."""
    if task is None:
        return Text2Music()
    if isinstance(task, str):
        raise TaskError(f"task must be a task object such as Cover(source) or Text2Music(), not the string {task!r:.80}"
                        f" (one of {', '.join(TASKS)}; acestep_engine.generation.tasks.task_from_dict rebuilds a recorded one)")
    if not isinstance(task, Task):
        raise TaskError(f"task must be a task object such as Cover(source) or Text2Music() (got {task!r:.80})")
    return task.validate()
