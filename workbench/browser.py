"""TakeBrowser: list, filter, play, compare, rename, delete (with undo), export, recall."""

from __future__ import annotations

from pathlib import Path

import ipywidgets as widgets

from acestep_engine.errors import AceStepError

from .views import SpectrogramView, audio_player


def _label(record: dict) -> str:
    caption = record.get("blueprint", {}).get("caption", "")
    caption = caption[:40] + ("..." if len(caption) > 40 else "")
    name = record.get("name") or record["id"]
    return (f"{name} | {record.get('task', {}).get('name', '?')} | seed {record.get('seed')} | "
            f"{record.get('duration', 0):.1f} s | {caption}")


class TakeBrowser:
    def __init__(self, store, on_recall=None, on_use_as_source=None):
        self.store = store
        self.on_recall, self.on_use_as_source = on_recall, on_use_as_source
        self.search = widgets.Text(description="Filter", placeholder="name, id or caption")
        self.task_filter = widgets.Dropdown(description="Task", options=["all"], value="all")
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.takes = widgets.Select(options=[], rows=8, layout=widgets.Layout(width="100%"))
        self.compare_with = widgets.Dropdown(description="Compare", options=[("(none)", None)], value=None)
        self.name = widgets.Text(description="Name")
        self.rename_button = widgets.Button(description="Rename")
        self.delete_button = widgets.Button(description="Delete", button_style="danger", icon="trash")
        self.undo_button = widgets.Button(description="Undo delete", disabled=True)
        self.export_format = widgets.Dropdown(description="Export as", options=["wav", "flac"], value="wav")
        self.export_path = widgets.Text(description="to folder", value="exports")
        self.export_button = widgets.Button(description="Export", icon="download")
        self.recall_button = widgets.Button(description="Recall", disabled=on_recall is None)
        self.source_button = widgets.Button(description="Use as source", disabled=on_use_as_source is None)
        self.status = widgets.HTML()
        self.detail = widgets.VBox()
        self._deleted: list[str] = []

        self.search.observe(lambda change: self.refresh(), names="value")
        self.task_filter.observe(lambda change: self.refresh(), names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.takes.observe(lambda change: self._show(), names="value")
        self.compare_with.observe(lambda change: self._show(), names="value")
        self.rename_button.on_click(lambda _: self.rename(self.name.value))
        self.delete_button.on_click(lambda _: self.delete())
        self.undo_button.on_click(lambda _: self.undo_delete())
        self.export_button.on_click(lambda _: self.export())
        self.recall_button.on_click(lambda _: self._with_take(self.on_recall))
        self.source_button.on_click(lambda _: self._with_take(self.on_use_as_source))
        self.widget = widgets.VBox([
            widgets.HBox([self.search, self.task_filter, self.refresh_button]), self.takes,
            widgets.HBox([self.recall_button, self.source_button, self.compare_with]),
            widgets.HBox([self.name, self.rename_button, self.delete_button, self.undo_button]),
            widgets.HBox([self.export_format, self.export_path, self.export_button]),
            self.status, self.detail,
        ])
        self.refresh()

    @property
    def selected(self) -> str | None:
        return self.takes.value

    def refresh(self) -> None:
        records = self.store.list(search=self.search.value or None,
                                  task=None if self.task_filter.value == "all" else self.task_filter.value)
        tasks = sorted({r.get("task", {}).get("name", "?") for r in self.store.list()})
        if list(self.task_filter.options) != ["all"] + tasks:
            current = self.task_filter.value
            self.task_filter.options = ["all"] + tasks
            self.task_filter.value = current if current in self.task_filter.options else "all"
        selected = self.takes.value
        options = [(_label(r), r["id"]) for r in reversed(records)]  # newest first
        self.takes.options = options
        ids = [value for _, value in options]
        self.takes.value = selected if selected in ids else (ids[0] if ids else None)
        self.compare_with.options = [("(none)", None)] + options
        self._show()

    def select(self, take_id: str) -> None:
        self.takes.value = take_id

    def _show(self) -> None:
        take_id = self.selected
        if take_id is None:
            self.detail.children = ()
            self.name.value = ""
            return
        take = self.store.load(take_id)
        self.name.value = take.name
        compare = self.store.load(self.compare_with.value) if self.compare_with.value not in (None, take_id) else None
        if compare is not None:
            self.detail.children = (SpectrogramView(take, compare).widget,)
        else:
            self.detail.children = (audio_player(take),)

    def _with_take(self, callback) -> None:
        if callback is not None and self.selected is not None:
            callback(self.store.load(self.selected))

    def rename(self, name: str) -> None:
        if self.selected is None:
            return
        self.store.rename(self.selected, name)
        self.status.value = f"renamed to {name!r}"
        self.refresh()

    def delete(self) -> None:
        if self.selected is None:
            return
        take_id = self.store.delete(self.selected)
        self._deleted.append(take_id)
        self.undo_button.disabled = False
        self.status.value = f"deleted {take_id} (Undo delete brings it back)"
        self.refresh()

    def undo_delete(self) -> None:
        if not self._deleted:
            return
        take_id = self.store.undelete(self._deleted.pop())
        self.undo_button.disabled = not self._deleted
        self.status.value = f"restored {take_id}"
        self.refresh()
        self.select(take_id)

    def export(self) -> Path | None:
        if self.selected is None:
            return None
        folder = Path(self.export_path.value or ".")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            record = self.store.record(self.selected)
            stem = (record.get("name") or self.selected).replace("/", "_")
            path = self.store.export(self.selected, folder / f"{stem}.{self.export_format.value}")
        except (AceStepError, OSError) as exc:
            self.status.value = f"<span style='color:#b00020'>export failed: {exc}</span>"
            return None
        self.status.value = f"exported {path}"
        return path

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
