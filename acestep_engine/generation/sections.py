"""Sections of a song by name ("verse 1", "chorus 2", "bridge"): the pure model, no models here.

    parts = lyric_parts(blueprint)                         # named sections of the lyrics, in order
    sections = timed_sections(blueprint, starts, ends, duration)   # times from the sung lines' times
    sections = even_sections(blueprint, duration, note)    # the fallback: time split by line count
    sections.named("chorus 2")                             # or TaskError listing the names there are
    replace_lines(lyrics, {"chorus 2": "new lines"})       # the lyrics with only that section's lines changed
    insert_section(lyrics, "[bridge]\\n...", "after", "chorus 2")

Names come from the blueprint's `[tag]` lines (`Blueprint.sections()`): lower case, the base name
without numbers or modifiers ("[Chorus - anthemic]" is "chorus"), numbered when a base name occurs more
than once ("chorus 1", "chorus 2"). Lines before the first tag form a section named "lyrics". A sung
line is what lyric timestamps time: a non-blank line that is not a `[tag]`.

Times are seconds within the take. A sung section runs from its first line to the first line of the
next section; a run of sections without sung lines (intro, `[Instrumental]`, solo, outro) shares the
time between the last line before it and the first line after it. Time before the first line or after
the last one that no tag names becomes an "intro" or "outro" when it lasts at least a bar. Boundaries
are snapped to the blueprint's beat grid (beats of 60/bpm seconds from 0, bars of `timesignature`
beats): to the nearest bar line when one is within a beat, else to the nearest beat.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

from ..arguments import shown
from ..errors import TaskError

UNTAGGED = "lyrics"  # the name of the lines before the first [tag]
DEFAULT_BEATS_PER_BAR = 4  # when the blueprint leaves the time signature open
BARS_PER_LINE = 2  # a sung line's length when neither the take nor the caller says
SECONDS_PER_LINE = 4.0  # the same without a BPM
INSTRUMENTAL_BARS = 8  # a new section without sung lines
_TAG_LINE = re.compile(r"\s*\[([^\]]+)\]\s*")
_SKIPPED_LINE = re.compile(r"\[[^\]]*\]")


def is_sung(line: str) -> bool:
    """The lines lyric timestamps time: not blank and not a `[tag]`."""
    text = line.strip()
    return bool(text) and not _SKIPPED_LINE.fullmatch(text)


def base_name(tag: str) -> str:
    """ "Verse 2" -> "verse", "Chorus - anthemic" -> "chorus", "" -> "lyrics"."""
    text = " ".join(tag.lower().split())
    base = re.split(r"\s[-:(]|[:(]", text, maxsplit=1)[0]
    base = re.sub(r"\s*\d+$", "", base).strip()
    return base or text or UNTAGGED


def normalise_name(name: str) -> str:
    """How names are compared: "[Chorus 2]", " chorus  2 " and "Chorus 2" are all "chorus 2"."""
    return " ".join(str(name).strip().strip("[]").lower().split())


@dataclass(frozen=True)
class LyricPart:
    """One section of the lyrics text: its name, its tag as written, its sung lines, and where it sits
    in the text: `tag_row` (None for the untagged opening) and the rows `[body_start, body_end)` of
    its body (rows are line numbers of `lyrics.split("\\n")`; the body ends at its last non-blank row)."""

    name: str
    tag: str
    lines: tuple
    tag_row: int | None
    body_start: int
    body_end: int


def lyric_parts(blueprint) -> list[LyricPart]:
    """The named sections of `blueprint`'s lyrics, in order (none for an instrumental blueprint)."""
    if blueprint.instrumental or not isinstance(blueprint.lyrics, str) or not blueprint.lyrics.strip():
        return []
    rows = _rows(blueprint.lyrics)
    tags = [tag for tag, _ in blueprint.sections()]
    if [tag for tag, *_ in rows] != tags:  # both read the same [tag] rule; a difference is a bug here
        raise AssertionError(f"section rows {[r[0] for r in rows]} disagree with Blueprint.sections() {tags}")
    counts: dict[str, int] = {}
    for tag, *_ in rows:
        counts[base_name(tag)] = counts.get(base_name(tag), 0) + 1
    seen: dict[str, int] = {}
    parts = []
    for tag, tag_row, start, end, lines in rows:
        base = base_name(tag)
        seen[base] = seen.get(base, 0) + 1
        name = f"{base} {seen[base]}" if counts[base] > 1 else base
        parts.append(LyricPart(name, tag, tuple(lines), tag_row, start, end))
    return parts


def _rows(lyrics: str):
    """(tag, tag row, body start, body end, sung lines) per section, as `Blueprint.sections()` splits them."""
    out = []
    tag, tag_row, start, body = None, None, 0, []
    raw = lyrics.split("\n") if isinstance(lyrics, str) else []

    def close(end_row):
        if tag is None and not any(line.strip() for line in body):
            return
        last = start
        for offset, line in enumerate(body):
            if line.strip():
                last = start + offset + 1
        out.append((tag or "", tag_row, start, max(start, last), [line.strip() for line in body if is_sung(line)]))

    for row, line in enumerate(raw):
        match = _TAG_LINE.fullmatch(line)
        if match:
            close(row)
            tag, tag_row, start, body = match.group(1).strip(), row, row + 1, []
        else:
            body.append(line)
    close(len(raw))
    return out


def check_has_lyrics(take) -> None:
    """TaskError saying why an instrumental take has no sections by name."""
    bp = take.blueprint
    if bp.instrumental or not isinstance(bp.lyrics, str) or not bp.lyrics.strip():
        raise TaskError(f"take {take.id} is instrumental (no lyrics), so it has no sections to find by name: "
                        "repaint it by seconds with Repaint(take, start, end), or extend it with "
                        "Extend(take, right=seconds)")


# ================================================================================= timed sections
@dataclass(frozen=True)
class Section:
    """A named part of a take: `[start, end)` seconds, its sung `lines` (empty for an instrumental
    part), its position `index` in the take's list, its tag as written ("" when the audio alone showed
    it, e.g. an intro before the first sung line), and `estimated` when the times come from an even
    split by line count rather than from the take's own lyric alignment."""

    name: str
    index: int
    start: float
    end: float
    lines: tuple = ()
    estimated: bool = False
    tag: str = ""

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def instrumental(self) -> bool:
        return not self.lines

    def to_dict(self) -> dict:
        out = asdict(self)
        out["lines"] = list(self.lines)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Section":
        return cls(name=data["name"], index=int(data["index"]), start=float(data["start"]), end=float(data["end"]),
                   lines=tuple(data.get("lines", ())), estimated=bool(data.get("estimated", False)),
                   tag=data.get("tag", ""))


class Sections(list):
    """The sections of a take, in order, covering it from 0 to its end. A list of `Section` that also
    says how the times were found: `estimated` (an even split by line count), `note` (why, in words),
    `score` (the lyric alignment's own score, when there was one)."""

    def __init__(self, items=(), *, note: str = "", score: float | None = None):
        super().__init__(items)
        self.note = note
        self.score = score

    @property
    def estimated(self) -> bool:
        return any(section.estimated for section in self)

    @property
    def names(self) -> list[str]:
        return [section.name for section in self]

    def named(self, name, take_id: str | None = None) -> Section:
        """The section called `name` (case, spaces and brackets forgiven; "verse 1" finds a lone
        "verse"), else TaskError listing the names there are."""
        if not isinstance(name, str):
            raise TaskError(f"section must be a section name such as 'chorus 2' (got {shown(name)})")
        wanted = normalise_name(name)
        for section in self:
            if section.name == wanted:
                return section
        lone = re.fullmatch(r"(.+?)\s*1", wanted)
        if lone:
            for section in self:
                if section.name == lone.group(1):
                    return section
        where = f"take {take_id}" if take_id else "this take"
        raise TaskError(f"section {name!r} is not in {where}: its sections are {', '.join(self.names)}")

    def to_dict(self) -> dict:
        return {"sections": [s.to_dict() for s in self], "note": self.note, "score": self.score}

    @classmethod
    def from_dict(cls, data: dict) -> "Sections":
        return cls([Section.from_dict(s) for s in data["sections"]], note=data.get("note", ""),
                   score=data.get("score"))

    def table(self) -> str:
        """One line per section: name, times, lines (and the note when the times are estimated)."""
        rows = [f"{s.index:>2}  {s.name:<14} {s.start:7.2f} - {s.end:7.2f} s  "
                f"{len(s.lines)} line{'s' if len(s.lines) != 1 else ''}{'  (estimated)' if s.estimated else ''}"
                for s in self]
        return "\n".join(rows + ([f"note: {self.note}"] if self.note else []))

    def __repr__(self) -> str:
        return f"Sections({', '.join(f'{s.name} {s.start:.1f}-{s.end:.1f}s' for s in self)}" + \
            (f"; estimated: {self.note}" if self.estimated else "") + ")"


# ================================================================================= the beat grid
def beat_seconds(blueprint) -> float | None:
    """Seconds per beat from the blueprint's BPM (None when it is open)."""
    return 60.0 / blueprint.bpm if blueprint.bpm else None


def bar_seconds(blueprint) -> float | None:
    beat = beat_seconds(blueprint)
    return None if beat is None else beat * (blueprint.timesignature or DEFAULT_BEATS_PER_BAR)


def snap(seconds: float, blueprint) -> float:
    """`seconds` on the beat grid: the nearest bar line when one is within a beat, else the nearest beat;
    unchanged when the blueprint has no BPM."""
    beat, bar = beat_seconds(blueprint), bar_seconds(blueprint)
    if beat is None:
        return float(seconds)
    on_bar = round(seconds / bar) * bar
    if abs(on_bar - seconds) <= beat + 1e-9:
        return round(on_bar, 4)
    return round(round(seconds / beat) * beat, 4)


def _monotone(bounds: list[float], duration: float) -> list[float]:
    out, last = [], 0.0
    for value in bounds:
        last = min(duration, max(last, value))
        out.append(last)
    return out


def _build(parts, starts: list[float], duration: float, estimated: bool, note: str, score) -> Sections:
    """Sections from their names and start times; each ends where the next starts, the last at `duration`."""
    ends = starts[1:] + [duration]
    return Sections([Section(name, i, round(start, 4), round(end, 4), lines, estimated, tag)
                     for i, ((name, lines, tag), start, end) in enumerate(zip(parts, starts, ends))],
                    note=note, score=score)


def timed_sections(blueprint, line_starts, line_ends, duration: float, *, score: float | None = None,
                   note: str = "") -> Sections:
    """Sections timed from the sung lines' times (one start and end per sung line, in order, seconds).

    Raises TaskError when the times do not fit the lyrics (a different number of lines); returns the
    sections with `note` set when a sung section ends up with no length on the grid (the caller then
    knows the alignment is not usable)."""
    blueprint = blueprint.validate()
    parts = lyric_parts(blueprint)
    count = sum(len(p.lines) for p in parts)
    if len(line_starts) != count or len(line_ends) != count:
        raise TaskError(f"the lyric timestamps have {len(line_starts)} lines but the lyrics have {count} sung lines")
    duration = float(duration)
    k = 0
    spans = []  # per part: (first line start, last line end) or None
    for part in parts:
        if part.lines:
            spans.append((float(line_starts[k]), float(line_ends[k + len(part.lines) - 1])))
            k += len(part.lines)
        else:
            spans.append(None)
    named = [(p.name, p.lines, p.tag) for p in parts]
    starts: list[float | None] = [s[0] if s else None for s in spans]
    # Runs of parts without sung lines share the gap between the lines around them.
    i = 0
    while i < len(parts):
        if starts[i] is not None:
            i += 1
            continue
        j = i
        while j < len(parts) and starts[j] is None:
            j += 1
        gap_start = spans[i - 1][1] if i > 0 else 0.0
        gap_end = spans[j][0] if j < len(parts) else duration
        gap_end = max(gap_start, gap_end)
        for n in range(i, j):
            starts[n] = gap_start + (gap_end - gap_start) * (n - i) / (j - i)
        i = j
    bar = bar_seconds(blueprint) or SECONDS_PER_LINE
    names = {p.name for p in parts}
    if parts and parts[0].lines and starts[0] >= bar and "intro" not in names:
        named.insert(0, ("intro", (), ""))
        starts.insert(0, 0.0)
    if parts and parts[-1].lines and duration - spans[-1][1] >= bar and "outro" not in names:
        named.append(("outro", (), ""))
        starts.append(spans[-1][1])
    if starts:
        starts[0] = 0.0
    starts = _monotone([snap(s, blueprint) for s in starts], duration)
    starts[0] = 0.0
    sections = _build(named, starts, duration, False, note, score)
    empty = [s.name for s in sections if s.lines and s.duration <= 0]
    if empty and not note:
        sections.note = f"the alignment gives {', '.join(empty)} no length on the beat grid"
    return sections


def even_sections(blueprint, duration: float, note: str, score: float | None = None) -> Sections:
    """The fallback: the take's time split by line count (a part without sung lines counts as many
    lines as the average sung part), snapped to the beat grid, every section marked estimated."""
    blueprint = blueprint.validate()
    parts = lyric_parts(blueprint)
    sung = [len(p.lines) for p in parts if p.lines]
    filler = max(1, round(sum(sung) / len(sung))) if sung else 1
    weights = [len(p.lines) or filler for p in parts]
    total = float(sum(weights))
    starts, acc = [], 0.0
    for weight in weights:
        starts.append(duration * acc / total)
        acc += weight
    starts = _monotone([snap(s, blueprint) for s in starts], float(duration))
    if starts:
        starts[0] = 0.0
    return _build([(p.name, p.lines, p.tag) for p in parts], starts, float(duration), True, note, score)


# ================================================================================= lengths of lyrics
def sung_units(lines) -> int:
    """A rough syllable count: vowel groups of Latin-script words, plus one per CJK, kana or hangul character."""
    text = " ".join(lines)
    vowels = len(re.findall(r"[aeiouyàáâäãåæèéêëìíîïòóôöõøùúûüÿœ]+", text.lower()))
    glyphs = len(re.findall(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]", text))
    return vowels + glyphs


def seconds_for_lines(lines, blueprint, sections: Sections | None = None) -> float:
    """How long `lines` take to sing: at the take's own pace when its sections were timed from its
    alignment (seconds per rough syllable over its sung sections), else `BARS_PER_LINE` bars per line
    from the BPM (`SECONDS_PER_LINE` without one); a part without sung lines gets `INSTRUMENTAL_BARS`."""
    lines = [line for line in lines if is_sung(line)]
    bar = bar_seconds(blueprint)
    if not lines:
        return INSTRUMENTAL_BARS * (bar or SECONDS_PER_LINE / BARS_PER_LINE)
    if sections is not None and not sections.estimated:
        sung = [s for s in sections if s.lines and s.duration > 0]
        units = sum(sung_units(s.lines) for s in sung)
        if units and sung_units(lines):
            return sum(s.duration for s in sung) / units * sung_units(lines)
    return len(lines) * (BARS_PER_LINE * bar if bar else SECONDS_PER_LINE)


def whole_bars(seconds: float, blueprint) -> float:
    """`seconds` rounded up to whole bars (to whole seconds without a BPM)."""
    bar = bar_seconds(blueprint) or 1.0
    return round(max(1, math.ceil(seconds / bar - 1e-6)) * bar, 4)


# ================================================================================= editing the lyrics
def _split_new(text, what: str) -> tuple[str | None, list[str]]:
    """(its own [tag] or None, body lines) of new section text."""
    if not isinstance(text, str):
        raise TaskError(f"{what} must be text (got {type(text).__name__})")
    rows = text.strip("\n").split("\n")
    match = _TAG_LINE.fullmatch(rows[0]) if rows else None
    if match:
        return match.group(1).strip(), rows[1:]
    return None, rows


def replace_lines(blueprint, replacements: dict) -> str:
    """`blueprint`'s lyrics with the body of each named section (a `LyricPart` name) replaced by the new
    text; every other character is kept. New text that starts with a `[tag]` line renames the section."""
    lyrics = blueprint.lyrics
    rows = lyrics.split("\n")
    parts = {p.name: p for p in lyric_parts(blueprint)}
    for name, text in sorted(replacements.items(), key=lambda item: -parts[item[0]].body_start):
        part = parts[name]
        tag, body = _split_new(text, f"the lyrics for {name}")
        rows[part.body_start:part.body_end] = body
        if tag is not None:
            if part.tag_row is None:
                rows.insert(part.body_start, f"[{tag}]")
            else:
                rows[part.tag_row] = f"[{tag}]"
    return "\n".join(rows)


def add_part(blueprint, text: str, position: str, name: str | None = None) -> str:
    """`blueprint`'s lyrics with `text` (a `[tag]` line, then its lines) added: at the "start", the
    "end", or "after"/"before" the part `name`; a blank line separates it from its neighbours."""
    tag, body = _split_new(text, "the new section")
    if tag is None:
        raise TaskError("the new section must start with its [tag] line, e.g. '[bridge]\\nnew lines' "
                        f"(got {text!r:.60})")
    block = [f"[{tag}]"] + body
    rows = blueprint.lyrics.split("\n") if blueprint.lyrics.strip() else []
    if position == "start":
        at = 0
    elif position == "end":
        at = len(rows)
    else:
        part = {p.name: p for p in lyric_parts(blueprint)}[name]
        at = part.body_end if position == "after" else (part.tag_row if part.tag_row is not None else part.body_start)
    before, after = rows[:at], rows[at:]
    if before and before[-1].strip():
        block = [""] + block
    if after and after[0].strip():
        block = block + [""]
    return "\n".join(before + block + after)
