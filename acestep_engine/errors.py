"""Exceptions raised by the engine. Each message names the field or file at fault."""


class AceStepError(Exception):
    """Base class of every error the engine raises on purpose."""

    def __str__(self) -> str:
        text = super().__str__()
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a file name whose bytes are not UTF-8: shown as \xNN, so it always prints
            raw = text.encode("utf-8", "surrogateescape" if _escaped_bytes_only(text) else "backslashreplace")
            text = raw.decode("utf-8", "backslashreplace")
        return text


def _escaped_bytes_only(text: str) -> bool:
    return all(not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF for c in text)


class BlueprintError(AceStepError, ValueError):
    """A blueprint field is outside its allowed range; the message names field, range and value."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field} {message}")


class TaskError(AceStepError, ValueError):
    """A task parameter is invalid, or the loaded checkpoint cannot run the task."""


class CheckpointError(AceStepError):
    """A checkpoint exists but is incomplete or inconsistent (missing key, wrong shape, bad config)."""


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """Checkpoint files are absent and could not (or may not) be downloaded."""


class GenerationCancelled(AceStepError):
    """Raised when the caller's cancel event was set; nothing was written."""


class GenerationError(AceStepError, RuntimeError):
    """The model produced unusable output (NaN, Inf or silence)."""


class TakeStoreError(AceStepError):
    """A take could not be found, read or written."""


class LoRAError(AceStepError, ValueError):
    """A LoRA setting, adapter file or training data is unusable; the message names the field or file."""


class DeviceError(AceStepError, ValueError):
    """A device, dtype or memory setting is unusable; the message names the argument and what is allowed."""


class InsufficientMemoryError(DeviceError, MemoryError):
    """A request cannot fit the memory budget; the message gives the estimate, the budget and what would fit."""


class PlanError(AceStepError, ValueError):
    """A render plan cannot be used: the file itself is unreadable, or (with strict) some lines are bad.
    `problems` lists the bad lines (line number, field, message)."""

    def __init__(self, problems, source: str = "plan", message: str | None = None):
        self.problems = list(problems)
        self.source = source
        if message is None:
            message = (f"{source} has {len(self.problems)} bad line{'s' if len(self.problems) != 1 else ''} "
                       "(nothing was rendered):\n" + "\n".join(f"  {p}" for p in self.problems))
        super().__init__(message)
