"""acestep_engine: a small engine for ACE-Step 1.5 music generation on diffusers' modules.

No widget imports here: the workbench panels are views over these objects.
"""

from .blueprint import Blueprint
from .engine import Engine
from .errors import (AceStepError, BlueprintError, CheckpointError, GenerationCancelled, GenerationError, LoRAError,
                     MissingCheckpointError, TakeStoreError, TaskError)
from .generation import (Complete, Cover, Extend, Extract, ExtractAll, GenerationSettings, Lego, Regions, Repaint,
                         Text2Music)
from .progress import Progress
from .takes import Take, TakeStore

__version__ = "0.1.0"

__all__ = [
    "AceStepError", "Blueprint", "BlueprintError", "CheckpointError", "Engine", "GenerationCancelled",
    "GenerationError", "GenerationSettings", "LoRAError", "MissingCheckpointError", "Progress", "Regions", "Take",
    "TakeStore", "TakeStoreError",
    "TaskError", "Text2Music", "Cover", "Repaint", "Extend", "Extract", "ExtractAll", "Lego", "Complete", "__version__",
]
