"""TracksPanel: extract tracks, add a layer (lego), complete an accompaniment. Needs the base model."""

from __future__ import annotations

import html

import ipywidgets as widgets

from acestep_engine import Complete, Extract, ExtractAll, Lego
from acestep_engine.blueprint import TRACK_NAMES
from acestep_engine.errors import AceStepError

from .display import widget_bundle
from .jobs import JobPanel
from .state import WorkbenchState
from .views import AudioPlayer, CardList, LazyView, TakeCard, heading, task_words

BASE_VARIANT = "acestep-v15-base"


class TracksPanel(JobPanel, LazyView):
    """Extract one or several of the 12 tracks, lego one track (optionally in a region), or complete
    a vocal with accompaniment tracks, from the current take. On turbo/sft the controls are disabled
    with the reason and a button that loads the base checkpoint (downloading it only if the engine
    allows downloads); once loaded, the base model is part of the shared state (the header shows it)."""

    def __init__(self, source=None, engine=None, store=None, state: WorkbenchState | None = None):
        if state is None:
            state = WorkbenchState(engine=engine, store=store, current_take=source)
        elif source is not None:
            state.current_take = source
        self.source = state.current_take
        self.takes: list = []  # the last run's takes
        style = {"description_width": "initial"}
        self.heading = widgets.HTML()
        self.operation = widgets.ToggleButtons(options=["extract", "lego", "complete"], value="extract")
        self.extract_tracks = widgets.SelectMultiple(options=TRACK_NAMES, value=("vocals",), rows=6,
                                                     description="Tracks", style=style)
        self.lego_track = widgets.Dropdown(options=TRACK_NAMES, value="drums", description="Add track", style=style,
                                           layout=widgets.Layout(width="220px"))
        self.lego_start = widgets.Text(description="From (s)", placeholder="start of song", style=style,
                                       layout=widgets.Layout(width="200px"))
        self.lego_end = widgets.Text(description="To (s)", placeholder="end of song", style=style,
                                     layout=widgets.Layout(width="200px"))
        self.complete_tracks = widgets.SelectMultiple(options=TRACK_NAMES, value=("drums", "bass"), rows=6,
                                                      description="With", style=style)
        self.seed = widgets.Text(description="Seed", placeholder="random", style=style,
                                 layout=widgets.Layout(width="180px"))
        self.run_button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.load_base_button = widgets.Button(description=f"Load {BASE_VARIANT}", icon="download",
                                               layout=widgets.Layout(width="auto"))
        self._init_jobs(state, [self.run_button, self.load_base_button])
        self.gate = widgets.HTML()
        self.player = AudioPlayer("Take")
        self.results = CardList(lambda take: TakeCard(take, player=self.player), limit=6,
                                load=lambda take_id: self.store.load(take_id))
        self.options = widgets.VBox()
        self.lego_row = widgets.HBox([self.lego_track, self.lego_start, self.lego_end])
        self.operation.observe(lambda change: self._show_options(), names="value")
        self.run_button.on_click(lambda _: self.run())
        self.load_base_button.on_click(lambda _: self.load_base())
        self.controls = widgets.VBox([self.operation, self.options,
                                      widgets.HBox([self.seed, self.run_button, self.cancel_button, self.progress]),
                                      self.status, self.player.widget, self.results.widget])
        self.widget = widgets.VBox([self.heading, self.gate, self.load_base_button, self.controls])
        state.observe(lambda change: self._update_gate(), names=["engine", "engines"])
        state.observe(lambda change: self._source_changed(), names="current_take")
        self._show_options()
        self._update_gate()
        self._source_changed()

    @property
    def engine(self):
        """The loaded engine that can run extract, lego and complete (else the main one)."""
        return self.state.engine_for("extract") or self.state.engine

    def set_source(self, take) -> None:
        self.state.current_take = take

    def _source_changed(self) -> None:
        self.source = self.state.current_take
        self.heading.value = heading("Tracks", self.source)
        self.controls.layout.display = "none" if self.source is None else None

    @property
    def capable(self) -> bool:
        return self.state.engine_for("extract") is not None

    def _button_enabled(self, button) -> bool:
        return self.capable if button is self.run_button else not self.capable

    def _update_gate(self) -> None:
        capable = self.capable
        for control in (self.operation, self.extract_tracks, self.lego_track, self.lego_start, self.lego_end,
                        self.complete_tracks):
            control.disabled = not capable
        self.sync_buttons()
        if capable:
            self.gate.value = f"<small>running on {html.escape(self.engine.variant.name)}</small>"
            self.load_base_button.layout.display = "none"
        else:
            self.gate.value = (f"<span style='color:#8a6d00'>Extract, lego and complete need the {BASE_VARIANT} "
                               f"checkpoint; {html.escape(self.state.engine.variant.name)} cannot run them.</span>")
            self.load_base_button.layout.display = None

    def load_base(self) -> None:
        """Load the base model beside the engine (every tab and the header see it)."""
        try:
            self.state.load_variant(BASE_VARIANT)
        except AceStepError as exc:
            self._set_status(str(exc), error=True)
            return
        self._set_status(f"loaded {BASE_VARIANT}")

    def _show_options(self) -> None:
        op = self.operation.value
        if op == "extract":
            self.options.children = (self.extract_tracks,)
        elif op == "lego":
            self.options.children = (self.lego_row,)
        else:
            self.options.children = (self.complete_tracks,)

    def build_task(self):
        if self.source is None:
            raise AceStepError("generate or select a take first: tracks work on the current take")
        op = self.operation.value
        if op == "extract":
            tracks = tuple(self.extract_tracks.value)
            if not tracks:
                raise AceStepError("choose at least one track to extract")
            return Extract(self.source, tracks[0]) if len(tracks) == 1 else ExtractAll(self.source, tracks)
        if op == "lego":
            start, end = self.lego_start.value.strip(), self.lego_end.value.strip()
            try:
                region = (float(start), float(end)) if start or end else (None, None)
            except ValueError:
                raise AceStepError(f"the region must be two numbers of seconds (got {start!r}, {end!r})") from None
            return Lego(self.source, self.lego_track.value, *region)
        tracks = tuple(self.complete_tracks.value)
        if not tracks:
            raise AceStepError("choose at least one accompaniment track")
        return Complete(self.source, tracks)

    def run(self):
        if self._refuse_if_busy():
            return self.job
        inputs = self.checked_inputs(self._inputs)
        if inputs is None:
            return None
        task, seed = inputs
        engine, source = self.engine, self.source

        def work(cancel, progress):
            return engine.generate(source.blueprint, task, seeds=seed, progress=progress.part("model", 0.0, 0.95),
                                   cancel=cancel)

        def show(takes):
            self.results.add(takes)
            self.state.takes_added(takes)  # the first result is the current take of every tab
            names = ", ".join(task_words(t.task) for t in takes)
            return f"{len(takes)} take(s) from {html.escape(source.title)}: {html.escape(names)}"

        return self.run_job("tracks", work, save=self.saving(keep=self._keep_takes), show=show)

    def _inputs(self):
        if not self.capable:
            raise AceStepError(f"load the {BASE_VARIANT} checkpoint first")
        return self.build_task().validate(), self.seed_field()

    def _keep_takes(self, takes) -> None:
        self.takes = list(takes)

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.widget, **kwargs)
