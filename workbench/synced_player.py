"""SyncedPlayer: listen to a take with a playhead over its spectrogram and its lyrics highlighted as
they are sung, its sections as labelled bands with the one playing highlighted; switch between two
takes (A/B) at the same position; play one section (`play_section("chorus 2")`).

The player is a small anywidget whose JavaScript ships in this package (no CDN: works offline, in
JupyterLab, VS Code and Colab). Where custom widgets cannot load, a fallback built from core widgets
offers the same traits: a Play ticker drives the position slider, the playhead marker and the
highlighted line, and each take has its own audio player.

    player = SyncedPlayer(take, compare=other_take)   # lyrics from each take's LRC (notes["lrc"])
    player.position = 42.0; player.current = "b"; player.current_line   # -> index of the line sung at 42 s
    player.current_section                          # -> "chorus 1", the section at the position (None: none known)
"""

from __future__ import annotations

import base64
from pathlib import Path

import ipywidgets as widgets
import traitlets

from acestep_engine.errors import TaskError
from acestep_engine.generation.sections import normalise_name
from acestep_engine.takes import wav_bytes

from .display import widget_bundle
from .painter import painter_plot, painter_png
from .sections import known_sections, section_at, section_bands
from .views import AudioPlayer

_JS = Path(__file__).with_name("static") / "synced_player.js"


def lyric_lines(take, lrc: str | None = None) -> list[list]:
    """`[[seconds, text], ...]` from `lrc`, else the take's own LRC (`notes["lrc"]`), else none."""
    from acestep_engine.lm import parse_lrc

    text = lrc if lrc is not None else ((getattr(take, "notes", None) or {}).get("lrc") or "")
    return [[float(t), line] for t, line in parse_lrc(text)]


def line_index(lines, seconds: float) -> int:
    """Index of the line being sung at `seconds` (the last one started), -1 before the first."""
    index = -1
    for i, (start, _) in enumerate(lines):
        if start <= seconds + 1e-3:
            index = i
    return index


def _custom_widgets_available() -> bool:
    try:
        import anywidget  # noqa: F401
    except ImportError:
        return False
    return _JS.is_file()


def _make_player_canvas_class():
    import anywidget

    class PlayerCanvas(anywidget.AnyWidget):
        """Spectrogram, playhead, lyrics and two audio buffers, driven in the browser."""

        _esm = _JS
        audio_a = traitlets.Bytes(b"").tag(sync=True)
        audio_b = traitlets.Bytes(b"").tag(sync=True)
        mime = traitlets.Unicode("audio/wav").tag(sync=True)
        image_a = traitlets.Unicode("").tag(sync=True)
        image_b = traitlets.Unicode("").tag(sync=True)
        label_a = traitlets.Unicode("").tag(sync=True)
        label_b = traitlets.Unicode("").tag(sync=True)
        duration_a = traitlets.Float(1.0).tag(sync=True)
        duration_b = traitlets.Float(1.0).tag(sync=True)
        lines_a = traitlets.List().tag(sync=True)
        lines_b = traitlets.List().tag(sync=True)
        sections_a = traitlets.List().tag(sync=True)
        sections_b = traitlets.List().tag(sync=True)
        stop_at = traitlets.Float(-1.0).tag(sync=True)  # seconds where a played section ends; -1: play on
        plot_left = traitlets.Float(0.0).tag(sync=True)
        plot_right = traitlets.Float(1.0).tag(sync=True)
        plot_bottom = traitlets.Float(0.0).tag(sync=True)
        plot_top = traitlets.Float(1.0).tag(sync=True)
        position = traitlets.Float(0.0).tag(sync=True)
        playing = traitlets.Bool(False).tag(sync=True)
        current = traitlets.Unicode("a").tag(sync=True)

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.takes = {"a": None, "b": None}
            self.on_msg(self._message)
            self.observe(lambda change: change["new"] and self.load_audio(self.current), names="playing")
            self.observe(lambda change: self.playing and self.load_audio(change["new"]), names="current")

        def load(self, side: str, take, lines, bands=()) -> None:
            """Show `take` on `side`; its audio is sent when the browser plays it (`load_audio`)."""
            old, self.takes[side] = self.takes[side], take
            if take is None:
                setattr(self, f"audio_{side}", b"")
                setattr(self, f"lines_{side}", [])
                setattr(self, f"sections_{side}", [])
                setattr(self, f"label_{side}", "")
                return
            setattr(self, f"lines_{side}", lines)
            setattr(self, f"sections_{side}", list(bands))
            if old is not None and old.id == take.id:
                return
            setattr(self, f"audio_{side}", b"")
            png, (left, right, bottom, top) = painter_plot(take)
            self.plot_left, self.plot_right, self.plot_bottom, self.plot_top = left, right, bottom, top
            setattr(self, f"image_{side}", "data:image/png;base64," + base64.b64encode(png).decode())
            setattr(self, f"duration_{side}", float(take.duration))
            setattr(self, f"label_{side}", f"{side.upper()}: {take.title}")
            if self.playing and side == self.current:
                self.load_audio(side)

        def load_audio(self, side: str) -> None:
            """Send the audio of `side` (once, until released)."""
            take = self.takes.get(side)
            if take is not None and not getattr(self, f"audio_{side}"):
                setattr(self, f"audio_{side}", wav_bytes(take.audio, take.sample_rate))

        def release(self) -> None:
            """Drop the audio (a hidden view): Play asks for it again."""
            self.playing = False
            self.audio_a = self.audio_b = b""

        def _message(self, widget, content, buffers) -> None:
            if isinstance(content, dict) and content.get("event") == "load" and content.get("side") in ("a", "b"):
                self.load_audio(content["side"])

        def lines_of(self, side: str) -> list:
            return list(getattr(self, f"lines_{side}"))

        def set_lines(self, side: str, lines) -> None:
            setattr(self, f"lines_{side}", lines)

        def sections_of(self, side: str) -> list:
            return list(getattr(self, f"sections_{side}"))

        def set_sections(self, side: str, bands) -> None:
            setattr(self, f"sections_{side}", list(bands))

    return PlayerCanvas


class CorePlayer(widgets.VBox):
    """Core-widgets fallback: the spectrogram as a PNG (sections drawn on it) with a playhead marker
    below it, a Play ticker linked to a position slider (click or drag it to seek), the section
    names with the one playing highlighted, the lyrics with the current line highlighted, and an
    A/B toggle that shows that take's audio player."""

    position = traitlets.Float(0.0)
    playing = traitlets.Bool(False)
    current = traitlets.Unicode("a")
    stop_at = traitlets.Float(-1.0)
    TICK_S = 0.1

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.marker = widgets.HTML()
        self.ticker = widgets.Play(value=0, min=0, max=10, step=1, interval=int(self.TICK_S * 1000),
                                   description="play")
        self.slider = widgets.IntSlider(value=0, min=0, max=10, readout=False, layout=widgets.Layout(width="100%"))
        widgets.jslink((self.ticker, "value"), (self.slider, "value"))
        self.clock = widgets.Label()
        self.side = widgets.ToggleButtons(options=[("A", "a"), ("B", "b")], value="a")
        self.lyrics = widgets.HTML()
        self.section_names = widgets.HTML()
        self.players = {"a": widgets.Box(), "b": widgets.Box()}
        self.audio_box = widgets.Box()
        self.children = [widgets.HBox([self.ticker, self.side, self.clock]), self.section_names, self.image,
                         self.marker, self.slider, self.audio_box, self.lyrics]
        self._takes = {"a": None, "b": None}
        self._audio: dict = {}  # side -> AudioPlayer
        self._lines = {"a": [], "b": []}
        self._sections = {"a": None, "b": None}  # Sections, drawn on the picture
        self._plot = (0.0, 1.0)
        self.slider.observe(lambda change: self._slider_moved(change["new"]), names="value")
        self.ticker.observe(lambda change: setattr(self, "playing", bool(change["new"])), names="playing")
        self.side.observe(lambda change: setattr(self, "current", change["new"]), names="value")
        self.observe(lambda change: self._show(), names=["position", "current"])
        self.observe(lambda change: setattr(self.ticker, "playing", change["new"]), names="playing")

    def load(self, side: str, take, lines, sections=None) -> None:
        self._takes[side], self._lines[side], self._sections[side] = take, lines, sections
        if take is None:
            self.players[side] = widgets.Box()
            self.side.options = [("A", "a")] if side == "b" else self.side.options
        else:
            player = self._audio.get(side) or AudioPlayer(side.upper())
            player.cue(take)  # its audio is loaded when its Play is pressed
            self._audio[side] = player
            self.players[side] = player.widget
            if side == "b":
                self.side.options = [("A", "a"), ("B", "b")]
        self._show(reload=True)

    def lines_of(self, side: str) -> list:
        return list(self._lines[side])

    def set_lines(self, side: str, lines) -> None:
        self._lines[side] = lines
        self._show()

    def sections_of(self, side: str) -> list:
        return section_bands(self._sections[side])

    def set_sections(self, side: str, sections) -> None:
        self._sections[side] = sections
        self._show(reload=True)

    def release(self) -> None:
        self.playing = False
        for player in self._audio.values():
            player.release()

    @property
    def _take(self):
        return self._takes["b" if self.current == "b" and self._takes["b"] is not None else "a"]

    def _slider_moved(self, ticks: int) -> None:
        seconds = ticks * self.TICK_S
        if abs(seconds - self.position) > self.TICK_S / 2:
            self.position = seconds

    def _show(self, reload: bool = False) -> None:
        take = self._take
        if take is None:
            return
        side = "b" if take is self._takes["b"] and self.current == "b" else "a"
        ticks = int(round(take.duration / self.TICK_S))
        if reload or self.slider.max != ticks or getattr(self, "_shown", None) is not take:
            png, left, right = painter_png(take, self._sections[side])
            self.image.value, self._plot, self._shown = png, (left, right), take
            self.ticker.max = self.slider.max = ticks
            self.audio_box.children = (self.players[side],)
        self.position = min(self.position, take.duration)
        if 0 <= self.stop_at <= self.position:  # the end of the section being played
            self.stop_at = -1.0
            self.playing = False
        target = int(round(self.position / self.TICK_S))
        if self.slider.value != target:
            self.slider.value = target
        left, right = self._plot
        x = 100 * (left + min(self.position / take.duration, 1.0) * (right - left))
        self.marker.value = (f"<div style='position:relative;height:8px;background:#eee'>"
                             f"<div class='playhead' style='position:absolute;left:{x:.2f}%;width:2px;height:8px;"
                             f"background:#00a0d0'></div></div>")
        self.clock.value = f"{self.position:.1f} / {take.duration:.1f} s"
        lines = self._lines[side]
        index = line_index(lines, self.position)
        rows = [f"<div class='line{' active' if i == index else ''}' style='{'background:#ffe08a;font-weight:bold' if i == index else ''}'>"
                f"{_escape(text)}</div>" for i, (_, text) in enumerate(lines)]
        self.lyrics.value = "".join(rows) or "<i>no lyric timestamps yet: press LRC</i>"
        bands = self.sections_of(side)
        at = section_at(bands, self.position)
        self.section_names.value = "".join(
            f"<span class='section{' active' if i == at else ''}' style='padding:0 6px;margin-right:2px;"
            f"{'background:#ffe08a;font-weight:bold' if i == at else 'background:#eee'}'>"
            f"{_escape(band['name'])}</span>" for i, band in enumerate(bands))


def _escape(text: str) -> str:
    import html

    return html.escape(text)


class SyncedPlayer:
    """Take A (and optionally B) with synced playhead and lyrics. `position` (seconds), `playing` and
    `current` ("a"/"b") can be set from Python and follow the browser; `current_line` is the index
    of the lyric line at the position (-1 before the first)."""

    def __init__(self, take, compare=None, lrc: str | None = None, compare_lrc: str | None = None,
                 use_custom_widget: bool | None = None):
        custom = _custom_widgets_available() if use_custom_widget is None else use_custom_widget
        self.canvas = _make_player_canvas_class()() if custom else CorePlayer()
        self.is_custom = custom
        self.widget = self.canvas
        self.take, self.compare = None, None
        self.set_takes(take, compare, lrc, compare_lrc)

    def set_takes(self, take, compare=None, lrc: str | None = None, compare_lrc: str | None = None) -> None:
        """Load take A (and B); lyrics from the LRC texts given or the takes' own."""
        self.take, self.compare = take, compare
        self.canvas.load("a", take, lyric_lines(take, lrc), self._bands(known_sections(take)))
        self.canvas.load("b", compare, lyric_lines(compare, compare_lrc) if compare is not None else [],
                         self._bands(known_sections(compare)))
        if compare is None:
            self.canvas.current = "a"

    def _bands(self, sections):
        """What the canvas draws: plain dicts for the JavaScript, the Sections themselves for the picture."""
        return section_bands(sections) if self.is_custom else sections

    def set_sections(self, sections, side: str = "a") -> None:
        """Show `sections` (a take's `Sections`) as bands over one side (after they were found)."""
        self.canvas.set_sections(side, self._bands(sections))

    @property
    def sections(self) -> list[dict]:
        """The bands of the side playing: {name, start, end, estimated} each."""
        return self.canvas.sections_of(self._side)

    @property
    def current_section(self) -> str | None:
        """The name of the section at the position (None when no section holds it or none are known)."""
        bands = self.sections
        index = section_at(bands, self.position)
        return bands[index]["name"] if index >= 0 else None

    def play_section(self, name: str) -> None:
        """Play the section `name` of the side playing, from its start to its end."""
        bands = self.sections
        wanted = normalise_name(name or "")
        band = next((b for b in bands if b["name"] == wanted), None)
        if band is None:
            known = ", ".join(b["name"] for b in bands) or "none yet (press Find sections)"
            raise TaskError(f"section {name!r} is not in this take: its sections are {known}")
        self.playing = False
        self.position = band["start"]
        self.canvas.stop_at = band["end"]
        self.playing = True

    def release(self) -> None:
        """Let go of the audio sent to the browser (it is sent again when played)."""
        self.canvas.release()

    def set_lrc(self, lrc: str, side: str = "a") -> None:
        """Replace the lyrics of one side (after LRC was computed)."""
        self.canvas.set_lines(side, lyric_lines(None, lrc))

    # The shared traits, forwarded to whichever variant is shown.
    position = property(lambda self: self.canvas.position, lambda self, v: setattr(self.canvas, "position", float(v)))
    playing = property(lambda self: self.canvas.playing, lambda self, v: setattr(self.canvas, "playing", bool(v)))
    current = property(lambda self: self.canvas.current, lambda self, v: setattr(self.canvas, "current", v))

    @property
    def _side(self) -> str:
        return "b" if self.current == "b" and self.compare is not None else "a"

    @property
    def lines(self) -> list[list]:
        return self.canvas.lines_of(self._side)

    @property
    def current_line(self) -> int:
        return line_index(self.lines, self.position)

    def play(self) -> None:
        self.playing = True

    def pause(self) -> None:
        self.playing = False

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.widget, **kwargs)
