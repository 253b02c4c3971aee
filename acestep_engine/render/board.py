"""Progress of a whole render, merged across its processes.

Each process writes its counts to a small JSON file in the render's run folder (atomically, at most
twice a second, and at each take); the main process adds them up, with its own, into one
`RenderProgress` for a bar or a callback. Files work the same on one machine and on a cluster's
shared folder, and need no collective call while the processes run at their own pace.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

WRITE_EVERY_S = 0.5
MERGE_EVERY_S = 1.0
_COUNTS = ("rendered", "skipped", "failed")


@dataclass(frozen=True)
class RenderProgress:
    """The whole render: `total` takes asked for (those already in the store count as `skipped`),
    `running` the share of the takes in flight that is done (0 to their number), `elapsed` seconds."""

    total: int
    rendered: int = 0
    skipped: int = 0
    failed: int = 0
    running: float = 0.0
    elapsed: float = 0.0
    processes: int = 1
    message: str = ""

    @property
    def done(self) -> int:
        """Takes that need no more work: rendered, skipped or failed."""
        return self.rendered + self.skipped + self.failed

    @property
    def fraction(self) -> float:
        return min(1.0, (self.done + self.running) / self.total) if self.total else 1.0

    @property
    def takes_per_minute(self) -> float:
        """Takes rendered per minute of this run (skipped takes cost nothing and do not count)."""
        return 60.0 * (self.rendered + self.running) / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        """At the rate so far; None before the first take."""
        rate = self.takes_per_minute / 60.0
        left = self.total - self.done - self.running
        return left / rate if rate > 0 else None

    def summary(self) -> str:
        left = self.seconds_left
        eta = "" if left is None or self.done >= self.total else f", {_clock(left)} left"
        return (f"{self.done}/{self.total} takes ({self.rendered} rendered, {self.skipped} skipped, "
                f"{self.failed} failed), {self.takes_per_minute:.1f} takes/min{eta}")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


class ProgressBoard:
    """This process's counts, shared through `folder` (None: one process, nothing written).

    The main process (index 0) merges every process's file with its own counts and calls `report`
    with a `RenderProgress`: after its own updates, and every second from a thread while others run.
    """

    def __init__(self, folder: Path | None, index: int, processes: int, total: int, skipped: int,
                 report=None, started: float | None = None):
        self.folder, self.index, self.processes = folder, index, processes
        self.started = time.perf_counter() if started is None else started
        self.mine = RenderProgress(total=total, skipped=skipped if index == 0 else 0, processes=processes)
        self.report = report if index == 0 else None
        self._written = 0.0
        self._lock = threading.Lock()
        self._report_lock = threading.Lock()  # the merging thread and the main thread both report
        self._stop = threading.Event()
        self._thread = None
        if self.report is not None and processes > 1:
            self._thread = threading.Thread(target=self._merge_loop, name="render-progress", daemon=True)
            self._thread.start()

    def update(self, force: bool = False, **counts) -> None:
        """Add to (rendered, skipped, failed) or set (running, message) this process's counts."""
        with self._lock:
            changes = {k: getattr(self.mine, k) + v for k, v in counts.items() if k in _COUNTS}
            changes.update({k: v for k, v in counts.items() if k in ("running", "message")})
            self.mine = replace(self.mine, elapsed=time.perf_counter() - self.started, **changes)
            now = time.monotonic()
            if self.folder is not None and (force or now - self._written >= WRITE_EVERY_S):
                self._written = now
                write_json(self.folder / f"progress-{self.index}.json", {
                    "rendered": self.mine.rendered, "failed": self.mine.failed, "running": self.mine.running,
                    "message": self.mine.message})
        if self.report is not None and (force or self._thread is None):
            self._emit()

    def merged(self) -> RenderProgress:
        """Every process's counts added up (the others as last written)."""
        with self._lock:
            total = replace(self.mine, elapsed=time.perf_counter() - self.started)
        if self.folder is None:
            return total
        for other in range(self.processes):
            if other == self.index:
                continue
            data = read_json_or_empty(self.folder / f"progress-{other}.json")
            total = replace(total, running=total.running + float(data.get("running", 0.0)),
                            **{k: getattr(total, k) + int(data.get(k, 0)) for k in _COUNTS})
        return total

    def _merge_loop(self) -> None:
        while not self._stop.wait(MERGE_EVERY_S):
            self._emit()

    def _emit(self) -> None:
        with self._report_lock:
            self.report(self.merged())

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.update(force=True, running=0.0)


def write_json(path: Path, data: dict) -> None:
    """Write `data` to `path` whole or not at all (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def read_json_or_empty(path: Path) -> dict:
    """The JSON object in `path`, or {} when it is missing, half written by an older writer or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class RenderBar:
    """A tqdm.auto bar over a whole render: takes done of the total, takes per minute, time left.
    Pass an instance (or True) as `progress=` of `render_many`."""

    def __init__(self, desc: str = "render"):
        self.desc = desc
        self.bar = None

    def __call__(self, p: RenderProgress) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=p.total, desc=self.desc, unit="take",
                            bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} [{elapsed}{postfix}]")
        self.bar.n = min(p.total, p.done + p.running)
        left = p.seconds_left
        self.bar.set_postfix_str(f"{p.takes_per_minute:.1f} takes/min"
                                 + ("" if left is None else f", {_clock(left)} left"), refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
