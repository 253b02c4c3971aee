"""ListenPanel: know each take of a batch without listening to all of it.

Each take gets a badge (asked vs measured BPM and key, loudness, the quality score and the lyric
alignment score once computed) and Measure / Score / LRC buttons; the batch sorts by score,
adherence or loudness; the synced player plays the picked take (A) against another (B). Work runs
off the kernel thread, one job at a time, with a progress bar, a status line and Cancel; results go
into the takes' sidecars, so they survive restarts and show up wherever the takes are listed.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from acestep_engine import GenerationCancelled

from .jobs import JobRunner, post
from .synced_player import SyncedPlayer

SORTS = [("newest first", "newest"), ("score (best first)", "score"), ("adherence (best first)", "adherence"),
         ("loudness (loudest first)", "loudness"), ("oldest first", "oldest")]
_GOOD, _NEAR, _BAD, _NONE = "#1b7f3b", "#b26a00", "#b00020", "#777"


def _mark(verdict: str) -> tuple[str, str]:
    return {"match": ("✓", _GOOD), "exact": ("✓", _GOOD), "relative": ("≈ relative", _NEAR),
            "double-time": ("×2", _NEAR), "half-time": ("×½", _NEAR), "off": ("✗", _BAD), "wrong": ("✗", _BAD),
            "not asked": ("", _NONE), "unmeasured": ("?", _NONE)}.get(verdict, ("", _NONE))


def badge_html(record: dict, planner_loaded: bool = True) -> str:
    """The adherence badge of a take's sidecar record: asked vs measured BPM and key, loudness, the
    quality score (or a hint to press Score) and the lyric alignment score."""
    notes = record.get("notes") or {}
    a = notes.get("adherence")
    parts = []
    if a is None:
        parts.append(f"<span style='color:{_NONE}'>not measured</span>")
    else:
        mark, color = _mark(a["bpm_verdict"])
        measured = f"{a['bpm_measured']:.1f}" if a.get("bpm_measured") else "none"
        asked = a["bpm_asked"] if a.get("bpm_asked") else "auto"
        parts.append(f"<span style='color:{color}' title='BPM: asked vs measured ({a['bpm_verdict']})'>"
                     f"{asked} → {measured} BPM {mark}</span>")
        mark, color = _mark(a["key_verdict"])
        parts.append(f"<span style='color:{color}' title='key: asked vs measured ({a['key_verdict']})'>"
                     f"{html.escape(a.get('key_asked') or 'auto')} → {html.escape(a.get('key_measured') or 'none')} "
                     f"{mark}</span>")
        loud = f"{a['loudness_lufs']:.1f} LUFS" if a.get("loudness_lufs") is not None else "silent"
        peak = f", {a['true_peak_db']:+.1f} dBTP" if a.get("true_peak_db") is not None else ""
        parts.append(f"<span style='color:{_BAD if a.get('clipping') else '#333'}'>{loud}{peak}"
                     f"{' clipping' if a.get('clipping') else ''}</span>")
    score = notes.get("quality_score")
    if score is not None:
        parts.append(f"<b title='upstream quality score: caption 0.5, lyrics 0.3, metadata 0.2'>"
                     f"score {score['score']:.3f}</b>")
    elif planner_loaded:
        parts.append(f"<span style='color:{_NONE}'>no score yet</span>")
    stamps = notes.get("lyric_timestamps")
    if stamps is not None:
        parts.append(f"<span title='lyric alignment: coverage² × monotonicity² × confidence'>"
                     f"lyrics aligned {stamps['score']:.2f}</span>")
    return " &middot; ".join(parts)


def _sort_key(mode: str):
    def score(r):
        s = (r.get("notes") or {}).get("quality_score")
        return (s is None, -(s or {}).get("score", 0.0))

    def adherence(r):
        a = (r.get("notes") or {}).get("adherence")
        if a is None:
            return (3, 0.0)
        rank = {"match": 0, "exact": 0, "not asked": 0, "relative": 1, "double-time": 1, "half-time": 1}
        return (rank.get(a["bpm_verdict"], 2) + rank.get(a["key_verdict"], 2), abs(a.get("bpm_error_pct") or 0.0))

    def loudness(r):
        a = (r.get("notes") or {}).get("adherence") or {}
        return (a.get("loudness_lufs") is None, -(a.get("loudness_lufs") or 0.0))

    return {"score": score, "adherence": adherence, "loudness": loudness}[mode]


class ListenPanel:
    """A batch of takes (default: every take in the store) with badges, per-take Measure / Score / LRC
    buttons, sorting, and the synced player. `row_buttons[take_id]` holds each row's buttons."""

    def __init__(self, store, engine=None, planner=None, take_ids=None, use_custom_widget: bool | None = None):
        self.store, self.engine, self.planner = store, engine, planner
        self.take_ids = list(take_ids) if take_ids is not None else None
        self.use_custom_widget = use_custom_widget
        self.runner = JobRunner()
        self.job = None
        self.player: SyncedPlayer | None = None
        self.sort = widgets.Dropdown(description="Sort", options=SORTS, value="newest")
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.measure_all_button = widgets.Button(description="Measure all", icon="tachometer",
                                                 tooltip="tempo, key, loudness of every take listed (saved with it)")
        self.score_all_button = widgets.Button(description="Score all", icon="star",
                                               tooltip="upstream's quality score of every take (needs the planner)")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True)
        self.progress = widgets.IntProgress(value=0, min=0, max=1000, layout=widgets.Layout(width="260px"))
        self.status = widgets.HTML("ready")
        self.rows = widgets.VBox()
        self.player_box = widgets.VBox()
        self.row_buttons: dict[str, dict[str, widgets.Button]] = {}
        self.badges: dict[str, widgets.HTML] = {}
        self.sort.observe(lambda change: self.refresh(), names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.measure_all_button.on_click(lambda _: self.measure_all())
        self.score_all_button.on_click(lambda _: self.score_all())
        self.cancel_button.on_click(lambda _: self.job and self.job.cancel())
        self.widget = widgets.VBox([
            widgets.HBox([self.sort, self.refresh_button, self.measure_all_button, self.score_all_button]),
            widgets.HBox([self.progress, self.cancel_button]), self.status, self.rows, self.player_box])
        self.set_planner(planner)

    # ------------------------------------------------------------------ listing
    def records(self) -> list[dict]:
        records = self.store.list()
        if self.take_ids is not None:
            wanted = set(self.take_ids)
            records = [r for r in records if r["id"] in wanted]
        mode = self.sort.value
        if mode == "newest":
            return records[::-1]
        if mode == "oldest":
            return records
        return sorted(records, key=_sort_key(mode))

    def sorted_ids(self) -> list[str]:
        return [r["id"] for r in self.records()]

    def show(self, take_ids) -> None:
        """List these takes (a batch, a lineage) instead of the whole store."""
        self.take_ids = list(take_ids)
        self.refresh()

    def set_planner(self, planner) -> None:
        self.planner = planner
        self.score_all_button.disabled = planner is None
        self.score_all_button.tooltip = ("upstream's quality score of every take" if planner is not None
                                         else "load the 5 Hz LM planner to score takes")
        self.refresh()

    def refresh(self) -> None:
        rows, self.row_buttons, self.badges = [], {}, {}
        for record in self.records():
            take_id = record["id"]
            title = widgets.HTML(f"<b>{html.escape(record.get('name') or take_id)}</b> &middot; seed "
                                 f"{record.get('seed')} &middot; {record.get('duration', 0):.1f} s",
                                 layout=widgets.Layout(width="300px"))
            badge = widgets.HTML(badge_html(record, self.planner is not None))
            buttons = {
                "listen": widgets.Button(description="Listen", icon="play", tooltip="play as A in the player",
                                         layout=widgets.Layout(width="80px")),
                "compare": widgets.Button(description="as B", tooltip="load as B to switch A/B at the same position",
                                          layout=widgets.Layout(width="60px"), disabled=self.player is None),
                "measure": widgets.Button(description="Measure", layout=widgets.Layout(width="80px")),
                "score": widgets.Button(description="Score", layout=widgets.Layout(width="70px"),
                                        disabled=self.planner is None,
                                        tooltip="upstream's LM quality score" if self.planner is not None
                                        else "load the 5 Hz LM planner first"),
                "lrc": widgets.Button(description="LRC", layout=widgets.Layout(width="60px"),
                                      disabled=self.engine is None or bool(record.get("blueprint", {}).get(
                                          "instrumental")) or not record.get("blueprint", {}).get("lyrics", "").strip(),
                                      tooltip="lyric timestamps from the DiT's cross-attention"),
            }
            buttons["listen"].on_click(lambda _, i=take_id: self.select(i))
            buttons["compare"].on_click(lambda _, i=take_id: self.select(i, side="b"))
            buttons["measure"].on_click(lambda _, i=take_id: self.measure(i))
            buttons["score"].on_click(lambda _, i=take_id: self.score(i))
            buttons["lrc"].on_click(lambda _, i=take_id: self.lrc(i))
            self.row_buttons[take_id], self.badges[take_id] = buttons, badge
            rows.append(widgets.VBox([widgets.HBox([title, *buttons.values()]), badge],
                                     layout=widgets.Layout(border="1px solid #ddd", padding="2px 4px")))
        self.rows.children = rows or [widgets.HTML("<i>no takes yet</i>")]

    # ------------------------------------------------------------------ the player
    def select(self, take_id: str, side: str = "a") -> SyncedPlayer:
        """Play `take_id` as A (or load it as B, keeping A)."""
        take = self.store.load(take_id)
        if self.player is None:
            self.player = SyncedPlayer(take, use_custom_widget=self.use_custom_widget)
            self.player_box.children = (self.player.widget,)
            for buttons in self.row_buttons.values():
                buttons["compare"].disabled = False
        elif side == "b":
            self.player.set_takes(self.player.take, take)
            self.player.current = "b"
        else:
            self.player.set_takes(take, self.player.compare)
        return self.player

    # ------------------------------------------------------------------ jobs
    def _start(self, name: str, work, on_value):
        """Run `work(cancel, report)` on the worker; `on_value(value)` runs there too (sidecar writes)."""
        if self.runner.busy:
            self.status.value = f"{self.runner.current.name} is still running: wait for it or press Cancel"
            return None
        self.cancel_button.disabled = False
        self.progress.value = 0
        self.status.value = f"{name}..."

        def report(fraction: float, message: str) -> None:
            def update():
                self.progress.value = int(1000 * min(max(fraction, 0.0), 1.0))
                self.status.value = html.escape(f"{name}: {message}")
            post(update)

        def done(job):
            if job.error is None:
                on_value(job.value)

            def update():
                self.cancel_button.disabled = True
                if isinstance(job.error, GenerationCancelled):
                    self.status.value = f"{name}: cancelled (what finished is saved)"
                elif job.error is not None:
                    self.status.value = (f"<span style='color:{_BAD}'>{name} failed: "
                                         f"{html.escape(type(job.error).__name__)}: {html.escape(str(job.error))}</span>")
                else:
                    self.progress.value = 1000
                    self.status.value = html.escape(f"{name}: done")
                self.refresh()
            post(update)

        self.job = self.runner.start(name, lambda cancel: work(cancel, report), on_done=done)
        return self.job

    def measure(self, take_id: str, refresh: bool = True):
        """Measure one take (tempo, key, loudness) and save it with its adherence in the sidecar."""
        from acestep_engine.analysis import measure_take

        def work(cancel, report):
            report(0.1, "measuring tempo, key and loudness")
            return measure_take(self.store, take_id, refresh=refresh)

        return self._start(f"measure {take_id}", work, lambda value: None)

    def measure_all(self):
        """Measure every listed take not measured yet (Cancel stops between takes)."""
        from acestep_engine.analysis import measure_take

        ids = self.sorted_ids()

        def work(cancel, report):
            for i, take_id in enumerate(ids):
                if cancel.is_set():
                    raise GenerationCancelled("measuring cancelled")
                report(i / max(1, len(ids)), f"take {i + 1} of {len(ids)}")
                measure_take(self.store, take_id)
            return len(ids)

        return self._start("measure all", work, lambda value: None)

    def _need_planner(self, what: str) -> bool:
        if self.planner is None:
            self.status.value = (f"<span style='color:{_BAD}'>{what} needs the 5 Hz LM planner: load it in the "
                                 "Blueprint tab (Load planner) first</span>")
            return False
        return True

    def score(self, take_id: str):
        """Upstream's quality score of one take, saved in its sidecar."""
        from acestep_engine.scoring import quality_score, save_quality_score

        if not self._need_planner("Score"):
            return None

        def work(cancel, report):
            take = self.store.load(take_id)
            return quality_score(self.planner, take, self.engine, progress=lambda p: report(
                p.step / max(1, p.steps), p.message), cancel=cancel)

        return self._start(f"score {take_id}", work, lambda value: save_quality_score(self.store, take_id, value))

    def score_all(self):
        """Score every listed take without a score (Cancel stops between passes; finished scores are kept)."""
        from acestep_engine.scoring import quality_score, save_quality_score

        if not self._need_planner("Score all"):
            return None
        ids = [r["id"] for r in self.records() if "quality_score" not in (r.get("notes") or {})]

        def work(cancel, report):
            for i, take_id in enumerate(ids):
                score = quality_score(self.planner, self.store.load(take_id), self.engine, cancel=cancel,
                                      progress=lambda p, i=i: report((i + p.step / max(1, p.steps)) / len(ids),
                                                                     f"take {i + 1} of {len(ids)}: {p.message}"))
                save_quality_score(self.store, take_id, score)
            return len(ids)

        return self._start("score all", work, lambda value: None)

    def lrc(self, take_id: str):
        """Lyric timestamps of one take: saved as its LRC and shown in the player."""
        from acestep_engine.scoring import lyric_timestamps, save_lyric_timestamps

        if self.engine is None:
            self.status.value = f"<span style='color:{_BAD}'>LRC needs the engine (its DiT aligns the lyrics)</span>"
            return None

        def work(cancel, report):
            return lyric_timestamps(self.engine, self.store.load(take_id), cancel=cancel,
                                    progress=lambda p: report(p.step / max(1, p.steps), p.message))

        def saved(stamps):
            save_lyric_timestamps(self.store, take_id, stamps)
            if self.player is not None:
                for side, take in (("a", self.player.take), ("b", self.player.compare)):
                    if take is not None and take.id == take_id:
                        take.notes["lrc"] = stamps.lrc
                        post(lambda side=side: self.player.set_lrc(stamps.lrc, side))

        return self._start(f"LRC {take_id}", work, saved)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
