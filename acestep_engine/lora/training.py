"""LoRA training on cached songs: a short, plain loop under accelerate.

    dataset = prepare_dataset(engine, "songs/", "songs/.lora-cache")
    result = train(engine, dataset, "loras/my-style", LoRAConfig(rank=64, alpha=128), TrainingConfig(steps=1000))
    engine.load_lora(result.adapter_path, scale=0.8)

Objectives (reference 7), with flow matching `x_t = t * noise + (1 - t) * x0` and the target
velocity `noise - x0`:
- "turbo": `t` uniform over the 8 turbo timesteps (shift 3), no condition dropout, as upstream's
  trainer for the distilled model;
- "base": logit-normal `t = sigmoid(N(mu, sigma))` (the checkpoint's timestep_mu/sigma, -0.4 and
  1.0 officially) and condition dropout: with probability `cfg_dropout` a song's whole encoder
  sequence is replaced by the null condition embedding, so classifier-free guidance keeps working;
- "auto": turbo for turbo checkpoints, base otherwise.

The loop is plain: AdamW, linear warm-up then cosine decay, gradient accumulation, gradient
clipping, bf16 autocast on CUDA, a checkpoint every `save_every` steps in
`output_dir/checkpoints/step-N/` (the adapter, the optimizer state as safetensors and the
position in the data as JSON; no pickles). Every random draw is seeded by the position in the
run, so a run resumed from a checkpoint continues exactly as the uninterrupted run would have.
Under `accelerate launch` each process loads the engine on its own device
(`accelerate.PartialState().device`) and the same code trains data-parallel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from ..errors import LoRAError
from ..generation.schedules import turbo_schedule
from ..json_files import read_json
from .adapters import (ADAPTER_WEIGHTS, TRAINING_ADAPTER, LoRAConfig, activate, adapter_state, assign_state,
                       check_number as _number, check_targets, inject, read_adapter, remove, save_adapter)
from .dataset import LoRADataset, LoRAProgress, collate

OBJECTIVES = ("auto", "turbo", "base")
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
TURBO_TRAINING_TIMES = tuple(turbo_schedule(3.0)[:-1])  # 1.0, 0.9545, 0.9, 0.8333, 0.75, 0.6429, 0.5, 0.3
MIN_LR_RATIO = 0.01  # the cosine decays to 1 % of the peak rate
CHECKPOINTS = "checkpoints"
FINAL_ADAPTER = "adapter"
_STEP_RE = re.compile(r"^step-(\d+)$")


@dataclass
class TrainingConfig:
    """Knobs of a training run. Steps count optimizer updates (each of `batch_size` x `grad_accum` songs).

    lr: peak learning rate, (0, 1]. steps: updates to run (1-1,000,000), unless `epochs` is set,
    which then decides the count (passes over the songs). warmup: updates of linear warm-up
    (0-steps). save_every: updates between checkpoints (0: only at the end). keep_checkpoints:
    how many recent checkpoints to keep (0: all). objective: "auto", "turbo" or "base".
    cfg_dropout: condition dropout of the base objective, [0, 1]. mixed_precision: "auto" (bf16
    autocast on CUDA when the engine runs bf16, fp16 with loss scaling when it runs fp16, none
    elsewhere), "no", "bf16" or "fp16". gradient_checkpointing saves activation memory on long songs.
    """

    lr: float = 3e-4
    steps: int = 1000
    epochs: int | None = None
    batch_size: int = 1
    grad_accum: int = 1
    warmup: int = 100
    save_every: int = 100
    keep_checkpoints: int = 3
    objective: str = "auto"
    cfg_dropout: float = 0.15
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 42
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = False

    def validate(self) -> "TrainingConfig":
        checked = TrainingConfig(
            lr=_number("lr", self.lr, 0.0, 1.0, lo_open=True),
            steps=_number("steps", self.steps, 1, 1_000_000, integer=True),
            epochs=None if self.epochs is None else _number("epochs", self.epochs, 1, 100_000, integer=True),
            batch_size=_number("batch_size", self.batch_size, 1, 64, integer=True),
            grad_accum=_number("grad_accum", self.grad_accum, 1, 1024, integer=True),
            warmup=_number("warmup", self.warmup, 0, 1_000_000, integer=True),
            save_every=_number("save_every", self.save_every, 0, 1_000_000, integer=True),
            keep_checkpoints=_number("keep_checkpoints", self.keep_checkpoints, 0, 10_000, integer=True),
            objective=self.objective, cfg_dropout=_number("cfg_dropout", self.cfg_dropout, 0.0, 1.0),
            weight_decay=_number("weight_decay", self.weight_decay, 0.0, 10.0),
            max_grad_norm=_number("max_grad_norm", self.max_grad_norm, 0.0, 1e6),
            seed=_number("seed", self.seed, 0, 2 ** 63 - 1, integer=True),
            mixed_precision=self.mixed_precision, gradient_checkpointing=self.gradient_checkpointing)
        if checked.objective not in OBJECTIVES:
            raise LoRAError(f"objective must be one of {', '.join(map(repr, OBJECTIVES))} (got {self.objective!r:.80})")
        if checked.mixed_precision not in MIXED_PRECISION:
            raise LoRAError(f"mixed_precision must be one of {', '.join(map(repr, MIXED_PRECISION))} "
                            f"(got {self.mixed_precision!r:.80})")
        if not isinstance(checked.gradient_checkpointing, bool):
            raise LoRAError(f"gradient_checkpointing must be True or False (got {self.gradient_checkpointing!r:.80})")
        if checked.epochs is None and checked.warmup > checked.steps:
            raise LoRAError(f"warmup must be between 0 and steps ({checked.steps}) (got {checked.warmup})")
        return checked

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainingResult:
    """What a run produced. `losses[i]` and `lrs[i]` belong to update i + 1 (resumed runs include
    the updates before the checkpoint)."""

    adapter_path: Path
    output_dir: Path
    step: int
    steps: int
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    stopped: bool = False
    resumed_from: int | None = None
    seconds: float = 0.0
    checkpoint: Path | None = None

    @property
    def final_loss(self) -> float | None:
        return self.losses[-1] if self.losses else None


def resolve_objective(objective: str, engine) -> str:
    if objective not in OBJECTIVES:
        raise LoRAError(f"objective must be one of {', '.join(map(repr, OBJECTIVES))} (got {objective!r:.80})")
    if objective == "auto":
        return "turbo" if engine.variant.turbo else "base"
    return objective


def learning_rate(step: int, steps: int, warmup: int, peak: float) -> float:
    """Rate of update `step` (0-based): linear warm-up to `peak`, then cosine down to 1 % of it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    floor = peak * MIN_LR_RATIO
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


# --------------------------------------------------------------------------- the objective

def _draw_seed(seed: int, micro: int, process: int) -> int:
    return (seed * 1_000_003 + micro * 7_919 + process * 104_729 + 1) % (2 ** 63)


def objective_loss(model, batch: dict, objective: str, generator: torch.Generator, null_states: torch.Tensor,
                   cfg_dropout: float = 0.0, mu: float = -0.4, sigma: float = 1.0) -> torch.Tensor:
    """Masked MSE between the predicted and the true velocity for one batch (a scalar, fp32).

    Noise, times and dropout are drawn on the CPU from `generator`, so they do not depend on
    the device. Times live in the model dtype, as at generation.
    """
    x0 = batch["target_latents"]
    dtype, device, items = x0.dtype, x0.device, x0.shape[0]
    noise = torch.randn(x0.shape, generator=generator).to(device=device, dtype=dtype)
    if objective == "turbo":
        times = torch.tensor(TURBO_TRAINING_TIMES)
        t = times[torch.randint(len(times), (items,), generator=generator)]
    else:
        t = torch.sigmoid(torch.randn(items, generator=generator) * sigma + mu)
    states = batch["encoder_hidden_states"]
    if objective == "base" and cfg_dropout > 0:
        drop = (torch.rand(items, generator=generator) < cfg_dropout).to(device)
        states = torch.where(drop[:, None, None], null_states.to(states).expand_as(states), states)
    t = t.to(device=device, dtype=dtype)
    noisy = t[:, None, None] * noise + (1 - t[:, None, None]) * x0
    velocity = model(hidden_states=noisy, timestep=t, timestep_r=t, encoder_hidden_states=states,
                     context_latents=batch["context_latents"], return_dict=False)[0]
    error = (velocity.float() - (noise - x0).float()).pow(2).mean(dim=-1)  # [B, T]
    mask = batch["loss_mask"].to(device=device, dtype=torch.float32)
    return (error * mask).sum() / mask.sum().clamp_min(1.0)


def _timestep_distribution(engine) -> tuple[float, float]:
    cfg = engine.models.config
    return float(cfg.get("timestep_mu", -0.4)), float(cfg.get("timestep_sigma", 1.0))


def _to(batch: dict, engine) -> dict:
    out = {}
    for key, value in batch.items():
        dtype = engine.dtype if value.is_floating_point() and key != "loss_mask" else None
        out[key] = value.to(device=engine.device, dtype=dtype)
    return out


@torch.no_grad()
def evaluate(engine, dataset, objective: str = "auto", seed: int = 0, repeats: int = 4) -> float:
    """Mean objective loss over every song, `repeats` fixed draws each, with the engine's current
    adapters (no condition dropout): a validation number that is comparable between adapters."""
    dataset = LoRADataset.load(dataset) if isinstance(dataset, (str, Path)) else dataset
    dataset.check_engine(engine)
    objective = resolve_objective(objective, engine)
    mu, sigma = _timestep_distribution(engine)
    null = engine.models.condition_encoder.null_condition_emb
    silence = engine.silence(max(s.frames for s in dataset.songs)).cpu()
    total = 0.0
    with engine.exclusive("a LoRA evaluation"):
        for i in range(len(dataset)):
            batch = _to(collate([dataset[i]], silence), engine)
            for r in range(repeats):
                generator = torch.Generator().manual_seed(_draw_seed(seed, i * 1000 + r, 0))
                loss = objective_loss(engine.models.transformer, batch, objective, generator, null, 0.0, mu, sigma)
                total += float(loss)
    return total / (len(dataset) * repeats)


# --------------------------------------------------------------------------- data order

class EpochOrder(torch.utils.data.Sampler):
    """A fresh permutation per epoch, a function of (seed, epoch) only, so resuming mid-run
    replays the same order."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed((self.seed * 7_919 + self.epoch) % (2 ** 63))
        return iter(torch.randperm(self.size, generator=generator).tolist())


# --------------------------------------------------------------------------- checkpoints

def latest_checkpoint(output_dir) -> Path | None:
    folder = Path(output_dir) / CHECKPOINTS
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir()
             if (m := _STEP_RE.match(p.name)) and (p / "trainer_state.json").is_file()]
    return max(found)[1] if found else None


def _save_checkpoint(folder: Path, transformer, lora: LoRAConfig, base_model: str, names: list[str], optimizer,
                     state: dict, keep: int) -> Path:
    from safetensors.torch import save_file

    tmp = folder.parent / f".tmp-{folder.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_adapter(tmp, adapter_state(transformer, TRAINING_ADAPTER), lora, base_model,
                 {"step": state["step"], "objective": state["objective"]})
    optimizer_state = optimizer.state_dict()
    tensors = {}
    for index, name in enumerate(names):
        for key, value in optimizer_state["state"].get(index, {}).items():
            if torch.is_tensor(value):
                tensors[f"{name}/{key}"] = value.detach().cpu().contiguous()
    save_file(tensors, str(tmp / "optimizer.safetensors"), metadata={"format": "pt"})
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items() if k != "params"}
              for g in optimizer_state["param_groups"]]
    text = json.dumps({**state, "param_groups": groups, "parameters": names}, indent=1)
    (tmp / "trainer_state.json").write_text(text)  # written last: a checkpoint exists once this does
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    if keep:
        older = sorted((int(m.group(1)), p) for p in folder.parent.iterdir() if (m := _STEP_RE.match(p.name)))
        for _, path in older[:-keep]:
            shutil.rmtree(path, ignore_errors=True)
    return folder


_STATE_FIELDS = {"step": int, "epoch": int, "batch_in_epoch": int, "micro": int, "losses": list, "lrs": list,
                 "lora": dict, "parameters": list, "param_groups": list, "objective": str}


def read_trainer_state(folder) -> dict:
    """A checkpoint's trainer_state.json, with the fields resuming needs checked for their JSON types."""
    path = Path(folder) / "trainer_state.json"
    state = read_json(path, LoRAError)
    for key, kind in _STATE_FIELDS.items():
        value = state.get(key)
        if key not in state:
            raise LoRAError(f"{path} lacks {key!r}: it is not a checkpoint this version wrote (pass resume=False)")
        if not isinstance(value, kind) or isinstance(value, bool):
            raise LoRAError(f"{path}: {key} must be {kind.__name__} (got {type(value).__name__} {value!r:.60})")
    if not all(isinstance(g, dict) for g in state["param_groups"]):
        raise LoRAError(f"{path}: param_groups must be a list of objects")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in state["losses"] + state["lrs"]):
        raise LoRAError(f"{path}: losses and lrs must be lists of numbers")
    try:
        LoRAConfig.from_dict(state["lora"]).validate()
    except (LoRAError, TypeError) as exc:
        raise LoRAError(f"{path}: lora is not a LoRA configuration ({exc})") from None
    return state


def _load_checkpoint(folder: Path, transformer, names: list[str], optimizer) -> dict:
    from safetensors.torch import load_file

    state = read_trainer_state(folder)
    if state.get("parameters") != names:
        raise LoRAError(f"{folder} holds optimizer state for other parameters: pass resume=False to start over")
    assign_state(transformer, TRAINING_ADAPTER, read_adapter(folder).state, folder / ADAPTER_WEIGHTS)
    tensors = load_file(str(folder / "optimizer.safetensors"))
    per_param: dict[int, dict] = {}
    for key, value in tensors.items():
        name, _, entry = key.rpartition("/")
        per_param.setdefault(names.index(name), {})[entry] = value
    groups = []
    for group in state["param_groups"]:
        group = dict(group, params=list(range(len(names))))
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    return state


# --------------------------------------------------------------------------- accelerate

def _mixed_precision(engine, requested: str) -> str:
    if requested == "auto":
        if engine.device.type != "cuda":
            return "no"
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(engine.dtype, "no")
    if requested != "no" and engine.device.type != "cuda":
        raise LoRAError(f"mixed_precision {requested!r} needs a CUDA device; this engine runs on {engine.device} "
                        f"(use 'auto' or 'no')")
    return requested


def make_accelerator(engine, training: TrainingConfig):
    """An Accelerator on the engine's device. In a single process, a state left by an earlier run
    with other settings is cleared first; under `accelerate launch` the launcher's state is kept."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import GradientAccumulationPlugin

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    accelerator = Accelerator(mixed_precision=_mixed_precision(engine, training.mixed_precision),
                              # An update is always grad_accum batches, across epoch ends too.
                              gradient_accumulation_plugin=GradientAccumulationPlugin(
                                  num_steps=training.grad_accum, sync_with_dataloader=False),
                              cpu=engine.device.type == "cpu", device_placement=False,
                              step_scheduler_with_optimizer=False)
    if accelerator.num_processes > 1 and accelerator.device != engine.device:
        raise LoRAError(f"this process trains on {accelerator.device} but the engine is on {engine.device}: "
                        "load it with Engine.from_pretrained(..., device=accelerate.PartialState().device)")
    return accelerator


@contextlib.contextmanager
def _training_adapter(engine, lora: LoRAConfig, seed: int):
    """The engine's DiT with a fresh training adapter, the only active one; restored afterwards
    (adapter removed, other adapters and their scales back, eval mode, accelerate's patches gone)."""
    transformer = engine.models.transformer
    held = engine.exclusive("a LoRA training run")  # a running generation finishes first; new ones are refused
    held.__enter__()
    before = set(transformer.__dict__)
    try:
        check_targets(transformer, lora)
        with torch.random.fork_rng(devices=[engine.device] if engine.device.type == "cuda" else []):
            torch.manual_seed(seed)
            inject(transformer, TRAINING_ADAPTER, lora.peft_config())
        activate(transformer, {TRAINING_ADAPTER: 1.0}, trainable=TRAINING_ADAPTER)
        yield transformer
    finally:
        for key in ("forward", "_original_forward", "_is_accelerate_prepared"):
            if key not in before:
                transformer.__dict__.pop(key, None)
        if getattr(transformer, "gradient_checkpointing", False):
            transformer.disable_gradient_checkpointing()
        remove(transformer, TRAINING_ADAPTER)
        engine.adapters.apply()
        transformer.eval()
        transformer.requires_grad_(False)
        held.__exit__(None, None, None)


# --------------------------------------------------------------------------- the loop

def train(engine, dataset, output_dir, lora: LoRAConfig | None = None, training: TrainingConfig | None = None,
          progress=None, cancel=None, resume: bool = True) -> TrainingResult:
    """Train a LoRA on `dataset` (a LoRADataset or its cache folder) and save it in `output_dir/adapter`.

    `progress(LoRAProgress)` is called after every update (stage "train", with loss and lr) and
    when saving. Setting `cancel` (a threading.Event) stops after the current update: the
    adapter and a checkpoint of that step are saved and the result has `stopped=True`.
    With `resume=True` a run continues from the newest checkpoint in `output_dir` (same LoRA
    shape, data and weights required); `resume=False` starts over and deletes old checkpoints.
    Generation on this engine is refused while training runs; afterwards the DiT is as before.
    """
    from torch.utils.data import DataLoader

    started = time.perf_counter()
    lora = (lora or LoRAConfig()).validate()
    training = (training or TrainingConfig()).validate()
    dataset = LoRADataset.load(dataset) if isinstance(dataset, (str, Path)) else dataset
    if len(dataset) == 0:
        raise LoRAError("the dataset holds no songs")
    dataset.check_engine(engine)
    objective = resolve_objective(training.objective, engine)
    output_dir = Path(output_dir)
    report = progress or (lambda p: None)
    mu, sigma = _timestep_distribution(engine)
    accelerator = make_accelerator(engine, training)
    main = accelerator.is_main_process

    order = EpochOrder(len(dataset), training.seed)
    silence = engine.silence(max(s.frames for s in dataset.songs)).cpu()
    loader = DataLoader(dataset, batch_size=training.batch_size, sampler=order, num_workers=0,
                        collate_fn=partial(collate, silence=silence))
    checkpoint = latest_checkpoint(output_dir) if resume else None

    with _training_adapter(engine, lora, training.seed) as transformer:
        if not resume and main:  # only once the settings have been accepted
            shutil.rmtree(output_dir / CHECKPOINTS, ignore_errors=True)
        accelerator.wait_for_everyone()
        named = [(n, p) for n, p in transformer.named_parameters() if p.requires_grad]
        names = [n for n, _ in named]
        params = [p for _, p in named]
        optimizer = torch.optim.AdamW(params, lr=training.lr, weight_decay=training.weight_decay)
        run = dict(step=0, epoch=0, batch_in_epoch=0, micro=0, losses=[], lrs=[])
        resumed_from = None
        if checkpoint is not None:
            saved = read_trainer_state(checkpoint)
            _check_resumable(checkpoint, saved, lora, dataset, engine, objective)
            saved = _load_checkpoint(checkpoint, transformer, names, optimizer)
            run = {k: saved[k] for k in run}
            resumed_from = run["step"]
        if training.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        transformer.train()
        model, optimizer, loader = accelerator.prepare(transformer, optimizer, loader)
        per_epoch = len(loader)
        steps = training.steps if training.epochs is None else math.ceil(training.epochs * per_epoch /
                                                                          training.grad_accum)
        if training.warmup > steps:
            raise LoRAError(f"warmup must be between 0 and steps ({steps}) (got {training.warmup})")
        null = engine.models.condition_encoder.null_condition_emb.detach()
        base_model = engine.variant.name

        def state_dict():
            return dict(run, objective=objective, lora=lora.to_dict(), training=training.to_dict(),
                        steps=steps, dataset=dataset.fingerprint, weights=engine.models.fingerprint)

        def save(step):
            if main:
                report(LoRAProgress("save", step, steps, f"saving checkpoint at step {step}"))
                _save_checkpoint(output_dir / CHECKPOINTS / f"step-{step}", accelerator.unwrap_model(model), lora,
                                 base_model, names, optimizer, state_dict(), training.keep_checkpoints)
            accelerator.wait_for_everyone()
            return output_dir / CHECKPOINTS / f"step-{step}"

        stopped = bool(cancel is not None and cancel.is_set())
        saved_at = resumed_from
        pending: list[torch.Tensor] = []
        devices = [engine.device] if engine.device.type == "cuda" else []
        while run["step"] < steps and not stopped:
            if run["batch_in_epoch"] >= per_epoch:
                run["epoch"], run["batch_in_epoch"] = run["epoch"] + 1, 0
            order.epoch = run["epoch"]
            batches = (accelerator.skip_first_batches(loader, run["batch_in_epoch"]) if run["batch_in_epoch"]
                       else loader)
            finished_epoch = False
            try:
                for batch in batches:
                    seed = _draw_seed(training.seed, run["micro"], accelerator.process_index)
                    with accelerator.accumulate(model), torch.random.fork_rng(devices=devices):
                        torch.manual_seed(seed)  # LoRA dropout
                        generator = torch.Generator().manual_seed(seed)
                        loss = objective_loss(model, _to(batch, engine), objective, generator, null,
                                              training.cfg_dropout, mu, sigma)
                        accelerator.backward(loss)
                        if accelerator.sync_gradients:
                            lr = learning_rate(run["step"], steps, training.warmup, training.lr)
                            for group in optimizer.param_groups:
                                group["lr"] = lr
                            if training.max_grad_norm > 0:
                                accelerator.clip_grad_norm_(params, training.max_grad_norm)
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                    pending.append(loss.detach())
                    run["micro"] += 1
                    run["batch_in_epoch"] += 1
                    if not accelerator.sync_gradients:
                        continue
                    run["step"] += 1
                    value = float(accelerator.reduce(torch.stack(pending).mean(), reduction="mean"))
                    pending = []
                    if not math.isfinite(value):
                        raise LoRAError(
                            f"the training loss became {value} at step {run['step']} of {steps}: training diverged "
                            f"(lr {lr:.2e}; the songs were checked finite when prepared). Lower lr, raise warmup or "
                            f"use mixed_precision='no'; the last good checkpoint is kept in {output_dir / CHECKPOINTS}")
                    run["losses"].append(value)
                    run["lrs"].append(lr)
                    if run["batch_in_epoch"] >= per_epoch:
                        run["epoch"], run["batch_in_epoch"] = run["epoch"] + 1, 0
                    if main:
                        report(LoRAProgress("train", run["step"], steps,
                                            f"step {run['step']}/{steps}  loss {value:.4f}  lr {lr:.2e}", value, lr))
                    if training.save_every and run["step"] % training.save_every == 0 and run["step"] < steps:
                        save(run["step"])
                        saved_at = run["step"]
                    if run["step"] >= steps:
                        break
                    if cancel is not None and cancel.is_set():
                        stopped = True
                        break
                else:
                    finished_epoch = True
            finally:
                if not finished_epoch and hasattr(batches, "end"):
                    with contextlib.suppress(Exception):
                        batches.end()  # leave accelerate's record of the active dataloader clean

        last = save(run["step"]) if saved_at != run["step"] else output_dir / CHECKPOINTS / f"step-{run['step']}"
        adapter_path = output_dir / FINAL_ADAPTER
        if main:
            report(LoRAProgress("save", run["step"], steps, f"saving the adapter to {adapter_path}"))
            info = {"step": run["step"], "steps": steps, "stopped": stopped, "objective": objective,
                    "base_model": base_model, "weights": engine.models.fingerprint, "songs": len(dataset),
                    "final_loss": run["losses"][-1] if run["losses"] else None}
            tmp = output_dir / f".tmp-{FINAL_ADAPTER}"
            shutil.rmtree(tmp, ignore_errors=True)
            save_adapter(tmp, adapter_state(accelerator.unwrap_model(model), TRAINING_ADAPTER), lora, base_model,
                         info)
            shutil.rmtree(adapter_path, ignore_errors=True)
            os.replace(tmp, adapter_path)
            (output_dir / "training.json").write_text(json.dumps(
                {**info, "lora": lora.to_dict(), "training": training.to_dict(), "losses": run["losses"],
                 "lrs": run["lrs"]}, indent=1))
        accelerator.wait_for_everyone()
        accelerator.free_memory()
    result = TrainingResult(adapter_path, output_dir, run["step"], steps, run["losses"], run["lrs"], stopped,
                            resumed_from, time.perf_counter() - started, last)
    if main:
        word = "stopped" if stopped else "done"
        report(LoRAProgress("done", run["step"], steps, f"{word} at step {run['step']}/{steps}: {adapter_path}",
                            result.final_loss))
    return result


def _check_resumable(folder: Path, saved: dict, lora: LoRAConfig, dataset, engine, objective: str) -> None:
    hint = "pass resume=False to start over, or another output_dir"
    if LoRAConfig.from_dict(saved["lora"]).validate() != lora:
        raise LoRAError(f"{folder} was trained with LoRA {saved['lora']}, not {lora.to_dict()}: {hint}")
    if saved.get("dataset") != dataset.fingerprint:
        raise LoRAError(f"{folder} was trained on other songs than {dataset.cache_dir}: {hint}")
    if saved.get("weights") != engine.models.fingerprint:
        raise LoRAError(f"{folder} was trained on other DiT weights ({saved.get('weights')}) than this engine's "
                        f"({engine.models.fingerprint}): {hint}")
    if saved.get("objective") != objective:
        raise LoRAError(f"{folder} was trained with the {saved.get('objective')} objective, not {objective}: {hint}")
