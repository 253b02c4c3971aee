"""ipywidgets panels: thin views over acestep_engine objects (Blueprint, Take, TakeStore, Engine),
sharing one `WorkbenchState` and running work through one job runner (`workbench.jobs`).

Every control is an attribute (`panel.bpm.value = 120`, `panel.generate_button.click()`), so
notebooks and tests drive the same panels a person clicks.
"""

from .app import Workbench
from .browser import TakeBrowser
from .cover_lab import CoverLab
from .editor import BlueprintEditor
from .generate import GeneratePanel
from .jobs import Job, JobPanel, JobRunner
from .listen import ListenPanel
from .lora_panel import LoRAPanel
from .painter import RepaintPainter
from .state import WorkbenchState
from .synced_player import SyncedPlayer
from .tracks import TracksPanel
from .views import AudioPlayer, LookView, SpectrogramView, TakeCard, close_tree

__all__ = ["AudioPlayer", "BlueprintEditor", "CoverLab", "GeneratePanel", "Job", "JobPanel", "JobRunner", "ListenPanel",
           "LoRAPanel", "LookView", "RepaintPainter", "SpectrogramView", "SyncedPlayer", "TakeBrowser", "TakeCard", "TracksPanel", "Workbench",
           "WorkbenchState", "close_tree"]
