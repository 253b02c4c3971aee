"""RenderGrid: a render's takes as a grid, one row per job (caption x seed), best first.

Rows are the jobs of one render (or of every render in the store), cells their takes; once takes
have quality scores the rows sort by their best score and the cells by score (unscored ones keep
plan and seed order, after the scored). The grid is one HTML table: a render of a hundred takes
costs a handful of widget models, not hundreds (JupyterLab restores every model on reload). Picking
a job and one of its seeds below the table makes that take the workbench's current take; "as A" and
"as B" load any two takes into the synced player. Score runs upstream's quality score of the shown
takes through the shared job runner, and needs the planner.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from acestep_engine import GenerationCancelled
from acestep_engine.errors import AceStepError
from acestep_engine.render import JobTakes, render_names, takes_by_job

from .badges import score_html
from .display import widget_bundle
from .jobs import TIME, JobPanel, error_html
from .state import WorkbenchState
from .synced_player import SyncedPlayer
from .views import LazyView, replace_children

EVERY_RENDER = ""  # the render dropdown's "every render" (a Dropdown shows None as a blank box)
CURRENT, MARK = "#1565c0", "#6a1b9a"
NO_RENDERS = ("No renders in this store yet: render a plan (<code>acestep render plan.jsonl --out &lt;store&gt;</code> "
              "or <code>engine.render_many(plan, store)</code>) and its takes show here by job and seed.")


def _score(record: dict) -> float | None:
    score = (record.get("notes") or {}).get("quality_score")
    return None if score is None else float(score["score"])


def _rank(score: float | None, order) -> tuple:
    return (score is None, -(score or 0.0), order)


def sorted_by_score(groups: list[JobTakes]) -> list[JobTakes]:
    """Jobs by their best quality score, each job's takes by score (best first); unscored jobs and
    takes come after the scored ones in the order they had (plan order, seed order)."""
    out = [JobTakes(g.job, g.label, g.line, g.caption, g.task,
                    sorted(g.takes, key=lambda r: _rank(_score(r), r["seed"]))) for g in groups]
    best = [max((s for s in map(_score, g.takes) if s is not None), default=None) for g in out]
    return [out[i] for i in sorted(range(len(out)), key=lambda i: _rank(best[i], i))]


def _row_label(group: JobTakes) -> str:
    text = group.label or group.caption or group.job
    return text[:48] + ("..." if len(text) > 48 else "")


class RenderGrid(JobPanel, LazyView):
    """A render's takes by job and seed. `render` picks the render (every render, or one by name);
    `rows` are the jobs as shown; `job_choice` and `take_choice` pick a cell (it becomes the current
    take); `as_a_button` / `as_b_button` load the picked take into the synced `player`;
    `score_button` scores the shown takes that have no score yet (needs the planner). Follows
    `state.revision` (new, renamed, deleted or scored takes) and `state.current_take`."""

    def __init__(self, state: WorkbenchState | None = None, store=None, use_custom_widget: bool | None = None):
        state = state if state is not None else WorkbenchState(store=store)
        self.use_custom_widget = use_custom_widget
        wide = {"description_width": "initial"}
        self.render = widgets.Dropdown(description="Render", options=[("every render", EVERY_RENDER)],
                                       value=EVERY_RENDER, style=wide, layout=widgets.Layout(width="320px"))
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh", layout=widgets.Layout(width="auto"),
                                             tooltip="read the store again (takes rendered by another process)")
        self.score_button = widgets.Button(description="Score", icon="star", layout=widgets.Layout(width="auto"))
        self._init_jobs(state, [self.score_button])
        self.grid = widgets.HTML()
        self.job_choice = widgets.Dropdown(description="Job", options=[], style=wide,
                                           layout=widgets.Layout(width="320px"))
        self.take_choice = widgets.ToggleButtons(options=[], value=None, style={"button_width": "auto"},
                                                 tooltip="make this take the current take")
        self.as_a_button = widgets.Button(description="as A", layout=widgets.Layout(width="auto"),
                                          tooltip="play the picked take as A in the player")
        self.as_b_button = widgets.Button(description="as B", layout=widgets.Layout(width="auto"),
                                          tooltip="load the picked take as B, to switch A/B at the same position")
        self.player_box = widgets.VBox()
        self.player: SyncedPlayer | None = None
        self.a_id: str | None = None
        self.b_id: str | None = None
        self.rows: list[JobTakes] = []
        self._records: dict[str, dict] = {}
        self._syncing = False
        self._unreadable: str | None = None  # why the chosen render's summary could not be read

        self.render.observe(lambda change: self._render_changed(), names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.score_button.on_click(lambda _: self.score_shown())
        self.job_choice.observe(lambda change: self._job_picked(), names="value")
        self.take_choice.observe(lambda change: self._take_picked(), names="value")
        self.as_a_button.on_click(lambda _: self._picked_as("a"))
        self.as_b_button.on_click(lambda _: self._picked_as("b"))
        state.observe(lambda change: self._planner_changed(), names="planner")
        state.observe(lambda change: self._invalidate(), names="revision")
        state.observe(lambda change: self._current_changed(), names="current_take")
        self.widget = widgets.VBox([
            widgets.HBox([self.render, self.refresh_button, self.score_button, self.progress, self.cancel_button],
                         layout=widgets.Layout(flex_flow="row wrap", align_items="center")),
            self.status, self.grid,
            widgets.HBox([self.job_choice, self.as_a_button, self.as_b_button],
                         layout=widgets.Layout(flex_flow="row wrap", align_items="center")),
            self.take_choice, self.player_box])
        self._planner_changed()

    # ------------------------------------------------------------------ listing
    def _draw(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Read the store's renders and the chosen one's takes, sorted by score, and redraw."""
        store = self.store
        names = render_names(store) if store is not None else []
        chosen = self.render.value
        self._syncing = True
        try:
            options = [("every render", EVERY_RENDER)] + [(name, name) for name in names]
            if list(self.render.options) != options:
                self.render.options = options
            self.render.value = chosen if chosen in names else EVERY_RENDER
        finally:
            self._syncing = False
        self._unreadable = None
        try:
            groups = takes_by_job(store, self.render.value or None) if store is not None else []
        except AceStepError as exc:  # a summary that cannot be read: the grid says why
            self._unreadable = str(exc)
            groups = []
        self.rows = sorted_by_score(groups)
        self._records = {r["id"]: r for group in self.rows for r in group.takes}
        for side in ("a", "b"):  # a deleted take leaves the player
            take_id = getattr(self, f"{side}_id")
            if take_id is not None and (store is None or take_id not in store):
                setattr(self, f"{side}_id", None)
        if self.a_id is None and self.player is not None:
            replace_children(self.player_box, [])
            self.player = None
        elif self.player is not None and self.b_id is None and self.player.compare is not None:
            self.player.set_takes(self.player.take)
        self._sync_choices()
        self._draw_grid()

    @property
    def take_ids(self) -> list[list[str]]:
        """The shown takes' ids, row by row, in the order of the grid."""
        return [group.take_ids for group in self.rows]

    def _render_changed(self) -> None:
        if not self._syncing:
            self.refresh()

    def _draw_grid(self) -> None:
        if self._unreadable is not None:
            self.grid.value = f"<p>{error_html(self._unreadable)}</p>"
            return
        if not self.rows:
            self.grid.value = (f"<p>{NO_RENDERS}</p>" if self.render.value == EVERY_RENDER else
                               f"<p>The render {html.escape(self.render.value)} has no jobs that could render.</p>")
            return
        current = self.state.current_take
        current_id = current.id if current is not None else None
        planner = self.planner is not None
        width = max(1, *(len(group.takes) for group in self.rows))
        scored = any(_score(r) is not None for r in self._records.values())
        head = (f"<th colspan='{width}' style='text-align:left;padding:2px 6px'>"
                f"{'takes, best score first' if scored else 'takes by seed'}</th>")
        lines = [f"<tr><th style='text-align:left;padding:2px 6px'>job</th><th style='padding:2px 6px'>task</th>{head}</tr>"]
        for group in self.rows:
            cells = []
            for record in group.takes:
                take_id = record["id"]
                marks = "".join(f" <b style='color:{MARK}'>{side.upper()}</b>"
                                for side in ("a", "b") if getattr(self, f"{side}_id") == take_id)
                border = f"2px solid {CURRENT}" if take_id == current_id else "1px solid #ddd"
                score = score_html(record, planner)
                cells.append(f"<td title='{html.escape(take_id)}' style='border:{border};padding:2px 6px;"
                             f"white-space:nowrap'>seed {record['seed']} &middot; {record.get('duration', 0):.1f} s"
                             f"{marks}{'<br>' + score if score else ''}</td>")
            if not group.takes:
                cells.append("<td style='color:#777;padding:2px 6px'>no takes yet</td>")
            where = f"line {group.line}: " if group.line is not None else ""
            lines.append(f"<tr><td title='{html.escape(where + group.caption)}' style='padding:2px 6px'>"
                         f"<b>{html.escape(_row_label(group))}</b></td>"
                         f"<td style='padding:2px 6px'>{html.escape(group.task)}</td>{''.join(cells)}</tr>")
        self.grid.value = (f"<div style='overflow-x:auto'><table style='border-collapse:collapse'>{''.join(lines)}"
                           f"</table></div>")

    # ------------------------------------------------------------------ picking a cell
    def _row_of(self, take_id: str | None) -> JobTakes | None:
        return next((group for group in self.rows if take_id in group.take_ids), None)

    def _sync_choices(self) -> None:
        """The job and take pickers show the current take's cell when it is in the grid."""
        current = self.state.current_take
        row = self._row_of(current.id if current is not None else None)
        jobs = [(f"{i + 1}. {_row_label(group)}", group.job) for i, group in enumerate(self.rows)]
        self._syncing = True
        try:
            chosen = self.job_choice.value
            if list(self.job_choice.options) != jobs:
                self.job_choice.options = jobs
            ids = [job for _, job in jobs]
            self.job_choice.value = (row.job if row is not None else chosen if chosen in ids else
                                     ids[0] if ids else None)
            self._show_cells(current.id if row is not None else None)
        finally:
            self._syncing = False

    def _show_cells(self, take_id: str | None) -> None:
        group = next((g for g in self.rows if g.job == self.job_choice.value), None)
        cells = [] if group is None else [
            (f"seed {r['seed']}" + (f" · {_score(r):.3f}" if _score(r) is not None else ""), r["id"])
            for r in group.takes]
        if list(self.take_choice.options) != cells:
            self.take_choice.options = cells
        self.take_choice.value = take_id if take_id in [value for _, value in cells] else None

    def _job_picked(self) -> None:
        if self._syncing:
            return
        current = self.state.current_take
        self._syncing = True
        try:
            self._show_cells(current.id if current is not None else None)
        finally:
            self._syncing = False

    def _take_picked(self) -> None:
        if not self._syncing and self.take_choice.value is not None:
            self.pick(self.take_choice.value)

    def pick(self, take_id: str) -> None:
        """Make `take_id` (a take of the grid) the workbench's current take."""
        current = self.state.current_take
        if current is None or current.id != take_id:
            self.state.current_take = self.store.load(take_id)

    def _current_changed(self) -> None:
        if self.visible:
            self._sync_choices()
            self._draw_grid()
        else:
            self._stale = True

    # ------------------------------------------------------------------ A/B
    def _picked_as(self, side: str) -> None:
        take_id = self.take_choice.value
        if take_id is None:
            self._set_status("pick a take first: a job, then one of its seeds", error=True)
            return
        self.compare(**{side: take_id})

    def compare(self, a: str | None = None, b: str | None = None) -> SyncedPlayer | None:
        """Load take `a` as A and/or `b` as B into the synced player (either may be any take of the
        store); the other side keeps its take. The player appears once A is set."""
        for side, take_id in (("a", a), ("b", b)):
            if take_id is not None:
                if take_id not in self.store:
                    raise ValueError(f"{side}: no take {take_id!r} in the store")
                setattr(self, f"{side}_id", take_id)
        self._draw_grid()
        if self.a_id is None:
            self._set_status(f"B is {html.escape(self.b_id)}: pick A too")
            return None
        take = self.store.load(self.a_id)
        compare = self.store.load(self.b_id) if self.b_id not in (None, self.a_id) else None
        if self.player is None:
            self.player = SyncedPlayer(take, compare, use_custom_widget=self.use_custom_widget)
            self.player_box.children = (self.player.widget,)
        else:
            self.player.set_takes(take, compare)
        if b is not None and compare is not None:
            self.player.current = "b"
        self._set_status(f"A: {html.escape(self.a_id)}" + (f" &middot; B: {html.escape(self.b_id)}"
                                                             if compare is not None else " (pick B to compare)"))
        return self.player

    # ------------------------------------------------------------------ scoring
    def _planner_changed(self) -> None:
        self.score_button.tooltip = ("upstream's quality score of the shown takes that have none" if self.planner
                                     is not None else "Score needs the 5 Hz LM planner: load it in the Blueprint tab")
        self.sync_buttons()
        self._invalidate()

    def _button_enabled(self, button) -> bool:
        return button is not self.score_button or self.planner is not None

    def score_shown(self):
        """Score the shown takes that have no quality score yet, through the shared job runner
        (Cancel stops between passes; finished scores are kept). The grid re-sorts when it ends."""
        from acestep_engine.lm import quality_score, save_quality_score

        if self.planner is None:
            self._set_status("Score needs the 5 Hz LM planner: load it in the Blueprint tab (Load planner) first",
                             error=True)
            return None
        ids = [take_id for row in self.take_ids for take_id in row if _score(self._records[take_id]) is None]
        if not ids:
            self._set_status("every take shown has a score")
            return None
        planner, engine, store = self.planner, self.engine, self.store

        def work(cancel, progress):
            for i, take_id in enumerate(ids):
                if cancel.is_set():
                    raise GenerationCancelled("scoring cancelled")

                def report(p, i=i):
                    progress.stage("scoring", (i + p.step / max(1, p.steps)) / len(ids),
                                   f"take {i + 1} of {len(ids)}: {p.message}")

                score = quality_score(planner, store.load(take_id), engine, cancel=cancel, progress=report)
                save_quality_score(store, take_id, score)  # kept even if a later take is cancelled
                held = (self.state.current_take, *(() if self.player is None else (self.player.take,
                                                                                    self.player.compare)))
                for take in held:  # the takes held in memory stay in step with their sidecar
                    if take is not None and take.id == take_id:
                        take.notes["quality_score"] = score.to_dict()
            return len(ids)

        def show(count):
            self.state.store_changed()  # every list of the store (this grid too) redraws from the sidecars
            return f"scored {count} take(s) {TIME}"

        return self.run_job("score", work, show=show, cancelled="scoring cancelled (finished scores are kept)",
                            failed=lambda error: f"Score failed: {type(error).__name__}: {error}")

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.widget, **kwargs)
