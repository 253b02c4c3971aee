"""Argument checks every public door shares: a value of the wrong type is refused with the door's own
error naming the argument, what is allowed and what was given (shortened), never a TypeError or
ValueError from deep inside.

Each check takes the error class of its caller (TaskError, TakeStoreError, CheckpointError, ...), so
the message comes from the door the user called.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import AceStepError


def shown(value) -> str:
    """`value` for a message: short, and printable whatever it holds."""
    text = repr(value)
    if len(text) > 80:
        text = f"{text[:60]}... ({type(value).__name__} of {len(value) if hasattr(value, '__len__') else '?'})"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def path_argument(value, name: str, error: type[AceStepError], kind: str | None = None) -> Path:
    """`value` (text or a path object) as a Path. `kind` "file" or "folder" refuses an existing path of
    the other kind; a name the system cannot hold (too long) is refused here, by `name`."""
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)):
        what = "a path to a folder" if kind == "folder" else "a file path"
        raise error(f"{name} must be {what} (text or a pathlib.Path; got {type(value).__name__} {shown(value)})")
    path = Path(value)
    if not str(value):
        raise error(f"{name} must be a path (got an empty text)")
    try:  # one stat, so that a folder another process creates meanwhile cannot read as "exists, not a folder"
        mode = path.stat().st_mode
        exists, is_dir = True, stat.S_ISDIR(mode)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EBADF):  # what Path.exists() swallows
            exists = is_dir = False
        else:  # ENAMETOOLONG and the like, which Path.exists() does not swallow either
            reason = "too long for this system" if exc.errno == errno.ENAMETOOLONG else exc.strerror
            raise error(f"{name} {shown(str(value))} is not a usable path ({reason})") from None
    except ValueError as exc:  # an embedded NUL byte
        raise error(f"{name} {shown(str(value))} is not a usable path ({exc})") from None
    if kind == "folder" and exists and not is_dir:
        raise error(f"{name} {path} is not a folder (it is a file)")
    if kind == "file" and is_dir:
        raise error(f"{name} {path} is not a file (it is a folder)")
    return path


def text_argument(value, name: str, error: type[AceStepError], choices=None) -> str:
    """`value` if it is text (and one of `choices`, when given)."""
    if not isinstance(value, str):
        allowed = f"one of {', '.join(map(repr, choices))}" if choices else "text"
        raise error(f"{name} must be {allowed} (got {type(value).__name__} {shown(value)})")
    if choices is not None and value not in choices:
        raise error(f"{name} must be one of {', '.join(map(repr, choices))} (got {shown(value)})")
    return value


def flag_argument(value, name: str, error: type[AceStepError]) -> bool:
    """`value` if it is True or False (numpy's bool too)."""
    if type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"):
        value = bool(value)
    if not isinstance(value, bool):
        raise error(f"{name} must be True or False (got {type(value).__name__} {shown(value)})")
    return value
