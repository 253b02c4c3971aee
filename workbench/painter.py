"""RepaintPainter: paint regions on a take's spectrogram, repaint or extend them, compare before/after.

The region canvas is a small anywidget whose JavaScript ships in this package (no CDN, so it
works offline, in JupyterLab, VS Code and Colab). Where custom widgets cannot load, a fallback
built from core widgets (range sliders over a PNG spectrogram) offers the same `regions` trait.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import traitlets

from acestep_engine import Extend, GenerationCancelled, Repaint
from acestep_engine.errors import AceStepError

from .jobs import JobRunner, post
from .views import SpectrogramView

_JS = Path(__file__).with_name("static") / "region_canvas.js"


def painter_png(take) -> tuple[bytes, float, float]:
    """A wide log-mel spectrogram and the horizontal span of its plot area (figure fractions)."""
    import librosa
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    mono = take.audio.mean(axis=0)
    mel = librosa.feature.melspectrogram(y=mono, sr=take.sample_rate, n_mels=64, hop_length=1024)
    db = librosa.power_to_db(mel, ref=np.max(mel) if mel.max() > 0 else 1.0)
    fig, ax = plt.subplots(figsize=(10, 2.4))
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", extent=[0, take.duration, 0, db.shape[0]])
    ax.set_xlabel("time (s)")
    ax.set_yticks([])
    fig.tight_layout()
    position = ax.get_position()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue(), float(position.x0), float(position.x1)


def _custom_widgets_available() -> bool:
    try:
        import anywidget  # noqa: F401
    except ImportError:
        return False
    return _JS.is_file()


def _make_region_canvas_class():
    import anywidget

    class RegionCanvas(anywidget.AnyWidget):
        """Spectrogram with draggable regions; `regions` is a list of [start, end] seconds."""

        _esm = _JS
        image = traitlets.Unicode("").tag(sync=True)
        duration = traitlets.Float(1.0).tag(sync=True)
        plot_left = traitlets.Float(0.0).tag(sync=True)
        plot_right = traitlets.Float(1.0).tag(sync=True)
        regions = traitlets.List().tag(sync=True)

        def set_take(self, take) -> None:
            png, left, right = painter_png(take)
            self.duration, self.plot_left, self.plot_right = take.duration, left, right
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
        self.children = [self.image, widgets.Label("Drag the sliders to set each region (seconds)."), self.sliders]
        self.observe(lambda change: self._rebuild(), names="regions")

    def set_take(self, take) -> None:
        png, _, _ = painter_png(take)
        self.duration = take.duration
        self.image.value = png
        self._rebuild()

    def _rebuild(self) -> None:
        sliders = []
        for i, (start, end) in enumerate(self.regions):
            slider = widgets.FloatRangeSlider(value=(max(0.0, start), min(self.duration, end)), min=0.0,
                                              max=self.duration, step=0.05, description=f"region {i + 1}",
                                              layout=widgets.Layout(width="100%"))
            slider.observe(lambda change, i=i: self._slider_moved(i, change["new"]), names="value")
            sliders.append(slider)
        self.sliders.children = sliders

    def _slider_moved(self, index: int, value) -> None:
        regions = [list(r) for r in self.regions]
        regions[index] = [round(value[0], 2), round(value[1], 2)]
        self.regions = regions


class RepaintPainter:
    """Regions painted on the canvas and the start/end boxes stay in sync both ways; Repaint makes
    a new take linked to its parent and shows it against the source."""

    def __init__(self, take, engine, store=None, use_custom_widget: bool | None = None):
        self.engine, self.store = engine, store
        self.runner = JobRunner()
        self.job = None
        self.result = None
        custom = _custom_widgets_available() if use_custom_widget is None else use_custom_widget
        self.canvas = _make_region_canvas_class()() if custom else SliderRegionCanvas()
        self.rows = widgets.VBox()
        self.add_button = widgets.Button(description="Add region", icon="plus")
        self.extend_left = widgets.BoundedFloatText(description="Extend left (s)", value=0.0, min=0.0, max=600.0,
                                                    style={"description_width": "110px"})
        self.extend_right = widgets.BoundedFloatText(description="Extend right (s)", value=0.0, min=0.0,
                                                     max=600.0, style={"description_width": "110px"})
        self.context = widgets.BoundedFloatText(description="Context (s)", value=0.0, min=0.0, max=600.0,
                                                tooltip="how much of the song the model sees when extending; 0 = all",
                                                style={"description_width": "110px"})
        self.mode = widgets.Dropdown(description="Mode", options=["balanced", "conservative", "aggressive"],
                                     value="balanced")
        self.strength = widgets.FloatSlider(description="Strength", value=0.5, min=0.0, max=1.0, step=0.05,
                                            tooltip="balanced mode: 0 keeps the surroundings, 1 regenerates freely")
        self.seed = widgets.Text(description="Seed", placeholder="random")
        self.repaint_button = widgets.Button(description="Repaint", button_style="primary", icon="paint-brush")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True)
        self.next_button = widgets.Button(description="Continue from result", disabled=True,
                                          tooltip="make the result the take to paint on")
        self.progress = widgets.IntProgress(value=0, min=0, max=1000)
        self.status = widgets.HTML()
        self.comparison = widgets.VBox()
        self._syncing = False

        self.canvas.observe(lambda change: self._canvas_changed(), names="regions")
        self.add_button.on_click(lambda _: self.add_region())
        self.repaint_button.on_click(lambda _: self.repaint())
        self.cancel_button.on_click(lambda _: self.job and self.job.cancel())
        self.next_button.on_click(lambda _: self.set_take(self.result))
        self.mode.observe(lambda change: setattr(self.strength, "disabled", change["new"] != "balanced"),
                          names="value")
        self.widget = widgets.VBox([
            self.canvas, self.rows, self.add_button,
            widgets.HBox([self.extend_left, self.extend_right, self.context]),
            widgets.HBox([self.mode, self.strength, self.seed]),
            widgets.HBox([self.repaint_button, self.cancel_button, self.next_button, self.progress]),
            self.status, self.comparison,
        ])
        self.set_take(take)

    # ------------------------------------------------------------------ regions, both ways
    @property
    def regions(self) -> list[tuple[float, float]]:
        return [(float(s), float(e)) for s, e in self.canvas.regions]

    @regions.setter
    def regions(self, values) -> None:
        self.canvas.regions = [[float(s), float(e)] for s, e in values]

    def set_take(self, take) -> None:
        self.take = take
        self.canvas.set_take(take)
        self.regions = []
        self.comparison.children = ()
        self.status.value = f"painting on <b>{take.title}</b> ({take.duration:.1f} s)"

    def add_region(self, start: float | None = None, end: float | None = None) -> None:
        duration = self.take.duration
        start = duration * 0.45 if start is None else start
        end = min(duration, start + max(1.0, duration * 0.1)) if end is None else end
        self.regions = self.regions + [(round(start, 2), round(end, 2))]

    def _canvas_changed(self) -> None:
        if self._syncing:
            return
        rows = []
        for i, (start, end) in enumerate(self.regions):
            start_box = widgets.FloatText(value=start, description=f"{i + 1}: start (s)",
                                          layout=widgets.Layout(width="200px"))
            end_box = widgets.FloatText(value=end, description="end (s)", layout=widgets.Layout(width="170px"))
            remove = widgets.Button(description="Remove", icon="times", layout=widgets.Layout(width="100px"))
            start_box.observe(lambda change, i=i: self._row_changed(i, 0, change["new"]), names="value")
            end_box.observe(lambda change, i=i: self._row_changed(i, 1, change["new"]), names="value")
            remove.on_click(lambda _, i=i: self.remove_region(i))
            rows.append(widgets.HBox([start_box, end_box, remove]))
        self.rows.children = rows

    def _row_changed(self, index: int, edge: int, value: float) -> None:
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
        left, right = self.extend_left.value, self.extend_right.value
        regions = self.regions
        if not regions and not (left or right):
            raise AceStepError("paint a region (or set Extend left/right) first")
        if not regions:
            return Extend(self.take, left=left, right=right, context=self.context.value or None, mode=self.mode.value,
                          strength=self.strength.value)
        if left:
            regions = [(-left, 0.0)] + regions
        if right:
            regions = regions + [(self.take.duration, self.take.duration + right)]
        return Repaint(self.take, regions=tuple(regions), mode=self.mode.value, strength=self.strength.value)

    def repaint(self):
        if self.runner.busy:
            self.status.value = "a repaint is already running: wait for it or press Cancel"
            return self.job
        try:
            task = self.build_task()
            task.validate()
            seed = int(self.seed.value) if self.seed.value.strip() else None
        except (AceStepError, ValueError) as exc:
            self.status.value = f"<span style='color:#b00020'>{exc}</span>"
            return None
        self.repaint_button.disabled, self.cancel_button.disabled = True, False
        source = self.take

        def report(p):
            post(lambda: setattr(self.progress, "value", int(1000 * p.fraction)))

        def work(cancel):
            return self.engine.generate(source.blueprint, task, seeds=seed, progress=report, cancel=cancel)

        def done(job):
            if job.error is None:  # model state first, on the worker: job.result() returns after this
                self.result = job.value[0]
                if self.store is not None:
                    self.store.save(self.result)

            def update():
                self.repaint_button.disabled, self.cancel_button.disabled = False, True
                if isinstance(job.error, GenerationCancelled):
                    self.status.value = "cancelled: nothing was saved"
                elif job.error is not None:
                    self.status.value = f"<span style='color:#b00020'>{type(job.error).__name__}: {job.error}</span>"
                else:
                    self.progress.value = 1000
                    self.next_button.disabled = False
                    self.comparison.children = (SpectrogramView(source, self.result, regions=self.regions).widget,)
                    self.status.value = (f"repainted: <b>{self.result.title}</b> ({self.result.duration:.1f} s), "
                                         f"from {source.title}. A = before, B = after.")

            post(update)

        self.job = self.runner.start("repaint", work, on_done=done)
        return self.job

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
