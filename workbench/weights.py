"""WeightsPanel: "Get the real weights" — what is missing, how big, download with progress and Cancel.

For the chosen DiT and planner LM it lists each folder of the official layout as present or
missing, with its download size (known sizes at once, the hub's exact ones once it answered) and
how much of the disk that takes (the whole disk, free now and after). In Colab a "Save to" choice
puts them on the runtime's disk (/content/checkpoints) or on a mounted Google Drive, where they
outlive the runtime. Download fetches only the missing files through huggingface_hub on the job
runner (progress per chunk, Cancel within one chunk; an interrupted file resumes next time), then
the workbench reloads on the new weights: the shared state's engine (and planner) are replaced,
so every tab and the header use them. Without network (`HF_HUB_OFFLINE=1`, or the hub does not
answer) one paragraph says so and how to copy the folders by hand; "Use these weights" then
loads them once they are there.
"""

from __future__ import annotations

import html
import threading
import time
from pathlib import Path

import ipywidgets as widgets

from acestep_engine import Engine
from acestep_engine.models import LM_VARIANTS, VARIANTS
from acestep_engine.models.checkpoints import (DownloadError, approx_download_bytes, default_checkpoints_dir,
                                               hub_offline_by_setting, manual_download_commands)
from acestep_engine.models.hub import DownloadPlan, Hub, disk_space, fetch, format_bytes, plan_download
from acestep_engine.runtime import recommend_models

from .display import widget_bundle
from .jobs import JobPanel, post
from .notebook import COLAB_CHECKPOINTS, DRIVE_CHECKPOINTS, DRIVE_MOUNT, drive_mounted, in_colab
from .state import WorkbenchState

DISK_MARGIN = 1.05  # refuse a download that would leave less than 5 % of its size free
NO_LM = "none"


def _gpu_gib() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory / 2 ** 30
    return 0.0


class WeightsPanel(JobPanel):
    """Get the real weights for `dit` and `lm` into `checkpoints_dir` (default: where the workbench
    looks, `default_checkpoints_dir()`), then reload the shared state's engine on them. `hub` is
    the hub client (`acestep_engine.models.hub.Hub`; tests pass a fake one). The hub is asked for exact
    sizes when the panel is shown (`set_visible(True)`; standalone panels are shown at once), so a
    workbench that keeps this section closed makes no network request. `colab` (default: whether this
    runs in Colab) adds the "Save to" choice between the runtime's disk and Google Drive."""

    def __init__(self, state: WorkbenchState, checkpoints_dir=None, gpu_gib: float | None = None, hub=None,
                 visible: bool = True, colab: bool | None = None):
        self.hub = hub or Hub()
        gpu_gib = _gpu_gib() if gpu_gib is None else gpu_gib
        dit, lm = recommend_models(gpu_gib)
        engine = state.engine
        if engine is not None and not engine.is_demo and engine.variant.name in VARIANTS:
            dit = engine.variant.name
        style = {"description_width": "initial"}
        self.dit = widgets.Dropdown(description="DiT", options=list(VARIANTS), value=dit, style=style,
                                    layout=widgets.Layout(width="330px"))
        self.lm = widgets.Dropdown(description="Planner LM", options=[NO_LM, *LM_VARIANTS], value=lm or NO_LM,
                                   style=style, layout=widgets.Layout(width="330px"))
        if checkpoints_dir is None and engine is not None and not engine.is_demo:
            checkpoints_dir = engine.models.paths.get("checkpoints")
        self.folder = widgets.Text(description="Folder", value=str(checkpoints_dir or default_checkpoints_dir()),
                                   style=style, layout=widgets.Layout(width="100%"))
        self.location = widgets.Dropdown(
            description="Save to", style=style, layout=widgets.Layout(width="100%"),
            options=[(f"this runtime's disk: {COLAB_CHECKPOINTS} (deleted when the runtime ends)",
                      str(COLAB_CHECKPOINTS)),
                     (f"Google Drive: {DRIVE_CHECKPOINTS} (kept between sessions)", str(DRIVE_CHECKPOINTS))],
            value=str(DRIVE_CHECKPOINTS) if self.folder.value == str(DRIVE_CHECKPOINTS) else str(COLAB_CHECKPOINTS))
        self.location.observe(lambda change: self._choose_location(change["new"]), names="value")
        self.summary = widgets.HTML()
        self.offline_note = widgets.HTML()
        self.download_button = widgets.Button(description="Download", button_style="primary", icon="download",
                                              layout=widgets.Layout(width="auto"))
        self.load_button = widgets.Button(description="Use these weights", icon="check",
                                          layout=widgets.Layout(width="auto"))
        self._init_jobs(state, [self.download_button, self.load_button])
        self.plan: DownloadPlan | None = None
        self.exact_sizes: dict[str, dict[str, int]] = {}  # folder -> component -> bytes, as the hub said
        self.missing_bytes = 0
        self.offline = hub_offline_by_setting()
        self.sizes_checked = threading.Event()  # set when the hub answered (or could not) for this choice
        self._sizes_for = None
        self.visible = visible
        self.download_button.on_click(lambda _: self.download())
        self.load_button.on_click(lambda _: self.load())
        for control in (self.dit, self.lm, self.folder):
            control.observe(lambda change: self.refresh(), names="value")
        state.observe(lambda change: self.refresh(ask_hub=False), names="engine")
        self.widget = widgets.VBox([
            widgets.HTML("<b>Get the real weights</b> <small>(official ACE-Step 1.5 checkpoints from the Hugging "
                         "Face hub; only missing files are fetched, never code)</small>"),
            widgets.HBox([self.dit, self.lm]), *([self.location] if (in_colab() if colab is None else colab) else []),
            self.folder, self.summary, self.offline_note,
            widgets.HBox([self.download_button, self.load_button, self.cancel_button, self.progress]), self.status,
        ])
        self.refresh()

    # ------------------------------------------------------------------ what is missing
    @property
    def root(self) -> Path:
        return Path(self.folder.value).expanduser()

    @property
    def choice(self) -> tuple[str, str | None]:
        return self.dit.value, (None if self.lm.value == NO_LM else self.lm.value)

    def _choose_location(self, folder: str) -> None:
        """Colab's "Save to": the runtime's disk, or Google Drive once it is mounted."""
        if folder == str(DRIVE_CHECKPOINTS) and not drive_mounted():
            self._set_status(f"Google Drive is not mounted: run <code>from google.colab import drive; "
                             f"drive.mount(\"{DRIVE_MOUNT}\")</code> in a cell (or start with "
                             f"<code>setup(checkpoints=\"drive\")</code>), then choose it again")
            self.location.value = str(COLAB_CHECKPOINTS)
            return
        self.folder.value = folder

    def set_visible(self, visible: bool) -> None:
        self.visible = visible
        if visible:
            self.refresh()

    def refresh(self, ask_hub: bool = True) -> None:
        """Redraw what is missing (known sizes at once); ask the hub for exact sizes once per choice."""
        dit, lm = self.choice
        self.plan = plan_download(self.root, dit, lm, online=False)
        self._draw()
        key = (str(self.root), dit, lm)
        if ask_hub and self.visible and not self.plan.complete and not self.offline and self._sizes_for != key:
            self._sizes_for = key
            self.sizes_checked.clear()
            threading.Thread(target=self._ask_hub, args=(key,), name="acestep-hub-sizes", daemon=True).start()
        elif self.plan.complete or self.offline:
            self.sizes_checked.set()

    def _ask_hub(self, key) -> None:
        root, dit, lm = key
        try:
            listed = plan_download(root, dit, lm, hub=self.hub)
            sizes = {c.folder: listed.component_bytes(c) for c in listed.missing}
            update = lambda: self._hub_answered(key, sizes)  # noqa: E731
        except DownloadError as exc:  # without network: say so; other failures surface on Download
            update = self._went_offline if exc.offline else (lambda: None)
        except Exception:
            update = lambda: None  # noqa: E731

        def finish():
            update()
            if self._sizes_for == key or self.offline:  # an answer for an earlier choice does not count
                self.sizes_checked.set()

        post(finish)

    def _hub_answered(self, key, sizes: dict[str, int]) -> None:
        self.exact_sizes[key[0]] = {**self.exact_sizes.get(key[0], {}), **sizes}
        self._draw()

    def _went_offline(self) -> None:
        self.offline = True
        self._draw()

    def _size(self, component) -> tuple[int, bool]:
        """Download size of a missing component and whether the hub gave it (else a known size)."""
        exact = self.exact_sizes.get(str(self.plan.root), {}).get(component.folder)
        return (exact, True) if exact is not None else (approx_download_bytes(component), False)

    def _draw(self) -> None:
        plan = self.plan
        rows, need, all_exact = [], 0, True
        for c in plan.components:
            missing = c.missing(plan.root)
            shown = ""
            if missing:
                size, exact = self._size(c)
                need, all_exact = need + size, all_exact and exact
                shown = format_bytes(size) if exact else f"about {format_bytes(size)}"
            state = ("<span style='color:#2e7d32'>present</span>" if not missing else
                     f"<span style='color:#b00020'>missing {len(missing)} file{'s' if len(missing) > 1 else ''}</span>")
            rows.append(f"<tr><td><code>{html.escape(c.folder)}/</code></td><td style='padding:0 12px'>{state}</td>"
                        f"<td style='text-align:right'>{shown}</td></tr>")
        self.missing_bytes = need
        if plan.complete:
            total = "Everything is here."
        else:
            total = f"To download: <b>{'' if all_exact else 'about '}{format_bytes(need)}</b>, {self._disk_share(need)}"
            if need * DISK_MARGIN > disk_space(plan.root)[1]:
                total += " <span style='color:#b00020'>(not enough space)</span>"
        self.summary.value = f"<table style='border-collapse:collapse'>{''.join(rows)}</table><div>{total}</div>"
        self.offline_note.value = self._offline_paragraph() if self.offline and not plan.complete else ""
        self.download_button.description = "Download" if plan.complete else f"Download {format_bytes(need)}"
        self.sync_buttons()

    def _disk_share(self, need: int) -> str:
        """How much of the disk under the folder `need` bytes take: "12 % of this 78.0 GB disk (free: ...)"."""
        size, free = disk_space(self.plan.root)
        share = 100 * need / size if size else 0.0
        after = f", {format_bytes(free - need)} after" if free >= need else ""
        return (f"{share:.0f} % of this {format_bytes(size)} disk (free: {format_bytes(free)} now{after}; "
                f"the folder is <code>{html.escape(str(self.plan.root))}</code>)")

    def _offline_paragraph(self) -> str:
        commands = "".join(f"<br><code>{html.escape(c)}</code>" for c in manual_download_commands(self.plan.root,
                                                                                                  self.plan.components))
        folders = ", ".join(f"<code>{html.escape(c.folder)}/</code>" for c in self.plan.missing)
        return (f"<div style='background:#f4f4f4;padding:4px 8px'><b>No network</b>: this kernel cannot reach the "
                f"Hugging Face hub{' (HF_HUB_OFFLINE=1)' if hub_offline_by_setting() else ''}, so the workbench cannot "
                f"download the weights. On a machine with network run{commands}<br>then copy the folders {folders} "
                f"into <code>{html.escape(str(self.plan.root))}</code> and press <i>Use these weights</i>.</div>")

    def _button_enabled(self, button) -> bool:
        plan = self.plan
        if plan is None:
            return False
        if button is self.download_button:
            return not plan.complete and not self.offline
        return plan.complete and not self._engine_is_on_them()

    def _engine_is_on_them(self) -> bool:
        engine = self.state.engine
        if engine is None:
            return False
        here = Path(engine.models.paths.get("checkpoints") or ".").resolve()
        return here == self.plan.root.resolve() and engine.variant.name == self.choice[0]

    # ------------------------------------------------------------------ download and reload
    def download(self):
        """Fetch the missing files (on the job runner), then reload the workbench on them."""
        self.refresh(ask_hub=False)
        if self.offline:
            self._set_status("no network: copy the folders by hand (see above)", error=True)
            return None
        need, free = self.missing_bytes, disk_space(self.plan.root)[1]
        if need * DISK_MARGIN > free:
            self._set_status(f"not enough disk space: the download needs {format_bytes(need)}, "
                             f"{format_bytes(free)} are free on {self.plan.root}", error=True)
            return None
        root, (dit, lm) = self.plan.root, self.choice

        def work(cancel, progress):
            progress.stage("asking the hub", 0.0, "listing the files on the hub...")
            plan = plan_download(root, dit, lm, hub=self.hub)
            shown = {"at": 0.0}

            def bytes_arrived(done, total, file):
                now = time.perf_counter()
                if now - shown["at"] > 0.2 or done == total:  # a few redraws a second, not one per chunk
                    shown["at"] = now
                    progress.stage("downloading", 0.9 * done / max(total, 1),
                                   f"downloading {file.component}/: {format_bytes(done)} of {format_bytes(total)}")

            fetch(plan, self.hub, progress=bytes_arrived, cancel=cancel)
            return self._load_models(root, dit, lm, progress)

        return self.run_job("download", work, show=self._use, failed=self._failure,
                            cancelled="download cancelled: the files already fetched are kept, Download resumes")

    def load(self):
        """Reload the workbench on the weights in the folder (after copying them by hand)."""
        root, (dit, lm) = self.root, self.choice
        return self.run_job("load", lambda cancel, progress: self._load_models(root, dit, lm, progress),
                            show=self._use, failed=self._failure)

    def _load_models(self, root, dit, lm, progress):
        from acestep_engine.lm import Planner

        old = self.state.engine
        device = old.device if old is not None else "auto"
        dtype = old.dtype if old is not None else None
        progress.stage("loading", 0.9, f"loading {dit}...")
        engine = Engine.from_pretrained(root, dit=dit, device=device, dtype=dtype)
        planner = None
        if lm is not None and (root / lm / "config.json").is_file():
            progress.stage("loading", 0.95, f"loading {lm}...")
            planner = Planner.from_pretrained(lm, checkpoints_dir=root, device=engine.device, engine=engine)
        return engine, planner

    def _use(self, loaded) -> str:
        engine, planner = loaded
        state = self.state
        previous = state.planner
        state.engines = {engine.variant.name: engine}
        state.engine = engine
        if planner is not None:
            state.set_planner(planner)
        elif previous is not None and getattr(previous, "is_demo", False):
            state.set_planner(None)  # the demo planner's codes mean nothing to real weights
        elif previous is not None:
            previous.attach(engine)
        if hasattr(state, "refresh_loras"):
            state.refresh_loras()
        self.refresh(ask_hub=False)
        with_lm = f" and {planner.name}" if planner is not None else ""
        return (f"loaded {html.escape(engine.variant.name)}{html.escape(with_lm)} from "
                f"<code>{html.escape(str(self.root))}</code>: every tab uses them now {{time}}")

    def _failure(self, error: BaseException) -> str:
        if isinstance(error, DownloadError) and error.offline:
            self._went_offline()
            return "no network: copy the folders by hand (see above)"
        first = str(error).strip().splitlines()
        return f"{type(error).__name__}: {first[0] if first else ''}"

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.widget, **kwargs)
