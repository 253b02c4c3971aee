"""Looking at takes: spectrogram and waveform on one time axis, the one player of a view, take cards.

Views cost what is on screen: a view is updated in place when its take changes, a replaced view
is closed down its whole tree (`close_tree`), a list of cards keeps the newest few ("show more"
for the rest), and a card has no player of its own inside a panel: its Play button hands the
audio to the panel's one `AudioPlayer`.
"""

from __future__ import annotations

import html
import io
from contextlib import contextmanager

import ipywidgets as widgets
import numpy as np

from acestep_engine.takes import wav_bytes

from .badges import badge_html
from .display import widget_bundle

WIDE = {"description_width": "initial"}  # labels take the room they need: none is cut off


# ---------------------------------------------------------------------- widget lifetime
def _widget_registry() -> dict:
    """The live-widget registry of ipywidgets 8 (`_instances`) or 7 (`Widget.widgets`)."""
    from ipywidgets.widgets import widget as module

    registry = getattr(module, "_instances", None)
    return registry if registry is not None else widgets.Widget.widgets


def live_widgets() -> list:
    return list(_widget_registry().values())


def live_audio_bytes() -> int:
    """Audio bytes held by live widgets (what the kernel keeps for players): the value of every
    `Audio` widget and every synced bytes trait named like audio (custom players)."""
    total = 0
    for w in live_widgets():
        for name in w.keys:
            if isinstance(w, widgets.Audio) and name == "value" or "audio" in name:
                value = getattr(w, name, None)
                if isinstance(value, (bytes, bytearray, memoryview)):
                    total += len(value)
    return total


def close_tree(widget) -> None:
    """Close `widget` and everything under it: children, and widget-valued traits such as its
    layout and style (each is a live widget of its own in ipywidgets' registry)."""
    seen = set()

    def visit(w):
        if id(w) in seen:
            return
        seen.add(id(w))
        for name in w.keys:
            value = getattr(w, name, None)
            items = value if isinstance(value, (list, tuple)) else (value,)
            for item in items:
                if isinstance(item, widgets.Widget):
                    visit(item)
        w.close()

    if widget is not None:
        visit(widget)


def replace_children(box, children) -> None:
    """Set `box.children` and close the children it no longer shows."""
    keep = {id(c) for c in children}
    old = [c for c in box.children if id(c) not in keep]
    box.children = tuple(children)
    for child in old:
        close_tree(child)


# ---------------------------------------------------------------------- pictures
def envelope(mono: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Minimum and maximum of the samples under each of `columns` pixel columns (a waveform drawn
    from these shows noise and transients as they are, unlike every n-th sample)."""
    columns = max(1, min(columns, len(mono)))
    usable = len(mono) // columns * columns
    blocks = mono[:usable].reshape(columns, -1)
    return blocks.min(axis=1), blocks.max(axis=1)


def spectrogram_png(take, compare=None, beat_grid: bool = True, width: float = 10.0, height: float = 3.6,
                    regions=(), compare_regions=None, sections=None, compare_sections=None) -> bytes:
    """PNG of the log-mel spectrogram (top) and waveform envelope (bottom) in seconds, optionally
    with a beat grid from the blueprint's BPM, shaded `regions` [(start, end)] (for `compare`:
    `compare_regions`, default the same), the take's `sections` as labelled bands (for `compare`:
    `compare_sections`) and a second take for A/B."""
    import librosa
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .sections import draw_section_bands

    takes = [(take, regions, sections)] + (
        [(compare, regions if compare_regions is None else compare_regions, compare_sections)]
        if compare is not None else [])
    fig = Figure(figsize=(width, height * len(takes)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2 * len(takes), 1, sharex=True, gridspec_kw={"height_ratios": [3, 1] * len(takes)})
    for k, (t, shaded, bands) in enumerate(takes):
        spec_ax, wave_ax = axes[2 * k], axes[2 * k + 1]
        mono = t.audio.mean(axis=0)
        mel = librosa.feature.melspectrogram(y=mono, sr=t.sample_rate, n_mels=80, hop_length=512)
        db = librosa.power_to_db(mel, ref=np.max(mel) if mel.max() > 0 else 1.0)
        spec_ax.imshow(db, origin="lower", aspect="auto", cmap="magma", extent=[0, t.duration, 0, db.shape[0]])
        spec_ax.set_ylabel("mel band")
        spec_ax.set_title(f"{t.title} - seed {t.seed}, {t.duration:.1f} s", fontsize=9)
        low, high = envelope(mono, int(width * 80))
        times = np.linspace(0, t.duration, len(low))
        wave_ax.fill_between(times, low, high, linewidth=0.3, color="#1f77b4")
        wave_ax.set_ylim(-1, 1)
        wave_ax.set_ylabel("amp")
        bpm = getattr(t.blueprint, "bpm", None)
        if beat_grid and bpm:
            for beat in np.arange(0, t.duration, 60.0 / bpm):
                wave_ax.axvline(beat, color="0.7", linewidth=0.4)
        for start, end in shaded:
            for ax in (spec_ax, wave_ax):
                ax.axvspan(start, end, color="#2ca02c", alpha=0.25)
        draw_section_bands(spec_ax, bands)
        draw_section_bands(wave_ax, bands, label=False)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


def thumbnail_png(take, width: int = 320, height: int = 72) -> bytes:
    """A small spectrogram for a take card, drawn with numpy and Pillow (no figure: a batch of
    cards must cost little next to the model). Log-power STFT, magma colours, `width` x `height` px."""
    from matplotlib import colormaps
    from PIL import Image

    mono = take.audio.mean(axis=0).astype(np.float32)
    n_fft = 512
    hop = max(n_fft // 4, len(mono) // width)
    frames = max(1, (len(mono) - n_fft) // hop + 1)
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    padded = np.pad(mono, (0, max(0, index.max() + 1 - len(mono))))
    power = np.abs(np.fft.rfft(padded[index] * np.hanning(n_fft), axis=1)) ** 2  # [frames, bins]
    # log-spaced frequency rows, so the picture resembles a mel spectrogram
    rows = np.unique(np.geomspace(1, power.shape[1] - 1, height * 2).astype(int))
    db = 10 * np.log10(power[:, rows].T + 1e-10)
    db = np.clip((db - (db.max() - 80.0)) / 80.0, 0.0, 1.0)[::-1]
    rgb = (colormaps["magma"](db)[..., :3] * 255).astype(np.uint8)
    image = Image.fromarray(rgb).resize((width, height), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=1)
    return buffer.getvalue()


# ---------------------------------------------------------------------- the one player of a view
class AudioPlayer:
    """One player per view. `cue(take)` names a take and offers a Play button without holding its
    audio; `play(take)` loads the audio and starts it (the click on a Play button is the gesture a
    browser asks for before it plays sound); `release()` drops the audio of a view that is hidden.
    Audio lives in the widget state only while it is asked for: every byte held there is sent
    again to every browser tab that opens or reloads the notebook."""

    def __init__(self, label: str = "Playing"):
        self.take = None
        self.prefix = label
        self.label = widgets.HTML()
        self.play_button = widgets.Button(description="Play", icon="play", layout=widgets.Layout(width="auto"),
                                          tooltip="load this take's audio and play it")
        self.audio = widgets.Audio(value=b"", format="wav", autoplay=True, loop=False)
        self.audio.layout.display = "none"
        self.play_button.on_click(lambda _: self.play())
        self.widget = widgets.HBox([self.play_button, self.label, self.audio],
                                   layout=widgets.Layout(align_items="center"))
        self.clear()

    @property
    def loaded(self) -> bool:
        return bool(self.audio.value)

    def cue(self, take) -> None:
        """Show `take` with a Play button; its audio is loaded when Play is pressed."""
        if self.take is not None and take is not None and self.take.id == take.id:
            return
        self.take = take
        self.release()
        self.label.value = f"{self.prefix}: <b>{html.escape(take.title)}</b>&nbsp;"
        self.widget.layout.display = None

    def play(self, take=None) -> None:
        """Load `take` (default: the cued one) and play it from the start."""
        take = take if take is not None else self.take
        if take is None:
            return
        self.cue(take)
        if self.loaded:
            self.audio.value = b""  # a new value restarts the browser's player (autoplay)
        self.audio.value = wav_bytes(take.audio, take.sample_rate)
        self.audio.layout.display = None

    def release(self) -> None:
        """Drop the audio (the take stays cued: Play loads it again)."""
        if self.loaded:
            self.audio.value = b""
        self.audio.layout.display = "none"

    def clear(self) -> None:
        self.take = None
        self.release()
        self.widget.layout.display = "none"

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.widget, **kwargs)


class SpectrogramView:
    """A take's spectrogram and waveform; `compare` shows a second take below for A/B listening.
    `show(take, compare, regions)` redraws in place (the same image and players)."""

    def __init__(self, take=None, compare=None, beat_grid: bool = True, regions=(), compare_regions=None,
                 players: bool = True):
        self.take, self.compare = take, compare
        self.with_players = players  # False where another player (the Look tab's synced one) plays the take
        self.regions, self.compare_regions = list(regions), compare_regions
        self.sections = self.compare_sections = None  # labelled bands over each take, when known
        self.beat_grid = widgets.Checkbox(value=beat_grid, description="beat grid (from BPM)", indent=False,
                                          layout=widgets.Layout(width="auto"))
        self.image = widgets.Image(format="png")
        self.player_a = AudioPlayer("A") if players else None
        self.player_b = AudioPlayer("B") if players else None
        self.players = widgets.HBox([self.player_a.widget, self.player_b.widget]) if players else None
        self.beat_grid.observe(lambda change: self.refresh(), names="value")
        self.widget = widgets.VBox([self.beat_grid, self.image] + ([self.players] if players else []))
        if take is not None:
            self.refresh()

    def show(self, take, compare=None, regions=(), compare_regions=None, sections=None,
             compare_sections=None) -> None:
        self.take, self.compare = take, compare
        self.regions, self.compare_regions = list(regions), compare_regions
        self.sections, self.compare_sections = sections, compare_sections
        self.refresh()

    def refresh(self) -> None:
        if self.take is None:
            self.image.value = b""
            self.release(clear=True)
            return
        self.image.value = spectrogram_png(self.take, self.compare, self.beat_grid.value, regions=self.regions,
                                           compare_regions=self.compare_regions, sections=self.sections,
                                           compare_sections=self.compare_sections)
        if not self.with_players:
            return
        self.player_a.cue(self.take)
        if self.compare is not None:
            self.player_b.cue(self.compare)
        else:
            self.player_b.clear()

    def release(self, clear: bool = False) -> None:
        """Drop the players' audio (and, with `clear`, what they offer to play)."""
        for player in (self.player_a, self.player_b):
            if player is not None:
                player.clear() if clear else player.release()

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.widget, **kwargs)


# ---------------------------------------------------------------------- cards
def task_words(task: dict) -> str:
    """What a take's task did, in a few words: 'extract vocals', 'lego drums', 'complete with bass + drums'."""
    name = str(task.get("name"))
    tracks = task.get("tracks") or ([task["track"]] if task.get("track") else [])
    if name == "complete" and tracks:
        return f"complete with {' + '.join(tracks)}"
    return f"{name} {' + '.join(tracks)}" if tracks else name


def take_summary(take) -> str:
    bp = take.blueprint
    return (f"<b>{html.escape(take.title)}</b><br>seed {take.seed} &middot; {take.duration:.1f} s &middot; "
            f"{bp.bpm or 'auto'} BPM &middot; {html.escape(bp.keyscale or 'auto key')} &middot; "
            f"{html.escape(task_words(take.task))}")


class TakeCard:
    """Small spectrogram, seed, duration, BPM and key, with Recall and Use-as-source buttons (each
    shown only when it has something to do) and Play. Inside a panel, pass the panel's `player`: the
    card's Play button plays the take there; alone (in a notebook), the card has a player of its own."""

    def __init__(self, take, on_recall=None, on_use_as_source=None, player: AudioPlayer | None = None,
                 extra=()):
        self.take = take
        self.info = widgets.HTML(take_summary(take))
        self.badge = widgets.HTML()
        self.show_notes(take.notes)
        self.image = widgets.Image(value=thumbnail_png(take), format="png", layout=widgets.Layout(width="320px"))
        # Recall and Use as source exist only where they have something to do
        self.recall_button = widgets.Button(description="Recall", tooltip="put this take's blueprint in the editor",
                                            layout=widgets.Layout(width="auto")) if on_recall else None
        self.source_button = widgets.Button(description="Use as source", layout=widgets.Layout(width="auto"),
                                            tooltip="cover this take next") if on_use_as_source else None
        # Alone (in a notebook) the card brings its own player, shown once Play is pressed.
        self.player = AudioPlayer("Take") if player is None else None
        target = player if player is not None else self.player
        self.play_button = widgets.Button(description="Play", icon="play", layout=widgets.Layout(width="auto"),
                                          tooltip="play this take")
        self.play_button.on_click(lambda _: target.play(take))
        buttons = list(extra) + [self.play_button]
        if on_recall is not None:
            self.recall_button.on_click(lambda _: on_recall(take))
            buttons.append(self.recall_button)
        if on_use_as_source is not None:
            self.source_button.on_click(lambda _: on_use_as_source(take))
            buttons.append(self.source_button)
        side = [self.info, self.badge, widgets.HBox(buttons)] + ([self.player.widget] if self.player else [])
        self.widget = widgets.HBox([self.image, widgets.VBox(side)],
                                   layout=widgets.Layout(border="1px solid #ddd", padding="4px", margin="2px 0"))

    def show_notes(self, notes) -> None:
        """The adherence badge and scores from the take's sidecar notes (hidden until it was measured or scored)."""
        notes = notes or {}
        shown = any(k in notes for k in ("adherence", "quality_score", "lyric_timestamps"))
        self.badge.value = badge_html({"notes": notes}, planner_loaded=False) if shown else ""
        self.badge.layout.display = None if shown else "none"

    def close(self) -> None:
        close_tree(self.widget)

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.widget, **kwargs)


class CardList:
    """The newest `limit` take cards, newest first; "show more" reveals `limit` more at a time.
    Cards that fall off the end are closed, and their takes are let go: only the ids are kept,
    and `load(take_id)` (the store's) brings a take back when it is shown again. Without `load`
    the list keeps just the cards it shows. `make_card(take) -> TakeCard`."""

    def __init__(self, make_card, limit: int = 6, load=None):
        self.make_card, self.limit, self.shown, self.load = make_card, limit, limit, load
        self.entries: list = []  # a Take while shown, its id while hidden
        self.cards: dict[str, TakeCard] = {}
        self.box = widgets.VBox()
        self.more_button = widgets.Button(description="show more", layout=widgets.Layout(width="auto"))
        self.more_button.on_click(lambda _: self.show_more())
        self.widget = widgets.VBox([self.box, self.more_button])
        self._draw()

    def add(self, takes) -> None:
        """Put `takes` (in their order) on top."""
        self.entries = list(takes) + self.entries
        self.shown = self.limit
        self._draw()

    def show_more(self) -> None:
        self.shown += self.limit
        self._draw()

    def clear(self) -> None:
        self.entries = []
        self._draw()

    @property
    def takes(self) -> list:
        """The takes whose cards are shown, newest first."""
        return [e for e in self.entries[: self.shown] if not isinstance(e, str)]

    def _draw(self) -> None:
        visible = []
        for entry in self.entries[: self.shown]:
            if isinstance(entry, str):
                try:
                    entry = self.load(entry)
                except Exception:  # deleted meanwhile: its card is gone too
                    continue
            visible.append(entry)
        hidden = [e if isinstance(e, str) else e.id for e in self.entries[self.shown:]] if self.load else []
        self.entries = visible + hidden
        wanted = {t.id for t in visible}
        for take_id in [i for i in self.cards if i not in wanted]:
            self.cards.pop(take_id).close()
        cards = []
        for take in visible:
            if take.id not in self.cards:
                self.cards[take.id] = self.make_card(take)
            cards.append(self.cards[take.id].widget)
        self.box.children = tuple(cards)
        self.more_button.description = f"show {min(len(hidden), self.limit)} more of {len(hidden)}"
        self.more_button.layout.display = None if hidden else "none"

    def refresh_notes(self, store) -> None:
        """Redraw the shown cards' badges from their sidecars (after Measure, Score or LRC)."""
        for take_id, card in self.cards.items():
            if take_id in store:
                card.show_notes(store.record(take_id).get("notes"))

    @property
    def children(self):
        return self.box.children


# ---------------------------------------------------------------------- drawing only what is shown
class LazyView:
    """Mixin: `_invalidate()` redraws now if the view is on screen, else when it is shown next
    (`set_visible(True)`). Standalone views are always visible; the Workbench hides the tabs that
    are not selected, so a batch of takes redraws only the tab in front, and a hidden tab lets go
    of the audio its players held (`audio_players()`)."""

    visible = True
    _stale = False

    def _draw(self) -> None:
        """Redraw from the shared state (views with nothing to redraw keep this)."""

    def audio_players(self) -> list:
        """The players whose audio is dropped when the view is hidden (each has `release()`)."""
        player = getattr(self, "player", None)
        return [player] if player is not None else []

    def _invalidate(self) -> None:
        if self.visible:
            self._stale = False
            self._draw()
        else:
            self._stale = True

    @staticmethod
    @contextmanager
    def built_hidden():
        """Views constructed inside start hidden: they draw nothing until `set_visible(True)`."""
        LazyView.visible = False
        try:
            yield
        finally:
            LazyView.visible = True

    def set_visible(self, visible: bool) -> None:
        self.visible = visible
        if not visible:
            for player in self.audio_players():
                player.release()
        if visible and self._stale:
            self._stale = False
            self._draw()


def heading(label: str, take) -> str:
    """The line at the top of a tab that follows the current take."""
    if take is None:
        return f"<b>{label}</b> &middot; <i>generate or select a take first: this tab works on the current take</i>"
    return (f"<b>{label}</b> &middot; take <code>{html.escape(take.id)}</code>"
            + (f" ({html.escape(take.name)})" if take.name else "")
            + f" &middot; seed {take.seed} &middot; {take.duration:.1f} s")


class LookView(LazyView):
    """The Look tab: the current take's spectrogram and waveform, drawn when shown; below, when given,
    `listen`: the synced player and the take's batch with badges, scores and Measure / Score / LRC."""

    def __init__(self, state, listen=None):
        self.state = state
        self.heading = widgets.HTML()
        self.listen = listen  # a ListenPanel following the current take (the Workbench gives one)
        # With the synced player (which draws the spectrogram under its playhead) no second picture.
        self.view = SpectrogramView(players=True) if listen is None else None
        self.widget = widgets.VBox([self.heading, listen.widget if listen is not None else self.view.widget])
        state.observe(lambda change: self._take_changed(), names="current_take")
        self._take_changed()

    def set_visible(self, visible: bool) -> None:
        super().set_visible(visible)
        if self.listen is not None:
            self.listen.set_visible(visible)

    def _take_changed(self) -> None:
        self.heading.value = heading("Look", self.state.current_take)
        self._invalidate()

    def _draw(self) -> None:
        if self.view is None:
            return  # the listen panel follows the current take itself
        take = self.state.current_take
        if take is None:
            self.view.widget.layout.display = "none"
            self.view.show(None)
            return
        self.view.widget.layout.display = None
        from .sections import known_sections

        self.view.show(take, sections=known_sections(take))

    def audio_players(self) -> list:
        return [self.view] if self.view is not None else []

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.widget, **kwargs)


def variant_word(name: str) -> str:
    """'acestep-v15-turbo' -> 'turbo' (the word a musician uses for the model)."""
    return name.replace("acestep-v15-", "")


_DTYPE_WORDS = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def engine_words(engine) -> str:
    """'<b>turbo</b> · CPU bf16 · demo weights', the full description in its tooltip."""
    dtype = str(engine.dtype).replace("torch.", "")
    weights = "demo weights" if engine.is_demo else "real weights"
    return (f"<span title='{html.escape(repr(engine), quote=True)}'><b>{html.escape(variant_word(engine.variant.name))}"
            f"</b> &middot; {html.escape(engine.device.type.upper())} {_DTYPE_WORDS.get(dtype, dtype)} &middot; "
            f"{weights}</span>")


class HeaderView:
    """The line above the tabs: models loaded (with LoRAs and the planner), the store, the running job."""

    def __init__(self, state):
        self.state = state
        self.banner = widgets.HTML()
        self.models = widgets.HTML()
        self.machine = widgets.HTML()
        self.activity = widgets.HTML(layout=widgets.Layout(margin="0 0 0 12px", flex="0 0 auto"))
        # the running job is named at the end of the machine line: the tabs below never move
        self.widget = widgets.VBox([self.banner, self.models,
                                    widgets.HBox([self.machine, self.activity], layout=widgets.Layout(
                                        align_items="baseline", flex_flow="row wrap"))])
        state.observe(lambda change: self._models_changed(), names=["engine", "engines", "planner", "loras", "store"])
        state.observe(lambda change: self._machine_changed(change["old"], change["new"]), names="blueprint")
        state.observe(lambda change: self._job_changed(), names="job")
        self._models_changed()
        self._job_changed()

    def _models_changed(self) -> None:
        state = self.state
        demo = state.engine is not None and state.engine.is_demo
        self.banner.value = ("<div style='background:#fff3cd;padding:4px 8px'>Demo checkpoint: tiny random weights. "
                             "It makes noise, not music; <i>Get the real weights</i> below fetches the real ACE-Step "
                             "1.5 weights for songs.</div>" if demo else "")
        others = [name for name in state.engines if state.engine is None or name != state.engine.variant.name]
        loras = ", ".join(f"{html.escape(a['name'])} &times; {a['scale']:g}" for a in state.loras)
        parts = [engine_words(state.engine)] if state.engine is not None else ["no model loaded"]
        if others:
            parts.append("also loaded: " + ", ".join(f"<span title='{html.escape(o, quote=True)}'>"
                                                     f"{html.escape(variant_word(o))}</span>" for o in others))
        parts.append(f"LoRA {loras}" if loras else "no LoRA")
        parts.append(f"planner {html.escape(state.planner.name.replace('acestep-5Hz-lm-', 'LM '))}"
                     if state.planner is not None else "no planner")
        if state.store is not None:
            parts.append(f"takes saved in <code>{html.escape(str(state.store.folder))}/</code>")
        self.models.value = " &middot; ".join(parts)
        self._machine_changed()

    def _machine_changed(self, old=None, new=None) -> None:
        """Device, dtype, the memory tier of a take of the blueprint's length, the LM size to plan with."""
        if old is not None and new is not None and getattr(old, "duration", None) == getattr(new, "duration", None):
            return  # only the duration changes the memory tier
        engine = self.state.engine
        if engine is None:
            self.machine.value = ""
            return
        from acestep_engine.runtime import device_summary

        blueprint = self.state.blueprint
        seconds = getattr(blueprint, "duration", None) or 30.0
        if blueprint is not None and "duration" in blueprint.errors():
            # the editor shows the error under the field; the header names no tier for a bad length
            self.machine.value = (f"<small>{html.escape(engine.device.type.upper())} &middot; no memory estimate "
                                  f"until the duration is between 10 and 600 s</small>")
            return
        s = device_summary(engine, seconds=float(seconds))
        budget = f"memory budget {s['memory_budget_gib']:g} GiB, " if s["memory_budget_gib"] is not None else ""
        lm = s["recommended_lm"] or "none"
        tier = html.escape(s["memory_tier"])
        if s["memory_tier"].startswith("does not fit"):
            tier = f"<span title='{html.escape(s['memory_tier'], quote=True)}'>does not fit the memory budget</span>"
        self.machine.value = (
            f"<small>{html.escape(s['device'])} &middot; "
            f"<span title='{html.escape(s['dtype_choice'], quote=True)}'>{html.escape(s['dtype'])}</span> &middot; "
            f"{budget}a {s['seconds']:g} s take: {tier} &middot; "
            f"<span title='{html.escape(s['recommended_lm_why'], quote=True)}'>LM to plan with: "
            f"{html.escape(lm)}</span></small>")

    def _job_changed(self) -> None:
        job = self.state.job
        self.activity.value = (f"<small style='color:#0b6b2f'>&#9679; running: {html.escape(job.name)}</small>"
                               if job is not None else "")
