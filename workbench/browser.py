"""TakeBrowser: list, filter, play, compare, rename, delete (with undo), export, recall, and the
renders' takes as a grid by job and seed (the "Renders" section, built when first opened).

The list follows the shared state: it re-lists when takes are added anywhere in the workbench
(`state.revision`) and selects the current take; picking a take in the list makes it the
current take. Re-listing never selects anything on its own (no stale take comes back).
"""

from __future__ import annotations

import html
from pathlib import Path

import ipywidgets as widgets

from acestep_engine.errors import AceStepError
from acestep_engine.takes.export import FORMAT_LABELS, FORMATS

from .display import widget_bundle
from .state import WorkbenchState
from .jobs import error_html
from .render_grid import RenderGrid
from .state_view import StateView
from .views import AudioPlayer, LazyView, SpectrogramView, heading

NONE = ""  # "compare with nothing" (a Dropdown shows None as a blank box in ipywidgets 8)
LISTED = 200  # newest takes in the list; the filter finds older ones


def _label(record: dict) -> str:
    caption = record.get("blueprint", {}).get("caption", "")
    caption = caption[:40] + ("..." if len(caption) > 40 else "")
    name = record.get("name") or record["id"]
    return (f"{name} | {record.get('task', {}).get('name', '?')} | seed {record.get('seed')} | "
            f"{record.get('duration', 0):.1f} s | {caption}")


def _matches(record: dict, search: str, task: str) -> bool:
    if task != "all" and record.get("task", {}).get("name") != task:
        return False
    if search:
        haystack = " ".join([record.get("name", ""), record.get("id", ""),
                             record.get("blueprint", {}).get("caption", "")]).lower()
        return search.lower() in haystack
    return True


class TakeBrowser(LazyView, StateView):
    def __init__(self, store, on_recall=None, on_use_as_source=None, state: WorkbenchState | None = None,
                 use_custom_widget: bool | None = None):
        self.state = state if state is not None else WorkbenchState(store=store)
        if self.state.store is None:
            self.state.store = store
        self.on_recall, self.on_use_as_source = on_recall, on_use_as_source
        wide = {"description_width": "initial"}
        self.heading = widgets.HTML()
        self.problems = widgets.HTML()  # files in the folder that are not usable takes (left untouched)
        self.search = widgets.Text(description="Filter", placeholder="name, id or caption", style=wide)
        self.task_filter = widgets.Dropdown(description="Task", options=["all"], value="all", style=wide)
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.takes = widgets.Select(options=[], rows=8, layout=widgets.Layout(width="100%"))
        self.compare_with = widgets.Dropdown(description="Compare with", options=[("(none)", NONE)], value=NONE,
                                             style=wide, layout=widgets.Layout(width="420px"))
        self.name = widgets.Text(description="Name", style=wide)
        self.rename_button = widgets.Button(description="Rename")
        self.delete_button = widgets.Button(description="Delete", button_style="danger", icon="trash")
        self.undo_button = widgets.Button(description="Undo delete", disabled=True)
        self.export_format = widgets.Dropdown(description="Export as", value="wav", style=wide,
                                              options=[(FORMAT_LABELS.get(f, f), f) for f in FORMATS],
                                              layout=widgets.Layout(width="220px"))
        self.export_path = widgets.Text(description="to folder", value="exports", style=wide)
        self.export_button = widgets.Button(description="Export", icon="download")
        self.recall_button = widgets.Button(description="Recall", tooltip="put this take's blueprint in the editor")
        self.source_button = widgets.Button(description="Use as source", layout=widgets.Layout(width="auto"))
        self.recall_button.layout.display = None if on_recall is not None else "none"
        self.source_button.layout.display = None if on_use_as_source is not None else "none"
        self.status = widgets.HTML()
        self.player = AudioPlayer("Selected")
        self.compare_view = SpectrogramView()
        self.detail = widgets.VBox()
        self._deleted: list[str] = []
        self._syncing = False
        self._records: dict[str, dict] = {}
        self._listing: list[dict] = []
        self._listed_revision = None
        # closed, the grid costs nothing (built, and the store's renders read, when opened)
        self.use_custom_widget = use_custom_widget
        self._render_grid = None
        self.renders_section = widgets.Accordion(children=[widgets.VBox()], selected_index=None)
        self.renders_section.set_title(0, "Renders: takes by job and seed")
        self.renders_section.observe(lambda change: self._renders_opened(), names="selected_index")

        self.search.observe(lambda change: self.refresh(), names="value")
        self.task_filter.observe(lambda change: self.refresh(), names="value")
        self.refresh_button.on_click(lambda _: self.refresh(force=True))
        self.takes.observe(lambda change: self._picked(), names="value")
        self.compare_with.observe(lambda change: self._invalidate(), names="value")
        self.rename_button.on_click(lambda _: self.rename(self.name.value))
        self.delete_button.on_click(lambda _: self.delete())
        self.undo_button.on_click(lambda _: self.undo_delete())
        self.export_button.on_click(lambda _: self.export())
        self.recall_button.on_click(lambda _: self._with_take(self.on_recall))
        self.source_button.on_click(lambda _: self._with_take(self.on_use_as_source))
        self.state.observe(lambda change: self.refresh(), names="revision")
        self.state.observe(lambda change: self._current_changed(), names="current_take")
        self.widget = widgets.VBox([
            self.heading, self.problems, widgets.HBox([self.search, self.task_filter, self.refresh_button]),
            self.takes,
            widgets.HBox([self.recall_button, self.source_button, self.compare_with]),
            widgets.HBox([self.name, self.rename_button, self.delete_button, self.undo_button]),
            widgets.HBox([self.export_format, self.export_path, self.export_button]),
            self.status, self.detail, self.renders_section,
        ])
        self.refresh()
        self._current_changed()

    @property
    def selected(self) -> str | None:
        return self.takes.value

    # ------------------------------------------------------------------ list <-> state
    def refresh(self, force: bool = False) -> None:
        """Re-list the store without changing the selection: one listing, and none at all while the
        store's `revision` is unchanged (filters apply in memory)."""
        revision = getattr(self.store, "revision", None)
        if force or revision is None or revision != self._listed_revision:
            self._listing = self.store.list()
            self._listed_revision = revision
            self._show_problems(getattr(self.store, "problems", []))
        records = self._listing
        self._records = {r["id"]: r for r in records}
        tasks = sorted({r.get("task", {}).get("name", "?") for r in records})
        shown = [r for r in reversed(records) if _matches(r, self.search.value, self.task_filter.value)][:LISTED]
        options = [(_label(r), r["id"]) for r in shown]  # newest first
        ids = [value for _, value in options]
        current = self.state.current_take
        keep = current.id if current is not None and current.id in ids else (
            self.takes.value if self.takes.value in ids and current is None else None)
        self._syncing = True
        try:
            if list(self.task_filter.options) != ["all"] + tasks:
                chosen = self.task_filter.value
                self.task_filter.options = ["all"] + tasks
                self.task_filter.value = chosen if chosen in self.task_filter.options else "all"
            if list(self.takes.options) != options:
                self.takes.options = options
            self.takes.value = keep
            compare = self.compare_with.value
            self.compare_with.options = [("(none)", NONE)] + options
            self.compare_with.value = compare if compare in ids else NONE
        finally:
            self._syncing = False
        if (current is None or current.id not in self._records) and ids and not self.search.value \
                and self.task_filter.value == "all":
            self.select(ids[0])  # nothing current (or it was deleted): the newest take becomes current
        elif current is not None and current.id not in self._records:
            self.state.current_take = None
        self._invalidate()

    def _show_problems(self, problems) -> None:
        if not problems:
            self.problems.value = ""
            return
        items = "".join(f"<li><code>{html.escape(str(p))}</code></li>" for p in problems[:20])
        more = f"<li>... and {len(problems) - 20} more</li>" if len(problems) > 20 else ""
        self.problems.value = (
            f"<details><summary style='color:#8a6d3b'>&#9888; {len(problems)} file(s) in the folder are not "
            f"usable takes and are not listed (left untouched)</summary><ul>{items}{more}</ul></details>")

    def select(self, take_id: str) -> None:
        """Make `take_id` the selected and current take."""
        if self.takes.value == take_id:
            self._picked()
        else:
            self.takes.value = take_id

    def _picked(self) -> None:
        if self._syncing:
            return
        take_id = self.takes.value
        current = self.state.current_take
        if take_id is not None and (current is None or current.id != take_id):
            self.state.current_take = self.store.load(take_id)
        self._invalidate()

    def _current_changed(self) -> None:
        take = self.state.current_take
        self.heading.value = heading("Takes", take)
        if take is not None and take.id in self._records and self.takes.value != take.id:
            self._syncing = True
            try:
                self.takes.value = take.id if take.id in [v for _, v in self.takes.options] else None
            finally:
                self._syncing = False
        self._invalidate()

    # ------------------------------------------------------------------ detail (drawn when shown)
    def _selected_take(self):
        take_id = self.selected
        if take_id is None:
            return None
        current = self.state.current_take
        return current if current is not None and current.id == take_id else self.store.load(take_id)

    def set_visible(self, visible: bool) -> None:
        if visible and getattr(self.store, "revision", None) != self._listed_revision:
            self.refresh()  # takes saved from a notebook cell or another kernel since the last listing
        super().set_visible(visible)
        if self._render_grid is not None:
            self._render_grid.set_visible(visible and self.renders_section.selected_index == 0)

    # ------------------------------------------------------------------ renders by job and seed
    @property
    def render_grid(self):
        """The "Renders" section (RenderGrid): built when first opened or named."""
        if self._render_grid is None:
            with LazyView.built_hidden():
                self._render_grid = RenderGrid(state=self.state, use_custom_widget=self.use_custom_widget)
            self.renders_section.children[0].children = (self._render_grid.widget,)
            self._render_grid.set_visible(self.visible and self.renders_section.selected_index == 0)
        return self._render_grid

    def _renders_opened(self) -> None:
        if self.renders_section.selected_index == 0 or self._render_grid is not None:
            self.render_grid.set_visible(self.visible and self.renders_section.selected_index == 0)

    def open_renders(self):
        """Open the "Renders" section and return its grid."""
        self.renders_section.selected_index = 0
        return self.render_grid

    def _draw(self) -> None:
        take = self._selected_take()
        if take is None:
            self.player.clear()
            self.compare_view.show(None)
            self.detail.children = ()
            self.name.value = ""
            return
        self.name.value = take.name
        compare_id = self.compare_with.value
        if compare_id not in (NONE, None, take.id):
            self.player.clear()
            self.compare_view.show(take, self.store.load(compare_id))
            self.detail.children = (self.compare_view.widget,)
        else:
            self.compare_view.show(None)
            self.player.cue(take)
            self.detail.children = (self.player.widget,)

    def audio_players(self) -> list:
        return [self.player, self.compare_view]

    def _with_take(self, callback) -> None:
        if callback is None:
            return
        take = self._selected_take()
        if take is None:
            self.status.value = "select a take first"
            return
        callback(take)

    # ------------------------------------------------------------------ editing the store
    def rename(self, name: str) -> None:
        if self.selected is None:
            return
        take_id = self.selected
        self.store.rename(take_id, name)
        current = self.state.current_take
        if current is not None and current.id == take_id:
            current.name = str(name)
        self.status.value = f"renamed to {html.escape(repr(name))}"
        self.state.store_changed()

    def delete(self) -> None:
        """Move the selected take to the store's trash; its neighbour in the list (the next older,
        else the next newer) becomes the selected and current take."""
        if self.selected is None:
            return
        ids = [value for _, value in self.takes.options]
        index = ids.index(self.selected)
        neighbours = ids[index + 1:index + 2] + ids[index - 1:index] if index > 0 else ids[index + 1:index + 2]
        take_id = self.store.delete(self.selected)
        self._deleted.append(take_id)
        self.undo_button.disabled = False
        self.state.current_take = self.store.load(neighbours[0]) if neighbours else None
        self.state.store_changed()
        self.status.value = f"deleted {html.escape(take_id)} (Undo delete brings it back)"

    def undo_delete(self) -> None:
        """Bring back the last deleted take; it becomes the selected and current take."""
        if not self._deleted:
            return
        take_id = self.store.undelete(self._deleted.pop())
        self.undo_button.disabled = not self._deleted
        self.state.current_take = self.store.load(take_id)
        self.state.store_changed()
        self.status.value = f"restored {html.escape(take_id)}: it is the current take again"

    def export(self) -> Path | None:
        if self.selected is None:
            return None
        folder = Path(self.export_path.value or ".")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            record = self.store.record(self.selected)
            stem = (record.get("name") or self.selected).replace("/", "_")
            suffix = FORMATS[self.export_format.value][2]
            path = self.store.export(self.selected, folder / f"{stem}.{suffix}", format=self.export_format.value)
        except (AceStepError, OSError) as exc:
            self.status.value = error_html(f"export failed: {exc}")
            return None
        self.status.value = f"exported {html.escape(str(path))}"
        return path

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.widget, **kwargs)
