"""CoverLab: iterate covers of a take, each result can become the next source; lineage with replay."""

from __future__ import annotations

import html

import ipywidgets as widgets

from acestep_engine import Cover
from acestep_engine.errors import AceStepError
from acestep_engine.generation import task_from_dict

from .display import widget_bundle
from .editor import BlueprintEditor
from .jobs import JobPanel
from .state import WorkbenchState
from .views import AudioPlayer, LazyView, TakeCard, heading, replace_children


def blueprint_summary(blueprint) -> str:
    """One short paragraph of a blueprint: caption, then the metadata and the first lyric lines."""
    if blueprint is None:
        return "<i>no blueprint yet: write one in the Blueprint tab</i>"
    metas = [f"{blueprint.bpm} BPM" if blueprint.bpm else "auto BPM", blueprint.keyscale or "auto key",
             f"{blueprint.timesignature}/4" if blueprint.timesignature else "auto time signature",
             f"{blueprint.duration:g} s", blueprint.language or "unknown language"]
    if blueprint.instrumental:
        metas.append("instrumental")
    lyrics = " / ".join(line for line in (blueprint.lyrics or "").splitlines() if line.strip())
    lyrics = lyrics[:120] + ("..." if len(lyrics) > 120 else "")
    problems = blueprint.errors()
    warning = (f"<br><span style='color:#b00020'>{html.escape('; '.join(problems.values()))}</span>"
               if problems else "")
    return (f"<div style='border-left:3px solid #ccc;padding:2px 8px'><b>{html.escape(blueprint.caption or '(no caption)')}</b>"
            f"<br><small>{html.escape(' · '.join(str(m) for m in metas))}"
            + (f"<br>{html.escape(lyrics)}" if lyrics else "") + f"</small>{warning}</div>")


class CoverLab(JobPanel, LazyView):
    """Restyle the current take with a new caption and metadata. The sliders say what they do:
    "restyle <-> keep structure" (upstream's cover strength) and "start from noise <-> from the
    source" (cover noise strength). The source is the shared state's current take; the lineage
    (source, cover 1, cover 2, ...) is drawn when the tab is shown, with one player for all of it."""

    def __init__(self, source=None, engine=None, store=None, state: WorkbenchState | None = None,
                 editor: BlueprintEditor | None = None, on_edit=None):
        if state is None:
            state = WorkbenchState(engine=engine, store=store, current_take=source)
        elif source is not None:
            state.current_take = source
        self.lineage: list = []  # takes from the first source to the latest cover
        self.source = None
        self.result = None
        first = state.current_take
        # In the Workbench the cover follows the Blueprint tab's editor, shown here in brief; alone,
        # the lab has an editor of its own, which starts from each new source's blueprint.
        self.own_editor = editor is None
        self.editor = editor if editor is not None else BlueprintEditor(
            first.blueprint if first is not None else None, state=state, shared=True)
        self.blueprint_view = widgets.HTML()
        self.edit_button = widgets.Button(description="Edit in the Blueprint tab", icon="pencil",
                                          layout=widgets.Layout(width="auto"))
        self.edit_button.on_click(lambda _: on_edit() if on_edit is not None else None)
        self.heading = widgets.HTML()
        self.strength = widgets.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05, readout_format=".2f",
                                            layout=widgets.Layout(width="320px"))
        self.noise_strength = widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, readout_format=".2f",
                                                  layout=widgets.Layout(width="320px"))
        self.seed = widgets.Text(description="Seed", placeholder="random", style={"description_width": "initial"},
                                 layout=widgets.Layout(width="180px"))
        self.generate_button = widgets.Button(description="Cover", button_style="primary", icon="magic")
        self.back_button = widgets.Button(description="Back to the source", disabled=True,
                                          tooltip="make the take you covered current again, to cover it another way",
                                          layout=widgets.Layout(width="auto"))
        self.before = None  # the take the last result was made from
        self._init_jobs(state, [self.generate_button])
        self.player = AudioPlayer("Take")
        self.lineage_box = widgets.VBox()
        self._cards: list[TakeCard] = []
        self.generate_button.on_click(lambda _: self.cover())
        self.back_button.on_click(lambda _: self.before is not None and self.set_source(self.before))
        blueprint_box = (self.editor.widget if self.own_editor else
                         widgets.VBox([self.blueprint_view, self.edit_button] if on_edit is not None
                                      else [self.blueprint_view]))
        self.controls = widgets.VBox([
            widgets.HTML("<b>New caption and metadata</b> (the cover follows these)"), blueprint_box,
            widgets.HBox([widgets.HTML("restyle"), self.strength, widgets.HTML("keep structure")]),
            widgets.HBox([widgets.HTML("start from noise"), self.noise_strength, widgets.HTML("from the source")]),
            widgets.HBox([self.seed, self.generate_button, self.cancel_button, self.back_button, self.progress],
                         layout=widgets.Layout(flex_flow="row wrap")),
            self.status, widgets.HTML("<b>Lineage</b>"), self.player.widget, self.lineage_box,
        ])
        self.widget = widgets.VBox([self.heading, self.controls])
        state.observe(lambda change: self._source_changed(), names="current_take")
        state.observe(lambda change: self._show_blueprint(), names="blueprint")
        self._source_changed()
        self._show_blueprint()

    def _show_blueprint(self) -> None:
        if self.own_editor:
            return
        self.blueprint_view.value = blueprint_summary(self.state.blueprint)

    def set_source(self, take) -> None:
        """Cover `take` next (it becomes the current take of every tab)."""
        self.state.current_take = take

    def _source_changed(self) -> None:
        """The lineage is the current take's ancestry in the store (root first); without a store, a
        cover of the last step extends it, an earlier step cuts it there, an unrelated take starts anew."""
        take = self.state.current_take
        self.heading.value = heading("Cover", take)
        self.controls.layout.display = "none" if take is None else None
        if take is None or take is self.source:
            return
        self.source = take
        root = self.lineage[0].id if self.lineage else None
        known = {t.id: t for t in self.lineage}
        store = self.store
        ids = [t.id for t in self.lineage]
        if store is not None and take.id in store:
            self.lineage = [take if i == take.id else known.get(i) or store.load(i) for i in store.lineage(take.id)]
        elif take.id in ids:
            self.lineage = self.lineage[: ids.index(take.id) + 1]
        elif self.lineage and take.parent_id == self.lineage[-1].id:
            self.lineage.append(take)
        else:
            self.lineage = [take]
        if self.own_editor and self.lineage[0].id != root:  # a new lineage starts from its source's blueprint
            self.editor.set_blueprint(take.restore())
        if take is not self.result:
            self.result = self.before = None
            self.back_button.disabled = True
            self.status.value = f"source: <b>{html.escape(take.title)}</b>"
        self._invalidate()

    def _draw(self) -> None:
        rows = []
        for card in self._cards:
            card.close()
        self._cards = []
        entries = [(("source" if depth == 0 else f"step {depth}: {take.task.get('name')}"), take)
                   for depth, take in enumerate(self.lineage)]
        for label, take in entries:
            extra = []
            if label != "source":
                replay = widgets.Button(description="Replay", tooltip="generate this step again from its record")
                replay.on_click(lambda _, take=take: self.replay(take))
                extra.append(replay)
            card = TakeCard(take, on_use_as_source=self.set_source, player=self.player, extra=extra)
            self._cards.append(card)
            rows.append(widgets.VBox([widgets.HTML(f"<b>{label}</b>"), card.widget]))
        replace_children(self.lineage_box, rows)

    def cover(self):
        if self._refuse_if_busy():
            return self.job
        inputs = self.checked_inputs(self._cover_inputs)
        if inputs is None:
            return None
        blueprint, task, seed = inputs
        engine = self.engine
        return self._run(lambda cancel, report: engine.generate(blueprint, task, seeds=seed, progress=report,
                                                                cancel=cancel))

    def replay(self, take):
        """Generate a lineage step again from its recorded blueprint, task and seed."""
        by_id = {t.id: t for t in self.lineage}
        store = self.store

        def resolve(take_id):
            if take_id in by_id:
                return by_id[take_id]
            if store is not None and take_id in store:
                return store.load(take_id)
            raise AceStepError(f"take {take_id} is not in this lineage or store")

        task = task_from_dict(take.task, resolve_take=resolve)
        engine = self.engine
        return self._run(lambda cancel, report: engine.generate(take.blueprint, task, seeds=take.seed,
                                                                progress=report, cancel=cancel), replay_of=take)

    def _run(self, generate, replay_of=None):
        source = self.source

        def show(takes):
            result = self.result = takes[0]
            self.before = source if replay_of is None else self.state.current_take
            self.state.takes_added(takes)  # the result is the current take: the next cover starts from it
            self.back_button.disabled = self.before is None
            if replay_of is not None:
                return f"replayed {html.escape(replay_of.title)} as <b>{html.escape(result.title)}</b>"
            return (f"cover <b>{html.escape(result.title)}</b> of {html.escape(source.title)}: it is the current "
                    "take, so Cover again restyles it further ('Back to the source' to try another cover of the source)")

        return self.run_job("cover", lambda cancel, progress: generate(cancel, progress.part("model", 0.0, 0.95)),
                            save=self.saving(keep=self._keep_result), show=show)

    def _cover_inputs(self):
        if self.source is None:
            raise AceStepError("generate or select a take first: the cover starts from the current take")
        blueprint = self.editor.valid_blueprint()  # the Blueprint tab's, in the Workbench
        task = Cover(self.source, strength=self.strength.value, noise_strength=self.noise_strength.value)
        return blueprint, task.validate(), self.seed_field()

    def _keep_result(self, takes) -> None:
        self.result = takes[0]

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.widget, **kwargs)
