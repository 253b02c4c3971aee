"""GeneratePanel: run the engine on the editor's blueprint without blocking the notebook."""

from __future__ import annotations

import ipywidgets as widgets

from acestep_engine import Cover, GenerationCancelled, Text2Music
from acestep_engine.errors import AceStepError

from .jobs import JobRunner, post
from .views import TakeCard

TASKS = [("text2music: from the blueprint", "text2music"), ("cover: restyle the current source", "cover")]


def parse_seeds(text: str, batch: int):
    """'' -> random; '42' -> 42, 43, ...; '1, 5, 9' -> one per item."""
    text = text.strip()
    if not text:
        return None
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"seeds must be whole numbers separated by commas (got {text!r})") from None
    return values[0] if len(values) == 1 else values


def _item_seed(seeds, i: int) -> int:
    return seeds[i] if isinstance(seeds, list) else seeds + i


class GeneratePanel:
    """Task, batch, seeds and sampler settings (prefilled with the loaded variant's preset);
    Generate runs on a worker thread with a progress bar, status line and a working Cancel."""

    def __init__(self, engine, editor, store=None, on_take=None, planner=None):
        self.engine, self.editor, self.store = engine, editor, store
        self.planner = planner
        self.on_take = on_take
        self.source = None  # the take a cover starts from (set by "Use as source")
        self.takes: list = []
        self.runner = JobRunner()
        self.job = None
        preset = engine.preset
        style = {"description_width": "90px"}
        self.task = widgets.Dropdown(description="Task", options=TASKS, value="text2music", style=style)
        self.cover_strength = widgets.FloatSlider(description="Keep structure", value=1.0, min=0, max=1, step=0.05,
                                                  style=style, tooltip="1 = follow the source closely, 0 = restyle")
        self.batch_size = widgets.IntSlider(description="Takes", value=1, min=1, max=8, style=style)
        self.seeds = widgets.Text(description="Seeds", placeholder="random (or 42, or 1, 2, 3)", style=style)
        self.steps = widgets.BoundedIntText(description="Steps", value=preset.steps, min=1, max=200, style=style,
                                            disabled=engine.variant.turbo)
        self.shift = widgets.BoundedFloatText(description="Shift", value=preset.shift, min=1.0, max=5.0, step=0.5,
                                              style=style)
        self.guidance = widgets.BoundedFloatText(description="Guidance", value=preset.guidance, min=1.0, max=15.0,
                                                 step=0.5, style=style, disabled=engine.variant.turbo)
        self.preset_note = widgets.HTML(
            f"<small>{engine.variant.name}: preset {preset.steps} steps, shift {preset.shift:g}, "
            f"guidance {preset.guidance:g}{' (turbo: fixed 8 steps, no guidance)' if engine.variant.turbo else ''}"
            f"{' &middot; <b>demo checkpoint: random weights, makes noise</b>' if engine.is_demo else ''}</small>")
        self.lora_note = widgets.HTML()
        self.think = widgets.Checkbox(description="Think first: the planner writes the audio codes, the DiT renders them",
                                      layout=widgets.Layout(width="auto"), indent=False)
        self.think_note = widgets.HTML()
        self.generate_button = widgets.Button(description="Generate", button_style="primary", icon="play")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True)
        self.progress = widgets.IntProgress(value=0, min=0, max=1000, layout=widgets.Layout(width="320px"))
        self.status = widgets.HTML("ready")
        self.results = widgets.VBox()
        self.source_label = widgets.HTML()
        self.generate_button.on_click(lambda _: self.generate())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.task.observe(lambda change: self._update_task_controls(), names="value")
        self._update_task_controls()
        self.set_planner(planner)
        self.show_loras(engine.loras())
        self.widget = widgets.VBox([
            widgets.HBox([self.task, self.source_label]), self.cover_strength,
            widgets.HBox([self.batch_size, self.seeds]), widgets.HBox([self.steps, self.shift, self.guidance]),
            self.preset_note, self.lora_note, widgets.HBox([self.think, self.think_note]), widgets.HBox([self.generate_button, self.cancel_button, self.progress]),
            self.status, self.results,
        ])

    # ------------------------------------------------------------------ controls
    def set_source(self, take) -> None:
        self.source = take
        self._update_task_controls()

    def _update_task_controls(self) -> None:
        cover = self.task.value == "cover"
        self.cover_strength.layout.display = None if cover else "none"
        if cover and self.source is None:
            self.source_label.value = "<span style='color:#b00020'>no source: press 'Use as source' on a take</span>"
        elif cover:
            self.source_label.value = f"source: <b>{self.source.title}</b>"
        else:
            self.source_label.value = ""

    def set_planner(self, planner) -> None:
        """Enable "Think first" (upstream's LM-then-DiT flow) when a planner is loaded."""
        self.planner = planner
        self.think.disabled = planner is None
        if planner is None:
            self.think.value = False
            self.think_note.value = "<small><i>needs a planner: Load planner in the Blueprint tab</i></small>"
        else:
            self.think_note.value = ""

    def show_loras(self, loras) -> None:
        """Show the LoRA adapters (and scales) the next takes will be made with (`engine.loras()`)."""
        shown = [f"{a['name']} &times; {a['scale']:g}" for a in loras]
        self.lora_note.value = f"<small>LoRA: {', '.join(shown)}</small>" if shown else ""

    def build_task(self):
        if self.task.value == "cover":
            if self.source is None:
                raise AceStepError("cover needs a source: press 'Use as source' on a take first")
            return Cover(self.source, strength=self.cover_strength.value)
        return Text2Music()

    def _set_status(self, text: str, error: bool = False) -> None:
        color = "#b00020" if error else "inherit"
        self.status.value = f"<span style='color:{color}'>{text}</span>"

    # ------------------------------------------------------------------ actions
    def generate(self):
        """Start a generation on a worker thread; returns the Job (`job.result()` waits for the takes)."""
        if self.runner.busy:
            self._set_status("a generation is already running: wait for it or press Cancel", error=True)
            return self.job
        try:
            blueprint = self.editor.valid_blueprint()
            task = self.build_task()
            seeds = parse_seeds(self.seeds.value, self.batch_size.value)
        except (AceStepError, ValueError) as exc:
            self._set_status(str(exc), error=True)
            return None
        self.show_loras(self.engine.loras())
        options = dict(batch_size=self.batch_size.value, seeds=seeds, shift=self.shift.value)
        if not self.engine.variant.turbo:
            options.update(steps=self.steps.value, guidance=self.guidance.value)
        self.generate_button.disabled, self.cancel_button.disabled = True, False
        self.progress.value = 0
        self._set_status("starting...")

        def report(p):
            post(lambda: (setattr(self.progress, "value", int(1000 * p.fraction)),
                          self._set_status(f"{p.message} ({int(100 * p.fraction)} %)")))

        think = self.think.value and self.planner is not None and isinstance(task, Text2Music)
        planner = self.planner

        def work(cancel):
            if think:  # one code string per take, then the cover path renders them (as upstream)
                codes = planner.codes_batch(blueprint, options["batch_size"], seeds=options["seeds"],
                                            progress=report, cancel=cancel)
                takes = []
                for i, code_string in enumerate(codes):
                    item = dict(options, batch_size=1,
                                seeds=None if options["seeds"] is None else _item_seed(options["seeds"], i))
                    takes += self.engine.generate(blueprint, Text2Music(audio_codes=code_string), progress=report,
                                                  cancel=cancel, **item)
                return takes
            return self.engine.generate(blueprint, task, progress=report, cancel=cancel, **options)

        self.job = self.runner.start("generate", work, on_done=self._finished)
        return self.job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self._set_status("cancelling after the current step...")

    def _finished(self, job) -> None:
        if job.error is None:  # model state first, on the worker: job.result() returns after this
            for take in job.value:
                if self.store is not None:
                    self.store.save(take)
            self.takes.extend(job.value)

        def update():
            self.generate_button.disabled, self.cancel_button.disabled = False, True
            if isinstance(job.error, GenerationCancelled):
                self.progress.value = 0
                self._set_status("cancelled: nothing was saved")
                return
            if job.error is not None:
                self._set_status(f"{type(job.error).__name__}: {job.error}", error=True)
                return
            takes = job.value
            for take in takes:
                if self.on_take is not None:
                    self.on_take(take)
            cards = [TakeCard(t, on_recall=self.recall, on_use_as_source=self.set_source).widget for t in takes]
            self.results.children = tuple(cards) + tuple(self.results.children)
            self.progress.value = 1000
            seconds = takes[0].timings["total_s"] if takes else 0.0
            self._set_status(f"{len(takes)} take(s) in {seconds:.1f} s"
                             + (f", saved to {self.store.folder}" if self.store is not None else ""))

        post(update)

    def recall(self, take) -> None:
        """Put a take's blueprint back in the editor."""
        self.editor.set_blueprint(take.blueprint)
        self._set_status(f"recalled the blueprint of {take.title}")

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
