"""ListenPanel: know each take of a batch without listening to all of it.

Each take gets a badge (asked vs measured BPM and key, loudness, the quality score and the lyric
alignment score once computed) and Measure / Score / LRC buttons; the batch sorts by score,
adherence or loudness; the synced player plays the picked take (A) against another (B), with its
sections as labelled bands ("Find sections" times them; a click on a name or "Play section" plays
one). Work runs
off the kernel thread, one job at a time, with a progress bar, a status line and Cancel; results go
into the takes' sidecars, so they survive restarts and show up wherever the takes are listed.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from acestep_engine import GenerationCancelled
from acestep_engine.errors import AceStepError

from .badges import badge_html
from .display import widget_bundle
from .jobs import TIME, JobPanel, post
from .state import WorkbenchState
from .sections import SectionFinding, has_lyrics, known_sections, sections_words
from .synced_player import SyncedPlayer
from .views import LazyView, replace_children

SORTS = [("newest first", "newest"), ("score (best first)", "score"), ("adherence (best first)", "adherence"),
         ("loudness (loudest first)", "loudness"), ("oldest first", "oldest")]
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


class ListenPanel(SectionFinding, JobPanel, LazyView):
    """A batch of takes with badges, per-take Measure / Score / LRC buttons, sorting, and the synced
    player. Which takes: `take_ids` if given; with `follow_current` (the Look tab) the batch of the
    shared state's current take, played as A; else every take in the store. Work runs through the
    shared job runner (one job at a time, progress, Cancel); `row_buttons[take_id]` holds each row's
    buttons."""

    def __init__(self, store=None, engine=None, planner=None, take_ids=None, use_custom_widget: bool | None = None,
                 state: WorkbenchState | None = None, follow_current: bool = False):
        if state is None:
            state = WorkbenchState(engine=engine, store=store, planner=planner)
        self.take_ids = list(take_ids) if take_ids is not None else None
        self.follow_current = follow_current
        self.use_custom_widget = use_custom_widget
        self.player: SyncedPlayer | None = None
        self.sort = widgets.Dropdown(description="Sort", options=SORTS, value="newest")
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh", layout=widgets.Layout(width="auto"))
        self.measure_all_button = widgets.Button(description="Measure all", icon="tachometer",
                                                 layout=widgets.Layout(width="auto"),
                                                 tooltip="tempo, key, loudness of every take listed (saved with it)")
        self.score_all_button = widgets.Button(description="Score all", icon="star", layout=widgets.Layout(width="auto"),
                                               tooltip="upstream's quality score of every take (needs the planner)")
        self._init_jobs(state, [self.measure_all_button, self.score_all_button])
        self._init_section_finding()
        self.section_picker = widgets.Dropdown(description="Section", options=[],
                                               style={"description_width": "initial"},
                                               layout=widgets.Layout(width="200px"))
        self.play_section_button = widgets.Button(description="Play section", icon="play",
                                                  layout=widgets.Layout(width="auto"),
                                                  tooltip="play the picked section of take A, start to end")
        self.sections_note = widgets.HTML()
        self.play_section_button.on_click(lambda _: self.play_section(self.section_picker.value))
        self.section_row = widgets.HBox([self.find_sections_button, self.section_picker, self.play_section_button,
                                         self.sections_note],
                                        layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        self.section_row.layout.display = "none"  # until a take is in the player
        self.status.value = "ready"
        self.rows = widgets.VBox()
        self.player_box = widgets.VBox()
        self.row_buttons: dict[str, dict[str, widgets.Button]] = {}
        self.badges: dict[str, widgets.HTML] = {}
        self._needs: dict[int, str] = {id(self.score_all_button): "planner"}
        self.sort.observe(lambda change: self.refresh(), names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.measure_all_button.on_click(lambda _: self.measure_all())
        self.score_all_button.on_click(lambda _: self.score_all())
        self.widget = widgets.VBox([
            self.player_box, self.section_row,
            widgets.HBox([self.sort, self.refresh_button, self.measure_all_button, self.score_all_button]),
            widgets.HBox([self.progress, self.cancel_button]), self.status, self.rows])
        state.observe(lambda change: self.sync_buttons(), names="planner")
        state.observe(lambda change: self._invalidate(), names=["planner", "revision"])
        if follow_current:
            state.observe(lambda change: self._invalidate(), names="current_take")
        self._invalidate()

    # ------------------------------------------------------------------ listing
    def _wanted(self) -> list[str] | None:
        if self.take_ids is not None:
            return self.take_ids
        take = self.state.current_take
        if self.follow_current and take is not None and take.id in self.store:
            from acestep_engine.takes.export import batch_of

            return batch_of(self.store, take.id)
        return None

    def records(self) -> list[dict]:
        if self.store is None:
            return []
        records = self.store.list()
        wanted = self._wanted()
        if wanted is not None:
            records = [r for r in records if r["id"] in set(wanted)]
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
        self.state.set_planner(planner)

    def _draw(self) -> None:
        take = self.state.current_take
        if self.follow_current and take is not None and (self.player is None or self.player.take is None
                                                         or self.player.take.id != take.id):
            self._play(take, "a")
        elif self.player is not None and self.player.take is not None and not self.player.sections:
            self._show_sections(self.player.take, known_sections(self.player.take))  # found in another tab
        self.refresh()

    def refresh(self) -> None:
        rows, self.row_buttons, self.badges = [], {}, {}
        self._needs = {id(self.score_all_button): "planner"}
        planner = self.planner is not None
        for record in self.records():
            take_id = record["id"]
            title = widgets.HTML(f"<b>{html.escape(record.get('name') or take_id)}</b> &middot; seed "
                                 f"{record.get('seed')} &middot; {record.get('duration', 0):.1f} s",
                                 layout=widgets.Layout(flex="1 1 auto", margin="0 8px 0 0"))
            badge = widgets.HTML(badge_html(record, planner))
            small = {"width": "auto"}
            blueprint = record.get("blueprint", {})
            buttons = {
                "listen": widgets.Button(description="Listen", icon="play", tooltip="play as A in the player",
                                         layout=widgets.Layout(**small)),
                "compare": widgets.Button(description="as B", layout=widgets.Layout(**small),
                                          tooltip="load as B to switch A/B at the same position"),
                "measure": widgets.Button(description="Measure", layout=widgets.Layout(**small),
                                          tooltip="tempo, key, loudness against the blueprint"),
                "score": widgets.Button(description="Score", layout=widgets.Layout(**small),
                                        tooltip="upstream's LM quality score" if planner
                                        else "load the 5 Hz LM planner first"),
                "lrc": widgets.Button(description="LRC", layout=widgets.Layout(**small),
                                      tooltip="lyric timestamps from the DiT's cross-attention"),
            }
            self._needs[id(buttons["score"])] = "planner"
            self._needs[id(buttons["lrc"])] = ("lyrics" if not blueprint.get("instrumental")
                                               and blueprint.get("lyrics", "").strip() else "never")
            self._needs[id(buttons["compare"])] = "player"
            buttons["listen"].on_click(lambda _, i=take_id: self.select(i))
            buttons["compare"].on_click(lambda _, i=take_id: self.select(i, side="b"))
            buttons["measure"].on_click(lambda _, i=take_id: self.measure(i))
            buttons["score"].on_click(lambda _, i=take_id: self.score(i))
            buttons["lrc"].on_click(lambda _, i=take_id: self.lrc(i))
            self.row_buttons[take_id], self.badges[take_id] = buttons, badge
            # the buttons wrap below the title as one group on a narrow screen, never mid-line
            rows.append(widgets.VBox([widgets.HBox([title, widgets.HBox(list(buttons.values()))],
                                                   layout=widgets.Layout(flex_flow="row wrap", align_items="center")),
                                      badge],
                                     layout=widgets.Layout(border="1px solid #ddd", padding="2px 4px")))
        self._start_buttons = [self.measure_all_button, self.score_all_button, self.find_sections_button] + [
            b for buttons in self.row_buttons.values() for name, b in buttons.items()
            if name in ("measure", "score", "lrc")]
        replace_children(self.rows, rows or [widgets.HTML("<i>no takes yet</i>")])
        self.sync_buttons()
        for buttons in self.row_buttons.values():
            buttons["compare"].disabled = self.player is None

    def _button_enabled(self, button) -> bool:
        if button is self.find_sections_button:
            return self.player is not None and has_lyrics(self.player.take) and self.engine is not None
        need = self._needs.get(id(button))
        if need == "planner":
            return self.planner is not None
        if need == "lyrics":
            return self.engine is not None
        return need != "never"

    # ------------------------------------------------------------------ the player
    def select(self, take_id: str, side: str = "a") -> SyncedPlayer:
        """Play `take_id` as A (or load it as B, keeping A)."""
        return self._play(self.store.load(take_id), side)

    def _play(self, take, side: str) -> SyncedPlayer:
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
        if side == "a":
            self._show_sections(take, known_sections(take))
        return self.player

    # ------------------------------------------------------------------ sections of take A
    def _section_take(self):
        return self.player.take if self.player is not None else None

    def _show_sections(self, take, sections) -> None:
        """Bands over the player (the side that plays `take`), the names to pick for Play section."""
        if self.player is None:
            return
        for side, shown in (("a", self.player.take), ("b", self.player.compare)):
            if shown is not None and shown.id == take.id:
                self.player.set_sections(sections, side)
        if self.player.take is None or self.player.take.id != take.id:
            return
        self.section_row.layout.display = None
        self.section_picker.options = sections.names if sections is not None else []
        self.play_section_button.disabled = sections is None
        if sections is not None:
            self.sections_note.value = f"<small>{sections_words(sections)}</small>"
        else:
            refusal = self.section_refusal(take)
            self.sections_note.value = (f"<small><i>{html.escape(refusal or 'press Find sections to see them')}"
                                        "</i></small>")
        self.sync_buttons()

    def play_section(self, name: str) -> None:
        """Play the section `name` of take A from its start to its end (a click on its band does the same)."""
        if self.player is None or not self.player.sections:
            self._set_status("find the sections first (Find sections)", error=True)
            return
        try:
            self.player.current = "a"
            self.player.play_section(name)
        except AceStepError as error:
            self._set_status(str(error), error=True)
            return
        self._set_status(f"playing {html.escape(self.player.current_section or name)}")

    # ------------------------------------------------------------------ jobs
    def _run(self, name: str, work, save):
        """Run `work(cancel, progress)`; `save(value)` writes the sidecars on the worker (before
        `job.result()` returns); then every view of the store redraws."""
        def saved(value, progress):
            save(value)

        def show(value):
            self.state.store_changed()  # the lists (and this one) redraw from the sidecars
            return f"{name}: done {TIME}"

        return self.run_job(name, work, save=saved, show=show,
                            cancelled=f"{name}: cancelled (what finished is saved)",
                            failed=lambda error: f"{name} failed: {type(error).__name__}: {error}")

    def _notes_changed(self, take_id: str, **notes) -> None:
        """Keep the takes held in memory (the current one, the player's) in step with their sidecar."""
        for take in (self.state.current_take, *(() if self.player is None else (self.player.take,
                                                                                 self.player.compare))):
            if take is not None and take.id == take_id:
                take.notes.update(notes)

    def measure(self, take_id: str, refresh: bool = True):
        """Measure one take (tempo, key, loudness) and save it with its adherence in the sidecar."""
        from acestep_engine.takes import measure_take

        def work(cancel, progress):
            progress.stage("measuring", 0.1, "measuring tempo, key and loudness")
            return measure_take(self.store, take_id, refresh=refresh)

        def save(value):
            self._notes_changed(take_id, **{k: v for k, v in self.store.record(take_id)["notes"].items()
                                            if k in ("measurement", "adherence")})

        return self._run(f"measure {take_id}", work, save)

    def measure_all(self):
        """Measure every listed take not measured yet (Cancel stops between takes)."""
        from acestep_engine.takes import measure_take

        ids = self.sorted_ids()

        def work(cancel, progress):
            for i, take_id in enumerate(ids):
                if cancel.is_set():
                    raise GenerationCancelled("measuring cancelled")
                progress.stage("measuring", i / max(1, len(ids)), f"measuring take {i + 1} of {len(ids)}")
                measure_take(self.store, take_id)
            return len(ids)

        return self._run("measure all", work, lambda value: None)

    def _need_planner(self, what: str) -> bool:
        if self.planner is None:
            self._set_status(f"{what} needs the 5 Hz LM planner: load it in the Blueprint tab (Load planner) "
                             "first", error=True)
            return False
        return True

    def score(self, take_id: str):
        """Upstream's quality score of one take, saved in its sidecar."""
        from acestep_engine.lm import quality_score, save_quality_score

        if not self._need_planner("Score"):
            return None

        def work(cancel, progress):
            return quality_score(self.planner, self.store.load(take_id), self.engine, cancel=cancel,
                                 progress=lambda p: progress.stage("scoring", p.step / max(1, p.steps), p.message))

        def save(value):
            save_quality_score(self.store, take_id, value)
            self._notes_changed(take_id, quality_score=value.to_dict())

        return self._run(f"score {take_id}", work, save)

    def score_all(self):
        """Score every listed take without a score (Cancel stops between passes; finished scores are kept)."""
        from acestep_engine.lm import quality_score, save_quality_score

        if not self._need_planner("Score all"):
            return None
        ids = [r["id"] for r in self.records() if "quality_score" not in (r.get("notes") or {})]

        def work(cancel, progress):
            for i, take_id in enumerate(ids):
                def report(p, i=i):
                    progress.stage("scoring", (i + p.step / max(1, p.steps)) / len(ids),
                                   f"take {i + 1} of {len(ids)}: {p.message}")
                score = quality_score(self.planner, self.store.load(take_id), self.engine, cancel=cancel,
                                      progress=report)
                save_quality_score(self.store, take_id, score)  # kept even if a later take is cancelled
                self._notes_changed(take_id, quality_score=score.to_dict())
            return len(ids)

        return self._run("score all", work, lambda value: None)

    def lrc(self, take_id: str):
        """Lyric timestamps of one take: saved as its LRC (exported beside its audio) and shown in the player."""
        from acestep_engine.lm import lyric_timestamps, save_lyric_timestamps

        if self.engine is None:
            self._set_status("LRC needs the engine (its DiT aligns the lyrics)", error=True)
            return None

        def work(cancel, progress):
            return lyric_timestamps(self.engine, self.store.load(take_id), cancel=cancel,
                                    progress=lambda p: progress.stage("aligning", p.step / max(1, p.steps),
                                                                      p.message))

        def save(stamps):
            save_lyric_timestamps(self.store, take_id, stamps)
            self._notes_changed(take_id, lrc=stamps.lrc)
            if self.player is not None:
                for side, take in (("a", self.player.take), ("b", self.player.compare)):
                    if take is not None and take.id == take_id:
                        post(lambda side=side: self.player.set_lrc(stamps.lrc, side))

        return self._run(f"LRC {take_id}", work, save)

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.widget, **kwargs)
