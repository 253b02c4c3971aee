"""CoverLab: iterate covers of a take, each result can become the next source; lineage with replay."""

from __future__ import annotations

import ipywidgets as widgets

from acestep_engine import Cover, GenerationCancelled
from acestep_engine.errors import AceStepError
from acestep_engine.tasks import task_from_dict

from .editor import BlueprintEditor
from .jobs import JobRunner, post
from .views import TakeCard


class CoverLab:
    """Restyle `source` with a new caption and metadata. The sliders say what they do:
    "restyle <-> keep structure" (upstream's cover strength) and "start from noise <-> from the
    source" (cover noise strength)."""

    def __init__(self, source, engine, store=None):
        self.engine, self.store = engine, store
        self.runner = JobRunner()
        self.job = None
        self.lineage: list = []  # takes from the first source to the latest cover
        self.editor = BlueprintEditor(source.blueprint)
        self.strength = widgets.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05, readout_format=".2f",
                                            layout=widgets.Layout(width="320px"))
        self.noise_strength = widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, readout_format=".2f",
                                                  layout=widgets.Layout(width="320px"))
        self.seed = widgets.Text(description="Seed", placeholder="random")
        self.generate_button = widgets.Button(description="Cover", button_style="primary", icon="magic")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True)
        self.next_button = widgets.Button(description="Use result as next source", disabled=True)
        self.progress = widgets.IntProgress(value=0, min=0, max=1000)
        self.status = widgets.HTML()
        self.lineage_box = widgets.VBox()
        self.generate_button.on_click(lambda _: self.cover())
        self.cancel_button.on_click(lambda _: self.job and self.job.cancel())
        self.next_button.on_click(lambda _: self.set_source(self.result))
        self.result = None
        self.widget = widgets.VBox([
            widgets.HTML("<b>New caption and metadata</b> (the cover follows these)"), self.editor.widget,
            widgets.HBox([widgets.Label("restyle"), self.strength, widgets.Label("keep structure")]),
            widgets.HBox([widgets.Label("start from noise"), self.noise_strength, widgets.Label("from the source")]),
            widgets.HBox([self.seed, self.generate_button, self.cancel_button, self.next_button, self.progress]),
            self.status, widgets.HTML("<b>Lineage</b>"), self.lineage_box,
        ])
        self.set_source(source)

    def set_source(self, take) -> None:
        """Cover `take` next. A cover of the last step extends the lineage; going back to an earlier
        step cuts it there; an unrelated take starts a new lineage."""
        self.source = take
        ids = [t.id for t in self.lineage]
        if take.id in ids:
            self.lineage = self.lineage[: ids.index(take.id) + 1]
        elif self.lineage and take.parent_id == self.lineage[-1].id:
            self.lineage.append(take)
        else:
            self.lineage = [take]
        self._show_lineage()
        self.status.value = f"source: <b>{take.title}</b>"

    def _show_lineage(self) -> None:
        rows = []
        for depth, take in enumerate(self.lineage):
            label = "source" if depth == 0 else f"cover {depth}"
            replay = widgets.Button(description="Replay", disabled=depth == 0,
                                    tooltip="generate this step again from its record")
            replay.on_click(lambda _, take=take: self.replay(take))
            card = TakeCard(take, on_use_as_source=self.set_source)
            rows.append(widgets.VBox([widgets.HBox([widgets.HTML(f"<b>{label}</b>"), replay]), card.widget]))
        self.lineage_box.children = rows

    def cover(self):
        if self.runner.busy:
            self.status.value = "a cover is already running: wait for it or press Cancel"
            return self.job
        try:
            blueprint = self.editor.valid_blueprint()
            task = Cover(self.source, strength=self.strength.value, noise_strength=self.noise_strength.value)
            task.validate()
            seed = int(self.seed.value) if self.seed.value.strip() else None
        except (AceStepError, ValueError) as exc:
            self.status.value = f"<span style='color:#b00020'>{exc}</span>"
            return None
        return self._run(lambda cancel, report: self.engine.generate(blueprint, task, seeds=seed, progress=report,
                                                                     cancel=cancel))

    def replay(self, take):
        """Generate a lineage step again from its recorded blueprint, task and seed."""
        by_id = {t.id: t for t in self.lineage}

        def resolve(take_id):
            if take_id in by_id:
                return by_id[take_id]
            if self.store is not None and take_id in self.store:
                return self.store.load(take_id)
            raise AceStepError(f"take {take_id} is not in this lineage or store")

        task = task_from_dict(take.task, resolve_take=resolve)
        return self._run(lambda cancel, report: self.engine.generate(take.blueprint, task, seeds=take.seed,
                                                                     progress=report, cancel=cancel),
                         replay_of=take)

    def _run(self, work, replay_of=None):
        self.generate_button.disabled, self.cancel_button.disabled = True, False

        def report(p):
            post(lambda: setattr(self.progress, "value", int(1000 * p.fraction)))

        def done(job):
            if job.error is None:  # model state first, on the worker: job.result() returns after this
                self.result = job.value[0]
                if self.store is not None:
                    self.store.save(self.result)

            def update():
                self.generate_button.disabled, self.cancel_button.disabled = False, True
                if isinstance(job.error, GenerationCancelled):
                    self.status.value = "cancelled: nothing was saved"
                    return
                if job.error is not None:
                    self.status.value = f"<span style='color:#b00020'>{type(job.error).__name__}: {job.error}</span>"
                    return
                self.progress.value = 1000
                self.next_button.disabled = False
                if replay_of is not None:
                    self.status.value = f"replayed {replay_of.title} as <b>{self.result.title}</b>"
                else:
                    self.status.value = (f"cover <b>{self.result.title}</b> of {self.source.title}: press "
                                         "'Use result as next source' to cover the cover")
                    self.lineage_box.children = self.lineage_box.children + (
                        TakeCard(self.result, on_use_as_source=self.set_source).widget,)

            post(update)

        self.job = self.runner.start("cover", lambda cancel: work(cancel, report), on_done=done)
        return self.job

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
