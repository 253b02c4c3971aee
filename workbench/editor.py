"""BlueprintEditor: every blueprint field with the right control, inline errors, JSON load/save."""

from __future__ import annotations

from pathlib import Path

import ipywidgets as widgets

from acestep_engine.blueprint import KEYSCALES, LANGUAGES, Blueprint
from acestep_engine.errors import BlueprintError

AUTO = "auto"
_ASCII_KEYS = [k for k in KEYSCALES if "♯" not in k and "♭" not in k]


def _wide(**kwargs):
    return widgets.Layout(width="100%", **kwargs)


class BlueprintEditor:
    """Edit a Blueprint. `editor.blueprint` is what the controls say (possibly invalid);
    `editor.errors` maps invalid fields to plain-word messages, also shown under the form."""

    def __init__(self, blueprint: Blueprint | None = None, planner=None):
        self.planner = planner
        style = {"description_width": "110px"}
        self.caption = widgets.Textarea(description="Caption", placeholder="genre, mood, instruments, voice...",
                                        layout=_wide(height="60px"), style=style)
        self.lyrics = widgets.Textarea(description="Lyrics", placeholder="[verse]\n...\n[chorus]\n...",
                                       layout=_wide(height="140px"), style=style)
        self.bpm = widgets.Text(description="BPM", placeholder="auto (30-300)", style=style)
        self.keyscale = widgets.Dropdown(description="Key", options=[AUTO] + _ASCII_KEYS, value=AUTO, style=style)
        self.timesignature = widgets.Dropdown(description="Time signature",
                                              options=[(AUTO, AUTO), ("2/4", 2), ("3/4", 3), ("4/4", 4), ("6/8", 6)],
                                              value=AUTO, style=style)
        self.duration = widgets.FloatText(description="Duration (s)", value=30.0, step=1.0, style=style)
        self.language = widgets.Dropdown(description="Language", options=list(LANGUAGES), value="unknown",
                                         style=style)
        self.instrumental = widgets.Checkbox(description="Instrumental (no vocals)")
        self.error_box = widgets.HTML()
        self.path = widgets.Text(description="JSON file", value="blueprint.json", style=style)
        self.load_button = widgets.Button(description="Load", icon="folder-open")
        self.save_button = widgets.Button(description="Save", icon="save")
        self.file_status = widgets.Label()
        self.idea = widgets.Text(description="Idea", placeholder="a one-line idea for the planner", style=style,
                                 layout=_wide())
        self.inspire_button = widgets.Button(description="Inspire", tooltip="plan a whole blueprint from the idea")
        self.fill_button = widgets.Button(description="Fill empty fields")
        self.format_button = widgets.Button(description="Format caption + lyrics")
        self.plan_status = widgets.HTML()
        self.planned_fields: set[str] = set()

        self._fields = [self.caption, self.lyrics, self.bpm, self.keyscale, self.timesignature, self.duration,
                        self.language, self.instrumental]
        for control in self._fields:
            control.observe(lambda change: self._refresh_errors(), names="value")
        self.load_button.on_click(lambda _: self.load(self.path.value))
        self.save_button.on_click(lambda _: self.save(self.path.value))
        self.inspire_button.on_click(lambda _: self._plan("inspire"))
        self.fill_button.on_click(lambda _: self._plan("complete"))
        self.format_button.on_click(lambda _: self._plan("format"))
        self._update_planner_controls()

        self.widget = widgets.VBox([
            self.caption, self.lyrics,
            widgets.HBox([self.bpm, self.keyscale]), widgets.HBox([self.timesignature, self.duration]),
            widgets.HBox([self.language, self.instrumental]), self.error_box,
            widgets.HBox([self.path, self.load_button, self.save_button, self.file_status]),
            widgets.HTML("<b>Planner</b>"), self.idea,
            widgets.HBox([self.inspire_button, self.fill_button, self.format_button]), self.plan_status,
        ])
        self.set_blueprint(blueprint or Blueprint())

    # ------------------------------------------------------------------ model <-> view
    @property
    def blueprint(self) -> Blueprint:
        """The blueprint the controls describe (not validated: see `errors`)."""
        bpm = self.bpm.value.strip()
        return Blueprint(caption=self.caption.value, lyrics=self.lyrics.value, bpm=bpm if bpm else None,
                         keyscale=None if self.keyscale.value == AUTO else self.keyscale.value,
                         timesignature=None if self.timesignature.value == AUTO else self.timesignature.value,
                         duration=self.duration.value, language=self.language.value,
                         instrumental=self.instrumental.value)

    def set_blueprint(self, blueprint: Blueprint) -> None:
        if blueprint.keyscale and blueprint.keyscale not in self.keyscale.options:
            self.keyscale.options = list(self.keyscale.options) + [blueprint.keyscale]
        self.caption.value = blueprint.caption or ""
        self.lyrics.value = blueprint.lyrics or ""
        self.bpm.value = "" if blueprint.bpm is None else str(blueprint.bpm)
        self.keyscale.value = blueprint.keyscale or AUTO
        self.timesignature.value = blueprint.timesignature if blueprint.timesignature in (2, 3, 4, 6) else AUTO
        self.duration.value = float(blueprint.duration)
        self.language.value = blueprint.language if blueprint.language in LANGUAGES else "unknown"
        self.instrumental.value = bool(blueprint.instrumental)
        self._refresh_errors()

    @property
    def errors(self) -> dict[str, str]:
        return self.blueprint.errors()

    def valid_blueprint(self) -> Blueprint:
        """The validated blueprint, or BlueprintError naming the first bad field."""
        return self.blueprint.validate()

    def _refresh_errors(self) -> None:
        errors = self.errors
        if errors:
            items = "".join(f"<li>{message}</li>" for message in errors.values())
            self.error_box.value = f"<div style='color:#b00020'>Fix before generating:<ul>{items}</ul></div>"
        else:
            self.error_box.value = ""

    # ------------------------------------------------------------------ files
    def save(self, path) -> Path | None:
        try:
            written = self.valid_blueprint().save(path)
        except (BlueprintError, OSError) as exc:
            self.file_status.value = f"not saved: {exc}"
            return None
        self.file_status.value = f"saved {written}"
        return written

    def load(self, path) -> Blueprint | None:
        try:
            blueprint = Blueprint.load(path)
        except (BlueprintError, OSError) as exc:
            self.file_status.value = f"not loaded: {exc}"
            return None
        self.set_blueprint(blueprint)
        self.file_status.value = f"loaded {path}"
        return blueprint

    # ------------------------------------------------------------------ planner
    def _update_planner_controls(self) -> None:
        missing = self.planner is None
        for button in (self.inspire_button, self.fill_button, self.format_button):
            button.disabled = missing
        self.idea.disabled = missing
        self.plan_status.value = ("<i>No planner loaded: load a 5 Hz LM (acestep-5Hz-lm-*) to plan blueprints "
                                  "from an idea.</i>" if missing else "")

    def set_planner(self, planner) -> None:
        self.planner = planner
        self._update_planner_controls()

    def _plan(self, how: str) -> None:
        if self.planner is None:
            return
        try:
            before = self.blueprint
            if how == "inspire":
                planned = self.planner.inspire(self.idea.value, instrumental=self.instrumental.value)
            elif how == "complete":
                planned = self.planner.complete(before)
            else:
                planned = self.planner.format(before)
        except Exception as exc:
            self.plan_status.value = f"<span style='color:#b00020'>planning failed: {exc}</span>"
            return
        self.planned_fields = {f for f, v in planned.to_dict().items() if v != before.to_dict().get(f)}
        self.set_blueprint(planned)
        marked = ", ".join(sorted(self.planned_fields)) or "nothing"
        self.plan_status.value = f"planned: <b>{marked}</b>"

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
