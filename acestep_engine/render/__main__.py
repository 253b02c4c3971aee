"""`python -m acestep_engine.render plan.jsonl --out takes/`, also under `accelerate launch` (one
process per device, each rendering its share into the same store). See `acestep_engine.render`."""

import sys

from ..cli import render_command

if __name__ == "__main__":
    sys.exit(render_command())
