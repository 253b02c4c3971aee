"""Workbench: the panels in tabs around one engine, one take store and the current take."""

from __future__ import annotations

import os
from pathlib import Path

import ipywidgets as widgets

from acestep_engine import Blueprint, Engine, TakeStore

from .browser import TakeBrowser
from .cover_lab import CoverLab
from .editor import BlueprintEditor
from .generate import GeneratePanel
from .lora_panel import LoRAPanel
from .painter import RepaintPainter
from .tracks import TracksPanel
from .views import SpectrogramView

_WAITING = "<i>Generate or select a take first: this tab works on the current take.</i>"

DEFAULT_BLUEPRINT = Blueprint(
    caption="rainy-night lo-fi hip hop, dusty piano, soft vinyl crackle, mellow male vocal",
    lyrics="[verse]\nMissed the last train home\nCity lights, I'm on my own\n[chorus]\nRain on the window, slow",
    bpm=84, keyscale="F minor", timesignature=4, duration=30.0, language="en",
)


class Workbench:
    """Blueprint, Generate, Look, Repaint, Cover, Tracks, Takes and LoRA tabs sharing one engine, store,
    planner and current take. The editing tabs always work on the current take (the newest, or the
    one picked in Takes). `planner` (a 5 Hz LM `Planner`) enables planning and "Think first"; without
    one, the Blueprint tab offers to load it (`load_planner`)."""

    def __init__(self, engine: Engine, store: TakeStore, blueprint: Blueprint | None = None, planner=None):
        self.engine, self.store = engine, store
        self.planner = None
        self.current_take = None
        self.editor = BlueprintEditor(blueprint or DEFAULT_BLUEPRINT)
        self.editor.planner_loader = self._load_default_planner
        self.generate_panel = GeneratePanel(engine, self.editor, store, on_take=self._on_take)
        self.lora_panel = LoRAPanel(engine, store, generate_panel=self.generate_panel)
        self.browser = TakeBrowser(store, on_recall=self.recall, on_use_as_source=self.use_as_source)
        self.look = widgets.VBox([widgets.HTML(_WAITING)])
        self.painter: RepaintPainter | None = None
        self.cover_lab: CoverLab | None = None
        self.tracks: TracksPanel | None = None
        self.repaint_tab, self.cover_tab, self.tracks_tab = (widgets.VBox([widgets.HTML(_WAITING)]) for _ in range(3))
        banner = ("<div style='background:#fff3cd;padding:4px 8px'>Demo checkpoint: tiny random weights. "
                  "It makes noise, not music; point the workbench at real ACE-Step 1.5 weights for songs.</div>"
                  if engine.is_demo else "")
        self.header = widgets.HTML(f"{banner}<b>{engine!r}</b> &middot; takes in <code>{store.folder}</code>")
        self.tabs = widgets.Tab(children=[self.editor.widget, self.generate_panel.widget, self.look,
                                          self.repaint_tab, self.cover_tab, self.tracks_tab, self.browser.widget,
                                          self.lora_panel.widget])
        for i, title in enumerate(["Blueprint", "Generate", "Look", "Repaint", "Cover", "Tracks", "Takes", "LoRA"]):
            self.tabs.set_title(i, title)
        self.set_planner(planner)
        self.browser.takes.observe(lambda change: self._select_from_browser(), names="value")
        self.widget = widgets.VBox([self.header, self.tabs])

    @classmethod
    def demo(cls, takes_dir=None, device="auto", planner: bool = True) -> "Workbench":
        """The workbench on the embedded demo checkpoint and demo planner (random weights: noise)."""
        from acestep_engine.planner import Planner

        folder = Path(takes_dir or os.environ.get("ACESTEP_TAKES_DIR", "takes"))
        engine = Engine.demo(device=device)
        return cls(engine, TakeStore(folder), planner=Planner.demo(device=device, engine=engine) if planner else None)

    def set_planner(self, planner) -> None:
        """Use `planner` in the Blueprint tab (Plan buttons), Generate (Think first) and LoRA (labels)."""
        self.planner = planner
        if planner is not None and getattr(planner, "engine", None) is None:
            planner.attach(self.engine)
        self.editor.set_planner(planner)
        self.generate_panel.set_planner(planner)
        self.lora_panel.set_planner(planner)

    def load_planner(self, path_or_name=None, allow_download: bool = False):
        """Load a 5 Hz LM (a folder or an `acestep-5Hz-lm-*` name beside the DiT; default: the demo
        planner on the demo checkpoint, else the first LM found, else 1.7B) and use it everywhere."""
        from acestep_engine.planner import Planner
        from acestep_engine.variants import LM_VARIANTS

        root = Path(self.engine.models.paths.get("checkpoints") or ".")
        if path_or_name is None:
            found = [name for name in LM_VARIANTS if (root / name / "config.json").is_file()]
            if not found and self.engine.is_demo:
                self.set_planner(Planner.demo(device=self.engine.device, engine=self.engine))
                return self.planner
            path_or_name = found[0] if found else "acestep-5Hz-lm-1.7B"
        planner = Planner.from_pretrained(path_or_name, checkpoints_dir=root, device=self.engine.device,
                                          allow_download=allow_download or self.engine.allow_download,
                                          engine=self.engine)
        self.set_planner(planner)
        return planner

    def _load_default_planner(self):
        self.load_planner()
        return self.planner

    def set_current_take(self, take) -> None:
        """Make `take` the one the Look, Repaint, Cover and Tracks tabs work on."""
        self.current_take = take
        self.look.children = (SpectrogramView(take).widget,)
        if self.painter is None:
            self.painter = RepaintPainter(take, self.engine, self.store)
            self.cover_lab = CoverLab(take, self.engine, self.store)
            self.tracks = TracksPanel(take, self.engine, self.store)
            self.repaint_tab.children = (self.painter.widget,)
            self.cover_tab.children = (self.cover_lab.widget,)
            self.tracks_tab.children = (self.tracks.widget,)
        else:
            self.painter.set_take(take)
            self.cover_lab.set_source(take)
            self.tracks.set_source(take)

    def _on_take(self, take) -> None:
        self.set_current_take(take)
        self.browser.refresh()

    def _select_from_browser(self) -> None:
        selected = self.browser.selected
        if selected is not None and (self.current_take is None or self.current_take.id != selected):
            self.set_current_take(self.store.load(selected))

    def recall(self, take) -> None:
        """Put a take's blueprint in the editor and its task and seed in the generate panel."""
        self.editor.set_blueprint(take.restore())
        panel = self.generate_panel
        panel.seeds.value = str(take.seed)
        parent = take.task.get("source", {}).get("take") if isinstance(take.task.get("source"), dict) else None
        if take.task.get("name") == "cover" and parent in self.store:
            panel.set_source(self.store.load(parent))
            panel.cover_strength.value = float(take.task.get("strength", 1.0))
            panel.task.value = "cover"
        elif take.task.get("name") == "text2music":
            panel.task.value = "text2music"
        self.tabs.selected_index = 0

    def use_as_source(self, take) -> None:
        self.generate_panel.set_source(take)
        self.generate_panel.task.value = "cover"
        self.tabs.selected_index = 1

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
