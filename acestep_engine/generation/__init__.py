"""One generation: its settings (`settings`), the tasks and what each steers (`tasks/`), the regions
they act on (`regions`), the named sections of a song (`sections`), the audio and codes they start
from (`sources`), the conditions (`conditioning`), the sampler with its schedules and guidance (`sampling`,
`schedules`, `guidance`), the memory plan it runs under (`memory`) and what fits a machine before any
download (`machines`), the model facts tasks plan with (`facts`)
and the stages that run it all (`pipeline`).
"""

from .conditioning import Conditions, encode_conditions
from .facts import ModelFacts
from .memory import MemoryPlan, choose_plan, default_budget, parse_budget
from .regions import Regions
from .sampling import SamplerSettings, denoise
from .sections import Section, Sections
from .settings import MAX_BATCH, GenerationSettings
from .sources import audio_to_codes, load_source, parse_audio_codes
from .tasks import TASKS, Complete, Cover, Extend, Extract, ExtractAll, Lego, Repaint, Task, Text2Music, task_from_dict

__all__ = ["Complete", "Conditions", "Cover", "Extend", "Extract", "ExtractAll", "GenerationSettings", "Lego",
           "MAX_BATCH", "MemoryPlan", "ModelFacts", "Regions", "Repaint", "SamplerSettings", "Section", "Sections",
           "TASKS", "Task", "Text2Music", "audio_to_codes", "choose_plan", "default_budget", "denoise", "encode_conditions",
           "load_source", "parse_audio_codes", "parse_budget", "task_from_dict"]
