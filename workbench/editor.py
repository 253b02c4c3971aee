"""BlueprintEditor: every blueprint field with the right control, inline errors, JSON load/save."""

from __future__ import annotations

from pathlib import Path

import html

import ipywidgets as widgets

from acestep_engine.blueprint import KEYSCALES, LANGUAGES, Blueprint
from acestep_engine.errors import BlueprintError, GenerationCancelled

from .display import widget_bundle
from .jobs import JobPanel
from .state import WorkbenchState

AUTO = "auto"
PLANNED_MARK = " ✦"  # appended to the label of a field the planner wrote, until the user edits it
# The keys a musician writes: B#, Cb, E# and Fb are spelled B, C, F and E (the planner's keys are
# shown as it wrote them, added to the list when a blueprint uses one).
_ODD_SPELLINGS = ("B#", "Cb", "E#", "Fb")
_ASCII_KEYS = [k for k in KEYSCALES if "♯" not in k and "♭" not in k and k.split()[0] not in _ODD_SPELLINGS]
LANGUAGE_NAMES = {
    "ar": "Arabic", "az": "Azerbaijani", "bg": "Bulgarian", "bn": "Bengali", "ca": "Catalan", "cs": "Czech",
    "da": "Danish", "de": "German", "el": "Greek", "en": "English", "es": "Spanish", "fa": "Persian",
    "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "ht": "Haitian Creole",
    "hu": "Hungarian", "id": "Indonesian", "is": "Icelandic", "it": "Italian", "ja": "Japanese", "ko": "Korean",
    "la": "Latin", "lt": "Lithuanian", "ms": "Malay", "ne": "Nepali", "nl": "Dutch", "no": "Norwegian",
    "pa": "Punjabi", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sa": "Sanskrit",
    "sk": "Slovak", "sr": "Serbian", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil", "te": "Telugu", "th": "Thai",
    "tl": "Tagalog", "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu", "vi": "Vietnamese", "yue": "Cantonese",
    "zh": "Chinese (Mandarin)", "unknown": "unknown / let the model decide",
}


def language_options() -> list[tuple[str, str]]:
    """(label, code) pairs, English first, then by name; the code stays the value."""
    named = sorted((code for code in LANGUAGES if code not in ("en", "unknown")),
                   key=lambda code: LANGUAGE_NAMES.get(code, code))
    return [(f"{LANGUAGE_NAMES.get(code, code)} ({code})", code) for code in ["unknown", "en", *named]]


def _wide(**kwargs):
    return widgets.Layout(width="100%", **kwargs)


class BlueprintEditor(JobPanel):
    """Edit a Blueprint. `editor.blueprint` is what the controls say (possibly invalid);
    `editor.errors` maps invalid fields to plain-word messages, also shown under the form.
    The planner section follows `state.planner` (loaded here, in another tab or from Python).
    With `shared=True` (the Workbench's Blueprint tab) the editor also keeps `state.blueprint`
    and shows whatever is put there (Recall)."""

    def __init__(self, blueprint: Blueprint | None = None, planner=None, state: WorkbenchState | None = None,
                 shared: bool = False):
        state = state if state is not None else WorkbenchState(planner=planner)
        if planner is not None and state.planner is None:
            state.set_planner(planner)
        self.shared = shared
        style = {"description_width": "130px"}  # the longest label, "Time signature ✦", fits
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
        self.language = widgets.Dropdown(description="Language", options=language_options(), value="unknown",
                                         style=style)
        self.instrumental = widgets.Checkbox(description="Instrumental (no vocals)", indent=False,
                                             layout=widgets.Layout(width="auto", margin="0 0 0 16px"))
        self.error_box = widgets.HTML()
        self.path = widgets.Text(description="JSON file", value="blueprint.json", style=style)
        self.load_button = widgets.Button(description="Load", icon="folder-open")
        self.save_button = widgets.Button(description="Save", icon="save")
        self.file_status = widgets.HTML()
        self.idea = widgets.Text(description="Idea", placeholder="a one-line idea for the planner", style=style,
                                 layout=_wide())
        self.inspire_button = widgets.Button(description="Inspire", tooltip="plan a whole blueprint from the idea")
        self.fill_button = widgets.Button(description="Fill empty fields")
        self.format_button = widgets.Button(description="Format caption + lyrics")
        self.load_planner_button = widgets.Button(description="Load planner", icon="download",
                                                  tooltip="load the 5 Hz LM (the demo one on the demo checkpoint)",
                                                  layout=widgets.Layout(width="auto"))
        self.undo_plan_button = widgets.Button(description="Undo planner", icon="undo", disabled=True,
                                               tooltip="put back the blueprint as it was before the planner wrote it",
                                               layout=widgets.Layout(width="auto"))
        self.before_plan: Blueprint | None = None  # what was typed before the last plan (one step of undo)
        for button in (self.inspire_button, self.fill_button, self.format_button):
            button.layout.width = "auto"
        self._init_jobs(state, [self.inspire_button, self.fill_button, self.format_button], progress_width="200px")
        self.plan_progress, self.plan_status, self.plan_cancel_button = self.progress, self.status, self.cancel_button
        self.planned_fields: set[str] = set()
        # A callable that loads and returns a planner; default: the state's own loader (needs an engine).
        self.planner_loader = state.load_planner if state.engine is not None else None

        self._fields = [self.caption, self.lyrics, self.bpm, self.keyscale, self.timesignature, self.duration,
                        self.language, self.instrumental]
        self._labels = {name: control.description for name, control in self._named_fields().items()}
        self._setting = False
        self._publishing = False
        for name, control in self._named_fields().items():
            control.observe(lambda change, name=name: self._edited(name), names="value")
        self.load_button.on_click(lambda _: self.load(self.path.value))
        self.save_button.on_click(lambda _: self.save(self.path.value))
        self.inspire_button.on_click(lambda _: self._plan("inspire"))
        self.fill_button.on_click(lambda _: self._plan("complete"))
        self.format_button.on_click(lambda _: self._plan("format"))
        self.load_planner_button.on_click(lambda _: self.load_planner())
        self.undo_plan_button.on_click(lambda _: self.undo_plan())
        state.observe(lambda change: self._planner_changed(), names="planner")
        if shared:
            state.observe(lambda change: self._shared_blueprint_changed(change["new"]), names="blueprint")

        self.widget = widgets.VBox([
            self.caption, self.lyrics,
            widgets.HBox([self.bpm, self.keyscale]), widgets.HBox([self.timesignature, self.duration]),
            widgets.HBox([self.language, self.instrumental]), self.error_box,
            widgets.HBox([self.path, self.load_button, self.save_button, self.file_status]),
            widgets.HTML("<b>Planner</b>"), self.idea,
            widgets.HBox([self.inspire_button, self.fill_button, self.format_button, self.undo_plan_button,
                          self.plan_cancel_button, self.plan_progress, self.load_planner_button],
                         layout=widgets.Layout(flex_flow="row wrap")), self.plan_status,
        ])
        self.set_blueprint(blueprint or (state.blueprint if shared and state.blueprint is not None else Blueprint()))
        self._planner_changed()

    # ------------------------------------------------------------------ model <-> view
    @property
    def blueprint(self) -> Blueprint:
        """The blueprint the controls describe (not validated: see `errors`)."""
        bpm = self.bpm.value.strip()
        return Blueprint(caption=self.caption.value, lyrics=self.lyrics.value, bpm=bpm if bpm else None,
                         keyscale=None if self.keyscale.value == AUTO else self.keyscale.value,
                         timesignature=None if self.timesignature.value == AUTO else self.timesignature.value,
                         duration=self.duration.value, language=self.language.value,
                         instrumental=self.instrumental.value, planned=tuple(sorted(self.planned_fields)))

    def _named_fields(self) -> dict:
        return dict(zip(["caption", "lyrics", "bpm", "keyscale", "timesignature", "duration", "language",
                         "instrumental"], self._fields))

    def _edited(self, name: str) -> None:
        if not self._setting and name in self.planned_fields:  # the user took this field back
            self.planned_fields.discard(name)
            self._show_planned()
        if not self._setting:
            self._refresh_errors()

    def _shared_blueprint_changed(self, blueprint) -> None:
        if blueprint is not None and not self._publishing and blueprint != self.blueprint:
            self.set_blueprint(blueprint)

    def _show_planned(self) -> None:
        for name, control in self._named_fields().items():
            control.description = self._labels[name] + (PLANNED_MARK if name in self.planned_fields else "")

    def set_blueprint(self, blueprint: Blueprint) -> None:
        """Show `blueprint`; its `planned` fields are marked ✦ until edited."""
        self._setting = True
        try:
            self._set_values(blueprint)
        finally:
            self._setting = False
        self.planned_fields = set(blueprint.planned or ())
        self._show_planned()
        self._refresh_errors()

    def _set_values(self, blueprint: Blueprint) -> None:
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

    @property
    def errors(self) -> dict[str, str]:
        return self.blueprint.errors()

    def valid_blueprint(self) -> Blueprint:
        """The validated blueprint, or BlueprintError naming the first bad field."""
        return self.blueprint.validate()

    def _refresh_errors(self) -> None:
        errors = self.errors  # shown first: nothing that follows the shared blueprint can hide them
        if errors:
            items = "".join(f"<li>{html.escape(message)}</li>" for message in errors.values())
            self.error_box.value = f"<div style='color:#b00020'>Fix before generating:<ul>{items}</ul></div>"
        else:
            self.error_box.value = ""
        if self.shared:  # the Blueprint tab's blueprint is part of the shared state
            self._publishing = True
            try:
                self.state.blueprint = self.blueprint
            finally:
                self._publishing = False

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
    def _button_enabled(self, button) -> bool:
        return self.planner is not None

    def _planner_changed(self) -> None:
        planner = self.planner
        missing = planner is None
        self.idea.disabled = missing
        self.load_planner_button.layout.display = None if missing and self.planner_loader else "none"
        if missing:
            self.plan_status.value = ("<i>No planner loaded: planning needs a 5 Hz LM (acestep-5Hz-lm-*)"
                                      + (", press Load planner.</i>"
                                         if self.planner_loader else
                                         ": Planner.from_pretrained(...), then editor.set_planner(planner).</i>"))
        else:
            self.plan_status.value = f"planner: <b>{html.escape(repr(planner))}</b>"
        self.sync_buttons()

    def _update_planner_controls(self) -> None:
        self._planner_changed()

    def set_planner(self, planner) -> None:
        """Use `planner` here (and, through the shared state, in every tab)."""
        self.state.set_planner(planner)
        self._planner_changed()  # also when it is the same planner again

    def load_planner(self):
        """Load a planner through `planner_loader` and share it: the Plan buttons of every tab enable."""
        if self.planner_loader is None:
            return None
        self.plan_status.value = "loading the planner..."
        try:
            planner = self.planner_loader()
            if planner is not self.state.planner:
                self.set_planner(planner)
        except Exception as exc:
            self._set_status(f"could not load the planner: {exc}", error=True)
        return self.planner

    @property
    def plan_job(self):
        return self.job

    def plan(self, how: str = "complete"):
        """Run the planner ("inspire" from the Idea box, "complete" the open fields, or "format")
        on a worker thread; returns the Job (`job.result()` waits for the planned blueprint)."""
        return self._plan(how)

    def _plan(self, how: str):
        planner = self.planner
        if planner is None:
            return None
        try:
            before = self.valid_blueprint() if how != "inspire" else None
        except BlueprintError as exc:
            self._set_status(f"fix the blueprint first: {exc}", error=True)
            return None
        idea, instrumental = self.idea.value, self.instrumental.value
        language = self.language.value if self.language.value != "unknown" else None

        def work(cancel, progress):
            options = dict(progress=progress.part("planning", 0.0, 0.98, prefix="planning: "), cancel=cancel)
            if how == "inspire":
                return planner.inspire(idea, instrumental=instrumental, language=language, **options)
            if how == "complete":
                return planner.complete(before, **options)
            return planner.format(before, **options)

        def show(blueprint):
            self.before_plan = self.blueprint  # as typed, kept for one step of undo
            self.undo_plan_button.disabled = False
            self.set_blueprint(blueprint)
            marked = ", ".join(sorted(self.planned_fields)) or "nothing (every field was set)"
            demo = " (demo planner: random weights, random text)" if getattr(planner, "is_demo", False) else ""
            return f"planned{PLANNED_MARK}: <b>{marked}</b>{demo}; Undo planner puts back what was there"

        return self.run_job(f"planner ({how})", work, show=show,
                            cancelled="planning cancelled: the blueprint is unchanged")

    def undo_plan(self) -> None:
        """Put back the blueprint as it was before the last Inspire, Fill or Format (one step)."""
        if self.before_plan is None:
            return
        self.set_blueprint(self.before_plan)
        self.before_plan = None
        self.undo_plan_button.disabled = True
        self._set_status("the blueprint is back as it was before the planner")

    def cancel_plan(self) -> None:
        self.cancel()

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.widget, **kwargs)
