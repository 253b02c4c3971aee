"""acestep_engine: a small engine for ACE-Step 1.5 music generation on diffusers' modules.

No widget imports here: the workbench panels are views over these objects.
"""

from . import runtime  # noqa: F401  (first: it asks torch for huge pages before any tensor exists)
from .blueprint import Blueprint
from .engine import Engine
from .errors import (AceStepError, BlueprintError, CheckpointError, GenerationCancelled, GenerationError, LoRAError,
                     MissingCheckpointError, TakeStoreError, TaskError)
from .generation import (Complete, Cover, Extend, Extract, ExtractAll, GenerationSettings, Lego, Regions, Repaint,
                         Section, Sections, Text2Music)
from .progress import Progress
from .takes import Take, TakeStore

__version__ = "0.1.0"


def __getattr__(name):
    # The LM wing loads transformers (seconds): `take_sections` imports it only when first asked for.
    if name == "take_sections":
        from .lm import take_sections

        return take_sections
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "AceStepError", "Blueprint", "BlueprintError", "CheckpointError", "Engine", "GenerationCancelled",
    "GenerationError", "GenerationSettings", "LoRAError", "MissingCheckpointError", "Progress", "Regions", "Section",
    "Sections", "Take", "TakeStore", "TakeStoreError", "take_sections",
    "TaskError", "Text2Music", "Cover", "Repaint", "Extend", "Extract", "ExtractAll", "Lego", "Complete", "__version__",
]
