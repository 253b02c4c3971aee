"""`Repaint.section` and `Extend.section`: a section edit turned into the seconds, gaps and lyrics of a
plain Repaint or Extend. Only reads sections already found (`take.notes["sections"]`, written by
`acestep_engine.lm.take_sections`) or given: timing them needs the LM wing, which generation may not import.
"""

from __future__ import annotations

from ...arguments import shown
from ...errors import TaskError
from ..sections import (Section, Sections, add_part, check_has_lyrics, is_sung, lyric_parts, replace_lines,
                        seconds_for_lines, sung_units, whole_bars)
from .base import MAX_SECONDS, check_seconds

# New lines may run this much longer than the old ones did before they count as not fitting: singers
# squeeze a syllable or two, and the estimate of how long lines take is rough.
FIT_TOLERANCE = 1.25


def _check_take(take, what: str):
    from ...takes.store import Take

    if not isinstance(take, Take):
        raise TaskError(f"{what} needs a Take (sections are found from a take's own audio; got {type(take).__name__})")
    check_has_lyrics(take)


def known_sections(take, sections=None) -> Sections:
    """`sections` (a `Sections`, a list of `Section` or their dicts), else the ones in the take's notes."""
    if sections is None:
        cached = (take.notes or {}).get("sections")
        if not isinstance(cached, dict):
            raise TaskError(f"take {take.id} has no sections yet: find them with "
                            "acestep_engine.lm.take_sections(engine, take), or pass sections=...")
        return Sections.from_dict(cached)
    if isinstance(sections, Sections):
        return sections
    if isinstance(sections, dict) and "sections" in sections:
        return Sections.from_dict(sections)
    if isinstance(sections, (list, tuple)) and all(isinstance(s, (Section, dict)) for s in sections):
        return Sections([s if isinstance(s, Section) else Section.from_dict(s) for s in sections])
    raise TaskError(f"sections must be what take_sections returns, a list of Section (got {sections!r:.80})")


def _requests(section, lyrics) -> list[tuple[str, str | None]]:
    """(name, new lyrics or None) per section asked for."""
    if isinstance(section, dict):
        if lyrics is not None:
            raise TaskError("give the new lyrics either in the section dict (name -> lyrics) or as lyrics, not both")
        pairs = list(section.items())
    elif isinstance(section, str):
        pairs = [(section, lyrics)]
    elif isinstance(section, (list, tuple)) and section:
        if lyrics is None or isinstance(lyrics, str):
            lyrics = [lyrics] * len(section)
        if not isinstance(lyrics, (list, tuple)) or len(lyrics) != len(section):
            raise TaskError(f"lyrics must be one text per section named ({len(section)}), or None to keep them "
                            f"(got {lyrics!r:.80})")
        pairs = list(zip(section, lyrics))
    else:
        raise TaskError(f"section must be a section name such as 'chorus 2', a list of names or a dict of "
                        f"name -> lyrics (got {section!r:.80})")
    for _, text in pairs:
        if text is not None and not isinstance(text, str):
            raise TaskError(f"lyrics must be text or None (got {type(text).__name__})")
    return pairs


def _needed_seconds(old: Section, new_lines: list[str], blueprint, sections: Sections) -> float:
    """How long the new lines take, at the pace the old lines of this section were sung when it had any."""
    if old.lines and old.duration > 0:
        old_units, new_units = sung_units(old.lines), sung_units(new_lines)
        if old_units and new_units:
            return old.duration * new_units / old_units
        return old.duration * len(new_lines) / len(old.lines)
    return seconds_for_lines(new_lines, blueprint, sections)


def repaint_sections(cls, take, section, lyrics=None, caption=None, *, sections=None, grow=False, **options):
    """The Repaint task of `Repaint.section` (see there)."""
    _check_take(take, "Repaint.section")
    if not isinstance(grow, bool):
        raise TaskError(f"grow must be True or False (got {shown(grow)})")
    known = known_sections(take, sections)
    blueprint = take.blueprint
    parts = {p.name for p in lyric_parts(blueprint)}
    chosen, seen = [], set()
    for name, text in _requests(section, lyrics):
        found = known.named(name, take.id)
        if found.name in seen:
            raise TaskError(f"section {found.name!r} is named twice: name each section once")
        if found.duration <= 0:
            raise TaskError(f"section {found.name!r} has no length in take {take.id} ({found.start:.2f} s): "
                            "there is nothing to repaint")
        seen.add(found.name)
        chosen.append((found, text))
    chosen.sort(key=lambda item: item[0].start)

    replacements, added, record, regions, inserts, shift = {}, [], [], [], [], 0.0
    for found, text in chosen:
        grown = 0.0
        if text is not None:
            new_lines = [line.strip() for line in text.split("\n") if is_sung(line)]
            need = _needed_seconds(found, new_lines, blueprint, known)
            if need > found.duration * FIT_TOLERANCE:
                extra = whole_bars(need - found.duration, blueprint)
                if not grow:
                    raise TaskError(f"the new lyrics for {found.name} ({len(new_lines)} lines) need about "
                                    f"{need:.1f} s but the section is {found.duration:.1f} s long: "
                                    f"{need - found.duration:.1f} s too long. Shorten them, or pass grow=True to "
                                    f"let the section grow by {extra:g} s (the rest of the song moves later)")
                grown = extra
            if found.name in parts:
                replacements[found.name] = text
            else:  # an intro or outro found in the audio only: its lines become a new part of the lyrics
                tagged = text if text.lstrip().startswith("[") else f"[{found.name}]\n{text}"
                added.append((tagged, "start" if found.index == 0 else "end"))
        if grown:
            inserts.append((found.end, grown))
        regions.append((found.start + shift, found.end + shift + grown))
        shift += grown
        record.append({"section": found.name, "start": found.start, "end": found.end, "grown": grown,
                       "old": "\n".join(found.lines), "new": text, "estimated": found.estimated})
    new_lyrics = replace_lines(blueprint, replacements) if replacements else blueprint.lyrics
    for tagged, position in added:
        new_lyrics = add_part(blueprint.replace(lyrics=new_lyrics), tagged, position)
    total = take.duration + shift
    if total > MAX_SECONDS + 1e-6:
        raise TaskError(f"growing the sections would make the song {total:.1f} s long; the limit is {MAX_SECONDS:g} s")
    return cls(source=take, regions=tuple(regions), inserts=tuple(inserts),
               lyrics=new_lyrics if new_lyrics != blueprint.lyrics else None, caption=caption,
               sections=tuple(record), **options)


def _where(where, known: Sections | None, take) -> tuple[str, Section | None]:
    allowed = "'start', 'end', 'after <section>' or 'before <section>' (e.g. 'after chorus 2')"
    if not isinstance(where, str):
        raise TaskError(f"where must be {allowed} (got {shown(where)})")
    text = " ".join(where.strip().lower().split())
    if text in ("start", "end"):
        return text, None
    position, _, name = text.partition(" ")
    if position not in ("after", "before") or not name:
        raise TaskError(f"where must be {allowed} (got {shown(where)})")
    if known is None:
        raise TaskError(f"take {take.id} has no sections yet, so {where!r} cannot be placed: find them with "
                        "acestep_engine.lm.take_sections(engine, take), or pass sections=...")
    return position, known.named(name, take.id)


def extend_section(cls, take, lyrics, where="end", seconds=None, *, sections=None, caption=None, **options):
    """The Extend task of `Extend.section` (see there)."""
    _check_take(take, "Extend.section")
    blueprint = take.blueprint
    try:
        known = known_sections(take, sections)
    except TaskError:
        if sections is not None:
            raise
        known = None  # start and end need no sections; "after X" says so below
    position, anchor = _where(where, known, take)
    add_part(blueprint, lyrics, "end")  # refuses text without its [tag] line before any timing
    body = [line.strip() for line in lyrics.strip("\n").split("\n")[1:] if is_sung(line)]
    if seconds is None:
        seconds = whole_bars(seconds_for_lines(body, blueprint, known), blueprint)
    room = MAX_SECONDS - take.duration
    if room < 0.04:
        raise TaskError(f"take {take.id} is already {take.duration:.1f} s long: a song is at most {MAX_SECONDS:g} s")
    seconds = check_seconds("seconds", seconds, 0.04, room)
    parts = {p.name for p in lyric_parts(blueprint)}
    at = None
    if anchor is not None:
        at = anchor.end if position == "after" else anchor.start
        if anchor.name in parts:
            new_lyrics = add_part(blueprint, lyrics, position, anchor.name)
        else:  # an intro or outro found in the audio only sits before or after all the lyrics
            new_lyrics = add_part(blueprint, lyrics, "start" if anchor.index == 0 else "end")
    else:
        new_lyrics = add_part(blueprint, lyrics, position)
    if at is not None and at <= 0.0:
        position = "start"
    elif at is not None and at >= take.duration - 1e-6:
        position = "end"
    record = {"section": lyrics.strip("\n").split("\n")[0].strip().strip("[]").strip(), "where": where, "seconds": seconds,
              "at": 0.0 if position == "start" else (take.duration if position == "end" else at), "lyrics": lyrics}
    layout = {"start": {"left": seconds, "right": 0.0}, "end": {"left": 0.0, "right": seconds}}.get(
        position, {"left": 0.0, "right": 0.0, "inserts": ((at, seconds),)})
    return cls(source=take, **layout, lyrics=new_lyrics, caption=caption, sections=(record,), **options)
