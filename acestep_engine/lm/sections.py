"""The sections of a take timed from its own lyric alignment, and kept in its sidecar.

    sections = take_sections(engine, take, store=store)   # [Section("intro", 0, 0.0, 5.2, ()), ...]
    sections.named("chorus 2").start                       # seconds
    sections.estimated, sections.note                      # True and why, when the alignment was unusable

The times come from `lyric_timestamps` (the DiT's cross-attention on the take itself): a section
starts at its first sung line, snapped to the blueprint's beat grid (see
`acestep_engine.generation.sections`). When the alignment's own score is below `min_score`, or it
leaves a sung section no time, the sections are an even split by line count instead, each marked
`estimated`, and `note` says why. The result is stored in `take.notes["sections"]` (and the lyric
timestamps in `take.notes["lyric_timestamps"]`, with the LRC), in the sidecar too when `store` is
given, so a second call (or a view) reads it back without the engine.
"""

from __future__ import annotations

from ..arguments import shown
from ..errors import TaskError
from ..generation.sections import Sections, check_has_lyrics, even_sections, timed_sections

# Upstream's alignment score is coverage^2 x monotonicity^2 x path confidence. Below this the heads
# did not agree on where the words are, so their times would cut sections in the wrong places.
MIN_ALIGNMENT_SCORE = 0.1
NOTES_KEY = "sections"


def sections_from_timestamps(take, stamps, min_score: float = MIN_ALIGNMENT_SCORE) -> Sections:
    """The take's sections from its `LyricTimestamps`, or the estimated even split when they are unreliable."""
    duration = float(take.duration)
    if stamps.score < min_score:
        note = (f"the lyric alignment is unreliable (its score is {stamps.score:.3f}, below {min_score:g}): "
                "sections are an even split by line count")
        return even_sections(take.blueprint, duration, note, stamps.score)
    sections = timed_sections(take.blueprint, [line.start for line in stamps.lines],
                              [line.end for line in stamps.lines], duration, score=stamps.score)
    if sections.note:
        return even_sections(take.blueprint, duration, f"{sections.note}: sections are an even split by line count",
                             stamps.score)
    return sections


def take_sections(engine, take, *, store=None, min_score: float = MIN_ALIGNMENT_SCORE, refresh: bool = False,
                  progress=None, cancel=None) -> Sections:
    """The named sections of `take` (a `Sections` list of `Section(name, index, start, end, lines)`).

    Read from `take.notes["sections"]` when they were found before with the same `min_score` (no engine
    needed then); else computed from the lyric timestamps already in the take's notes, or from a new
    alignment with `engine` (`progress`, `cancel` as for `lyric_timestamps`). `store`: a `TakeStore`
    holding the take, whose sidecar then keeps the result. `refresh=True` aligns again. Refuses an
    instrumental take, saying why."""
    import numbers

    from .lyric_timestamps import LyricTimestamps, lyric_timestamps

    check_has_lyrics(take)
    if isinstance(min_score, bool) or not isinstance(min_score, numbers.Real) or not 0.0 <= min_score <= 1.0:
        raise TaskError(f"min_score must be between 0 and 1 (got {shown(min_score)})")
    cached = (take.notes or {}).get(NOTES_KEY)
    if not refresh and isinstance(cached, dict) and cached.get("min_score") == min_score:
        return Sections.from_dict(cached)
    stamps_record = (take.notes or {}).get("lyric_timestamps")
    if stamps_record and not refresh:
        stamps = LyricTimestamps.from_dict(stamps_record)
    else:
        if engine is None:
            raise TaskError(f"take {take.id} has no sections or lyric timestamps yet: pass the engine to "
                            "take_sections(engine, take) so its DiT can time the lyrics")
        stamps = lyric_timestamps(engine, take, progress=progress, cancel=cancel)
    sections = sections_from_timestamps(take, stamps, min_score)
    notes = {NOTES_KEY: {**sections.to_dict(), "min_score": min_score}, "lyric_timestamps": stamps.to_dict(),
             "lrc": stamps.lrc}
    take.notes = {**(take.notes or {}), **notes}
    if store is not None:
        store.update_notes(take.id, **notes)
    return sections
