"""Looking at takes: log-mel spectrogram and waveform on one time axis, and the take card."""

from __future__ import annotations

import io

import ipywidgets as widgets
import numpy as np

from acestep_engine.audio_io import wav_bytes


def spectrogram_png(take, compare=None, beat_grid: bool = True, width: float = 10.0, height: float = 3.6,
                    regions=()) -> bytes:
    """PNG of the log-mel spectrogram (top) and waveform (bottom) in seconds, optionally with a
    beat grid from the blueprint's BPM, shaded `regions` [(start, end)] and a second take for A/B."""
    import librosa
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    takes = [take] + ([compare] if compare is not None else [])
    fig, axes = plt.subplots(2 * len(takes), 1, figsize=(width, height * len(takes)), sharex=True,
                             gridspec_kw={"height_ratios": [3, 1] * len(takes)})
    for k, t in enumerate(takes):
        spec_ax, wave_ax = axes[2 * k], axes[2 * k + 1]
        mono = t.audio.mean(axis=0)
        mel = librosa.feature.melspectrogram(y=mono, sr=t.sample_rate, n_mels=80, hop_length=512)
        db = librosa.power_to_db(mel, ref=np.max(mel) if mel.max() > 0 else 1.0)
        spec_ax.imshow(db, origin="lower", aspect="auto", cmap="magma",
                       extent=[0, t.duration, 0, db.shape[0]])
        spec_ax.set_ylabel("mel band")
        spec_ax.set_title(f"{t.title} - seed {t.seed}, {t.duration:.1f} s", fontsize=9)
        step = max(1, len(mono) // 4000)
        times = np.arange(0, len(mono), step) / t.sample_rate
        wave_ax.plot(times, mono[::step], linewidth=0.5, color="#1f77b4")
        wave_ax.set_ylim(-1, 1)
        wave_ax.set_ylabel("amp")
        bpm = getattr(t.blueprint, "bpm", None)
        if beat_grid and bpm:
            for beat in np.arange(0, t.duration, 60.0 / bpm):
                wave_ax.axvline(beat, color="0.7", linewidth=0.4)
        for start, end in regions:
            for ax in (spec_ax, wave_ax):
                ax.axvspan(start, end, color="#2ca02c", alpha=0.25)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


def audio_player(take) -> widgets.Audio:
    return widgets.Audio(value=wav_bytes(take.audio, take.sample_rate), format="wav", autoplay=False, loop=False)


class SpectrogramView:
    """A take's spectrogram and waveform; `compare` shows a second take below for A/B listening."""

    def __init__(self, take, compare=None, beat_grid: bool = True, regions=()):
        self.take, self.compare = take, compare
        self.beat_grid = widgets.Checkbox(value=beat_grid, description="beat grid (from BPM)")
        self.image = widgets.Image(format="png")
        self.players = widgets.HBox()
        self.regions = list(regions)
        self.beat_grid.observe(lambda change: self.refresh(), names="value")
        self.widget = widgets.VBox([self.beat_grid, self.image, self.players])
        self.refresh()

    def refresh(self) -> None:
        self.image.value = spectrogram_png(self.take, self.compare, self.beat_grid.value, regions=self.regions)
        players = [widgets.VBox([widgets.Label(f"A: {self.take.title}"), audio_player(self.take)])]
        if self.compare is not None:
            players.append(widgets.VBox([widgets.Label(f"B: {self.compare.title}"), audio_player(self.compare)]))
        self.players.children = players

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


class TakeCard:
    """Player, small spectrogram, seed, duration, BPM and key; Recall and Use-as-source buttons."""

    def __init__(self, take, on_recall=None, on_use_as_source=None):
        self.take = take
        bp = take.blueprint
        info = (f"<b>{take.title}</b><br>seed {take.seed} &middot; {take.duration:.1f} s &middot; "
                f"{bp.bpm or 'auto'} BPM &middot; {bp.keyscale or 'auto key'} &middot; {take.task.get('name')}")
        self.info = widgets.HTML(info)
        self.player = audio_player(take)
        self.image = widgets.Image(value=spectrogram_png(take, width=5, height=2.0), format="png",
                                   layout=widgets.Layout(width="360px"))
        self.recall_button = widgets.Button(description="Recall", tooltip="put this take's blueprint in the editor",
                                            disabled=on_recall is None)
        self.source_button = widgets.Button(description="Use as source", disabled=on_use_as_source is None)
        if on_recall is not None:
            self.recall_button.on_click(lambda _: on_recall(take))
        if on_use_as_source is not None:
            self.source_button.on_click(lambda _: on_use_as_source(take))
        self.widget = widgets.HBox([self.image, widgets.VBox([self.info, self.player,
                                                              widgets.HBox([self.recall_button, self.source_button])])],
                                   layout=widgets.Layout(border="1px solid #ddd", padding="4px", margin="2px 0"))

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
