"""WorkbenchState: what every tab of the workbench shares, in one observable object.

Panels read it and observe it; they never push state into each other. A panel that makes a
take, loads a model or a planner, or applies a LoRA changes the state, and every other panel and
the header follow through their observers. Standalone panels (in a tutorial notebook) make a
state of their own, so they work the same way outside the `Workbench`.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import traitlets

from .jobs import JobRunner


class WorkbenchState(traitlets.HasTraits):
    """`engine`: the Engine generation uses; `engines`: every loaded DiT variant by folder name
    (the base model for Tracks, say); `store`: the TakeStore; `planner`: the 5 Hz LM or None;
    `current_take`: the take the Look, Repaint, Cover and Tracks tabs work on; `blueprint`: the
    Blueprint tab's blueprint (as typed, maybe invalid); `job`: the running Job or None;
    `revision`: bumps whenever takes are added, renamed or deleted through the workbench;
    `loras`: the adapters on the engine (`engine.loras()`)."""

    engine = traitlets.Any(allow_none=True)
    engines = traitlets.Dict()
    store = traitlets.Any(allow_none=True)
    planner = traitlets.Any(allow_none=True)
    current_take = traitlets.Any(allow_none=True)
    blueprint = traitlets.Any(allow_none=True)
    job = traitlets.Any(allow_none=True)
    revision = traitlets.Int(0)
    loras = traitlets.List()

    def __init__(self, engine=None, store=None, planner=None, current_take=None, blueprint=None, **kwargs):
        super().__init__(**kwargs)
        self.runner = JobRunner()
        self.engine, self.store, self.current_take, self.blueprint = engine, store, current_take, blueprint
        if engine is not None:
            self.engines = {engine.variant.name: engine}
            self.loras = engine.loras()
        self.set_planner(planner)

    # ------------------------------------------------------------------ models
    def set_planner(self, planner) -> None:
        if planner is not None and self.engine is not None and getattr(planner, "engine", None) is None:
            planner.attach(self.engine)
        self.planner = planner

    def load_planner(self, path_or_name=None, allow_download: bool = False):
        """Load a 5 Hz LM (a folder or an `acestep-5Hz-lm-*` name beside the DiT; default: the demo
        planner on the demo checkpoint, else the first LM found, else 1.7B) and share it."""
        from acestep_engine.lm import Planner
        from acestep_engine.models import LM_VARIANTS

        engine = self.engine
        root = Path(engine.models.paths.get("checkpoints") or ".")
        if path_or_name is None:
            found = [name for name in LM_VARIANTS if (root / name / "config.json").is_file()]
            if not found and engine.is_demo:
                self.set_planner(Planner.demo(device=engine.device, engine=engine))
                return self.planner
            path_or_name = found[0] if found else "acestep-5Hz-lm-1.7B"
        planner = Planner.from_pretrained(path_or_name, checkpoints_dir=root, device=engine.device,
                                          allow_download=allow_download or engine.allow_download, engine=engine)
        self.set_planner(planner)
        return planner

    def engine_for(self, task_name: str):
        """The loaded engine that can run `task_name` (the main one first), or None."""
        for engine in [self.engine] + [e for e in self.engines.values() if e is not self.engine]:
            if engine is not None and engine.can(task_name):
                return engine
        return None

    def load_variant(self, dit: str):
        """Load another DiT variant beside the engine (sharing its VAE and text encoder) and share it."""
        engine = self.engines.get(dit) or self.engine.with_variant(dit)
        self.engines = {**self.engines, dit: engine}
        return engine

    def refresh_loras(self) -> None:
        """Call after loading, scaling or unloading a LoRA so every tab shows what takes will use."""
        self.loras = self.engine.loras() if self.engine is not None else []

    # ------------------------------------------------------------------ takes
    def save_takes(self, takes) -> None:
        """Write takes to the store (on the worker: before `job.result()` returns). A batch is
        written by a few threads at once: audio encoding releases the GIL, and for a batch of short
        takes it costs as much as a sizeable share of the model's time."""
        if self.store is None or not takes:
            return
        workers = min(len(takes), os.cpu_count() or 1, 4)
        if workers == 1:
            for take in takes:
                self.store.save(take)
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="acestep-save") as pool:
            list(pool.map(self.store.save, takes))

    def takes_added(self, takes, make_current: bool = True) -> None:
        """Announce saved takes (main thread): Takes lists them; the first becomes current."""
        self.revision += 1
        if make_current and takes:
            self.current_take = takes[0]

    def store_changed(self) -> None:
        self.revision += 1

    # ------------------------------------------------------------------ jobs
    @property
    def busy(self) -> bool:
        return self.job is not None and self.job.running

    def job_ended(self, job) -> None:
        if self.job is job:
            self.job = None


@contextmanager
def demo_notice_silenced():
    """The workbench shows its own demo banner: keep the engine's log warning out of the notebook."""
    logger = logging.getLogger("acestep_engine.engine")

    def drop(record):
        return "random weights" not in record.getMessage()

    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)
