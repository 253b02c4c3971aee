"""Reading JSON files that come from outside (checkpoints, adapters, datasets, sidecars) safely.

Every failure is an error of the caller's choosing that names the file: missing or unreadable,
not a regular file (a folder, a pipe or a device is never opened for reading, so nothing blocks),
larger than the caller allows, not UTF-8 (a byte-order mark is accepted), not JSON, holding a
number too long to convert, nested too deeply for the parser, or not the JSON type the caller needs.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from .errors import AceStepError

_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a pipe opened for reading would wait for a writer forever


def _size_text(count: int) -> str:
    return f"{count / (1 << 20):.1f} MB" if count >= 1 << 20 else f"{count} bytes"


def read_limited(path, error: type[AceStepError], max_bytes: int | None = None, what: str = "") -> bytes:
    """The bytes of the regular file at `path` (links followed), at most `max_bytes` of them; `error`
    naming the file otherwise. `what` names the kind of file in the size message ("a sidecar")."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | _NONBLOCK | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise error(f"{path} is missing") from None
    except OSError as exc:
        raise error(f"{path} could not be read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as f:
        try:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise error(f"{path} is not a regular file")
            if max_bytes is not None and info.st_size > max_bytes:
                raise error(f"{path} is {_size_text(info.st_size)}; {what or 'this file'} may be at most "
                            f"{_size_text(max_bytes)}")
            raw = f.read() if max_bytes is None else f.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"{path} could not be read ({exc.strerror or exc})") from None
    if max_bytes is not None and len(raw) > max_bytes:  # it grew while we read it
        raise error(f"{path} is larger than {_size_text(max_bytes)}; {what or 'this file'} may be at most "
                    f"{_size_text(max_bytes)}")
    return raw


def parse_json(raw: bytes, path, error: type[AceStepError], expect: type | None = dict):
    """`raw` (the bytes of the file at `path`) parsed; `error` naming the file on any failure."""
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not valid JSON ({exc})") from None
    except ValueError as exc:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise error(f"{path} is not usable JSON: it holds a number too long to read ({exc})") from None
    except RecursionError:
        raise error(f"{path} is not usable JSON: it is nested too deeply") from None
    if expect is not None and not isinstance(data, expect):
        kind = {dict: "an object {...}", list: "a list [...]"}.get(expect, expect.__name__)
        raise error(f"{path} must hold {kind} (got {type(data).__name__})")
    return data


def read_json(path, error: type[AceStepError], expect: type | None = dict, max_bytes: int | None = None,
              what: str = ""):
    """Parse the JSON file at `path`; raise `error` (e.g. CheckpointError) naming the file on any failure.
    `expect` is the JSON type the top level must have (dict by default; None for any); `max_bytes`
    refuses a larger file before reading it (`what` names the kind of file in that message)."""
    return parse_json(read_limited(path, error, max_bytes, what), path, error, expect)
