"""The song blueprint: what the user edits and the model is conditioned on.

A `Blueprint` is a plain dataclass. Building one never raises, so an editor can hold invalid values
while someone types. `validate()` returns a new, normalised copy or raises `BlueprintError` naming
the field, the allowed range and the value; `errors()` lists every bad field at once.

The prompt strings are byte-identical to ACE-Step 1.5's (reference 4.6); the allowed values are
those of reference 5.2. No torch here: this module is imported by the UI and the CLI.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import BlueprintError

# ---------------------------------------------------------------------------------- allowed values
LANGUAGES = tuple(
    "ar az bg bn ca cs da de el en es fa fi fr he hi hr ht hu id is it ja ko la lt ms ne nl no pa pl pt ro "
    "ru sa sk sr sv sw ta te th tl tr uk ur vi yue zh unknown".split()
)  # the 51 vocal-language codes, "unknown" included (no vocals, or let the model decide)

# The 70 key names ACE-Step 1.5 accepts: 7 letters x {'', '#', 'b', '♯', '♭'} x {major, minor}.
# ASCII and Unicode accidentals are distinct valid names upstream, so both are kept as written.
KEYSCALES = tuple(f"{letter}{accidental} {mode}" for letter in "ABCDEFG" for accidental in ("", "#", "b", "♯", "♭")
                  for mode in ("major", "minor"))
TIME_SIGNATURES = (2, 3, 4, 6)  # beats per bar (the numerator: 4 means 4/4)
BPM_RANGE = (30, 300)  # beats per minute, inclusive
DURATION_RANGE = (10.0, 600.0)  # seconds, inclusive
MAX_CAPTION_CHARS = 512  # a caption must be shorter than this
MAX_LYRICS_CHARS = 4096  # lyrics must be shorter than this

# Common lyric section tags. Only `Blueprint.unusual_section_tags` uses them (to hint at typos such
# as "[chrous]"); any tag is allowed in lyrics.
STRUCTURE_TAGS = ("intro", "verse", "pre-chorus", "chorus", "post-chorus", "hook", "refrain", "bridge", "breakdown",
                  "build-up", "drop", "solo", "interlude", "instrumental", "inst", "break", "outro", "fade out", "end")

# ---------------------------------------------------------------------------------- instructions
TEXT2MUSIC_INSTRUCTION = "Fill the audio semantic mask based on the given conditions:"
REPAINT_INSTRUCTION = "Repaint the mask area based on the given conditions:"
COVER_INSTRUCTION = "Generate audio semantic tokens based on the given conditions:"  # also any LM-code generation
TRACK_NAMES = ("woodwinds", "brass", "fx", "synth", "strings", "percussion", "keyboard", "guitar", "bass",
               "drums", "backing_vocals", "vocals")


def extract_instruction(track: str | None = None) -> str:
    """Instruction of the extract task: `track` (e.g. "drums") is upper-cased; None gives the generic one."""
    return f"Extract the {track.upper()} track from the audio:" if track else "Extract the track from the audio:"


def lego_instruction(track: str | None = None) -> str:
    """Instruction of the lego task (generate one track over the audio context)."""
    if track:
        return f"Generate the {track.upper()} track based on the audio context:"
    return "Generate the track based on the audio context:"


def complete_instruction(tracks=()) -> str:
    """Instruction of the complete task: track names upper-cased and joined with " | "."""
    if tracks:
        return f"Complete the input track with {' | '.join(t.upper() for t in tracks)}:"
    return "Complete the input track:"


# ---------------------------------------------------------------------------------- field checks
# Each check takes the raw value and returns the normalised one, or raises BlueprintError.

_KEY_RE = re.compile(r"\s*([A-G])\s*([#b♯♭]?)\s*(major|minor|maj|min)\s*", re.IGNORECASE)
_TIMESIG_RE = re.compile(r"\s*(\d+)\s*(?:/\s*\d+\s*)?")


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _blank(value) -> bool:
    return value is None or isinstance(value, str) and value == ""


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({type(value).__name__} of {len(text)} characters)"


def _check_keyscale(value):
    """Case and spacing are forgiven ("c# MINOR", "bb maj" -> "C# minor", "Bb major"); '♯'/'♭' stay as written."""
    if _blank(value):
        return None
    if isinstance(value, str):
        match = _KEY_RE.fullmatch(value)
        if match:
            letter, accidental, mode = match.groups()
            mode = "major" if mode.lower().startswith("maj") else "minor"
            return f"{letter.upper()}{accidental.lower()} {mode}"
    raise BlueprintError("keyscale", f"must be one of the {len(KEYSCALES)} names like 'C major', 'F# minor', "
                                     f"'Bb major' (got {_shown(value)})")


def _check_bpm(value):
    """Accepts an int, an int-valued float (120.0) or a digit string ("120"); returns an int or None."""
    lo, hi = BPM_RANGE
    if _blank(value):
        return None
    if isinstance(value, str) and value.strip().isdecimal():
        digits = value.strip()
        if len(digits) > 9:  # never convert an enormous digit string (Python refuses beyond 4300 digits)
            raise BlueprintError("bpm", f"must be between {lo} and {hi} (got a number of {len(digits)} digits)")
        value = int(digits)
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _is_integer(value):
        raise BlueprintError("bpm", f"must be a whole number between {lo} and {hi} (got {_shown(value)})")
    if not lo <= value <= hi:
        raise BlueprintError("bpm", f"must be between {lo} and {hi} (got {value})")
    return int(value)


def _check_timesignature(value):
    """Accepts 4, 4.0, "4" or "4/4" (the numerator is kept, as upstream does); returns an int or None."""
    if _blank(value):
        return None
    number = value
    if isinstance(value, str):
        match = _TIMESIG_RE.fullmatch(value)
        number = int(match.group(1)) if match and len(match.group(1)) <= 3 else None
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if not _is_integer(number) or number not in TIME_SIGNATURES:
        raise BlueprintError("timesignature", f"must be one of {', '.join(map(str, TIME_SIGNATURES))} "
                                              f"(got {_shown(value)})")
    return int(number)


def _check_duration(value):
    """Seconds; an int is accepted and returned as a float."""
    lo, hi = DURATION_RANGE
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise BlueprintError("duration", f"must be a number of seconds between {lo:g} and {hi:g} (got {value!r:.80})")
    if not lo <= value <= hi:
        raise BlueprintError("duration", f"must be between {lo:g} and {hi:g} seconds (got {value})")
    return float(value)


def _check_text(field: str, value, limit: int):
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BlueprintError(field, f"must be text (got {type(value).__name__})")
    if len(value) >= limit:
        raise BlueprintError(field, f"must be shorter than {limit} characters (got {len(value)})")
    _check_encodable(field, value)
    return value


def _check_encodable(field: str, value: str) -> None:
    """Lone surrogates (from a bad decode upstream of us) cannot reach a tokenizer or a UTF-8 file."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BlueprintError(field, f"holds a character that is not valid Unicode text ({exc.reason}: "
                                    f"{value[exc.start:exc.end]!r} at character {exc.start})") from None


def _check_language(value):
    """A code of LANGUAGES, case and surrounding spaces forgiven ("EN" -> "en"); blank means "unknown"."""
    if _blank(value):
        return "unknown"
    code = value.strip().lower() if isinstance(value, str) else None
    if code not in LANGUAGES:
        raise BlueprintError("language", f"must be one of {', '.join(LANGUAGES)} (got {_shown(value)})")
    return code


def _check_planned(value):
    """Names of the fields a planner wrote, as a sorted tuple (provenance, not a model input)."""
    names = ("caption", "lyrics", "bpm", "keyscale", "timesignature", "duration", "language", "instrumental")
    if value is None:
        return ()
    if not isinstance(value, (list, tuple, set, frozenset)) or not all(isinstance(v, str) and v in names
                                                                         for v in value):
        raise BlueprintError("planned", f"must list field names among {', '.join(names)} (got {_shown(value)})")
    return tuple(sorted(set(value)))


def _check_instrumental(value):
    if type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"):
        value = bool(value)
    if not isinstance(value, bool):
        raise BlueprintError("instrumental", f"must be True or False (got {value!r:.80})")
    return value


_FIELD_CHECKS = {
    "caption": lambda value: _check_text("caption", value, MAX_CAPTION_CHARS),
    "lyrics": lambda value: _check_text("lyrics", value, MAX_LYRICS_CHARS),
    "bpm": _check_bpm,
    "keyscale": _check_keyscale,
    "timesignature": _check_timesignature,
    "duration": _check_duration,
    "language": _check_language,
    "instrumental": _check_instrumental,
    "planned": _check_planned,
}

_TAG_LINE_RE = re.compile(r"\s*\[([^\]]+)\]\s*")


# ---------------------------------------------------------------------------------- the blueprint
@dataclass
class Blueprint:
    """A song plan.

    caption: style description, shorter than 512 characters. lyrics: text with `[verse]`-style
    section tags, shorter than 4096 characters. bpm: beats per minute (30-300) or None to leave it
    open. keyscale: e.g. "F# minor" or None. timesignature: beats per bar (2, 3, 4 or 6) or None.
    duration: seconds (10-600). language: vocal language code of LANGUAGES. instrumental: no vocals.
    planned: names of the fields a planner wrote (provenance; never shown to the model).
    """

    caption: str = ""
    lyrics: str = ""
    bpm: int | None = None
    keyscale: str | None = None
    timesignature: int | None = None
    duration: float = 30.0
    language: str = "unknown"
    instrumental: bool = False
    planned: tuple[str, ...] = ()

    def __post_init__(self):
        if isinstance(self.planned, list):  # from JSON
            self.planned = tuple(self.planned)

    # -------------------------------------------------------------- validation
    def validate(self) -> "Blueprint":
        """A new, normalised and checked Blueprint; `self` is left untouched.

        Normalisation: keyscale "c# MINOR" -> "C# minor"; timesignature "4/4" or "4" -> 4;
        bpm "120" or 120.0 -> 120; duration 45 -> 45.0; language "EN" -> "en"; blank bpm,
        keyscale or timesignature ("" or None) -> None; caption/lyrics None -> "".
        Raises BlueprintError for the first invalid field; `errors()` lists them all.
        """
        return Blueprint(**{name: check(getattr(self, name)) for name, check in _FIELD_CHECKS.items()})

    def errors(self) -> dict[str, str]:
        """Every invalid field's message at once ({field: message}, empty when valid), for inline display."""
        found = {}
        for name, check in _FIELD_CHECKS.items():
            try:
                check(getattr(self, name))
            except BlueprintError as exc:
                found[name] = str(exc)
        return found

    @property
    def is_valid(self) -> bool:
        return not self.errors()

    # -------------------------------------------------------------- prompts
    @property
    def effective_lyrics(self) -> str:
        """The lyrics the model sees: "[Instrumental]" when instrumental or when the lyrics are blank."""
        if self.instrumental or not isinstance(self.lyrics, str) or not self.lyrics.strip():
            return "[Instrumental]"
        return self.lyrics

    def metas(self) -> str:
        """The "# Metas" block of the caption prompt (validated values; "N/A" for open ones)."""
        bp = self.validate()

        def shown(value):
            return "N/A" if value is None else value

        return (f"- bpm: {shown(bp.bpm)}\n- timesignature: {shown(bp.timesignature)}\n"
                f"- keyscale: {shown(bp.keyscale)}\n- duration: {int(bp.duration)} seconds\n")

    def caption_prompt(self, instruction: str = TEXT2MUSIC_INSTRUCTION) -> str:
        """The DiT caption prompt (upstream's SFT_GEN_PROMPT) fed to the text encoder.

        Built from the validated copy, so it raises BlueprintError rather than show the model an
        unnormalised value. Duration is printed as whole seconds (truncated, as upstream).
        """
        bp = self.validate()
        return f"# Instruction\n{instruction}\n\n# Caption\n{bp.caption}\n\n# Metas\n{bp.metas()}<|endoftext|>\n"

    def lyric_prompt(self) -> str:
        """The DiT lyric prompt fed to the text encoder's embedding table (validated, like caption_prompt)."""
        bp = self.validate()
        return f"# Languages\n{bp.language}\n\n# Lyric\n{bp.effective_lyrics}<|endoftext|>"

    # -------------------------------------------------------------- lyric structure
    def sections(self) -> list[tuple[str, str]]:
        """Lyrics split at `[tag]` lines into (tag, text), tags as written; text before any tag gets tag ''.

        Text is stripped of surrounding blank lines; a tag with no text gives (tag, '').
        """
        parts: list[tuple[str, str]] = []
        tag, lines = None, []

        def close():
            if tag is not None or any(line.strip() for line in lines):
                parts.append((tag or "", "\n".join(lines).strip()))

        for line in (self.lyrics if isinstance(self.lyrics, str) else "").splitlines():
            match = _TAG_LINE_RE.fullmatch(line)
            if match:
                close()
                tag, lines = match.group(1).strip(), []
            else:
                lines.append(line)
        close()
        return parts

    def unusual_section_tags(self) -> list[str]:
        """Section tags whose base name is not in STRUCTURE_TAGS (a hint for typos, never an error).

        The base name ignores case, numbers and modifiers: "Verse 2", "Chorus - anthemic" and
        "guitar solo" are all usual. Each unusual tag is listed once, in order of appearance.
        """
        unusual = []
        for tag, _ in self.sections():
            if not tag:
                continue
            base = re.split(r"\s[-:(]|[:(]", tag.lower(), maxsplit=1)[0]
            base = re.sub(r"\s*\d+$", "", base).strip()
            if base not in STRUCTURE_TAGS and base.split()[-1:] != ["solo"] and tag not in unusual:
                unusual.append(tag)
        return unusual

    # -------------------------------------------------------------- serialisation
    def replace(self, **changes) -> "Blueprint":
        """A copy with `changes` applied (not validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Field name -> value, in field order (values as held, validated or not)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "Blueprint":
        """Inverse of to_dict. An unknown key raises BlueprintError (a typo must not be lost silently);
        a "version" key is accepted and ignored. Missing fields take their defaults. Not validated."""
        if not isinstance(data, dict):
            raise BlueprintError("blueprint", f"must be a mapping of field names to values (got {type(data).__name__})")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in names and key != "version":
                raise BlueprintError(str(key), f"is not a blueprint field (fields: {', '.join(names)})")
        return cls(**{key: value for key, value in data.items() if key in names})

    def to_json(self, indent: int | None = 2) -> str:
        """JSON of to_dict(); non-ASCII text is written as is."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Blueprint":
        """Inverse of to_json; bad JSON raises BlueprintError("json", ...). Bytes must be UTF-8 (a
        byte-order mark is accepted, as in text)."""
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise BlueprintError("json", f"is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
        if not isinstance(text, str):
            raise BlueprintError("json", f"must be text (got {type(text).__name__})")
        try:
            data = json.loads(text.removeprefix("\ufeff"))
        except json.JSONDecodeError as exc:
            raise BlueprintError("json", f"is not valid JSON ({exc})") from None
        except ValueError as exc:  # an integer of more digits than Python converts
            raise BlueprintError("json", f"holds a number too long to read ({exc})") from None
        except RecursionError:
            raise BlueprintError("json", "is nested too deeply to be a blueprint") from None
        if not isinstance(data, dict):
            raise BlueprintError("json", f"must be an object of blueprint fields (got {type(data).__name__})")
        return cls.from_dict(data)

    def save(self, path) -> Path:
        """Write to_json() (UTF-8) to `path` and return it as a Path. Text that cannot be UTF-8 is
        refused naming the field, before the file is touched."""
        path = _file_path(path)
        for name in ("caption", "lyrics", "keyscale", "language"):
            value = getattr(self, name)
            if isinstance(value, str):
                _check_encodable(name, value)
        text = self.to_json() + "\n"
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise BlueprintError("file", f"{path} could not be written ({exc.strerror or exc})") from None
        return path

    @classmethod
    def load(cls, path) -> "Blueprint":
        """Read a file written by save() (UTF-8, with or without a byte-order mark). Errors name the file."""
        path = _file_path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            shown = str(path) if len(str(path)) <= 300 else f"{str(path)[:100]}... ({len(str(path))} characters)"
            raise BlueprintError("file", f"{shown} could not be read ({exc.strerror or exc})") from None
        try:
            return cls.from_json(data)
        except BlueprintError as exc:
            raise BlueprintError(exc.field, f"{str(exc)[len(exc.field) + 1:]} (in {path})") from None


def _file_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise BlueprintError("file", f"must be a file path (got {path!r:.60})")
    return Path(path)
