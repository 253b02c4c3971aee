"""RepaintPainter: paint regions on a take's spectrogram, repaint or extend them, compare before/after.

The region canvas is a small anywidget whose JavaScript ships in this package (no CDN, so it
works offline, in JupyterLab, VS Code and Colab). Where custom widgets cannot load, a fallback
built from core widgets (range sliders over a PNG spectrogram) offers the same `regions` trait.
"""

from __future__ import annotations

import base64
import functools
import html
import io
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import traitlets

from acestep_engine import Extend, Repaint
from acestep_engine.errors import AceStepError, TaskError

from .display import widget_bundle
from .jobs import JobPanel
from .state import WorkbenchState
from .views import LazyView, SpectrogramView, heading, replace_children

_JS = Path(__file__).with_name("static") / "region_canvas.js"


def painter_png(take) -> tuple[bytes, float, float]:
    """A wide log-mel spectrogram and the horizontal span of its plot area (figure fractions)."""
    png, (left, right, _, _) = painter_plot(take)
    return png, left, right


def painter_plot(take) -> tuple[bytes, tuple[float, float, float, float]]:
    """A wide log-mel spectrogram and its plot area as figure fractions (left, right, bottom, top)."""
    import librosa
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    mono = take.audio.mean(axis=0)
    mel = librosa.feature.melspectrogram(y=mono, sr=take.sample_rate, n_mels=64, hop_length=1024)
    db = librosa.power_to_db(mel, ref=np.max(mel) if mel.max() > 0 else 1.0)
    fig = Figure(figsize=(10, 2.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", extent=[0, take.duration, 0, db.shape[0]])
    ax.set_xlabel("time (s)")
    ax.set_yticks([])
    fig.tight_layout()
    position = ax.get_position()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue(), (float(position.x0), float(position.x1), float(position.y0), float(position.y1))


def _custom_widgets_available() -> bool:
    try:
        import anywidget  # noqa: F401
    except ImportError:
        return False
    return _JS.is_file()


@functools.lru_cache(maxsize=None)
def _make_region_canvas_class():
    import anywidget

    class RegionCanvas(anywidget.AnyWidget):
        """Spectrogram with draggable regions; `regions` is a list of [start, end] seconds."""

        _esm = _JS
        image = traitlets.Unicode("").tag(sync=True)
        duration = traitlets.Float(1.0).tag(sync=True)
        plot_left = traitlets.Float(0.0).tag(sync=True)
        plot_right = traitlets.Float(1.0).tag(sync=True)
        plot_bottom = traitlets.Float(0.0).tag(sync=True)
        plot_top = traitlets.Float(1.0).tag(sync=True)
        regions = traitlets.List().tag(sync=True)

        def set_take(self, take) -> None:
            png, (left, right, bottom, top) = painter_plot(take)
            self.duration, self.plot_left, self.plot_right = take.duration, left, right
            self.plot_bottom, self.plot_top = bottom, top
            self.image = "data:image/png;base64," + base64.b64encode(png).decode()

    return RegionCanvas


class SliderRegionCanvas(widgets.VBox):
    """Core-widgets fallback: the spectrogram as a PNG and one range slider per region."""

    regions = traitlets.List()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.sliders = widgets.VBox()
        self.duration = 1.0
        self._moving = False
        self.children = [self.image, widgets.HTML("Drag the sliders to set each region (seconds)."), self.sliders]
        self.observe(lambda change: self._rebuild(), names="regions")

    def set_take(self, take) -> None:
        png, _, _ = painter_png(take)
        self.duration = take.duration
        self.image.value = png
        self._rebuild(force=True)

    def _rebuild(self, force: bool = False) -> None:
        if self._moving:
            return
        current = list(self.sliders.children)
        if len(current) == len(self.regions) and not force:  # same regions, new bounds: move in place
            for slider, (start, end) in zip(current, self.regions):
                slider.value = (max(0.0, start), min(self.duration, end))
            return
        sliders = []
        for i, (start, end) in enumerate(self.regions):
            slider = widgets.FloatRangeSlider(value=(max(0.0, start), min(self.duration, end)), min=0.0,
                                              max=self.duration, step=0.05, description=f"region {i + 1}",
                                              layout=widgets.Layout(width="100%"))
            slider.observe(lambda change, i=i: self._slider_moved(i, change["new"]), names="value")
            sliders.append(slider)
        replace_children(self.sliders, sliders)

    def _slider_moved(self, index: int, value) -> None:
        if self._moving:
            return
        regions = [list(r) for r in self.regions]
        regions[index] = [round(value[0], 2), round(value[1], 2)]
        self._moving = True  # keep the slider being dragged
        try:
            self.regions = regions
        finally:
            self._moving = False


def check_regions(regions, duration: float) -> None:
    """Painted regions must lie on the take: refuse one past its ends with the field and the range."""
    for i, (start, end) in enumerate(regions, 1):
        if not 0.0 <= start <= duration:
            raise TaskError(f"region {i} start must be between 0 and {duration:.2f} s, the length of the take "
                            f"(got {start:g}); use 'Extend left' to add time before it")
        if not 0.0 <= end <= duration:
            raise TaskError(f"region {i} end must be between 0 and {duration:.2f} s, the length of the take "
                            f"(got {end:g}); use 'Extend right' to add time after it")


def shaded_regions(task, source_duration: float) -> tuple[list, list]:
    """Where the job changed the audio, in the source's and in the result's seconds: an extend
    to the left shifts everything in the result by `left`."""
    if isinstance(task, Extend):
        left, right = float(task.left), float(task.right)
        after = ([(0.0, left)] if left else []) + (
            [(source_duration + left, source_duration + left + right)] if right else [])
        return [], after
    regions = task.region_list()
    left = max([0.0] + [-start for start, _ in regions])
    before = [(max(0.0, s), min(source_duration, e)) for s, e in regions if e > 0 and s < source_duration]
    return before, [(s + left, e + left) for s, e in regions]


class RepaintPainter(JobPanel, LazyView):
    """Regions painted on the canvas and the start/end boxes stay in sync both ways; Repaint makes
    a new take linked to its parent and shows it against the source. The painter works on the
    current take of the shared state; its spectrogram is drawn when the tab is shown."""

    def __init__(self, take=None, engine=None, store=None, use_custom_widget: bool | None = None,
                 state: WorkbenchState | None = None):
        if state is None:
            state = WorkbenchState(engine=engine, store=store, current_take=take)
        elif take is not None:
            state.current_take = take
        self.result = None
        self.take = None
        custom = _custom_widgets_available() if use_custom_widget is None else use_custom_widget
        self.canvas = _make_region_canvas_class()() if custom else SliderRegionCanvas()
        self.heading = widgets.HTML()
        self.rows = widgets.VBox()
        style = {"description_width": "initial"}
        self.add_button = widgets.Button(description="Add region", icon="plus")
        self.extend_left = widgets.BoundedFloatText(description="Extend left (s)", value=0.0, min=0.0, max=600.0,
                                                    style=style, layout=widgets.Layout(width="190px"))
        self.extend_right = widgets.BoundedFloatText(description="Extend right (s)", value=0.0, min=0.0,
                                                     max=600.0, style=style, layout=widgets.Layout(width="190px"))
        self.context = widgets.BoundedFloatText(description="Context (s)", value=0.0, min=0.0, max=600.0,
                                                tooltip="how much of the song the model sees when extending; 0 = all",
                                                style=style, layout=widgets.Layout(width="170px"))
        self.mode = widgets.Dropdown(description="Mode", options=["balanced", "conservative", "aggressive"],
                                     value="balanced", style=style, layout=widgets.Layout(width="220px"))
        self.strength = widgets.FloatSlider(description="Strength", value=0.5, min=0.0, max=1.0, step=0.05,
                                            tooltip="balanced mode: 0 keeps the surroundings, 1 regenerates freely",
                                            style=style)
        self.seed = widgets.Text(description="Seed", placeholder="random", style=style,
                                 layout=widgets.Layout(width="180px"))
        self.repaint_button = widgets.Button(description="Repaint", button_style="primary", icon="paint-brush")
        self.back_button = widgets.Button(description="Back to the source", disabled=True,
                                          tooltip="make the take you repainted current again, to try another repaint",
                                          layout=widgets.Layout(width="auto"))
        self.before = None  # the take the last result was repainted from
        self._kept_regions: dict[str, list] = {}  # take id -> regions to paint on it: the last job's source and result
        self._init_jobs(state, [self.repaint_button])
        self.comparison = SpectrogramView()
        self.comparison.widget.layout.display = "none"
        self._syncing = False

        self.canvas.observe(lambda change: self._canvas_changed(), names="regions")
        self.add_button.on_click(lambda _: self.add_region())
        self.repaint_button.on_click(lambda _: self.repaint())
        self.back_button.on_click(lambda _: self.before is not None and self.set_take(self.before))
        self.mode.observe(lambda change: setattr(self.strength, "disabled", change["new"] != "balanced"),
                          names="value")
        self.controls = widgets.VBox([
            self.canvas, self.rows, self.add_button,
            widgets.HBox([self.extend_left, self.extend_right, self.context]),
            widgets.HBox([self.mode, self.strength, self.seed]),
            widgets.HBox([self.repaint_button, self.cancel_button, self.back_button, self.progress],
                         layout=widgets.Layout(flex_flow="row wrap")),
            self.status, self.comparison.widget,
        ])
        self.widget = widgets.VBox([self.heading, self.controls])
        state.observe(lambda change: self._take_changed(), names="current_take")
        self._take_changed()

    # ------------------------------------------------------------------ regions, both ways
    @property
    def regions(self) -> list[tuple[float, float]]:
        return [(float(s), float(e)) for s, e in self.canvas.regions]

    @regions.setter
    def regions(self, values) -> None:
        self.canvas.regions = [[float(s), float(e)] for s, e in values]

    def set_take(self, take) -> None:
        """Paint on `take`: it becomes the current take of every tab."""
        self.state.current_take = take

    def _take_changed(self) -> None:
        take = self.state.current_take
        self.heading.value = heading("Repaint", take)
        self.controls.layout.display = "none" if take is None else None
        if take is None or take is self.take:
            return
        self.take = take
        self.canvas.duration = take.duration
        self.regions = self._kept_regions.get(take.id, [])  # the same bars again, on the result or back on the source
        if take.id not in self._kept_regions:
            self._kept_regions = {}
        if take is not self.result:  # another take: the last before/after no longer applies
            self.result = self.before = None
            self.back_button.disabled = True
            self.comparison.show(None)
            self.comparison.widget.layout.display = "none"
            self.status.value = self._painting_on(take)
        self._invalidate()

    @staticmethod
    def _painting_on(take) -> str:
        return f"painting on <b>{html.escape(take.title)}</b> ({take.duration:.1f} s)"

    def _draw(self) -> None:
        if self.take is not None:
            self.canvas.set_take(self.take)

    def audio_players(self) -> list:
        return [self.comparison]

    def add_region(self, start: float | None = None, end: float | None = None) -> None:
        duration = self.take.duration
        start = duration * 0.45 if start is None else start
        end = min(duration, start + max(1.0, duration * 0.1)) if end is None else end
        self.regions = self.regions + [(round(start, 2), round(end, 2))]

    def _canvas_changed(self) -> None:
        if self.regions and self.take is not None and "paint a region" in self.status.value:
            self.status.value = self._painting_on(self.take)  # the complaint is answered
        if self._syncing:
            return
        rows = list(self.rows.children)
        if len(rows) == len(self.regions):  # moved, not added or removed: update the boxes in place
            self._syncing = True
            try:
                for row, (start, end) in zip(rows, self.regions):
                    row.children[0].value, row.children[1].value = start, end
            finally:
                self._syncing = False
            return
        rows = []
        for i, (start, end) in enumerate(self.regions):
            start_box = widgets.FloatText(value=start, description=f"{i + 1}: start (s)",
                                          style={"description_width": "initial"}, layout=widgets.Layout(width="200px"))
            end_box = widgets.FloatText(value=end, description="end (s)", style={"description_width": "initial"},
                                        layout=widgets.Layout(width="170px"))
            remove = widgets.Button(description="Remove", icon="times", layout=widgets.Layout(width="100px"))
            start_box.observe(lambda change, i=i: self._row_changed(i, 0, change["new"]), names="value")
            end_box.observe(lambda change, i=i: self._row_changed(i, 1, change["new"]), names="value")
            remove.on_click(lambda _, i=i: self.remove_region(i))
            rows.append(widgets.HBox([start_box, end_box, remove]))
        replace_children(self.rows, rows)

    def _row_changed(self, index: int, edge: int, value: float) -> None:
        if self._syncing:
            return
        regions = [list(r) for r in self.regions]
        regions[index][edge] = float(value)
        self._syncing = True  # keep the row boxes the user is typing in
        try:
            self.canvas.regions = regions
        finally:
            self._syncing = False

    def remove_region(self, index: int) -> None:
        self.regions = [r for i, r in enumerate(self.regions) if i != index]

    # ------------------------------------------------------------------ repaint
    def build_task(self):
        if self.take is None:
            raise AceStepError("generate or select a take first: the painter works on the current take")
        left, right = self.extend_left.value, self.extend_right.value
        regions = self.regions
        if not regions and not (left or right):
            raise AceStepError("paint a region (or set Extend left/right) first")
        check_regions(regions, self.take.duration)
        if not regions:
            return Extend(self.take, left=left, right=right, context=self.context.value or None, mode=self.mode.value,
                          strength=self.strength.value)
        if left:
            regions = [(-left, 0.0)] + regions
        if right:
            regions = regions + [(self.take.duration, self.take.duration + right)]
        return Repaint(self.take, regions=tuple(regions), mode=self.mode.value, strength=self.strength.value)

    def repaint(self):
        if self._refuse_if_busy():
            return self.job
        inputs = self.checked_inputs(lambda: (self.build_task().validate(), self.seed_field()))
        if inputs is None:
            return None
        task, seed = inputs
        source, engine = self.take, self.engine
        before, after = shaded_regions(task, source.duration)  # what this job changes, not what is painted later
        painted = self.regions
        shift = 0.0 if isinstance(task, Extend) else self.extend_left.value

        def work(cancel, progress):
            return engine.generate(source.blueprint, task, seeds=seed, progress=progress.part("model", 0.0, 0.95),
                                   cancel=cancel)

        done = "extended" if isinstance(task, Extend) else "repainted"

        def show(takes):
            result = self.result = takes[0]
            self.before = source
            self._kept_regions = {source.id: painted, result.id: [(s + shift, e + shift) for s, e in painted]}
            self.state.takes_added(takes)  # the result is the current take of every tab (and painted on next)
            self.back_button.disabled = False
            self.comparison.widget.layout.display = None
            self.comparison.show(source, result, regions=before, compare_regions=after)
            return (f"{done}: <b>{html.escape(result.title)}</b> ({result.duration:.1f} s), "
                    f"from {html.escape(source.title)}. A = before, B = after; the result is now the current take")

        return self.run_job("repaint", work, save=self.saving(keep=self._keep_result), show=show)

    def _keep_result(self, takes) -> None:
        self.result = takes[0]

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.widget, **kwargs)
