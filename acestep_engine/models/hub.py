"""Fetching checkpoint files from the Hugging Face hub one by one, for a progress bar and a Cancel.

`plan_download` lists what is missing for a DiT (and a planner LM) with exact sizes from the hub's
file metadata; `fetch` downloads those files through `huggingface_hub.hf_hub_download`, reporting
bytes as they arrive and stopping within one chunk when `cancel` is set (the partial file is kept,
so the next download resumes it). Without network both fail fast with the short `DownloadError`
of `acestep_engine.models.checkpoints`. `checkpoints.download` (the CLI's) is the parallel, terminal
version of the same thing.

`Hub` is the only part that talks to the network; tests pass an object with the same two methods.
"""

from __future__ import annotations

import fnmatch
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from ..errors import GenerationCancelled
from .checkpoints import IGNORE_PATTERNS, Component, approx_download_bytes, components_for, download_error


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: `filename` inside `repo_id`, written to `local_dir / filename`."""

    component: str
    repo_id: str
    filename: str
    local_dir: Path
    size: int | None

    @property
    def path(self) -> Path:
        return self.local_dir / self.filename


class HubClient(Protocol):
    def list_files(self, repo_id: str) -> dict[str, int | None]: ...

    def fetch(self, file: RemoteFile, on_bytes: Callable[[int], None], cancel: threading.Event) -> None: ...


class Hub:
    """The Hugging Face hub through huggingface_hub (token: a private or gated repository's)."""

    def __init__(self, token: str | None = None):
        self.token = token

    def list_files(self, repo_id: str) -> dict[str, int | None]:
        from huggingface_hub import HfApi

        info = HfApi(token=self.token).model_info(repo_id, files_metadata=True)
        return {s.rfilename: s.size for s in info.siblings or []}

    def fetch(self, file: RemoteFile, on_bytes: Callable[[int], None], cancel: threading.Event) -> None:
        import inspect

        from huggingface_hub import hf_hub_download

        kwargs = {}
        if "tqdm_class" in inspect.signature(hf_hub_download).parameters:
            kwargs["tqdm_class"] = _byte_counter(on_bytes, cancel)
        file.local_dir.mkdir(parents=True, exist_ok=True)
        hf_hub_download(file.repo_id, file.filename, local_dir=file.local_dir, token=self.token, **kwargs)
        if "tqdm_class" not in kwargs and file.size:  # an old huggingface_hub: whole files only
            on_bytes(file.size)


def _byte_counter(on_bytes: Callable[[int], None], cancel: threading.Event):
    """A stand-in for the tqdm bar huggingface_hub drives while it streams a file: it forwards the
    byte counts and raises between two chunks once `cancel` is set."""

    class ByteCounter:
        def __init__(self, *args, total=None, initial=0, **kwargs):
            self.total, self.n = total, int(initial or 0)
            if self.n:
                on_bytes(self.n)  # resumed from an earlier partial download

        def update(self, n=1):
            if cancel.is_set():
                raise GenerationCancelled("download cancelled")
            self.n += int(n or 0)
            on_bytes(int(n or 0))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def __getattr__(self, name):  # refresh, close, set_description, update_transfer, ...: nothing to draw
            return lambda *args, **kwargs: None

    return ByteCounter


def _ignored(filename: str) -> bool:
    name = filename.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name, pattern) for pattern in IGNORE_PATTERNS) or name.startswith(".")


@dataclass
class DownloadPlan:
    """What a download of `dit` and `lm` into `root` fetches. `files` is empty until listed on the
    hub (`exact` True); `missing_bytes` is then their exact size, else the known approximate size."""

    root: Path
    dit: str | None
    lm: str | None
    components: list[Component]
    files: list[RemoteFile] = field(default_factory=list)
    exact: bool = False

    @property
    def missing(self) -> list[Component]:
        return [c for c in self.components if c.missing(self.root)]

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def missing_bytes(self) -> int:
        if self.exact:
            return sum(f.size or 0 for f in self.files)
        return sum(approx_download_bytes(c) for c in self.missing)

    def component_bytes(self, component: Component) -> int:
        if self.exact:
            return sum(f.size or 0 for f in self.files if f.component == component.folder)
        return approx_download_bytes(component) if component.missing(self.root) else 0


def plan_download(root: str | Path, dit: str | None = "acestep-v15-turbo", lm: str | None = None,
                  hub: HubClient | None = None, online: bool = True) -> DownloadPlan:
    """What is missing in `root` for `dit` and `lm`; with `online`, the files to fetch and their exact
    sizes from the hub (skipping code, pickles and files already on disk at full size). Raises
    `DownloadError` (`.offline` without network) when the hub cannot be asked."""
    plan = DownloadPlan(Path(root), dit, lm, components_for(dit, lm))
    if not online or plan.complete:
        plan.exact = plan.complete
        return plan
    hub = hub or Hub()
    listings: dict[str, dict[str, int | None]] = {}
    try:
        for c in plan.missing:
            if c.repo_id not in listings:
                listings[c.repo_id] = hub.list_files(c.repo_id)
            prefix = f"{c.folder}/" if c.in_main_repo else ""
            local_dir = plan.root if c.in_main_repo else plan.root / c.folder
            for name, size in sorted(listings[c.repo_id].items()):
                if not name.startswith(prefix) or _ignored(name):
                    continue
                target = local_dir / name
                if target.is_file() and size is not None and target.stat().st_size == size:
                    continue
                plan.files.append(RemoteFile(c.folder, c.repo_id, name, local_dir, size))
    except GenerationCancelled:
        raise
    except Exception as exc:
        raise download_error(plan.root, plan.components, exc) from None
    plan.exact = True
    return plan


def fetch(plan: DownloadPlan, hub: HubClient | None = None,
          progress: Callable[[int, int, RemoteFile], None] | None = None,
          cancel: threading.Event | None = None) -> DownloadPlan:
    """Download the planned files in order. `progress(done_bytes, total_bytes, file)` follows every
    chunk; `cancel` stops within one chunk with `GenerationCancelled` (finished files stay, the
    partial one resumes next time). Returns the plan re-read from disk (`complete` when done)."""
    hub = hub or Hub()
    cancel = cancel or threading.Event()
    total = plan.missing_bytes
    done = 0
    plan.root.mkdir(parents=True, exist_ok=True)
    for file in plan.files:
        if cancel.is_set():
            raise GenerationCancelled("download cancelled")

        def on_bytes(n: int, file=file) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(min(done, total), total, file)

        try:
            hub.fetch(file, on_bytes, cancel)
        except GenerationCancelled:
            raise
        except Exception as exc:
            if cancel.is_set():  # the hub client turned our stop into an error of its own
                raise GenerationCancelled("download cancelled") from None
            raise download_error(plan.root, plan.components, exc) from None
    after = plan_download(plan.root, plan.dit, plan.lm, online=False)
    if not after.complete:  # the hub's layout changed, or a file was removed meanwhile
        raise download_error(after.root, after.components, RuntimeError("the fetched files do not complete the layout"))
    return after


def disk_space(folder: str | Path) -> tuple[int, int]:
    """(size, free space) in bytes of the disk that holds `folder` (or its nearest existing parent)."""
    path = Path(folder).absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    usage = shutil.disk_usage(path)
    return usage.total, usage.free


def free_bytes(folder: str | Path) -> int:
    """Free space on the disk that holds `folder` (or its nearest existing parent)."""
    return disk_space(folder)[1]


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
