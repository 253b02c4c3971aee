"""TracksPanel: extract tracks, add a layer (lego), complete an accompaniment. Needs the base model."""

from __future__ import annotations

import ipywidgets as widgets

from acestep_engine import Complete, Extract, ExtractAll, GenerationCancelled, Lego
from acestep_engine.blueprint import TRACK_NAMES
from acestep_engine.errors import AceStepError

from .jobs import JobRunner, post
from .views import TakeCard

BASE_VARIANT = "acestep-v15-base"


class TracksPanel:
    """Extract one or several of the 12 tracks, lego one track (optionally in a region), or complete
    a vocal with accompaniment tracks. On turbo/sft the controls are disabled with the reason and a
    button that loads the base checkpoint (downloading it only if the engine allows downloads)."""

    def __init__(self, source, engine, store=None):
        self.source, self.store = source, store
        self.engine = engine
        self.runner = JobRunner()
        self.job = None
        self.takes: list = []
        self.operation = widgets.ToggleButtons(options=["extract", "lego", "complete"], value="extract")
        self.extract_tracks = widgets.SelectMultiple(options=TRACK_NAMES, value=("vocals",), rows=6,
                                                     description="Tracks")
        self.lego_track = widgets.Dropdown(options=TRACK_NAMES, value="drums", description="Add track")
        self.lego_start = widgets.Text(description="From (s)", placeholder="start of song")
        self.lego_end = widgets.Text(description="To (s)", placeholder="end of song")
        self.complete_tracks = widgets.SelectMultiple(options=TRACK_NAMES, value=("drums", "bass"), rows=6,
                                                      description="With")
        self.seed = widgets.Text(description="Seed", placeholder="random")
        self.run_button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True)
        self.load_base_button = widgets.Button(description=f"Load {BASE_VARIANT}", icon="download")
        self.gate = widgets.HTML()
        self.progress = widgets.IntProgress(value=0, min=0, max=1000)
        self.status = widgets.HTML()
        self.results = widgets.VBox()
        self.options = widgets.VBox()
        self.operation.observe(lambda change: self._show_options(), names="value")
        self.run_button.on_click(lambda _: self.run())
        self.cancel_button.on_click(lambda _: self.job and self.job.cancel())
        self.load_base_button.on_click(lambda _: self.load_base())
        self.widget = widgets.VBox([self.gate, self.operation, self.options,
                                    widgets.HBox([self.seed, self.run_button, self.cancel_button, self.progress]),
                                    self.status, self.results])
        self._show_options()
        self._update_gate()

    def set_source(self, take) -> None:
        self.source = take
        self._update_gate()

    @property
    def capable(self) -> bool:
        return self.engine.can("extract")

    def _update_gate(self) -> None:
        controls = [self.operation, self.extract_tracks, self.lego_track, self.lego_start, self.lego_end,
                    self.complete_tracks, self.run_button]
        for control in controls:
            control.disabled = not self.capable
        if self.capable:
            self.gate.value = f"<small>running on {self.engine.variant.name}; source: <b>{self.source.title}</b></small>"
            self.load_base_button.layout.display = "none"
        else:
            self.gate.value = (f"<span style='color:#8a6d00'>Extract, lego and complete need the {BASE_VARIANT} "
                               f"checkpoint; {self.engine.variant.name} cannot run them.</span>")
            self.load_base_button.layout.display = None
            self.widget.children = (self.gate, self.load_base_button) + tuple(
                c for c in self.widget.children if c not in (self.gate, self.load_base_button))

    def load_base(self) -> None:
        try:
            self.engine = self.engine.with_variant(BASE_VARIANT)
        except AceStepError as exc:
            self.status.value = f"<span style='color:#b00020'>{exc}</span>"
            return
        self.status.value = f"loaded {BASE_VARIANT}"
        self._update_gate()

    def _show_options(self) -> None:
        op = self.operation.value
        if op == "extract":
            self.options.children = (self.extract_tracks,)
        elif op == "lego":
            self.options.children = (widgets.HBox([self.lego_track, self.lego_start, self.lego_end]),)
        else:
            self.options.children = (self.complete_tracks,)

    def build_task(self):
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
        if self.runner.busy:
            self.status.value = "already running: wait for it or press Cancel"
            return self.job
        try:
            if not self.capable:
                raise AceStepError(f"load the {BASE_VARIANT} checkpoint first")
            task = self.build_task()
            task.validate()
            seed = int(self.seed.value) if self.seed.value.strip() else None
        except (AceStepError, ValueError) as exc:
            self.status.value = f"<span style='color:#b00020'>{exc}</span>"
            return None
        engine, source = self.engine, self.source
        self.run_button.disabled, self.cancel_button.disabled = True, False

        def report(p):
            post(lambda: setattr(self.progress, "value", int(1000 * p.fraction)))

        def done(job):
            if job.error is None:  # model state first, on the worker: job.result() returns after this
                for take in job.value:
                    if self.store is not None:
                        self.store.save(take)
                self.takes.extend(job.value)

            def update():
                self.run_button.disabled, self.cancel_button.disabled = False, True
                if isinstance(job.error, GenerationCancelled):
                    self.status.value = "cancelled: nothing was saved"
                    return
                if job.error is not None:
                    self.status.value = f"<span style='color:#b00020'>{type(job.error).__name__}: {job.error}</span>"
                    return
                self.results.children = tuple(TakeCard(t).widget for t in job.value) + self.results.children
                self.progress.value = 1000
                names = ", ".join(t.task.get("track") or "+".join(t.task.get("tracks", [])) for t in job.value)
                self.status.value = f"{len(job.value)} take(s) from {source.title}: {names}"

            post(update)

        self.job = self.runner.start(
            "tracks", lambda cancel: engine.generate(source.blueprint, task, seeds=seed, progress=report,
                                                     cancel=cancel), on_done=done)
        return self.job

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
