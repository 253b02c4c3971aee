"""Render many: a plan of blueprints rendered into one take store, resumable, in one process or
split between every process `accelerate launch` starts (one device each).

    acestep render plan.jsonl --out takes/                                   # one process
    accelerate launch -m acestep_engine.render plan.jsonl --out takes/       # every GPU, or a cluster
    summary = engine.render_many("plan.jsonl", TakeStore("takes"))           # from Python

- `plan`: the plan file (JSONL or CSV, one job per line), checked line by line before anything
  loads (`load_plan`, `RenderPlan`, `RenderJob`, `PlanProblem`);
- `work`: each job's stable id and its takes' keys (blueprint, task, settings, weights, LoRA, seed),
  the batches of one job's seeds and each process's share;
- `runner`: `render_many`, which skips keys the store has, renders and saves, and stops after the
  current step when cancelled;
- `board`: progress merged across processes (`RenderProgress`, `RenderBar`);
- `summary`: `RenderSummary` (rendered, skipped, failed with reasons, time; JSON in
  `<store>/.renders/<name>.json`) and `takes_by_job`, a render's takes grouped by job and seed;
  `render_names`, the renders a store holds;
- `worker`: the command behind `acestep render` (`render_command` runs it from a list of arguments,
  e.g. under `accelerate.notebook_launcher`).
"""

from ..cli import render_command
from .board import RenderBar, RenderProgress
from .plan import PlanProblem, RenderJob, RenderPlan, TakeRef, load_plan, plan_from_records
from .runner import rendered_keys, render_many
from .summary import JobTakes, RenderSummary, TakeOutcome, render_names, summary_path, takes_by_job

__all__ = ["JobTakes", "PlanProblem", "RenderBar", "RenderJob", "RenderPlan", "RenderProgress", "RenderSummary",
           "TakeOutcome", "TakeRef", "load_plan", "plan_from_records", "render_command", "render_many",
           "render_names", "rendered_keys", "summary_path", "takes_by_job"]
