"""Generation tasks. A task is a frozen dataclass of its parameters (`to_dict`/`task_from_dict`);
its `plan(facts, blueprint)` returns a `Plan` whose methods steer the shared pipeline.

Where each task's whole behaviour lives:
- `text2music.py`: Text2Music (also with planner audio codes)
- `cover.py`: Cover (FSQ source, noised start, switch to text2music after `strength`)
- `repaint.py`: Repaint and Extend (canvas, mask, step injection, crossfades, splice)
- `tracks.py`: Extract, ExtractAll, Lego, Complete (base checkpoint)
- `base.py`: the `Task` and `Plan` base classes and the default steering
Deliberate differences from upstream are listed in docs/differences.md.
"""

from __future__ import annotations

from ...errors import TaskError
from .base import Plan, Task
from .cover import Cover, CoverPlan
from .repaint import REPAINT_MODES, Extend, Repaint, RepaintPlan, repaint_settings
from .text2music import Text2Music
from .tracks import Complete, Extract, ExtractAll, Lego

TaskPlan = Plan  # the name before tasks owned their steering

TASKS = {cls.name: cls for cls in (Text2Music, Cover, Repaint, Extend, Extract, ExtractAll, Lego, Complete)}

__all__ = ["TASKS", "Complete", "Cover", "CoverPlan", "Extend", "Extract", "ExtractAll", "Lego", "Plan",
           "REPAINT_MODES", "Repaint", "RepaintPlan", "Task", "TaskPlan", "Text2Music", "repaint_settings",
           "task_from_dict"]


def task_from_dict(data: dict, resolve_take=None):
    """Rebuild a task from `to_dict()` output. `resolve_take(id)` turns recorded take ids back into takes."""
    if not isinstance(data, dict):
        raise TaskError(f"a task record must be a dict with a 'name' (got {type(data).__name__})")
    data = dict(data)
    name = data.pop("name", None)
    if name not in TASKS:
        raise TaskError(f"task name must be one of {', '.join(TASKS)} (got {name!r:.80})")
    known = {f for f in TASKS[name].__dataclass_fields__}
    unknown = set(data) - known
    if unknown:
        raise TaskError(f"the {name} task has no field(s) {', '.join(sorted(unknown))}: its fields are "
                        f"{', '.join(sorted(known))}")
    for key, value in list(data.items()):
        if isinstance(value, dict) and set(value) == {"take"}:
            if resolve_take is None:
                raise TaskError(f"the task's {key} is take {value['take']}: pass resolve_take to rebuild it")
            data[key] = resolve_take(value["take"])
        elif isinstance(value, list) and key in ("regions", "tracks", "inserts", "sections"):
            data[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return TASKS[name](**data)
