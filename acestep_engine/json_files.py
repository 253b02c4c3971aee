"""Reading JSON files that come from outside (checkpoints, adapters, datasets, sidecars) safely.

Every failure is an error of the caller's choosing that names the file: missing or unreadable,
not UTF-8 (a byte-order mark is accepted), not JSON, nested too deeply for the parser, or not
the JSON type the caller needs.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import AceStepError


def read_json(path, error: type[AceStepError], expect: type = dict):
    """Parse the JSON file at `path`; raise `error` (e.g. CheckpointError) naming the file on any failure.
    `expect` is the JSON type the top level must have (dict by default; None for any)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path} is missing") from None
    except OSError as exc:
        raise error(f"{path} could not be read ({exc.strerror or exc})") from None
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not valid JSON ({exc})") from None
    except RecursionError:
        raise error(f"{path} is not usable JSON: it is nested too deeply") from None
    if expect is not None and not isinstance(data, expect):
        kind = {dict: "an object {...}", list: "a list [...]"}.get(expect, expect.__name__)
        raise error(f"{path} must hold {kind} (got {type(data).__name__})")
    return data
