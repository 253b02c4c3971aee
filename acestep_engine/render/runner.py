"""Render a plan into a take store: in one process, or in each of the processes `accelerate launch`
(or `accelerate.notebook_launcher`) starts, all writing into the same store.

    summary = render_many(engine, "plan.jsonl", "takes/")     # or engine.render_many(...)

In order: read and check the plan (bad lines are reported and left out; `strict` refuses them
all), resolve each job against the engine (keys, settings for its variant, sources), find the keys
the store has already, share the missing takes' batches between the processes, render each batch
with one `Engine.generate` call and save its takes (each records its key, job and line in
`take.notes["render"]`), then write the summary beside the store. The main process reads the store
and says which run this is; the others receive both, so every process shares the same list.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from ..errors import AceStepError, GenerationCancelled, PlanError, TakeStoreError
from ..generation.settings import MAX_BATCH, check_cancel
from ..takes import TakeStore
from .board import ProgressBoard, RenderBar, read_json_or_empty, write_json
from .plan import RenderPlan, TakeRef, load_plan, plan_from_records
from .summary import RENDERS_FOLDER, RenderSummary, TakeOutcome
from .work import Batch, JobWork, batches, resolve_jobs, share

log = logging.getLogger("acestep_engine.render")
WAIT_NOTE_EVERY_S = 60.0


@dataclass(frozen=True)
class Processes:
    """This process's place among the processes of one render: accelerate's when it started several
    (`WORLD_SIZE` > 1), else just this one."""

    index: int = 0
    count: int = 1

    @classmethod
    def current(cls) -> "Processes":
        try:
            size = int(os.environ.get("WORLD_SIZE", "1"))
        except ValueError:
            size = 1
        if size <= 1:
            return cls()
        from accelerate import PartialState

        # Without a GPU (or other accelerator) accelerate joins the processes over gloo only when told `cpu`.
        state = PartialState(cpu=_no_accelerator())
        if state.num_processes != size:
            raise PlanError([], "processes", f"WORLD_SIZE is {size} but accelerate joined {state.num_processes} "
                                            "process(es): each would render every take")
        return cls(state.process_index, state.num_processes)

    @property
    def main(self) -> bool:
        return self.index == 0

    def broadcast(self, value):
        """The main process's `value`, in every process."""
        if self.count == 1:
            return value
        from accelerate.utils import broadcast_object_list

        box = [value]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def __str__(self) -> str:
        return f"[{self.index + 1}/{self.count}] " if self.count > 1 else ""


def _no_accelerator() -> bool:
    try:
        from accelerate.utils import get_torch_accelerator_backend
    except ImportError:  # accelerate before 1.12
        import torch

        return not torch.cuda.is_available()
    return get_torch_accelerator_backend()[0] is None


def as_plan(jobs, store: TakeStore, variant: str, name: str | None = None) -> RenderPlan:
    """A plan file path, a `RenderPlan`, or a list of plan lines (dicts) or `RenderJob`s."""
    if isinstance(jobs, RenderPlan):
        return jobs if name is None else replace(jobs, name=name)
    if isinstance(jobs, (str, os.PathLike)):
        return load_plan(jobs, store, variant, name)
    return plan_from_records(jobs, store, variant, name=name or "render")


def rendered_keys(store: TakeStore) -> dict[str, str]:
    """Key -> take id of every take in the store that a render made."""
    out = {}
    for record in store.list():
        mark = (record.get("notes") or {}).get("render")
        if isinstance(mark, dict) and isinstance(mark.get("key"), str):
            out.setdefault(mark["key"], record["id"])
    return out


def render_many(engine, jobs, store, *, progress=None, cancel=None, strict: bool = False,
                max_batch: int = MAX_BATCH, name: str | None = None) -> RenderSummary:
    """Render every job of a plan into `store`, skipping takes it has; returns the `RenderSummary`.

    `jobs`: a `.jsonl`/`.csv` plan path, a `RenderPlan`, or a list of plan lines as dicts. `store`: a
    `TakeStore` or a folder. Bad lines are reported in `summary.problems` and the rest render;
    `strict=True` raises `PlanError` naming every bad line before anything renders. `max_batch`
    (1-8) bounds the seeds of one job rendered together (fewer where the memory plan would have to
    offload more). `progress`: True for a bar, or a callable taking a `RenderProgress`. `cancel`: a
    `threading.Event`; setting it stops after the current denoising step (the store keeps every
    take saved so far, and a rerun makes the rest). `name` (default: the plan's file name) names
    the summary `<store>/.renders/<name>.json`. Under `accelerate launch` each process renders its
    share, and the main process's summary covers them all.
    """
    store = store if isinstance(store, TakeStore) else TakeStore(store)
    check_cancel(cancel)
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or not 1 <= max_batch <= MAX_BATCH:
        raise PlanError([], "max_batch", f"max_batch must be between 1 and {MAX_BATCH} (got {max_batch!r})")
    if progress is not None and progress is not False and progress is not True and not callable(progress):
        raise PlanError([], "progress", f"progress must be None, True or a callable taking a RenderProgress "
                                        f"(got {progress!r})")
    plan = as_plan(jobs, store, engine.variant.name, name)
    if strict:
        plan.check()
    where = "job" if plan.source == "jobs" else "line"
    works, problems = resolve_jobs(plan.jobs, engine, store, where)
    problems = sorted(plan.problems + problems, key=lambda p: p.line)
    if strict and problems:
        raise PlanError(problems, plan.source)
    bar = RenderBar(plan.name) if progress is True else None
    run = _Run(engine, store, plan, works, problems, Processes.current(), bar or progress or None, cancel, max_batch)
    try:
        return run.go()
    finally:
        if bar is not None:
            bar.close()


class _Run:
    """One render in this process: its share of the batches, their outcomes, the summary."""

    def __init__(self, engine, store, plan, works, problems, processes, report, cancel, max_batch):
        self.engine, self.store, self.plan, self.works, self.problems = engine, store, plan, works, problems
        self.processes, self.report, self.cancel, self.max_batch = processes, report, cancel, max_batch
        self.folder = Path(store.folder) / RENDERS_FOLDER
        self.outcomes: dict[str, TakeOutcome] = {}
        self.loaded: tuple | None = None  # (engine, adapter names, what they are) loaded for the current batches
        self.sources: dict[str, object] = {}

    def go(self) -> RenderSummary:
        processes = self.processes
        with _render_lock(self.folder, self.plan.name, processes.main, self.store):
            started = time.perf_counter()
            stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
            if processes.main:
                self._clear_old_runs()
            run_id, done = processes.broadcast(
                (secrets.token_hex(4), rendered_keys(self.store)) if processes.main else None)
            run_folder = self.folder / f"{self.plan.name}.run-{run_id}"
            if processes.count > 1:
                run_folder.mkdir(parents=True, exist_ok=True)
            keys = [key for work in self.works for key in work.keys.values()]
            pending = {key for key in keys if key not in done}
            mine = share(batches(self.works, pending, self.max_batch), processes.count)[processes.index]
            board = ProgressBoard(run_folder if processes.count > 1 else None, processes.index, processes.count,
                                  len(keys), len(keys) - len(pending), self.report, started)
            if processes.main and self.works:
                log.info("%s%s: %d takes, %d in the store already, %d to render in %d batches by %d process%s",
                         processes, self.plan.name, len(keys), len(keys) - len(pending), len(pending),
                         len(batches(self.works, pending, self.max_batch)),
                         processes.count, "es" if processes.count > 1 else "")
            interrupted = None
            try:
                self._render(mine, board)
            except KeyboardInterrupt as exc:
                interrupted = exc
            finally:
                self._unload()
                board.close()
            stopped = interrupted is not None or bool(self.cancel is not None and self.cancel.is_set())
            for batch in mine:
                for key, seed in zip(batch.keys, batch.seeds):
                    if key not in self.outcomes:
                        self.outcomes[key] = TakeOutcome(key, batch.work.job_id, seed, "not started",
                                                         process=processes.index)
            summary = self._summary(done, run_folder, started, stamp, stopped)
            if interrupted is not None:
                raise interrupted
            return summary

    # ------------------------------------------------------------------ rendering
    def _render(self, mine: list[Batch], board: ProgressBoard) -> None:
        for batch in mine:
            if self.cancel is not None and self.cancel.is_set():
                return
            made = rendered_keys(self.store)  # another render into this store may have made some meanwhile
            seeds = []
            for seed, key in zip(batch.seeds, batch.keys):
                if key in made:
                    self.outcomes[key] = TakeOutcome(key, batch.work.job_id, seed, "skipped", made[key],
                                                     process=self.processes.index)
                    board.update(skipped=1)
                else:
                    seeds.append(seed)
            if not seeds:
                continue
            try:
                engine = self._engine_for(batch.work)
                task = self._task_for(batch.work)
            except Exception as exc:  # an adapter or source that cannot load fails its batch, not the render
                self._failed(batch.work, seeds, exc, board, 0.0)
                continue
            for part in _fitting(engine, batch.work, seeds):
                if not self._generate(engine, batch.work, task, part, board):
                    return

    def _generate(self, engine, work: JobWork, task, seeds: list[int], board: ProgressBoard) -> bool:
        """Render and save one batch; False when the render was cancelled during it."""
        job = work.job
        board.update(running=0.0, message=f"line {job.line} {job.label} seeds {_seeds_text(seeds)}")
        started = time.perf_counter()

        def on_step(p):
            board.update(running=p.fraction * len(seeds))

        try:
            takes = engine.generate(job.blueprint, task, batch_size=len(seeds), seeds=seeds, settings=work.settings,
                                    progress=on_step, cancel=self.cancel)
        except GenerationCancelled:
            return False
        except Exception as exc:
            if len(seeds) > 1 and _out_of_memory(exc):
                half = len(seeds) // 2
                log.info("%sline %d: out of memory with %d takes at once; trying %d", self.processes, job.line,
                         len(seeds), half)
                return (self._generate(engine, work, task, seeds[:half], board)
                        and self._generate(engine, work, task, seeds[half:], board))
            self._failed(work, seeds, exc, board, time.perf_counter() - started)
            return True
        seconds = time.perf_counter() - started
        saved = []
        for seed, take in zip(seeds, takes):
            key = work.keys[seed]
            take.notes["render"] = {"key": key, "job": work.job_id, "line": job.line, "label": job.label,
                                    "render": self.plan.name, "process": self.processes.index,
                                    "processes": self.processes.count}
            if job.name:
                take.name = f"{job.name} (seed {seed})"
            try:
                self.store.save(take)
            except Exception as exc:
                self._failed(work, [seed], exc, board, seconds)
                continue
            saved.append(take.id)
            self.outcomes[key] = TakeOutcome(key, work.job_id, seed, "rendered", take.id,
                                             process=self.processes.index, seconds=round(seconds, 3))
            board.update(rendered=1, running=max(0.0, len(seeds) - len(saved)), force=True)
        log.info("%sline %d (%s) seeds %s: %d take%s in %.1f s", self.processes, job.line, job.label,
                 _seeds_text(seeds), len(saved), "" if len(saved) == 1 else "s", seconds)
        return True

    def _failed(self, work: JobWork, seeds: list[int], exc: BaseException, board: ProgressBoard, seconds) -> None:
        reason = str(exc) if isinstance(exc, AceStepError) else f"{type(exc).__name__}: {exc}"
        for seed in seeds:
            self.outcomes[work.keys[seed]] = TakeOutcome(work.keys[seed], work.job_id, seed, "failed", reason=reason,
                                                         process=self.processes.index, seconds=round(seconds, 3))
        board.update(failed=len(seeds), running=0.0, force=True)
        log.warning("%sline %d (%s) seeds %s failed: %s", self.processes, work.job.line, work.job.label,
                    _seeds_text(seeds), reason, exc_info=not isinstance(exc, AceStepError))

    def _engine_for(self, work: JobWork):
        """The engine of the job's variant with exactly the job's adapters loaded (kept for the next batch)."""
        engine = self.engine if work.variant == self.engine.variant.name else self.engine.with_variant(work.variant)
        wanted = (id(engine), tuple((str(p), s) for p, s in work.loras))
        if self.loaded is None or self.loaded[0] is not engine or self.loaded[2] != wanted:
            self._unload()
            names = []
            self.loaded = (engine, names, wanted)
            for i, (path, scale) in enumerate(work.loras):
                names.append(engine.load_lora(path, name=f"render-{i}", scale=scale))
        return engine

    def _unload(self) -> None:
        if self.loaded is not None:
            engine, names, _ = self.loaded
            for adapter in names:
                engine.unload_lora(adapter)
            self.loaded = None

    def _task_for(self, work: JobWork):
        """The job's task with sources given by take id loaded from the store (once per take)."""
        task = work.job.task
        changes = {}
        for field in ("source", "reference"):
            value = getattr(task, field, None)
            if isinstance(value, TakeRef):
                if value.take_id not in self.sources:
                    self.sources[value.take_id] = self.store.load(value.take_id)
                changes[field] = self.sources[value.take_id]
        return replace(task, **changes) if changes else task

    # ------------------------------------------------------------------ the summary
    def _summary(self, done: dict, run_folder: Path, started: float, stamp: str, stopped: bool) -> RenderSummary:
        processes = self.processes
        found = dict(self.outcomes)
        if processes.count > 1:
            _write_outcomes(run_folder / f"result-{processes.index}.json", list(self.outcomes.values()))
            if not processes.main:
                return self._build(found, done, started, stamp, stopped)
            found.update(self._others(run_folder))
        summary = self._build(found, done, started, stamp, stopped)
        summary.save(self.folder / f"{self.plan.name}.json")
        if processes.count > 1:
            shutil.rmtree(run_folder, ignore_errors=True)
        return summary

    def _others(self, run_folder: Path) -> dict[str, TakeOutcome]:
        """Wait for every other process's outcomes (each writes them when its share is done)."""
        waiting_since = time.monotonic()
        noted = 0.0
        out = {}
        for other in range(1, self.processes.count):
            path = run_folder / f"result-{other}.json"
            while not path.is_file():
                waited = time.monotonic() - waiting_since
                if waited - noted >= WAIT_NOTE_EVERY_S:
                    noted = waited
                    log.info("%swaiting for process %d to finish its share", self.processes, other + 1)
                time.sleep(0.2)
            for item in read_json_or_empty(path).get("takes", []):
                outcome = TakeOutcome(**item)
                out[outcome.key] = outcome
        return out

    def _build(self, found: dict, done: dict, started: float, stamp: str, stopped: bool) -> RenderSummary:
        outcomes = []
        for work in self.works:
            for seed, key in work.keys.items():
                if key in found:
                    outcomes.append(found[key])
                elif key in done:
                    outcomes.append(TakeOutcome(key, work.job_id, seed, "skipped", done[key]))
                elif self.processes.main:
                    outcomes.append(TakeOutcome(key, work.job_id, seed, "not started"))
        return RenderSummary(self.plan.name, self.plan.source, str(self.store.folder), outcomes, list(self.problems),
                             [work.describe() for work in self.works], time.perf_counter() - started,
                             self.processes.count, stopped, stamp)

    def _clear_old_runs(self) -> None:
        """Run folders of earlier runs of this plan that were killed (this process holds the plan's lock)."""
        for old in self.folder.glob(f"{self.plan.name}.run-*"):
            shutil.rmtree(old, ignore_errors=True)


def _write_outcomes(path: Path, outcomes: list[TakeOutcome]) -> None:
    from dataclasses import asdict

    write_json(path, {"takes": [asdict(o) for o in outcomes]})


def _fitting(engine, work: JobWork, seeds: list[int]) -> list[list[int]]:
    """`seeds` in batches as large as memory allows without a costlier memory tier than one take needs."""
    from ..errors import InsufficientMemoryError
    from ..generation.memory import TIERS

    if len(seeds) == 1:
        return [seeds]
    guided = work.settings.guidance > 1.0
    try:
        single = TIERS.index(engine.plan_memory(work.job.blueprint, 1, guided=guided).tier)
    except (InsufficientMemoryError, ValueError):
        return [[seed] for seed in seeds]  # generate refuses each with the estimate and the budget
    size = 1
    for candidate in range(len(seeds), 1, -1):
        try:
            if TIERS.index(engine.plan_memory(work.job.blueprint, candidate, guided=guided).tier) <= single:
                size = candidate
                break
        except InsufficientMemoryError:
            continue
    return [seeds[i:i + size] for i in range(0, len(seeds), size)]


def _out_of_memory(exc: BaseException) -> bool:
    import torch

    from ..errors import InsufficientMemoryError

    kinds = tuple(k for k in (getattr(torch, "OutOfMemoryError", None), InsufficientMemoryError) if k is not None)
    return isinstance(exc, kinds)


def _seeds_text(seeds) -> str:
    seeds = list(seeds)
    return ", ".join(map(str, seeds)) if len(seeds) <= 4 else f"{seeds[0]}, {seeds[1]}, ... {seeds[-1]} ({len(seeds)})"


@contextlib.contextmanager
def _render_lock(folder: Path, name: str, main: bool, store: TakeStore):
    """One render of a plan name into a store at a time (held by the main process; released by the
    system if the process is killed). On systems without fcntl the render runs unlocked."""
    if not main:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TakeStoreError(f"another render of {name!r} is writing into {store.folder}: let it finish, or "
                                 "stop it (a rerun continues where it stopped)") from None
        yield
    finally:
        os.close(fd)
