"""ipywidgets panels: thin views over acestep_engine objects (Blueprint, Take, TakeStore, Engine).

Every control is an attribute (`panel.bpm.value = 120`, `panel.generate_button.click()`), so
notebooks and tests drive the same panels a person clicks.
"""

from .app import Workbench
from .browser import TakeBrowser
from .editor import BlueprintEditor
from .generate import GeneratePanel
from .jobs import Job, JobRunner
from .views import SpectrogramView, TakeCard

__all__ = ["BlueprintEditor", "GeneratePanel", "Job", "JobRunner", "SpectrogramView", "TakeBrowser", "TakeCard",
           "Workbench"]
