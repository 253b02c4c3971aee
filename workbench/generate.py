"""GeneratePanel: run the engine on the editor's blueprint without blocking the notebook."""

from __future__ import annotations

import html

import ipywidgets as widgets

from acestep_engine import Cover, Text2Music
from acestep_engine.errors import AceStepError
from acestep_engine.generation import GenerationSettings

from .display import widget_bundle
from .jobs import TIME, JobPanel
from .state import WorkbenchState
from .views import AudioPlayer, CardList, LazyView, TakeCard

RESULTS_SHOWN = 6  # cards shown at once; "show more" reveals the rest

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
        raise ValueError(f"seeds must be whole numbers >= 0 separated by commas (got {text!r})") from None
    negative = [v for v in values if v < 0]
    if negative:
        raise ValueError(f"seeds must be whole numbers >= 0 (got {negative[0]})")
    return values[0] if len(values) == 1 else values


def _item_seed(seeds, i: int) -> int:
    return seeds[i] if isinstance(seeds, list) else seeds + i


AFTER_RUN = [("next seeds", "next"), ("same seeds", "same"), ("random seeds", "random")]


def next_seeds(seeds, batch: int) -> str:
    """The Seeds box after a run with fixed seeds: the first seed after those used."""
    used = seeds if isinstance(seeds, list) else [seeds + i for i in range(batch)]
    return str(max(used) + 1)


class GeneratePanel(JobPanel, LazyView):
    """Task, batch, seeds and sampler settings (prefilled with the loaded variant's preset);
    Generate runs on a worker thread with a progress bar, status line and a working Cancel.
    New takes become the current take of the shared state (every tab follows) and appear as
    cards, newest first, with one player for the panel."""

    def __init__(self, engine, editor, store=None, on_take=None, planner=None, state: WorkbenchState | None = None,
                 on_recall=None):
        state = state if state is not None else editor.state
        if state.engine is None:
            state.engine, state.engines = engine, {engine.variant.name: engine}
            state.refresh_loras()
        if state.store is None and store is not None:
            state.store = store
        if planner is not None and state.planner is None:
            state.set_planner(planner)
        self.editor = editor
        self.on_take, self.on_recall = on_take, on_recall
        self.source = None  # the take a cover starts from (set by "Use as source")
        self.takes: list = []  # the last run's takes (earlier ones are in the store, not in memory)
        preset = engine.preset
        turbo = engine.variant.turbo
        bounds = GenerationSettings.bounds(engine.variant)  # the one place that knows the ranges
        style = {"description_width": "initial"}
        self.task = widgets.Dropdown(description="Task", options=TASKS, value="text2music", style=style,
                                     layout=widgets.Layout(width="340px"))
        self.cover_strength = widgets.FloatSlider(description="Keep structure", value=1.0, min=0, max=1, step=0.05,
                                                  style=style, tooltip="1 = follow the source closely, 0 = restyle")
        self.batch_size = widgets.IntSlider(description="Takes", value=1, min=bounds["batch_size"]["min"],
                                            max=bounds["batch_size"]["max"], style=style)
        self.seeds = widgets.Text(description="Seeds", placeholder="random (or 42, or 1, 2, 3)", style=style)
        self.after_run = widgets.Dropdown(description="after a run", options=AFTER_RUN, value="next", style=style,
                                          layout=widgets.Layout(width="220px"),
                                          tooltip="what the Seeds box holds after a run with fixed seeds")
        # Plain number boxes: a value out of range is refused with the range when Generate is pressed
        # (a bounded box would clamp it silently).
        self.steps = widgets.IntText(description="Steps", value=preset.steps, style=style,
                                     tooltip=f"{bounds['steps']['min']}-{bounds['steps']['max']}",
                                     layout=widgets.Layout(width="160px"))
        self.shift = widgets.FloatText(description="Shift", value=preset.shift, step=0.5 if not turbo else 1.0,
                                       tooltip=f"{bounds['shift']['min']:g}-{bounds['shift']['max']:g}",
                                       style=style, layout=widgets.Layout(width="160px"))
        self.guidance = widgets.FloatText(description="Guidance", value=preset.guidance, step=0.5, style=style,
                                          disabled=turbo, layout=widgets.Layout(width="170px"),
                                          tooltip=f"{bounds['guidance']['min']:g}-{bounds['guidance']['max']:g}")
        self.preset_note = widgets.HTML(
            f"<small>{engine.variant.name}: preset {preset.steps} steps, shift {preset.shift:g}, "
            f"guidance {preset.guidance:g}"
            f"{' (turbo: guidance is distilled into the weights; shift snaps to 1, 2 or 3)' if turbo else ''}"
            f"</small>")
        self.lora_note = widgets.HTML()
        self.think = widgets.Checkbox(description="Think first: the planner writes the audio codes, the DiT renders them",
                                      layout=widgets.Layout(width="auto"), indent=False)
        self.think_note = widgets.HTML()
        self.generate_button = widgets.Button(description="Generate", button_style="primary", icon="play")
        self._init_jobs(state, [self.generate_button], progress_width="320px")
        self.status.value = "ready"
        self.player = AudioPlayer("Take")
        self.results = CardList(self._card, limit=RESULTS_SHOWN, load=self._load_take)
        self.source_label = widgets.HTML()
        self.generate_button.on_click(lambda _: self.generate())
        self.task.observe(lambda change: self._update_task_controls(), names="value")
        state.observe(lambda change: self._planner_changed(), names="planner")
        state.observe(lambda change: self.show_loras(change["new"]), names="loras")
        state.observe(lambda change: state.store is not None and self.results.refresh_notes(state.store),
                      names="revision")  # badges follow Measure / Score / LRC in the Look tab
        self._update_task_controls()
        self._planner_changed()
        self.show_loras(state.loras)
        self.widget = widgets.VBox([
            widgets.HBox([self.task, self.source_label]), self.cover_strength,
            widgets.HBox([self.batch_size, self.seeds, self.after_run]),
            widgets.HBox([self.steps, self.shift, self.guidance]),
            self.preset_note, self.lora_note, widgets.HBox([self.think, self.think_note]),
            widgets.HBox([self.generate_button, self.cancel_button, self.progress]),
            self.status, self.player.widget, self.results.widget,
        ])

    # ------------------------------------------------------------------ controls
    def set_source(self, take) -> None:
        """Cover `take` next (Use as source): the task becomes cover and the status line says so."""
        self.source = take
        self.task.value = "cover"
        self._update_task_controls()
        self._set_status(f"source: <b>{html.escape(take.title)}</b>; press Generate to cover it "
                         "(Keep structure sets how closely)")

    def _update_task_controls(self) -> None:
        cover = self.task.value == "cover"
        self.cover_strength.layout.display = None if cover else "none"
        if cover and self.source is None:
            self.source_label.value = "<span style='color:#b00020'>no source: press 'Use as source' on a take</span>"
        elif cover:
            self.source_label.value = f"source: <b>{html.escape(self.source.title)}</b>"
        else:
            self.source_label.value = ""

    def set_planner(self, planner) -> None:
        """Use `planner` for "Think first" (and, through the shared state, in every tab)."""
        self.state.set_planner(planner)
        self._planner_changed()

    def _planner_changed(self) -> None:
        """Enable "Think first" (upstream's LM-then-DiT flow) when a planner is loaded."""
        missing = self.planner is None
        self.think.disabled = missing
        if missing:
            self.think.value = False
            self.think_note.value = "<small><i>needs a planner: Load planner in the Blueprint tab</i></small>"
        else:
            self.think_note.value = ""

    def show_loras(self, loras) -> None:
        """Show the LoRA adapters (and scales) the next takes will be made with (`engine.loras()`)."""
        shown = [f"{html.escape(a['name'])} &times; {a['scale']:g}" for a in loras]
        self.lora_note.value = f"<small>LoRA: {', '.join(shown)}</small>" if shown else ""

    def build_task(self):
        if self.task.value == "cover":
            if self.source is None:
                raise AceStepError("cover needs a source: press 'Use as source' on a take first")
            return Cover(self.source, strength=self.cover_strength.value)
        return Text2Music()

    def _load_take(self, take_id: str):
        return self.store.load(take_id)

    def _card(self, take) -> TakeCard:
        return TakeCard(take, on_recall=self.on_recall or self.recall, on_use_as_source=self.set_source,
                        player=self.player)

    # ------------------------------------------------------------------ actions
    def generate(self):
        """Start a generation on a worker thread; returns the Job (`job.result()` waits for the takes)."""
        if self._refuse_if_busy():
            return self.job
        try:
            blueprint = self.editor.valid_blueprint()
            task = self.build_task()
            seeds = parse_seeds(self.seeds.value, self.batch_size.value)
            GenerationSettings.build(self.engine.variant, steps=self.steps.value, shift=self.shift.value,
                                     guidance=None if self.engine.variant.turbo else self.guidance.value)
        except (AceStepError, ValueError) as exc:
            self._set_status(str(exc), error=True)
            return None
        engine, planner = self.engine, self.planner
        self.state.refresh_loras()  # adapters loaded from Python show up before the takes that use them
        batch = self.batch_size.value
        options = dict(batch_size=batch, seeds=seeds, shift=self.shift.value, steps=self.steps.value)
        if not engine.variant.turbo:
            options.update(guidance=self.guidance.value)
        think = self.think.value and planner is not None and isinstance(task, Text2Music)

        def work(cancel, progress):
            if not think:
                return engine.generate(blueprint, task, progress=progress.part("model", 0.0, 0.95), cancel=cancel,
                                       **options)
            # one code string per take, then the cover path renders them (as upstream)
            codes = planner.codes_batch(blueprint, batch, seeds=seeds, cancel=cancel,
                                        progress=progress.part("planning", 0.0, 0.5, prefix="planning: "))
            takes = []
            for i, code_string in enumerate(codes):
                item = dict(options, batch_size=1, seeds=None if seeds is None else _item_seed(seeds, i))
                share = 0.45 / len(codes)
                report = progress.part("model", 0.5 + i * share, 0.5 + (i + 1) * share,
                                       prefix=f"take {i + 1}/{len(codes)}: ")
                takes += engine.generate(blueprint, Text2Music(audio_codes=code_string), progress=report,
                                         cancel=cancel, **item)
            return takes

        def show(takes):
            self.state.takes_added(takes)  # every tab follows the newest take
            if self.on_take is not None:
                for take in takes:
                    self.on_take(take)
            self.results.add(takes)
            if takes:
                self.player.cue(takes[0])  # one click plays the newest take
            if seeds is not None and self.after_run.value != "same":
                self.seeds.value = next_seeds(seeds, batch) if self.after_run.value == "next" else ""
            where = f", saved to {html.escape(str(self.store.folder))}" if self.store is not None else ""
            return f"{len(takes)} take(s) {TIME}{where}"

        return self.run_job("generation", work, save=self.saving(keep=self._keep_takes), show=show)

    def recall(self, take) -> None:
        """Put a take's blueprint in the editor, its seed in Seeds, and its task (and cover source) here."""
        self.editor.set_blueprint(take.restore())
        self.seeds.value = str(take.seed)
        source = take.task.get("source")
        parent = source.get("take") if isinstance(source, dict) else None
        store = self.store
        if take.task.get("name") == "cover" and store is not None and parent in store:
            self.set_source(store.load(parent))
            self.cover_strength.value = float(take.task.get("strength", 1.0))
            self.task.value = "cover"
        elif take.task.get("name") == "text2music":
            self.task.value = "text2music"
        self._set_status(f"recalled the blueprint, seed and task of {html.escape(take.title)}")

    def _keep_takes(self, takes) -> None:
        self.takes = list(takes)

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.widget, **kwargs)
