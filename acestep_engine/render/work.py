"""From checked plan lines to the work of a render: stable keys, batches and their share per process.

A job's id is a hash of what makes its takes: the blueprint, the task (a source by take id or by its
file's content), the settings as built for its variant, the variant's weights and the LoRA adapters
(by content) with their scales. A take's key is the job id with the seed. Lines with the same job id
are one job; a key already in the store is skipped, so a rerun makes exactly the missing takes.

Takes of one job (same blueprint, task and settings) render together, up to `max_batch` seeds per
`Engine.generate` call (one forward per step for the whole batch). The batches are shared between
processes before any rendering, largest first to the least loaded process, so every process gets
the same share from the same list and no take is given to two of them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AceStepError
from ..generation.settings import MAX_BATCH, GenerationSettings
from ..models.variants import resolve_variant
from .board import read_json_or_empty
from .plan import PlanProblem, RenderJob, TakeRef, json_friendly

KEY_CHARS = 24


@dataclass
class JobWork:
    """One job, resolved against an engine: the variant that runs it, its settings, its keys per seed."""

    job: RenderJob  # the first line that asked for it (its label and line number)
    job_id: str
    variant: str
    settings: GenerationSettings
    loras: tuple[tuple[Path, float], ...]
    keys: dict[int, str] = field(default_factory=dict)  # seed -> take key, in plan order
    lines: list[int] = field(default_factory=list)

    @property
    def cost(self) -> float:
        """Relative time of one take: seconds of audio x (DiT calls per step x steps + decoding)."""
        calls = (2 if self.settings.guidance > 1.0 else 1) * (2 if self.settings.solver == "heun" else 1)
        return self.job.blueprint.duration * (calls * self.settings.steps + 4)

    def describe(self) -> dict:
        return {"job": self.job_id, "lines": list(self.lines), **self.job.describe(), "variant": self.variant,
                "seeds": list(self.keys)}


@dataclass(frozen=True)
class Batch:
    """Seeds of one job rendered by one `Engine.generate` call."""

    work: JobWork
    seeds: tuple[int, ...]

    @property
    def keys(self) -> list[str]:
        return [self.work.keys[s] for s in self.seeds]

    @property
    def cost(self) -> float:
        return self.work.cost * len(self.seeds)


def resolve_jobs(jobs: list[RenderJob], engine, store, where: str = "line") -> tuple[list[JobWork], list[PlanProblem]]:
    """Check each job against `engine` (variant on disk, settings for that variant, sources in the
    store) and give it its id and keys; jobs that come out identical become one."""
    works: dict[str, JobWork] = {}
    problems = []
    hashes: dict[Path, str] = {}
    for job in jobs:
        try:
            work = _resolve(job, engine, store, hashes)
        except AceStepError as exc:
            problems.append(PlanProblem(job.line, getattr(exc, "field", "line"), str(exc), where))
            continue
        if work.job_id in works:
            known = works[work.job_id]
            known.keys.update({s: k for s, k in work.keys.items() if s not in known.keys})
            if job.line not in known.lines:
                known.lines.append(job.line)
        else:
            works[work.job_id] = work
    return list(works.values()), problems


def _resolve(job: RenderJob, engine, store, hashes: dict) -> JobWork:
    from ..models.loader import weights_fingerprint

    variant_name = job.variant or engine.variant.name
    if variant_name == engine.variant.name:
        variant, weights, active = engine.variant, engine.models.fingerprint, engine.loras()
    else:
        folder = Path(engine.models.paths.get("checkpoints") or ".") / variant_name
        if (folder / "model.safetensors").is_file():
            config = read_json_or_empty(folder / "config.json")
            variant, weights, active = resolve_variant(variant_name, config), weights_fingerprint(
                folder / "model.safetensors"), []
        elif engine.allow_download:
            other = engine.with_variant(variant_name)
            variant, weights, active = other.variant, other.models.fingerprint, other.loras()
        else:
            raise _Problem("variant", f"variant {variant_name} is not in {folder.parent}: download it with "
                                      f"`acestep download --dit {variant_name}` (or allow downloads)")
    if job.task.capability not in variant.tasks:
        raise _Problem("variant", f"the task {job.task.name} cannot run on {variant_name}, which can run: "
                                  f"{', '.join(variant.tasks)}")
    try:
        settings = GenerationSettings.build(variant, **job.settings)
    except AceStepError as exc:
        raise _Problem(str(exc).split(" ", 1)[0], str(exc)) from None
    task = json_friendly(job.task.to_dict())
    for key in ("source", "reference"):
        value = getattr(job.task, key, None)
        if isinstance(value, TakeRef) and value.take_id not in store:
            raise _Problem(key, f"{key}: no take {value.take_id} in {store.folder}")
        if isinstance(value, Path):
            if value not in hashes:
                hashes[value] = _file_sha256(value)
            task[key] = {"file": value.name, "sha256": hashes[value]}
    adapters = [[a["fingerprint"], a["scale"]] for a in active]
    adapters += [[_adapter_fingerprint(path), scale] for path, scale in job.loras]
    material = {"blueprint": job.blueprint.to_dict(), "task": task, "settings": settings.record(),
                "variant": variant_name, "weights": weights, "loras": adapters}
    job_id = _digest(material)
    keys = {seed: _digest({"job": job_id, "seed": seed}) for seed in job.seeds}
    return JobWork(job, job_id, variant_name, settings, job.loras, keys, [job.line])


class _Problem(AceStepError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _digest(material) -> str:
    text = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_CHARS]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise _Problem("source", f"source: {path} could not be read ({exc.strerror or exc})") from None
    return digest.hexdigest()[:KEY_CHARS]


def _adapter_fingerprint(folder: Path) -> str:
    from ..lora.adapters import ADAPTER_WEIGHTS
    from ..models.loader import weights_fingerprint

    try:
        return weights_fingerprint(folder / ADAPTER_WEIGHTS)
    except (OSError, ValueError) as exc:
        raise _Problem("lora", f"lora: {folder / ADAPTER_WEIGHTS} could not be read ({exc})") from None


# --------------------------------------------------------------------------------- batches and shares

def batches(works: list[JobWork], pending: set[str], max_batch: int = MAX_BATCH) -> list[Batch]:
    """The pending takes of each job in plan order, `max_batch` seeds at most per batch (checked by the caller)."""
    out = []
    for work in works:
        seeds = [seed for seed, key in work.keys.items() if key in pending]
        out += [Batch(work, tuple(seeds[i:i + max_batch])) for i in range(0, len(seeds), max_batch)]
    return out


def share(items: list[Batch], processes: int) -> list[list[Batch]]:
    """Each process's batches: the costliest batch first to the least loaded process (ties: the
    lower index), then each share in plan order grouped by variant and LoRA so adapters load once."""
    loads = [0.0] * processes
    shares: list[list[int]] = [[] for _ in range(processes)]
    order = sorted(range(len(items)), key=lambda i: (-items[i].cost, i))
    for i in order:
        target = min(range(processes), key=lambda p: (loads[p], p))
        loads[target] += items[i].cost
        shares[target].append(i)
    return [[items[i] for i in sorted(mine, key=lambda i: (_setup(items[i]), i))] for mine in shares]


def _setup(batch: Batch) -> tuple:
    return batch.work.variant, tuple((str(p), s) for p, s in batch.work.loras)
