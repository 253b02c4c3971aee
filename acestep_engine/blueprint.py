"""The song blueprint: what the user edits and the model is conditioned on.

A Blueprint is a plain dataclass that may hold invalid values while someone edits it;
`validate()` returns a normalised copy or raises `BlueprintError` naming the field, the allowed
range and the value. The prompt strings are byte-identical to ACE-Step 1.5's (reference 4.6).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import BlueprintError

LANGUAGES = tuple(
    "ar az bg bn ca cs da de el en es fa fi fr he hi hr ht hu id is it ja ko la lt ms ne nl no pa pl pt ro "
    "ru sa sk sr sv sw ta te th tl tr uk ur vi yue zh unknown".split()
)
# The 70 key names ACE-Step 1.5 accepts: ASCII and Unicode accidentals are both valid and are
# passed to the model as written.
KEYSCALES = tuple(f"{letter}{accidental} {mode}" for letter in "ABCDEFG" for accidental in ("", "#", "b", "♯", "♭")
                  for mode in ("major", "minor"))
TIME_SIGNATURES = (2, 3, 4, 6)
BPM_RANGE = (30, 300)
DURATION_RANGE = (10.0, 600.0)
MAX_CAPTION_CHARS = 512
MAX_LYRICS_CHARS = 4096
STRUCTURE_TAGS = ("intro", "verse", "pre-chorus", "chorus", "post-chorus", "hook", "bridge", "breakdown",
                  "drop", "solo", "interlude", "instrumental", "outro")

TEXT2MUSIC_INSTRUCTION = "Fill the audio semantic mask based on the given conditions:"
REPAINT_INSTRUCTION = "Repaint the mask area based on the given conditions:"
COVER_INSTRUCTION = "Generate audio semantic tokens based on the given conditions:"
TRACK_NAMES = ("woodwinds", "brass", "fx", "synth", "strings", "percussion", "keyboard", "guitar", "bass",
               "drums", "backing_vocals", "vocals")


def extract_instruction(track: str | None = None) -> str:
    return f"Extract the {track.upper()} track from the audio:" if track else "Extract the track from the audio:"


def lego_instruction(track: str | None = None) -> str:
    if track:
        return f"Generate the {track.upper()} track based on the audio context:"
    return "Generate the track based on the audio context:"


def complete_instruction(tracks=()) -> str:
    if tracks:
        return f"Complete the input track with {' | '.join(t.upper() for t in tracks)}:"
    return "Complete the input track:"


_KEY_RE = re.compile(r"^\s*([A-Ga-g])\s*([#b♯♭]?)\s*(major|minor|maj|min)\s*$", re.IGNORECASE)


def _normalize_keyscale(value):
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BlueprintError("keyscale", f"must be a key name like 'C major', 'F# minor', 'Bb major' (got {value!r})")
    match = _KEY_RE.match(value)
    if match:
        letter, accidental, mode = match.groups()
        mode = "major" if mode.lower().startswith("maj") else "minor"
        name = f"{letter.upper()}{accidental.lower()} {mode}"
        if name in KEYSCALES:
            return name
    raise BlueprintError("keyscale", f"must be one of the {len(KEYSCALES)} names like 'C major', 'F# minor', "
                                     f"'Bb major' (got {value!r})")


def _normalize_bpm(value):
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BlueprintError("bpm", f"must be a whole number between {BPM_RANGE[0]} and {BPM_RANGE[1]} (got {value!r})")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise BlueprintError("bpm", f"must be a whole number between {BPM_RANGE[0]} and {BPM_RANGE[1]} (got {value!r})")
    if not BPM_RANGE[0] <= value <= BPM_RANGE[1]:
        raise BlueprintError("bpm", f"must be between {BPM_RANGE[0]} and {BPM_RANGE[1]} (got {value})")
    return value


def _normalize_timesignature(value):
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(/\d+)?", text):
            value = int(text.split("/")[0])
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or value not in TIME_SIGNATURES:
        raise BlueprintError("timesignature", f"must be one of 2, 3, 4, 6 (got {value!r})")
    return int(value)


def _normalize_duration(value):
    lo, hi = DURATION_RANGE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BlueprintError("duration", f"must be a number of seconds between {lo:g} and {hi:g} (got {value!r})")
    if not lo <= value <= hi:
        raise BlueprintError("duration", f"must be between {lo:g} and {hi:g} seconds (got {value})")
    return float(value)


def _normalize_text(field: str, value, limit: int):
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise BlueprintError(field, f"must be text (got {type(value).__name__})")
    if len(value) >= limit:
        raise BlueprintError(field, f"must be shorter than {limit} characters (got {len(value)})")
    return value


def _normalize_language(value):
    if value is None or value == "":
        return "unknown"
    code = value.strip().lower() if isinstance(value, str) else value
    if code not in LANGUAGES:
        raise BlueprintError("language", f"must be one of {', '.join(LANGUAGES)} (got {value!r})")
    return code


def _normalize_instrumental(value):
    if not isinstance(value, bool):
        raise BlueprintError("instrumental", f"must be True or False (got {value!r})")
    return value


@dataclass
class Blueprint:
    """A song plan. Units: `bpm` in beats per minute, `duration` in seconds,
    `timesignature` as the numerator of the bar (4 for 4/4)."""

    caption: str = ""
    lyrics: str = ""
    bpm: int | None = None
    keyscale: str | None = None
    timesignature: int | None = None
    duration: float = 30.0
    language: str = "unknown"
    instrumental: bool = False

    _NORMALIZERS = {
        "caption": lambda v: _normalize_text("caption", v, MAX_CAPTION_CHARS),
        "lyrics": lambda v: _normalize_text("lyrics", v, MAX_LYRICS_CHARS),
        "bpm": _normalize_bpm,
        "keyscale": _normalize_keyscale,
        "timesignature": _normalize_timesignature,
        "duration": _normalize_duration,
        "language": _normalize_language,
        "instrumental": _normalize_instrumental,
    }

    # ------------------------------------------------------------------ validation
    def validate(self) -> "Blueprint":
        """A normalised, checked copy ("c# MINOR" -> "C# minor", "4/4" -> 4, "120" -> 120).

        Raises BlueprintError for the first invalid field; `errors()` lists them all.
        """
        values = {name: normalize(getattr(self, name)) for name, normalize in self._NORMALIZERS.items()}
        return Blueprint(**values)

    def errors(self) -> dict[str, str]:
        """Every invalid field's message at once (empty when valid), for inline display."""
        found = {}
        for name, normalize in self._NORMALIZERS.items():
            try:
                normalize(getattr(self, name))
            except BlueprintError as exc:
                found[name] = str(exc)
        return found

    @property
    def is_valid(self) -> bool:
        return not self.errors()

    # ------------------------------------------------------------------ prompts
    @property
    def effective_lyrics(self) -> str:
        """`[Instrumental]` when instrumental or when no lyrics are given."""
        if self.instrumental or not (self.lyrics or "").strip():
            return "[Instrumental]"
        return self.lyrics

    def metas(self) -> str:
        def value(v):
            return "N/A" if v is None or v == "" else v

        return (f"- bpm: {value(self.bpm)}\n- timesignature: {value(self.timesignature)}\n"
                f"- keyscale: {value(self.keyscale)}\n- duration: {int(self.duration)} seconds\n")

    def caption_prompt(self, instruction: str = TEXT2MUSIC_INSTRUCTION) -> str:
        """The DiT caption prompt (upstream's SFT_GEN_PROMPT), fed to the text encoder."""
        return f"# Instruction\n{instruction}\n\n# Caption\n{self.caption}\n\n# Metas\n{self.metas()}<|endoftext|>\n"

    def lyric_prompt(self) -> str:
        """The DiT lyric prompt, fed to the text encoder's embedding table."""
        return f"# Languages\n{self.language}\n\n# Lyric\n{self.effective_lyrics}<|endoftext|>"

    def sections(self) -> list[tuple[str, str]]:
        """Lyrics split at `[tag]` lines into (tag, text); text before any tag gets tag ''."""
        parts: list[tuple[str, str]] = []
        tag, lines = "", []
        for line in (self.lyrics or "").splitlines():
            match = re.fullmatch(r"\s*\[([^\]]+)\]\s*", line)
            if match:
                if tag or any(l.strip() for l in lines):
                    parts.append((tag, "\n".join(lines).strip()))
                tag, lines = match.group(1).strip(), []
            else:
                lines.append(line)
        if tag or any(l.strip() for l in lines):
            parts.append((tag, "\n".join(lines).strip()))
        return parts

    # ------------------------------------------------------------------ serialisation
    def replace(self, **changes) -> "Blueprint":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "Blueprint":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = [k for k in data if k not in names and k != "version"]
        if unknown:
            raise BlueprintError(unknown[0], f"is not a blueprint field (fields: {', '.join(sorted(names))})")
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "Blueprint":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BlueprintError("json", f"is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise BlueprintError("json", f"must be an object of blueprint fields (got {type(data).__name__})")
        return cls.from_dict(data)

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path) -> "Blueprint":
        return cls.from_json(Path(path).read_text(encoding="utf-8"))
