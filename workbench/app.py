"""Workbench: the panels in tabs around one shared state (engine, store, planner, current take, job)."""

from __future__ import annotations

import os
from pathlib import Path

import ipywidgets as widgets

from acestep_engine import Blueprint, Engine, TakeStore

from .browser import TakeBrowser
from .cover_lab import CoverLab
from .display import widget_bundle
from .editor import BlueprintEditor
from .generate import GeneratePanel
from .listen import ListenPanel
from .lora_panel import LoRAPanel
from .painter import RepaintPainter
from .state import WorkbenchState, demo_notice_silenced
from .state_view import StateView
from .tracks import TracksPanel
from .views import HeaderView, LazyView, LookView, close_tree
from .weights import WeightsPanel

DEFAULT_BLUEPRINT = Blueprint(
    caption="rainy-night lo-fi hip hop, dusty piano, soft vinyl crackle, mellow male vocal",
    lyrics="[verse]\nMissed the last train home\nCity lights, I'm on my own\n[chorus]\nRain on the window, slow",
    bpm=84, keyscale="F minor", timesignature=4, duration=30.0, language="en",
)

TITLES = ["Blueprint", "Generate", "Look", "Repaint", "Cover", "Tracks", "Takes", "LoRA"]


class Workbench(StateView):
    """Blueprint, Generate, Look, Repaint, Cover, Tracks, Takes and LoRA tabs over one
    `WorkbenchState`. The editing tabs work on `state.current_take` (the newest take, or the one
    picked in Takes); a tab that is not shown redraws when it is shown. `planner` (a 5 Hz LM
    `Planner`) enables planning and "Think first"; without one, the Blueprint tab offers to load it."""

    def __init__(self, engine: Engine, store: TakeStore, blueprint: Blueprint | None = None, planner=None):
        self.state = state = WorkbenchState(engine=engine, store=store, planner=planner,
                                            blueprint=blueprint or DEFAULT_BLUEPRINT)
        self.header = HeaderView(state)
        self.editor = BlueprintEditor(state=state, shared=True)
        self.generate_panel = GeneratePanel(engine, self.editor, state=state, on_recall=self.recall)
        # Tabs that only work on what is made elsewhere are built when first shown (or named from
        # Python): every widget is a model that each browser tab restores when it opens or reloads.
        self._factories = {
            2: lambda: LookView(state, listen=ListenPanel(state=state, follow_current=True)),
            3: lambda: RepaintPainter(state=state),
            4: lambda: CoverLab(state=state, editor=self.editor, on_edit=self._edit_blueprint),
            5: lambda: TracksPanel(state=state),
            6: lambda: TakeBrowser(store, on_recall=self.recall, on_use_as_source=self.use_as_source, state=state),
            7: lambda: LoRAPanel(state=state, generate_panel=self.generate_panel),
        }
        self._views = [self.editor, self.generate_panel, None, None, None, None, None, None]
        if state.current_take is None and store is not None:  # the newest take in the store, if any
            newest = store.list()[-1:]
            state.current_take = store.load(newest[0]["id"]) if newest else None
        self._boxes = [view.widget if view is not None else widgets.VBox() for view in self._views]
        self.tabs = widgets.Tab(children=self._boxes)
        for i, title in enumerate(TITLES):
            self.tabs.set_title(i, title)
        self.tabs.observe(lambda change: self._show_only(change["new"]), names="selected_index")
        self._show_only(self.tabs.selected_index or 0)
        # "Get the real weights": closed, it costs nothing (built, and the hub asked, when opened)
        self._weights = None
        self.weights_section = widgets.Accordion(children=[widgets.VBox()], selected_index=None)
        self.weights_section.set_title(0, "Get the real weights")
        self.weights_section.observe(lambda change: self._weights_opened(change["new"] == 0), names="selected_index")
        self.widget = widgets.VBox([self.header.widget, self.weights_section, self.tabs])

    # ------------------------------------------------------------------ tabs built when first needed
    def _view(self, index: int):
        if self._views[index] is None:
            with LazyView.built_hidden():
                view = self._views[index] = self._factories[index]()
            if hasattr(view, "set_visible"):
                view.set_visible(self.tabs.selected_index == index)
            self._boxes[index].children = (view.widget,)
            for panel in (view, getattr(view, "listen", None)):  # built while a job runs: locked too
                if hasattr(panel, "sync_buttons"):
                    panel.sync_buttons()
        return self._views[index]

    look = property(lambda self: self._view(2), doc="The Look tab (LookView).")
    painter = property(lambda self: self._view(3), doc="The Repaint tab (RepaintPainter).")
    cover_lab = property(lambda self: self._view(4), doc="The Cover tab (CoverLab).")
    tracks = property(lambda self: self._view(5), doc="The Tracks tab (TracksPanel).")
    browser = property(lambda self: self._view(6), doc="The Takes tab (TakeBrowser).")
    lora_panel = property(lambda self: self._view(7), doc="The LoRA tab (LoRAPanel).")

    @property
    def weights(self) -> WeightsPanel:
        """The "Get the real weights" section (WeightsPanel)."""
        if self._weights is None:
            self._weights = WeightsPanel(self.state, visible=False)
            self.weights_section.children[0].children = (self._weights.widget,)
        return self._weights

    def _weights_opened(self, opened: bool) -> None:
        if opened or self._weights is not None:
            self.weights.set_visible(opened)

    @classmethod
    def demo(cls, takes_dir=None, device="auto", planner: bool = True) -> "Workbench":
        """The workbench on the embedded demo checkpoint and demo planner (random weights: noise)."""
        from acestep_engine.lm import Planner

        folder = Path(takes_dir or os.environ.get("ACESTEP_TAKES_DIR", "takes"))
        with demo_notice_silenced():  # the workbench shows its own banner
            engine = Engine.demo(device=device)
        return cls(engine, TakeStore(folder), planner=Planner.demo(device=device, engine=engine) if planner else None)

    # ------------------------------------------------------------------ the shared state, by name
    @property
    def current_take(self):
        return self.state.current_take

    def set_current_take(self, take) -> None:
        """Make `take` the one the Look, Repaint, Cover and Tracks tabs work on."""
        self.state.current_take = take

    def set_planner(self, planner) -> None:
        """Use `planner` in the Blueprint and Cover tabs (Plan buttons), Generate (Think first) and LoRA."""
        self.state.set_planner(planner)

    def load_planner(self, path_or_name=None, allow_download: bool = False):
        """Load a 5 Hz LM (a folder or an `acestep-5Hz-lm-*` name beside the DiT; default: the demo
        planner on the demo checkpoint, else the first LM found, else 1.7B) and use it everywhere."""
        return self.state.load_planner(path_or_name, allow_download=allow_download)

    # ------------------------------------------------------------------ composition
    def _show_only(self, index) -> None:
        if index in self._factories and getattr(self, "_boxes", None) is not None:
            self._view(index)
        for i, view in enumerate(self._views):
            if view is not None and hasattr(view, "set_visible"):
                view.set_visible(i == index)

    def recall(self, take) -> None:
        """Put a take's blueprint in the editor and its task and seed in the generate panel."""
        self.generate_panel.recall(take)
        self.tabs.selected_index = 0

    def _edit_blueprint(self) -> None:
        self.tabs.selected_index = 0

    def use_as_source(self, take) -> None:
        self.generate_panel.set_source(take)
        self.tabs.selected_index = 1

    def close(self) -> None:
        """Close every widget of the workbench (run before making a new one in the same kernel:
        widgets live until closed, whether shown or not)."""
        close_tree(self.widget)

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.widget, **kwargs)
