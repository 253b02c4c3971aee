"""ipywidgets panels: thin views over acestep_engine objects (Blueprint, Take, TakeStore, Engine).

Every control is an attribute (`panel.bpm.value = 120`, `panel.generate_button.click()`), so
notebooks and tests drive the same panels a person clicks.
"""

from .app import Workbench
from .browser import TakeBrowser
from .cover_lab import CoverLab
from .editor import BlueprintEditor
from .generate import GeneratePanel
from .jobs import Job, JobRunner
from .lora_panel import LoRAPanel
from .painter import RepaintPainter
from .tracks import TracksPanel
from .views import SpectrogramView, TakeCard

__all__ = ["BlueprintEditor", "CoverLab", "GeneratePanel", "Job", "JobRunner", "LoRAPanel", "RepaintPainter",
           "SpectrogramView", "TakeBrowser", "TakeCard", "TracksPanel", "Workbench"]
