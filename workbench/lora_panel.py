"""LoRAPanel: a folder of songs -> prepared tensors -> a trained adapter -> applied to generation.

Preparation and training run on a worker thread (workbench.jobs) with a progress bar, a status
line, a live loss plot and a Stop button; every widget update from the worker goes through
`jobs.post`. Everything a button does is a method (`prepare()`, `train()`, `stop()`, `save()`,
`apply()`, `unload()`), so notebooks and tests drive the same panel.
"""

from __future__ import annotations

import html
import io
import shutil
import time
from pathlib import Path

import ipywidgets as widgets

from acestep_engine.errors import AceStepError
from acestep_engine.lora import LoRAConfig, LoRADataset, TrainingConfig, prepare_dataset, train
from acestep_engine.lora.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, DEFAULT_TARGETS, adapter_name_for
from acestep_engine.lora.dataset import MANIFEST

from .display import widget_bundle
from .jobs import JobPanel, post
from .state import WorkbenchState

PLOT_INTERVAL_S = 1.0  # redraw the loss plot at most this often while training


def loss_png(losses, width: float = 6.0, height: float = 2.6, title: str = "training loss") -> bytes:
    """PNG of the loss per update (thin) and its moving average (thick), x in updates."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A bare Figure (no pyplot): safe to draw on the worker thread.
    fig = Figure(figsize=(width, height), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    steps = list(range(1, len(losses) + 1))
    if losses:
        ax.plot(steps, losses, color="#9ecae1", linewidth=0.8, label="loss")
        window = max(1, len(losses) // 20)
        smooth = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1])
                  for i in range(len(losses))]
        ax.plot(steps, smooth, color="#08519c", linewidth=1.8, label=f"mean of {window}")
        ax.legend(loc="upper right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no updates yet", ha="center", va="center", transform=ax.transAxes, color="0.5")
    ax.set_xlabel("update")
    ax.set_ylabel("MSE")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


class LoRAPanel(JobPanel):
    """Choose a folder of songs, prepare it, train a LoRA with a live loss plot and a Stop button,
    save the adapter and apply it (with a scale) to the shared engine: every tab and the header
    show the adapters the next takes will use."""

    def __init__(self, engine=None, store=None, generate_panel=None, planner=None,
                 state: WorkbenchState | None = None):
        if state is None:
            state = generate_panel.state if generate_panel is not None else WorkbenchState(engine=engine, store=store)
        if planner is not None and state.planner is None:
            state.set_planner(planner)
        self.generate_panel = generate_panel
        self.dataset: LoRADataset | None = None
        self.result = None
        self.losses: list[float] = []
        self._last_plot = 0.0
        style = {"description_width": "120px"}
        wide = lambda: widgets.Layout(width="520px")  # noqa: E731 - one layout per widget (closing one closes it)

        # data
        self.folder = widgets.Text(description="Songs folder", placeholder="folder of .wav/.flac/.mp3 (+ sidecars)",
                                   style=style, layout=wide())
        self.cache_dir = widgets.Text(description="Cache", placeholder="default: <songs folder>/.lora-cache",
                                      style=style, layout=wide())
        self.max_seconds = widgets.BoundedFloatText(description="Max seconds", value=240.0, min=1.0, max=600.0,
                                                    style=style)
        self.use_planner = widgets.Checkbox(value=False, description="label songs without a sidecar with the planner",
                                            indent=False, layout=widgets.Layout(width="auto", margin="0 0 0 16px"))
        self.prepare_button = widgets.Button(description="Prepare", icon="database", button_style="info")
        self.dataset_info = widgets.HTML("<i>No songs prepared yet. Put song.json or song.txt / song.lyrics.txt "
                                         "next to a song to caption it.</i>")
        # adapter shape and training
        self.rank = widgets.BoundedIntText(description="Rank", value=64, min=1, max=1024, style=style)
        self.alpha = widgets.BoundedFloatText(description="Alpha", value=128.0, min=0.01, max=4096.0, style=style)
        self.dropout = widgets.BoundedFloatText(description="Dropout", value=0.0, min=0.0, max=0.99, step=0.05,
                                                style=style)
        self.targets = widgets.Text(description="Target modules", value=", ".join(DEFAULT_TARGETS), style=style,
                                    layout=wide())
        self.lr = widgets.FloatLogSlider(description="Learning rate", value=3e-4, base=10, min=-6, max=-1, step=0.1,
                                         readout_format=".1e", style=style)
        self.steps = widgets.BoundedIntText(description="Steps", value=1000, min=1, max=1_000_000, style=style)
        self.batch_size = widgets.BoundedIntText(description="Batch size", value=1, min=1, max=64, style=style)
        self.grad_accum = widgets.BoundedIntText(description="Grad accum", value=1, min=1, max=1024, style=style)
        self.warmup = widgets.BoundedIntText(description="Warm-up steps", value=100, min=0, max=1_000_000,
                                             style=style)
        self.save_every = widgets.BoundedIntText(description="Save every", value=100, min=0, max=1_000_000,
                                                 style=style)
        self.objective = widgets.Dropdown(description="Objective", value="auto", style=style,
                                          layout=widgets.Layout(width="440px"),
                                          options=[("auto (from the checkpoint)", "auto"),
                                                   ("turbo: 8 discrete times", "turbo"),
                                                   ("base: logit-normal + condition dropout", "base")])
        self.cfg_dropout = widgets.BoundedFloatText(description="Cond. dropout", value=0.15, min=0.0, max=1.0,
                                                    step=0.05, style=style)
        self.seed = widgets.BoundedIntText(description="Seed", value=42, min=0, max=2 ** 31 - 1, style=style)
        self.output_dir = widgets.Text(description="Output", placeholder="default: <songs folder>/lora",
                                       style=style, layout=wide())
        self.resume = widgets.Checkbox(value=True, description="resume from the newest checkpoint in Output",
                                       indent=False, layout=widgets.Layout(width="auto", margin="0 0 0 124px"))
        self.train_button = widgets.Button(description="Train", icon="play", button_style="primary")
        self._init_jobs(state, [self.prepare_button, self.train_button], progress_width="320px")
        self.stop_button = self.cancel_button
        self.stop_button.description = "Stop"
        self.status.value = "ready"
        self.loss_plot = widgets.Image(format="png", value=loss_png([]), layout=widgets.Layout(width="480px"))
        # save and apply
        self.adapter_path = widgets.Text(description="Adapter", placeholder="trained adapter folder (or any peft LoRA)",
                                         style=style, layout=wide())
        self.save_path = widgets.Text(description="Save to", placeholder="e.g. loras/my-style", style=style,
                                      layout=wide())
        self.save_button = widgets.Button(description="Save", icon="save", disabled=True)
        self.adapter_name = widgets.Text(description="Name", placeholder="default: the folder's name", style=style)
        self.scale = widgets.FloatSlider(description="Scale", value=1.0, min=0.0, max=2.0, step=0.05, style=style,
                                         tooltip="0 = the base model exactly")
        self.apply_button = widgets.Button(description="Apply", icon="check", button_style="success")
        self.unload_button = widgets.Button(description="Unload", icon="times")
        self.loaded = widgets.HTML()
        self.applied_name: str | None = None

        self.prepare_button.on_click(lambda _: self.prepare())
        self.train_button.on_click(lambda _: self.train())
        self.save_button.on_click(lambda _: self.save())
        self.apply_button.on_click(lambda _: self.apply())
        self.unload_button.on_click(lambda _: self.unload())
        self.scale.observe(lambda change: self._scale_changed(), names="value")
        self.adapter_path.observe(lambda change: self._update_buttons(), names="value")
        state.observe(lambda change: self._show_loaded(), names="loras")
        state.observe(lambda change: self._planner_changed(), names="planner")
        self._planner_changed()
        self._show_loaded()
        self._update_buttons()

        # The progress, Stop and status line sit under the step that was started last (Prepare,
        # Train, or Save / Apply), so what a button did is said next to it.
        self.job_line = widgets.VBox([widgets.HBox([self.progress, self.stop_button]), self.status])
        self._slots = {name: widgets.VBox() for name in ("songs", "train", "apply")}
        self.status_section = "train"
        self._slots["train"].children = (self.job_line,)
        data_box = widgets.VBox([widgets.HTML("<b>1. Songs</b>"), self.folder, self.cache_dir,
                                 widgets.HBox([self.max_seconds, self.use_planner]), self.prepare_button,
                                 self._slots["songs"], self.dataset_info])
        config_box = widgets.VBox([
            widgets.HTML("<b>2. Train</b>"), widgets.HBox([self.rank, self.alpha, self.dropout]), self.targets,
            widgets.HBox([self.lr, self.steps]), widgets.HBox([self.batch_size, self.grad_accum, self.warmup]),
            widgets.HBox([self.objective, self.cfg_dropout]), widgets.HBox([self.save_every, self.seed]),
            self.output_dir, self.resume, self.train_button, self._slots["train"], self.loss_plot])
        apply_box = widgets.VBox([
            widgets.HTML("<b>3. Save and apply</b>"), self.adapter_path,
            widgets.HBox([self.save_path, self.save_button]),
            widgets.HBox([self.adapter_name, self.scale]), widgets.HBox([self.apply_button, self.unload_button]),
            self._slots["apply"], self.loaded])
        self.widget = widgets.VBox([data_box, config_box, apply_box])

    # ------------------------------------------------------------------ helpers
    def set_planner(self, planner) -> None:
        self.state.set_planner(planner)
        self._planner_changed()

    def _planner_changed(self) -> None:
        missing = self.planner is None
        self.use_planner.disabled = missing
        self.use_planner.value = not missing
        self.use_planner.description = ("label songs without a sidecar with the planner" if not missing else
                                        "label songs with the planner (load one in the Blueprint tab)")

    def _status_in(self, section: str) -> None:
        """Move the job line (progress, Stop, status) under `section` ("songs", "train" or "apply")."""
        if section != self.status_section:
            self._slots[self.status_section].children = ()
            self._slots[section].children = (self.job_line,)
            self.status_section = section

    def _set_status(self, text: str, error: bool = False) -> None:
        color = "#b00020" if error else "inherit"
        self.status.value = f"<span style='color:{color}'>{html.escape(text)}</span>"

    def _folder(self) -> Path:
        if not self.folder.value.strip():
            raise AceStepError("choose the songs folder first")
        return Path(self.folder.value.strip()).expanduser()

    def _cache(self) -> Path:
        text = self.cache_dir.value.strip()
        return Path(text).expanduser() if text else self._folder() / ".lora-cache"

    def _output(self) -> Path:
        text = self.output_dir.value.strip()
        return Path(text).expanduser() if text else self._folder() / "lora"

    def _busy(self, what: str) -> bool:
        if self.state.busy:
            self._set_status(f"{self.state.job.name} is running: wait for it or press "
                             f"{'Stop' if self.state.job.owner is self else 'Cancel'}", error=True)
            return True
        if self.engine.busy:
            self._set_status(f"a generation is running: {what} when it has finished", error=True)
            return True
        return False

    def _update_buttons(self) -> None:
        path = Path(self.adapter_path.value.strip()) if self.adapter_path.value.strip() else None
        self.save_button.disabled = path is None or not (path / ADAPTER_WEIGHTS).is_file()

    def lora_config(self) -> LoRAConfig:
        return LoRAConfig(rank=self.rank.value, alpha=self.alpha.value, dropout=self.dropout.value,
                          target_modules=self.targets.value).validate()

    def training_config(self) -> TrainingConfig:
        return TrainingConfig(lr=float(self.lr.value), steps=self.steps.value, batch_size=self.batch_size.value,
                              grad_accum=self.grad_accum.value, warmup=self.warmup.value,
                              save_every=self.save_every.value, objective=self.objective.value,
                              cfg_dropout=self.cfg_dropout.value, seed=self.seed.value).validate()

    def _show_dataset(self, dataset: LoRADataset) -> None:
        rows = "".join(
            f"<tr><td>{html.escape(s.audio)}</td><td>{s.seconds:.1f} s</td><td>{s.labelled_by}</td>"
            f"<td>{html.escape((s.blueprint.get('caption') or '')[:60]) or '<i>no caption</i>'}</td></tr>"
            for s in dataset.songs)
        skipped = "".join(f"<li><code>{html.escape(name)}</code>: {html.escape(reason)}</li>"
                          for name, reason in dataset.skipped)
        ignored = ", ".join(f"{html.escape(name)} ({html.escape(', '.join(keys))})"
                            for name, keys in dataset.ignored.items())
        self.dataset_info.value = (
            f"<b>{len(dataset)} songs, {dataset.seconds:.1f} s</b> cached in "
            f"<code>{html.escape(str(dataset.cache_dir))}</code><table>"
            "<tr><th>song</th><th>length</th><th>labels</th><th>caption</th></tr>"
            f"{rows}</table>"
            + (f"<div style='color:#8a6d00'>Skipped {len(dataset.skipped)} file(s):<ul>{skipped}</ul></div>"
               if skipped else "")
            + (f"<details><summary><small>sidecar keys left out (not blueprint fields)</small></summary>"
               f"<small>{ignored}</small></details>" if ignored else ""))

    def _show_loaded(self) -> None:
        loras = self.state.loras
        if loras:
            items = ", ".join(f"<b>{html.escape(a['name'])}</b> &times; {a['scale']:g}" for a in loras)
            self.loaded.value = f"loaded on the engine: {items}"
        else:
            self.loaded.value = "<i>no adapter loaded: generation uses the base model</i>"

    # ------------------------------------------------------------------ prepare
    def prepare(self):
        """Encode the folder's songs on a worker thread; returns the Job (`job.result()` is the dataset)."""
        self._status_in("songs")
        if self._busy("prepare"):
            return None
        try:
            folder, cache = self._folder(), self._cache()
        except AceStepError as exc:
            self._set_status(str(exc), error=True)
            return None
        planner = self.planner if self.use_planner.value else None
        max_seconds, engine = self.max_seconds.value, self.engine

        def work(cancel, progress):
            def report(p):
                progress.stage("preparing", 0.98 * p.fraction, f"preparing: {p.message}")

            self.dataset = prepare_dataset(engine, folder, cache, planner=planner, max_seconds=max_seconds,
                                           progress=report, cancel=cancel)
            return self.dataset

        def show(dataset):
            self._show_dataset(dataset)
            skipped = f", {len(dataset.skipped)} skipped (see below)" if dataset.skipped else ""
            return html.escape(f"{len(dataset)} songs ready{skipped}: press Train") + " {time}"

        return self.run_job("preparation", work, show=show,
                            cancelled="stopped: the songs prepared so far stay cached")

    # ------------------------------------------------------------------ train
    def train(self):
        """Train on the prepared songs on a worker thread; returns the Job (`job.result()` is the
        TrainingResult). The loss plot updates as it runs; Stop saves the adapter at the current step."""
        self._status_in("train")
        if self._busy("train"):
            return None
        try:
            lora, training = self.lora_config(), self.training_config()
            output = self._output()
            dataset = self.dataset
            if dataset is None or dataset.cache_dir.resolve() != self._cache().resolve():
                # The folder changed since Prepare (or the panel is new): use what its cache holds.
                dataset = LoRADataset.load(self._cache()) if (self._cache() / MANIFEST).is_file() else None
            if dataset is None:
                raise AceStepError("prepare the songs first (press Prepare)")
        except (AceStepError, ValueError) as exc:
            self._set_status(str(exc), error=True)
            return None
        resume, engine = self.resume.value, self.engine
        self.losses = []
        self._last_plot = 0.0

        def work(cancel, progress):
            def report(p):
                if p.stage == "train" and p.loss is not None:
                    self.losses.append(p.loss)
                progress.stage("training" if p.stage != "save" else "saving", 0.98 * p.fraction, p.message)
                now = time.monotonic()
                if p.stage == "train" and now - self._last_plot >= PLOT_INTERVAL_S:
                    self._last_plot = now
                    png = loss_png(list(self.losses))
                    post(lambda: setattr(self.loss_plot, "value", png))

            result = train(engine, dataset, output, lora, training, progress=report, cancel=cancel, resume=resume)
            self.losses = list(result.losses)  # a resumed run plots the updates before the checkpoint too
            self.result = result
            return result, loss_png(self.losses)

        def show(value):
            result, png = value
            self.loss_plot.value = png
            self.adapter_path.value = str(result.adapter_path)
            self._update_buttons()
            word = "stopped" if result.stopped else "finished"
            loss = f", last loss {result.final_loss:.4f}" if result.final_loss is not None else ""
            return html.escape(f"{word} at step {result.step}/{result.steps}{loss}; adapter saved to "
                               f"{result.adapter_path}: press Apply to generate with it") + " {time}"

        def failed(error):
            hint = " (in this panel: untick 'resume')" if "resume=False" in str(error) else ""
            return f"{type(error).__name__}: {error}{hint}"

        return self.run_job("training", work, show=show, failed=failed)

    def stop(self) -> None:
        """Stop preparation between songs, or training after the current update (its adapter is saved)."""
        if self.job is not None and self.job.running:
            self.job.cancel()
            self._set_status(f"stopping the {self.job.name} after the current step...")

    def cancel(self) -> None:
        self.stop()

    # ------------------------------------------------------------------ save and apply
    def save(self) -> Path | None:
        """Copy the adapter (adapter_config.json + adapter_model.safetensors) to `save_path`."""
        self._status_in("apply")
        try:
            source = Path(self.adapter_path.value.strip())
            if not (source / ADAPTER_WEIGHTS).is_file():
                raise AceStepError(f"{source} holds no trained adapter ({ADAPTER_WEIGHTS})")
            if not self.save_path.value.strip():
                raise AceStepError("type a folder in 'Save to' first")
            target = Path(self.save_path.value.strip()).expanduser()
            if target.resolve() == source.resolve():
                raise AceStepError("'Save to' is the adapter's own folder")
            target.mkdir(parents=True, exist_ok=True)
            for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
                shutil.copy2(source / name, target / name)
        except (AceStepError, OSError) as exc:
            self._set_status(f"not saved: {exc}", error=True)
            return None
        self.adapter_path.value = str(target)
        self._set_status(f"adapter saved to {target}")
        return target

    def apply(self) -> str | None:
        """Load the adapter onto the engine at the slider's scale (replacing one of the same name)."""
        self._status_in("apply")
        if self._busy("apply an adapter"):
            return None
        try:
            path = self.adapter_path.value.strip()
            if not path:
                raise AceStepError("train an adapter or type an adapter folder first")
            name = self.adapter_name.value.strip() or adapter_name_for(Path(path))
            if any(a["name"] == name for a in self.engine.loras()):
                self.engine.unload_lora(name)
            self.applied_name = self.engine.load_lora(path, name=name, scale=self.scale.value)
        except (AceStepError, ValueError, OSError) as exc:
            self._set_status(f"not applied: {exc}", error=True)
            return None
        self.state.refresh_loras()
        self._set_status(f"{self.applied_name} applied at scale {self.scale.value:g}: generate as usual")
        return self.applied_name

    def _scale_changed(self) -> None:
        if self.applied_name is None or not any(a["name"] == self.applied_name for a in self.engine.loras()):
            return
        if self._busy("change the scale"):
            return
        self.engine.set_lora_scale(self.scale.value, self.applied_name)
        self.state.refresh_loras()

    def unload(self) -> None:
        """Remove the applied adapter (or every adapter if none was applied here) from the engine."""
        self._status_in("apply")
        if self._busy("unload"):
            return
        names = [a["name"] for a in self.engine.loras()]
        if self.applied_name in names:
            self.engine.unload_lora(self.applied_name)
        elif names:
            self.engine.unload_lora()
        self.applied_name = None
        self.state.refresh_loras()
        self._set_status("adapter unloaded: generation uses the base model")

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.widget, **kwargs)
