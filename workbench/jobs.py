"""Long work off the kernel's main thread: one job at a time, and the one place panels run it.

A `Job` runs `work(cancel)` on a worker thread. Its life has two halves:
- on the worker: the work, then `on_done(job)` for model state (saving takes), so `job.result()`
  returns with the takes already in the store; then `job.state` becomes "done", "failed" or
  "cancelled";
- on the kernel's main thread (through `post`): `on_ended(job)`, which redraws the panel. A cell
  that waits in `job.result()` blocks that loop, so `result()` runs the redraw itself first: what
  it returns is complete, the current take and the panels included.
Because the state is final before the panel redraws, buttons derived from it can never stay locked.

`JobPanel` is the base of every panel that runs work: its status line, progress bar, Cancel
button and the enabled state of its start buttons live here and nowhere else. `JobProgress` maps
the reports of each stage (planning, encoding, denoising, decoding, saving, drawing) onto one bar
that only moves forward.

Widget updates from the worker go through `post`, the one place that touches widgets from a
thread: it hands the update to the kernel's event loop when there is one (so traits change on
the main thread) and runs it directly otherwise (plain Python, tests).
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any, Callable

import ipywidgets as widgets

from acestep_engine.errors import AceStepError, GenerationCancelled

from .state_view import StateView

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"
TIME = "{time}"  # where a finished job's status line puts "in 3.4 s (model 3.1 s, saving 0.2 s, ...)"


def _kernel_loop():
    try:
        from IPython import get_ipython

        kernel = getattr(get_ipython(), "kernel", None)
        loop = getattr(getattr(kernel, "io_loop", None), "asyncio_loop", None)
        return loop if loop is not None and loop.is_running() else None
    except Exception:
        return None


def post(update: Callable[[], None]) -> None:
    """Run a widget update on the kernel's event loop if we are on a worker thread."""
    loop = _kernel_loop()
    if loop is not None and threading.current_thread() is not threading.main_thread():
        loop.call_soon_threadsafe(update)
    else:
        update()


class Job:
    """One piece of background work. `result()` waits and returns its value or raises its error.
    `state` is "running" until the work (and `on_done`) ended, then "done", "failed" or "cancelled"."""

    def __init__(self, name: str, work: Callable[[threading.Event], Any],
                 on_done: Callable[["Job"], None] | None = None,
                 on_ended: Callable[["Job"], None] | None = None, owner: Any = None):
        self.name = name
        self.owner = owner
        self.cancel_event = threading.Event()
        self.done = threading.Event()
        self.value = None
        self.error: BaseException | None = None
        self.state = RUNNING
        self.started = time.perf_counter()
        self.ended: float | None = None
        self._work = work
        self._on_done = on_done
        self._on_ended = on_ended
        self._redraw_lock = threading.Lock()
        self._redrawn = False
        self.thread = threading.Thread(target=self._run, name=f"acestep-{name}", daemon=True)

    def _run(self):
        try:
            self.value = self._work(self.cancel_event)
        except BaseException as exc:  # reported in the panel, re-raised by result()
            self.error = exc
        try:
            if self._on_done is not None:
                self._on_done(self)  # model state, before `done`: result() returns after it
        except BaseException as exc:
            self.error = self.error or exc
        self.ended = time.perf_counter()
        self.state = (CANCELLED if isinstance(self.error, GenerationCancelled) or
                      (self.error is not None and self.cancel_event.is_set()) else
                      FAILED if self.error is not None else DONE)
        try:
            post(self._redraw)
        finally:
            self.done.set()

    def _redraw(self) -> None:
        """`on_ended`, once: from the kernel's event loop, or from `result()` on the main thread when
        a cell waits for the job (the loop cannot run the redraw while the cell blocks it)."""
        with self._redraw_lock:
            if self._redrawn:
                return
            self._redrawn = True
        if self._on_ended is not None:
            self._on_ended(self)

    def cancel(self) -> None:
        self.cancel_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def result(self, timeout: float | None = None):
        """Wait for the work and return its value (or raise its error). On the kernel's main thread
        the panel has redrawn when it returns: the current take, lists and buttons are final."""
        if not self.done.wait(timeout):
            raise TimeoutError(f"{self.name} is still running after {timeout} s")
        if threading.current_thread() is threading.main_thread():
            self._redraw()
        if self.error is not None:
            raise self.error
        return self.value

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def seconds(self) -> float:
        return (self.ended or time.perf_counter()) - self.started

    def __repr__(self) -> str:
        return f"Job({self.name!r}, {self.state})"


class JobRunner:
    """Starts at most one job at a time; a second start while one runs is refused with a message."""

    def __init__(self):
        self.current: Job | None = None
        self._lock = threading.Lock()

    def start(self, name: str, work: Callable[[threading.Event], Any],
              on_done: Callable[[Job], None] | None = None, on_ended: Callable[[Job], None] | None = None,
              owner: Any = None, on_start: Callable[[Job], None] | None = None) -> Job:
        with self._lock:
            if self.busy:
                raise RuntimeError(f"{self.current.name} is still running: wait for it or press Cancel")
            job = Job(name, work, on_done, on_ended, owner)
            self.current = job
        if on_start is not None:
            on_start(job)  # before the thread runs, so the job cannot end before it is announced
        job.thread.start()
        return job

    @property
    def busy(self) -> bool:
        return self.current is not None and self.current.running


_ENGINE_STAGES = {"encode": "encoding the conditions", "denoise": "denoising", "decode": "decoding"}


def describe(p) -> str:
    """Plain words for an engine or planner Progress report ("denoising, step 3/8")."""
    stage = getattr(p, "stage", "")
    if stage == "denoise":
        return f"denoising, step {p.step}/{p.steps}"
    if stage == "decode":
        return f"decoding take {p.item + 1}/{p.items}"
    if stage == "done":
        return "decoded"  # the engine is done; saving and drawing still follow
    return _ENGINE_STAGES.get(stage, getattr(p, "message", "") or stage)


class JobProgress:
    """One forward-only bar over a job's stages. `part(label, start, end)` returns a callable that
    maps a Progress report's `fraction` into [start, end] of the bar; `stage(label, at)` names a
    stage without sub-steps. Seconds spent per label are kept for the final status line."""

    def __init__(self, on_change: Callable[[float, str], None]):
        self.fraction = 0.0
        self.message = "starting..."
        self.seconds: dict[str, float] = {}
        self._label, self._since = None, time.perf_counter()
        self._on_change = on_change

    def _enter(self, label: str) -> None:
        now = time.perf_counter()
        if self._label is not None:
            self.seconds[self._label] = self.seconds.get(self._label, 0.0) + now - self._since
        self._label, self._since = label, now

    def stage(self, label: str, at: float, message: str | None = None) -> None:
        if label != self._label:
            self._enter(label)
        self.fraction = max(self.fraction, min(1.0, at))
        self.message = message or f"{label}..."
        self._on_change(self.fraction, self.message)

    def part(self, label: str, start: float, end: float, prefix: str = "") -> Callable:
        def report(p):
            words = describe(p)
            self.stage(label, start + (end - start) * float(p.fraction), f"{prefix}{words}")
        return report

    def finish(self) -> None:
        self._enter("")

    def breakdown(self) -> str:
        parts = [f"{label} {seconds:.1f} s" for label, seconds in self.seconds.items() if label]
        return ", ".join(parts)


def error_html(text: str) -> str:
    return f"<span style='color:#b00020'>{html.escape(str(text))}</span>"


class JobPanel(StateView):
    """Base of the panels that run work. Subclasses call `_init_jobs(state, start_buttons)` and
    start work with `run_job`; they may override `_button_enabled(button)` for reasons of their own
    (no planner, wrong model). Buttons follow `state.job`: every start button of every panel is
    disabled while any job runs, the Cancel button only of the panel that started it is enabled."""

    def _init_jobs(self, state, start_buttons, progress_width: str = "240px") -> None:
        self.state = state
        self.job: Job | None = None
        self.progress = widgets.IntProgress(value=0, min=0, max=1000, layout=widgets.Layout(width=progress_width))
        self.status = widgets.HTML()
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True)
        self.cancel_button.on_click(lambda _: self.cancel())
        self._start_buttons = list(start_buttons)
        state.observe(lambda change: self.sync_buttons(), names="job")

    # ------------------------------------------------------------------ buttons and status
    def _button_enabled(self, button) -> bool:
        return True

    def sync_buttons(self) -> None:
        job = self.state.job
        busy = job is not None and job.running
        for button in self._start_buttons:
            button.disabled = busy or not self._button_enabled(button)
        self.cancel_button.disabled = not (busy and job.owner is self)

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status.value = error_html(text) if error else text

    @property
    def runner(self) -> JobRunner:
        return self.state.runner

    def cancel(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()
            self._set_status(f"cancelling the {self.job.name} after the current step...")

    # ------------------------------------------------------------------ running
    def _refuse_if_busy(self) -> bool:
        job = self.state.job
        if job is not None and job.running:
            self._set_status(f"the {job.name} is already running: wait for it or press Cancel", error=True)
            return True
        return False

    def checked_inputs(self, build: Callable[[], Any]) -> Any:
        """`build()` reads the panel's fields into what a job needs (a task, a seed); bad input puts its
        error in the status line and gives None, so a click on Run never raises into the notebook."""
        try:
            return build()
        except (AceStepError, ValueError) as exc:
            self._set_status(str(exc), error=True)
            return None

    def seed_field(self) -> int | None:
        """The panel's Seed box: empty for a random seed, else a whole number (refused by name otherwise)."""
        text = self.seed.value.strip()
        if not text:
            return None
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value < 0:
            raise ValueError(f"seed must be a whole number >= 0, or empty for a random one (got {text!r})")
        return value

    def saving(self, keep: Callable[[list], None] | None = None) -> Callable[[list, JobProgress], None]:
        """The `save` step of a job that makes takes: `keep(takes)` (the panel remembers its result),
        then the takes into the shared store, on the worker, as the "saving" stage."""
        def save(takes, progress: JobProgress) -> None:
            if keep is not None:
                keep(takes)
            progress.stage("saving", 0.96, f"saving {len(takes)} take(s)")
            self.state.save_takes(takes)

        return save

    def run_job(self, name: str, work: Callable[[threading.Event, JobProgress], Any], *,
                save: Callable[[Any, JobProgress], None] | None = None,
                show: Callable[[Any], str] | None = None,
                cancelled: str = "cancelled: nothing was saved",
                failed: Callable[[BaseException], str] | None = None) -> Job | None:
        """Run `work(cancel, progress)` on the worker. `save(value, progress)` runs on the worker after
        it (takes reach the store before `job.result()` returns); `show(value)` redraws on the main
        thread and returns the status line; the total time (click to drawn, per stage) replaces `{time}`
        in it, or is added at its end."""
        if self._refuse_if_busy():
            return self.job if self.job is not None and self.job.running else None

        def changed(fraction: float, message: str) -> None:
            post(lambda: (setattr(self.progress, "value", int(1000 * fraction)),
                          setattr(self.status, "value", html.escape(f"{message} ({int(100 * fraction)} %)"))))

        progress = JobProgress(changed)

        def on_done(job):
            if job.error is None and save is not None:  # finished work is kept, even if Cancel came late
                save(job.value, progress)

        def on_ended(job):
            try:
                if job.state == CANCELLED:
                    self.progress.value = 0
                    self._set_status(cancelled)
                elif job.state == FAILED:
                    self._set_status(failed(job.error) if failed is not None else
                                     f"{type(job.error).__name__}: {job.error}", error=True)
                else:
                    progress.stage("drawing", 0.99)
                    message = show(job.value) if show is not None else f"{job.name} finished"
                    progress.finish()
                    self.progress.value = 1000
                    total = time.perf_counter() - job.started
                    details = progress.breakdown()
                    took = f"in {total:.1f} s" + (f" ({details})" if details else "")
                    self.status.value = message.replace(TIME, took) if TIME in message else f"{message} {took}"
            except Exception as exc:  # a failed redraw is reported, never leaves the buttons locked
                self._set_status(f"{type(exc).__name__} while showing the result: {exc}", error=True)
            finally:
                self.state.job_ended(job)
                self.sync_buttons()

        self.progress.value = 0
        self.status.value = "starting..."

        def announce(job):
            self.job = job
            self.state.job = job

        self.state.runner.start(name, lambda cancel: work(cancel, progress), on_done=on_done, on_ended=on_ended,
                                owner=self, on_start=announce)
        self.sync_buttons()
        return self.job
