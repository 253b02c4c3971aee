"""Long work off the kernel's main thread, one job at a time, with progress, cancel and a result.

Widget updates from the worker go through `post`, the one place that touches widgets from a
thread: it hands the update to the kernel's event loop when there is one (so traits change on
the main thread) and sets them directly otherwise (plain Python, tests).
"""

from __future__ import annotations

import threading
from typing import Any, Callable


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
    """One piece of background work. `result()` waits and returns its value or raises its error."""

    def __init__(self, name: str, work: Callable[[threading.Event], Any],
                 on_done: Callable[["Job"], None] | None = None):
        self.name = name
        self.cancel_event = threading.Event()
        self.done = threading.Event()
        self.value = None
        self.error: BaseException | None = None
        self._work = work
        self._on_done = on_done
        self.thread = threading.Thread(target=self._run, name=f"acestep-{name}", daemon=True)

    def _run(self):
        try:
            self.value = self._work(self.cancel_event)
        except BaseException as exc:  # reported in the panel, re-raised by result()
            self.error = exc
        finally:
            try:
                if self._on_done is not None:
                    self._on_done(self)  # before `done`, so result() returns after the panel is updated
            except Exception as exc:
                self.error = self.error or exc
            self.done.set()

    def cancel(self) -> None:
        self.cancel_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def result(self, timeout: float | None = None):
        if not self.done.wait(timeout):
            raise TimeoutError(f"{self.name} is still running after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.value

    @property
    def running(self) -> bool:
        return self.thread.is_alive()


class JobRunner:
    """Starts at most one job at a time; a second start while one runs is refused with a message."""

    def __init__(self):
        self.current: Job | None = None
        self._lock = threading.Lock()

    def start(self, name: str, work: Callable[[threading.Event], Any],
              on_done: Callable[[Job], None] | None = None) -> Job:
        with self._lock:
            if self.current is not None and not self.current.done.is_set():
                raise RuntimeError(f"{self.current.name} is still running: wait for it or press Cancel")
            job = Job(name, work, on_done)
            self.current = job
        job.thread.start()
        return job

    @property
    def busy(self) -> bool:
        return self.current is not None and not self.current.done.is_set()
