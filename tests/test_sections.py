"""Sections of a take by name: timed from its lyric alignment, replaced, and added, on the tiny turbo checkpoint."""

import numpy as np
import pytest

from acestep_engine import Blueprint, Extend, Repaint, TakeStore, TaskError
from acestep_engine.generation.sections import (Sections, even_sections, lyric_parts, replace_lines, snap,
                                                timed_sections)
from acestep_engine.lm import LyricTimestamps, sections_from_timestamps, take_sections

LYRICS = ("[intro]\n\n[verse]\nwalking home in the rain\nneon signs on the train\n\n[chorus]\nla la la\nsing it again\n\n"
          "[Instrumental]\n\n[verse]\nthird line here\n\n[chorus]\nla la la\nsing once more")
SUNG = ["walking home in the rain", "neon signs on the train", "la la la", "sing it again", "third line here",
        "la la la", "sing once more"]
BP = Blueprint(caption="lo-fi city pop", lyrics=LYRICS, bpm=120, timesignature=4, duration=20, language="en")
RATE = 48000
MARGIN = 0.05 + 1 / 25  # the balanced mode's waveform crossfade, plus one latent frame of rounding

# Line times (seconds) of a 20 s take at 120 BPM, as a clean alignment would give them.
STARTS = [2.1, 4.0, 6.1, 7.9, 12.05, 14.0, 16.1]
ENDS = [3.8, 5.7, 7.6, 9.4, 13.8, 15.8, 17.6]


@pytest.fixture(scope="module")
def song(turbo):
    return turbo.generate(BP, seeds=7)[0]


@pytest.fixture(scope="module")
def known():
    return timed_sections(BP, STARTS, ENDS, 20.0, score=0.5)


def _kept(length, spans):
    keep = np.ones(length, bool)
    for s, e in spans:
        keep[max(0, int((s - MARGIN) * RATE)):int((e + MARGIN) * RATE)] = False
    return keep


def _every_line_once(sections):
    assert [line for s in sections for line in s.lines] == SUNG


# ----------------------------------------------------------------------------------------- the section model
def test_sections_from_line_times_are_named_snapped_and_cover_the_take(known):
    assert known.names == ["intro", "verse 1", "chorus 1", "instrumental", "verse 2", "chorus 2", "outro"]
    _every_line_once(known)
    assert known[0].start == 0.0 and known[-1].end == 20.0
    assert all(a.end == b.start for a, b in zip(known, known[1:]))  # contiguous, so times never decrease
    assert all(s.duration > 0 for s in known) and [s.index for s in known] == list(range(len(known)))
    for s in known:  # every boundary on the beat grid of 120 BPM (0.5 s)
        assert s.start * 2 == pytest.approx(round(s.start * 2))
    # Instrumental parts sit between the lines around them: the intro before the first line, the
    # [Instrumental] break from the end of chorus 1's last line to verse 2's first, the outro after the last.
    assert known.named("intro").end == 2.0
    assert known.named("instrumental").start == pytest.approx(snap(ENDS[3], BP))
    assert known.named("instrumental").end == 12.0
    assert known.named("outro").start == pytest.approx(snap(ENDS[-1], BP))
    assert not known.estimated and known.score == 0.5


def test_snapping_prefers_the_bar_line_within_a_beat():
    assert snap(7.6, BP) == 8.0  # bar lines every 2 s: 8.0 is 0.4 s (under a beat) away
    assert snap(6.9, BP) == 7.0  # the nearest bar is a whole beat and more away: the nearest beat
    assert snap(6.9, BP.replace(bpm=None)) == 6.9  # no BPM, no grid


def test_untagged_time_at_the_ends_becomes_intro_and_outro():
    bp = Blueprint(lyrics="[verse]\none\ntwo\n[chorus]\nthree", bpm=120, timesignature=4, duration=30)
    sections = timed_sections(bp, [5.0, 7.0, 10.0], [6.5, 9.0, 12.0], 30.0)
    assert sections.names == ["intro", "verse", "chorus", "outro"]
    assert [s.tag for s in sections] == ["", "verse", "chorus", ""]
    assert (sections[0].start, sections[0].end, sections[-1].start, sections[-1].end) == (0.0, 5.0, 12.0, 30.0)


def test_even_split_by_line_count_is_marked_estimated():
    sections = even_sections(BP, 20.0, "why")
    assert sections.estimated and all(s.estimated for s in sections) and sections.note == "why"
    _every_line_once(sections)
    assert sections[0].start == 0.0 and sections[-1].end == 20.0
    verse1, verse2 = sections.named("verse 1"), sections.named("verse 2")
    assert verse1.duration > verse2.duration  # two lines against one
    assert Sections.from_dict(sections.to_dict()) == sections


def test_lyrics_change_only_inside_the_section():
    new = replace_lines(BP, {"chorus 2": "brand new words\nand another"})
    old_parts, new_parts = lyric_parts(BP), lyric_parts(BP.replace(lyrics=new))
    assert [p.name for p in new_parts] == [p.name for p in old_parts]
    for old, fresh in zip(old_parts, new_parts):
        expected = ("brand new words", "and another") if old.name == "chorus 2" else old.lines
        assert fresh.lines == expected
    assert new.startswith(LYRICS[: LYRICS.rindex("la la la")])  # every character before it kept


def test_unreliable_alignment_falls_back_to_the_estimate(song):
    lines = tuple(type("Line", (), {"start": s, "end": e})() for s, e in zip(STARTS, ENDS))
    good = LyricTimestamps(lines=lines, tokens=(), lrc="", score=0.6, coverage=1, monotonicity=1, confidence=0.6,
                           duration=20.0, layers={})
    assert not sections_from_timestamps(song, good).estimated
    poor = sections_from_timestamps(song, good.__class__(**{**good.__dict__, "score": 0.02}))
    assert poor.estimated and "0.020" in poor.note and "even split" in poor.note
    crushed = tuple(type("Line", (), {"start": 2.0, "end": 2.0})() for _ in STARTS)
    collapsed = sections_from_timestamps(song, good.__class__(**{**good.__dict__, "lines": crushed}))
    assert collapsed.estimated and "no length" in collapsed.note


# ----------------------------------------------------------------------------------------- from the take itself
def test_take_sections_from_its_alignment_are_kept_in_the_sidecar(turbo, song, tmp_path):
    store = TakeStore(tmp_path)
    store.save(song)
    take = store.load(song.id)
    sections = take_sections(turbo, take, store=store, min_score=0.0)
    _every_line_once(sections)
    starts = [s.start for s in sections]
    assert starts == sorted(starts) and all(s.start <= s.end for s in sections)
    assert sections[0].start == 0.0 and sections[-1].end == pytest.approx(take.duration)
    assert {"intro", "instrumental"} <= set(sections.names)
    record = store.record(song.id)["notes"]
    assert Sections.from_dict(record["sections"]) == sections and record["lyric_timestamps"]["lines"]
    again = take_sections(None, store.load(song.id), min_score=0.0)  # read back: no engine needed
    assert again == sections and again.note == sections.note
    strict = take_sections(None, store.load(song.id), min_score=1.0)  # from the stored timestamps
    assert strict.estimated and "below 1" in strict.note


def test_take_sections_refuses_instrumental_takes_and_bad_input(turbo):
    take, = turbo.generate(Blueprint(caption="ambient pads", instrumental=True, duration=10), seeds=3)
    for call in (lambda: take_sections(turbo, take), lambda: Repaint.section(take, "verse"),
                 lambda: Extend.section(take, "[bridge]\nhello", where="end")):
        with pytest.raises(TaskError, match="instrumental .*no sections to find by name"):
            call()


def test_take_sections_needs_the_engine_the_first_time(song):
    fresh = type(song)(**{**song.__dict__, "notes": {}})
    with pytest.raises(TaskError, match="pass the engine"):
        take_sections(None, fresh)
    with pytest.raises(TaskError, match="min_score must be between 0 and 1"):
        take_sections(None, fresh, min_score=3)


# ----------------------------------------------------------------------------------------- replace a section
def test_replace_one_section(turbo, song, known):
    task = Repaint.section(song, "chorus 2", lyrics="bright new words\nsing them loud", sections=known)
    out, = turbo.generate(song.blueprint, task, seeds=1)
    span = known.named("chorus 2")
    assert out.audio.shape == song.audio.shape
    keep = _kept(out.audio.shape[-1], [(span.start, span.end)])
    assert np.array_equal(out.audio[:, keep], song.audio[:, keep])
    inside = slice(int((span.start + 0.1) * RATE), int((span.end - 0.1) * RATE))
    assert not np.allclose(out.audio[:, inside], song.audio[:, inside])
    parts = {p.name: p.lines for p in lyric_parts(out.blueprint)}
    assert parts["chorus 2"] == ("bright new words", "sing them loud")
    assert all(parts[p.name] == p.lines for p in lyric_parts(song.blueprint) if p.name != "chorus 2")
    record, = out.task["sections"]
    assert record["section"] == "chorus 2" and record["new"] == "bright new words\nsing them loud"
    assert record["old"] == "la la la\nsing once more" and (record["start"], record["end"]) == (span.start, span.end)


def test_replace_two_sections_in_one_pass(turbo, song, known):
    task = Repaint.section(song, {"verse 1": "first new line\nsecond new line", "chorus 2": None}, sections=known)
    out, = turbo.generate(song.blueprint, task, seeds=2)
    spans = [(known.named(n).start, known.named(n).end) for n in ("verse 1", "chorus 2")]
    assert [tuple(r) for r in out.task["regions"]] == spans  # one generation, both regions
    keep = _kept(out.audio.shape[-1], spans)
    assert np.array_equal(out.audio[:, keep], song.audio[:, keep])
    for s, e in spans:
        part = slice(int((s + 0.1) * RATE), int((e - 0.1) * RATE))
        assert not np.allclose(out.audio[:, part], song.audio[:, part])
    parts = {p.name: p.lines for p in lyric_parts(out.blueprint)}
    assert parts["verse 1"] == ("first new line", "second new line") and parts["chorus 2"] == ("la la la",
                                                                                                 "sing once more")
    assert [r["section"] for r in out.task["sections"]] == ["verse 1", "chorus 2"]


def test_replace_reads_the_sections_kept_with_the_take(song, known):
    take = type(song)(**{**song.__dict__, "notes": {"sections": known.to_dict()}})
    task = Repaint.section(take, "Chorus 1", caption="brighter, with horns")
    assert task.regions == ((known.named("chorus 1").start, known.named("chorus 1").end),)
    assert task.lyrics is None and task.caption == "brighter, with horns"


def test_lyrics_that_do_not_fit_say_by_how_much_and_may_grow(turbo, song, known):
    # chorus 1 sang 7 syllables in 3.5 s; 16 at that pace need 8 s: 4.5 s more, 3 bars of 2 s to grow.
    long_lines = "\n".join(["la la la la"] * 4)
    with pytest.raises(TaskError, match=r"chorus 1 \(4 lines\) need about 8.0 s but the section is 3.5 s long: "
                                        r"4.5 s too long.*grow=True .*grow by 6 s"):
        Repaint.section(song, "chorus 1", lyrics=long_lines, sections=known)
    task = Repaint.section(song, "chorus 1", lyrics=long_lines, sections=known, grow=True)
    span = known.named("chorus 1")
    out, = turbo.generate(song.blueprint, task, seeds=3)
    assert out.audio.shape[-1] == song.audio.shape[-1] + 6 * RATE  # whole bars: 3 bars of 2 s
    before = int((span.start - MARGIN) * RATE)
    assert np.array_equal(out.audio[:, :before], song.audio[:, :before])
    after = int((span.end + MARGIN) * RATE)
    assert np.array_equal(out.audio[:, after + 6 * RATE:], song.audio[:, after:])  # the rest moved 6 s later
    assert out.blueprint.duration == pytest.approx(26.0) and out.task["sections"][0]["grown"] == 6.0


def test_replace_errors_name_what_is_wrong(song, known):
    with pytest.raises(TaskError, match="'chorus 3' is not in take .*: its sections are intro, verse 1, chorus 1, "
                                        "instrumental, verse 2, chorus 2, outro"):
        Repaint.section(song, "chorus 3", lyrics="x", sections=known)
    fresh = type(song)(**{**song.__dict__, "notes": {}})
    with pytest.raises(TaskError, match="no sections yet: find them with acestep_engine.lm.take_sections"):
        Repaint.section(fresh, "chorus 1")
    with pytest.raises(TaskError, match="one text per section named"):
        Repaint.section(song, ["verse 1", "chorus 1"], lyrics=["only one"], sections=known)
    with pytest.raises(TaskError, match="named twice"):
        Repaint.section(song, ["chorus 1", "Chorus 1"], sections=known)
    with pytest.raises(TaskError, match="needs a Take"):
        Repaint.section("song.wav", "chorus 1", sections=known)


# ----------------------------------------------------------------------------------------- add a section
def test_add_a_section_at_the_end(turbo, song, known):
    task = Extend.section(song, "[outro]\nfading out now", where="end", seconds=4.0, sections=known)
    out, = turbo.generate(song.blueprint, task, seeds=4)
    assert out.audio.shape[-1] == song.audio.shape[-1] + 4 * RATE
    n = int((20.0 - MARGIN) * RATE)
    assert np.array_equal(out.audio[:, :n], song.audio[:, :n])
    assert out.blueprint.lyrics == LYRICS + "\n\n[outro]\nfading out now"
    assert out.task["sections"][0] == {"section": "outro", "where": "end", "seconds": 4.0, "at": 20.0,
                                       "lyrics": "[outro]\nfading out now"}


def test_add_a_section_at_the_start_with_its_length_from_the_lines(turbo, song):
    task = Extend.section(song, "[intro]\nhello there\nhere we go", where="start")
    assert task.left == 8.0  # no sections known: two bars a line at 120 BPM in 4/4
    out, = turbo.generate(song.blueprint, task, seeds=5)
    assert out.audio.shape[-1] == song.audio.shape[-1] + 8 * RATE
    start = int((8.0 + MARGIN) * RATE)
    assert np.array_equal(out.audio[:, start:], song.audio[:, start - 8 * RATE:])
    assert out.blueprint.lyrics == "[intro]\nhello there\nhere we go\n\n" + LYRICS


def test_add_a_section_in_the_middle(turbo, song, known):
    task = Extend.section(song, "[bridge]\nover the bridge we go", where="after chorus 1", seconds=4.0,
                          sections=known)
    at = known.named("chorus 1").end
    assert task.inserts == ((at, 4.0),) and task.left == task.right == 0.0
    out, = turbo.generate(song.blueprint, task, seeds=6)
    assert out.audio.shape[-1] == song.audio.shape[-1] + 4 * RATE
    before, after = int((at - MARGIN) * RATE), int((at + MARGIN) * RATE)
    assert np.array_equal(out.audio[:, :before], song.audio[:, :before])
    assert np.array_equal(out.audio[:, after + 4 * RATE:], song.audio[:, after:])
    gap = slice(int((at + 0.2) * RATE), int((at + 3.8) * RATE))
    assert np.abs(out.audio[:, gap]).max() > 0  # generated, not the silence it started from
    names = [p.name for p in lyric_parts(out.blueprint)]
    assert names == ["intro", "verse 1", "chorus 1", "bridge", "instrumental", "verse 2", "chorus 2"]
    before_verse2 = Extend.section(song, "[pre-chorus]\nrising", where="before verse 2", seconds=2.0,
                                   sections=known)
    assert before_verse2.inserts == ((known.named("verse 2").start, 2.0),)


def test_add_errors_name_what_is_wrong(song, known):
    with pytest.raises(TaskError, match="where must be 'start', 'end', 'after <section>'"):
        Extend.section(song, "[bridge]\nx", where="middle", sections=known)
    with pytest.raises(TaskError, match="'bridge' is not in take .*: its sections are intro"):
        Extend.section(song, "[solo]", where="after bridge", sections=known)
    with pytest.raises(TaskError, match=r"must start with its \[tag\] line"):
        Extend.section(song, "no tag here", where="end", sections=known)
    with pytest.raises(TaskError, match="seconds must be between 0.04 and 580 seconds"):
        Extend.section(song, "[bridge]\nx", where="end", seconds=900, sections=known)
    fresh = type(song)(**{**song.__dict__, "notes": {}})
    with pytest.raises(TaskError, match="no sections yet, so 'after chorus 1' cannot be placed"):
        Extend.section(fresh, "[bridge]\nx", where="after chorus 1")


def test_section_edits_replay_from_their_record(turbo, song, known):
    from acestep_engine.generation import task_from_dict

    task = Extend.section(song, "[bridge]\nover it", where="after verse 1", seconds=2.0, sections=known)
    rebuilt = task_from_dict(task.to_dict(), resolve_take=lambda take_id: song)
    assert rebuilt == task
