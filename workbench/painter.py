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
from .sections import SectionFinding, draw_section_bands, has_lyrics, known_sections, section_bands, sections_words
from .state import WorkbenchState
from .views import LazyView, SpectrogramView, heading, replace_children

_JS = Path(__file__).with_name("static") / "region_canvas.js"


def painter_png(take, sections=None) -> tuple[bytes, float, float]:
    """A wide log-mel spectrogram and the horizontal span of its plot area (figure fractions)."""
    png, (left, right, _, _) = painter_plot(take, sections)
    return png, left, right


def painter_plot(take, sections=None) -> tuple[bytes, tuple[float, float, float, float]]:
    """A wide log-mel spectrogram and its plot area as figure fractions (left, right, bottom, top);
    `sections` are drawn on it as labelled bands (for the views without JavaScript to draw them)."""
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
    draw_section_bands(ax, sections)
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
        """Spectrogram with draggable regions; `regions` is a list of [start, end] seconds; `sections`
        ({name, start, end, estimated} each) are drawn as labelled bands: a click on a name paints it."""

        _esm = _JS
        image = traitlets.Unicode("").tag(sync=True)
        duration = traitlets.Float(1.0).tag(sync=True)
        plot_left = traitlets.Float(0.0).tag(sync=True)
        plot_right = traitlets.Float(1.0).tag(sync=True)
        plot_bottom = traitlets.Float(0.0).tag(sync=True)
        plot_top = traitlets.Float(1.0).tag(sync=True)
        regions = traitlets.List().tag(sync=True)
        sections = traitlets.List().tag(sync=True)

        def set_take(self, take, sections=None) -> None:
            png, (left, right, bottom, top) = painter_plot(take)
            self.duration, self.plot_left, self.plot_right = take.duration, left, right
            self.plot_bottom, self.plot_top = bottom, top
            self.image = "data:image/png;base64," + base64.b64encode(png).decode()
            self.set_sections(sections)

        def set_sections(self, sections) -> None:
            self.sections = section_bands(sections)

    return RegionCanvas


class SliderRegionCanvas(widgets.VBox):
    """Core-widgets fallback: the spectrogram as a PNG and one range slider per region."""

    regions = traitlets.List()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.sliders = widgets.VBox()
        self.duration = 1.0
        self.take, self.sections = None, []
        self._moving = False
        self.children = [self.image, widgets.HTML("Drag the sliders to set each region (seconds)."), self.sliders]
        self.observe(lambda change: self._rebuild(), names="regions")

    def set_take(self, take, sections=None) -> None:
        self.take, self.duration = take, take.duration
        self.sections = section_bands(sections)
        self.image.value, _, _ = painter_png(take, sections)
        self._rebuild(force=True)

    def set_sections(self, sections) -> None:
        """Draw `sections` on the picture (the painter's "Select as region" paints one)."""
        self.sections = section_bands(sections)
        if self.take is not None:
            self.image.value, _, _ = painter_png(self.take, sections)

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
    to the left shifts everything in the result by `left`, a section added inside moves what follows."""
    if isinstance(task, Extend):
        left, right = float(task.left), float(task.right)
        after, added = ([(0.0, left)] if left else []), 0.0
        for at, seconds in sorted(task.inserts):
            after.append((left + at + added, left + at + added + seconds))
            added += seconds
        if right:
            after.append((source_duration + left + added, source_duration + left + added + right))
        return [], after
    regions = task.region_list()
    left = max([0.0] + [-start for start, _ in regions])
    replaced = [(r["start"], r["end"]) for r in task.sections if "start" in r]
    if replaced:  # sections replaced: their spans in the source (a grown one is longer in the result)
        return replaced, [(s + left, e + left) for s, e in regions]
    before = [(max(0.0, s), min(source_duration, e)) for s, e in regions if e > 0 and s < source_duration]
    return before, [(s + left, e + left) for s, e in regions]


class RepaintPainter(SectionFinding, JobPanel, LazyView):
    """Regions painted on the canvas and the start/end boxes stay in sync both ways; Repaint makes
    a new take linked to its parent and shows it against the source. The painter works on the
    current take of the shared state; its spectrogram is drawn when the tab is shown.

    With the take's sections known (kept with the take, or "Find sections"), they are labelled
    bands on the canvas: a click on a name (or "Select as region") paints that section; "Replace
    section" sings it again with the lines edited in place, "Add section" puts a new one in."""

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
        self._build_section_controls(style)
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
            self.status, self.sections_box, self.comparison.widget,
        ])
        self.widget = widgets.VBox([self.heading, self.controls])
        state.observe(lambda change: self._take_changed(), names="current_take")
        state.observe(lambda change: self._sections_found_elsewhere(), names="revision")
        self._take_changed()

    def _build_section_controls(self, style) -> None:
        self.sections = None  # the current take's Sections, once known
        self._init_section_finding()
        self.section_picker = widgets.Dropdown(description="Section", options=[], style=style,
                                               layout=widgets.Layout(width="220px"))
        self.select_region_button = widgets.Button(description="Select as region", icon="crosshairs",
                                                   layout=widgets.Layout(width="auto"),
                                                   tooltip="paint the picked section as the region to repaint")
        self.sections_note = widgets.HTML()
        self.section_lines = widgets.Textarea(
            description="Its lines", style=style, layout=widgets.Layout(width="95%", height="6em"),
            placeholder="the lines to sing in this section; empty: sing its lines again")
        self.grow = widgets.Checkbox(description="let it grow when the lines need more time", value=False,
                                     indent=False, layout=widgets.Layout(width="auto"))
        self.replace_section_button = widgets.Button(description="Replace section", icon="retweet",
                                                     button_style="primary", layout=widgets.Layout(width="auto"))
        self.new_section = widgets.Textarea(description="New section", style=style,
                                            layout=widgets.Layout(width="95%", height="5em"),
                                            placeholder="[bridge]\nits first line\nits second line")
        self.where = widgets.Dropdown(description="Where", options=["end", "start"], value="end", style=style,
                                      layout=widgets.Layout(width="240px"))
        self.section_seconds = widgets.BoundedFloatText(
            description="Length (s)", value=0.0, min=0.0, max=600.0, style=style, layout=widgets.Layout(width="170px"),
            tooltip="0: from its lines at the take's pace, in whole bars")
        self.add_section_button = widgets.Button(description="Add section", icon="plus-square",
                                                 button_style="primary", layout=widgets.Layout(width="auto"))
        self._start_buttons += [self.replace_section_button, self.add_section_button]
        self.select_region_button.on_click(lambda _: self.select_section(self.section_picker.value))
        self.section_picker.observe(lambda change: self._section_picked(), names="value")
        self.replace_section_button.on_click(lambda _: self.replace_section())
        self.add_section_button.on_click(lambda _: self.add_section())
        self.sections_box = widgets.VBox([
            widgets.HTML("<b>Sections</b> &middot; <small>named from the lyrics' [tags], timed on the take</small>"),
            widgets.HBox([self.find_sections_button, self.section_picker, self.select_region_button],
                         layout=widgets.Layout(flex_flow="row wrap")),
            self.sections_note,
            widgets.HTML("<b>Replace section</b> &middot; <small>edit its lines in place; the rest of the song "
                         "is kept</small>"),
            self.section_lines, widgets.HBox([self.replace_section_button, self.grow]),
            widgets.HTML("<b>Add section</b> &middot; <small>its [tag] line, then its lines</small>"),
            self.new_section,
            widgets.HBox([self.where, self.section_seconds, self.add_section_button],
                         layout=widgets.Layout(flex_flow="row wrap")),
        ], layout=widgets.Layout(border="1px solid #ddd", padding="4px", margin="4px 0"))

    def _button_enabled(self, button) -> bool:
        if button is self.replace_section_button:
            return self.sections is not None
        if button in (self.find_sections_button, self.add_section_button):
            return self.take is not None and has_lyrics(self.take)
        return True

    # ------------------------------------------------------------------ sections
    def _section_take(self):
        return self.take

    def _show_sections(self, take, sections, draw: bool = True) -> None:
        """Bands on the canvas (`draw`: now, else with the take), the picker's names, the places a new
        section can go."""
        if take is not self.take:
            return
        self.sections = sections
        if draw and self.visible:
            self.canvas.set_sections(sections)
        elif draw:
            self._stale = True  # found from another tab: drawn when this one is shown
        names = sections.names if sections is not None else []
        self.section_picker.options = names
        self.where.options = ["end", "start"] + [f"after {name}" for name in names]
        if sections is not None:
            self.sections_note.value = sections_words(sections)
        else:
            self.sections_note.value = (f"<i>{html.escape(self.section_refusal(take))}</i>" if not has_lyrics(take)
                                        else "<i>not found yet: press Find sections (the engine times the lyrics "
                                             "on this take)</i>")
        self._section_picked()
        self.sync_buttons()

    def _sections_found_elsewhere(self) -> None:
        """The Look tab found the sections of this take: show them here too."""
        if self.take is not None and self.sections is None:
            sections = known_sections(self.take)
            if sections is not None:
                self._show_sections(self.take, sections)

    def _section_picked(self) -> None:
        name = self.section_picker.value
        section = self.sections.named(name) if self.sections is not None and name else None
        self.section_lines.value = "\n".join(section.lines) if section is not None else ""

    def select_section(self, name: str) -> None:
        """Paint the section `name` as the one region to repaint."""
        if self.sections is None:
            self._set_status("find the sections first (Find sections)", error=True)
            return
        try:
            section = self.sections.named(name, self.take.id)
        except AceStepError as error:
            self._set_status(str(error), error=True)
            return
        self.regions = [(section.start, section.end)]
        self.section_picker.value = section.name

    def _picked_from_canvas(self) -> None:
        """A click on a band's name paints its span: the picker follows."""
        if self.sections is None or len(self.regions) != 1:
            return
        start, end = self.regions[0]
        for section in self.sections:
            if abs(section.start - start) < 1e-6 and abs(section.end - end) < 1e-6:
                self.section_picker.value = section.name

    def replace_section(self):
        """Sing the picked section again with the lines in the box (the rest of the take is kept)."""
        if self._refuse_if_busy():
            return self.job

        def build():
            if self.take is None or not has_lyrics(self.take):
                raise AceStepError(self.section_refusal(self.take))
            if self.sections is None:
                raise AceStepError("find the sections first (Find sections): Replace section needs their times")
            text = self.section_lines.value
            try:
                task = Repaint.section(self.take, self.section_picker.value, lyrics=text if text.strip() else None,
                                       sections=self.sections, grow=self.grow.value, mode=self.mode.value,
                                       strength=self.strength.value)
            except TaskError as error:  # the engine names its argument; here it is a checkbox
                raise TaskError(str(error).replace("pass grow=True", "tick 'let it grow'")) from None
            return task.validate(), self.seed_field()

        inputs = self.checked_inputs(build)
        if inputs is None:
            return None
        task, seed = inputs
        return self._run_edit(task, seed, f"replaced {html.escape(self.section_picker.value)}", self.regions)

    def add_section(self):
        """Put the new section (its [tag] line, then its lines) at the start, the end or after a section."""
        if self._refuse_if_busy():
            return self.job

        def build():
            if self.take is None or not has_lyrics(self.take):
                raise AceStepError(self.section_refusal(self.take))
            task = Extend.section(self.take, self.new_section.value, where=self.where.value,
                                  seconds=self.section_seconds.value or None, sections=self.sections,
                                  mode=self.mode.value, strength=self.strength.value)
            return task.validate(), self.seed_field()

        inputs = self.checked_inputs(build)
        if inputs is None:
            return None
        task, seed = inputs
        added = task.sections[0]
        return self._run_edit(task, seed, f"added {html.escape(added['section'])} ({added['seconds']:g} s, "
                                          f"{html.escape(added['where'])})", self.regions)

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
            self.sync_buttons()
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
        self._show_sections(take, known_sections(take), draw=False)  # the bands are drawn with the take
        self._invalidate()

    @staticmethod
    def _painting_on(take) -> str:
        return f"painting on <b>{html.escape(take.title)}</b> ({take.duration:.1f} s)"

    def _draw(self) -> None:
        if self.take is not None:
            self.canvas.set_take(self.take, self.sections)

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
        self._picked_from_canvas()
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
        painted = self.regions
        shift = 0.0 if isinstance(task, Extend) else self.extend_left.value
        done = "extended" if isinstance(task, Extend) else "repainted"
        return self._run_edit(task, seed, done, painted, [(s + shift, e + shift) for s, e in painted])

    def _run_edit(self, task, seed, done: str, painted, painted_after=None):
        """Generate `task` on the current take as a job; the result becomes the current take, shown
        against the source. `painted` stays painted on the source, `painted_after` (default: where
        the job changed the audio) on the result."""
        source, engine, sections = self.take, self.engine, self.sections
        before, after = shaded_regions(task, source.duration)  # what this job changes, not what is painted later
        painted_after = after if painted_after is None else painted_after

        def work(cancel, progress):
            return engine.generate(source.blueprint, task, seeds=seed, progress=progress.part("model", 0.0, 0.95),
                                   cancel=cancel)

        def show(takes):
            result = self.result = takes[0]
            self.before = source
            self._kept_regions = {source.id: painted, result.id: list(painted_after)}
            self.state.takes_added(takes)  # the result is the current take of every tab (and painted on next)
            self.back_button.disabled = False
            self.comparison.widget.layout.display = None
            self.comparison.show(source, result, regions=before, compare_regions=after, sections=sections)
            followup = "; Find sections names its own" if task.sections else ""
            return (f"{done}: <b>{html.escape(result.title)}</b> ({result.duration:.1f} s), "
                    f"from {html.escape(source.title)}. A = before, B = after; the result is now the current take"
                    f"{followup}")

        return self.run_job("repaint", work, save=self.saving(keep=self._keep_result), show=show)

    def _keep_result(self, takes) -> None:
        self.result = takes[0]

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.widget, **kwargs)
