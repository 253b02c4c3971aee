"""The workbench's sections: bands over the pictures, Find sections as a job, Replace and Add section in
the Repaint tab, the synced player naming the section it plays, and Play section in the Look tab."""

import html

import numpy as np
import pytest

from acestep_engine import Blueprint, TakeStore, TaskError
from acestep_engine.generation.sections import lyric_parts, timed_sections
from workbench import RepaintPainter
from workbench.listen import ListenPanel
from workbench.painter import SliderRegionCanvas, painter_png
from workbench.sections import section_at, section_bands
from workbench.state import WorkbenchState
from workbench.synced_player import SyncedPlayer
from workbench.views import spectrogram_png

LYRICS = ("[intro]\n\n[verse]\nwalking home in the rain\nneon signs on the train\n\n[chorus]\nla la la\nsing it again\n\n"
          "[Instrumental]\n\n[verse]\nthird line here\n\n[chorus]\nla la la\nsing once more")
BP = Blueprint(caption="lo-fi city pop", lyrics=LYRICS, bpm=120, timesignature=4, duration=20, language="en")
NAMES = ["intro", "verse 1", "chorus 1", "instrumental", "verse 2", "chorus 2", "outro"]
RATE = 48000
# Line times (seconds) of the 20 s take as a clean alignment would give them (as in test_sections.py).
KNOWN = timed_sections(BP, [2.1, 4.0, 6.1, 7.9, 12.05, 14.0, 16.1], [3.8, 5.7, 7.6, 9.4, 13.8, 15.8, 17.6], 20.0,
                       score=0.5)


@pytest.fixture(scope="module")
def song(turbo):
    return turbo.generate(BP, seeds=7)[0]


def with_notes(take, notes):
    """The same take with other notes (each test starts from what it needs to know)."""
    return type(take)(**{**take.__dict__, "notes": dict(notes)})


@pytest.fixture
def sectioned(song):
    return with_notes(song, {"sections": {**KNOWN.to_dict(), "min_score": 0.1}})


# ----------------------------------------------------------------------------------------- bands
def test_pictures_draw_the_section_bands(song):
    assert spectrogram_png(song, sections=KNOWN) != spectrogram_png(song)
    assert painter_png(song, KNOWN)[0] != painter_png(song)[0]
    bands = section_bands(KNOWN)
    assert [b["name"] for b in bands] == NAMES
    assert section_at(bands, 6.5) == NAMES.index("chorus 1") and section_at(bands, 25.0) == -1


@pytest.mark.parametrize("custom", [True, False])
def test_find_sections_is_a_job_whose_bands_reach_the_canvas_and_the_sidecar(turbo, song, tmp_path, custom):
    store = TakeStore(tmp_path)
    store.save(song)
    take = store.load(song.id)
    painter = RepaintPainter(take, turbo, store, use_custom_widget=custom)
    assert painter.sections is None and painter.replace_section_button.disabled
    assert "press Find sections" in painter.sections_note.value
    painter.find_sections_button.click()
    sections = painter.job.result(timeout=120)
    assert sections.names == [s.name for s in sections] and {"intro", "chorus 2"} <= set(sections.names)
    assert painter.canvas.sections == section_bands(sections)  # the synced trait the JavaScript draws
    assert list(painter.section_picker.options) == sections.names
    assert list(painter.where.options) == ["end", "start"] + [f"after {n}" for n in sections.names]
    assert not painter.replace_section_button.disabled and "sections: intro" in painter.status.value
    assert store.record(song.id)["notes"]["sections"]["sections"] == sections.to_dict()["sections"]
    if not custom:
        assert isinstance(painter.canvas, SliderRegionCanvas)
        assert painter.canvas.image.value == painter_png(take, sections)[0]  # the bands are in the picture


@pytest.mark.parametrize("custom", [True, False])
def test_a_section_becomes_the_painted_region(turbo, sectioned, custom):
    painter = RepaintPainter(sectioned, turbo, use_custom_widget=custom)
    chorus = KNOWN.named("chorus 1")
    painter.section_picker.value = "chorus 1"
    assert painter.section_lines.value == "la la la\nsing it again"  # its lines, to edit in place
    painter.select_region_button.click()
    assert painter.regions == [(chorus.start, chorus.end)]
    assert [(row.children[0].value, row.children[1].value) for row in painter.rows.children] == [
        (chorus.start, chorus.end)]
    verse = KNOWN.named("verse 2")
    painter.canvas.regions = [[verse.start, verse.end]]  # as a click on the band's name in the browser sets it
    assert painter.section_picker.value == "verse 2" and painter.section_lines.value == "third line here"


def test_replace_section_edits_its_lines_and_the_result_becomes_current(turbo, sectioned, tmp_path):
    store = TakeStore(tmp_path)
    store.save(sectioned)
    state = WorkbenchState(engine=turbo, store=store, current_take=sectioned)
    painter = RepaintPainter(state=state)
    painter.section_picker.value = "chorus 2"
    assert painter.section_lines.value == "la la la\nsing once more"
    painter.section_lines.value = "bright new words\nsing them loud"
    painter.seed.value = "1"
    painter.replace_section_button.click()
    result, = painter.job.result(timeout=120)
    record, = result.task["sections"]
    span = KNOWN.named("chorus 2")
    assert record["section"] == "chorus 2" and record["new"] == "bright new words\nsing them loud"
    assert (record["start"], record["end"]) == (span.start, span.end)
    assert {p.name: p.lines for p in lyric_parts(result.blueprint)}["chorus 2"] == ("bright new words",
                                                                                    "sing them loud")
    assert state.current_take is result and painter.take is result and result.parent_id == sectioned.id
    assert painter.comparison.take is sectioned and painter.comparison.compare is result
    assert painter.comparison.regions == [(span.start, span.end)] and painter.comparison.sections is not None
    assert "replaced chorus 2" in painter.status.value and "Find sections names its own" in painter.status.value
    assert result.audio.shape == sectioned.audio.shape
    before = int((span.start - 0.1) * RATE)
    assert np.array_equal(result.audio[:, :before], sectioned.audio[:, :before])
    assert painter.sections is None and painter.replace_section_button.disabled  # the new take's are not known yet


def test_add_section_at_the_end_makes_a_longer_take(turbo, sectioned):
    painter = RepaintPainter(sectioned, turbo)
    painter.new_section.value = "[bridge]\nover the bridge we go"
    painter.where.value = "end"
    painter.section_seconds.value = 4.0
    painter.seed.value = "4"
    painter.add_section_button.click()
    result, = painter.job.result(timeout=120)
    assert result.audio.shape[-1] == sectioned.audio.shape[-1] + 4 * RATE
    assert result.task["sections"][0] == {"section": "bridge", "where": "end", "seconds": 4.0, "at": 20.0,
                                          "lyrics": "[bridge]\nover the bridge we go"}
    assert result.blueprint.lyrics.endswith("[bridge]\nover the bridge we go")
    assert painter.take is result and painter.comparison.compare_regions == [(20.0, 24.0)]
    assert "added bridge (4 s, end)" in painter.status.value


def test_add_section_after_a_section_inserts_it_there(turbo, sectioned):
    painter = RepaintPainter(sectioned, turbo)
    painter.new_section.value = "[bridge]\nover it"
    painter.where.value = "after chorus 1"
    painter.section_seconds.value = 2.0
    painter.add_section_button.click()
    result, = painter.job.result(timeout=120)
    at = KNOWN.named("chorus 1").end
    assert result.audio.shape[-1] == sectioned.audio.shape[-1] + 2 * RATE
    assert painter.comparison.compare_regions == [(at, at + 2.0)]  # the new part, where it went in


def test_section_errors_show_in_the_status_line_by_name(turbo, song, sectioned):
    bare = RepaintPainter(with_notes(song, {}), turbo)
    assert bare.replace_section() is None
    assert "find the sections first (Find sections)" in bare.status.value
    painter = RepaintPainter(sectioned, turbo)
    painter.section_picker.value = "chorus 1"
    painter.section_lines.value = "\n".join(["la la la la"] * 4)
    assert painter.replace_section() is None and painter.job is None
    said = html.unescape(painter.status.value)
    assert "chorus 1 (4 lines) need about 8.0 s but the section is 3.5 s long" in said
    assert "tick 'let it grow' to let the section grow by 6 s" in said
    painter.new_section.value = "no tag here"
    assert painter.add_section() is None
    assert "must start with its [tag] line" in painter.status.value
    painter.select_section("chorus 3")
    said = html.unescape(painter.status.value)
    assert "section 'chorus 3' is not in take" in said and "its sections are intro, verse 1, chorus 1" in said
    painter.new_section.value = "[bridge]\nx"
    painter.section_seconds.value = 590
    assert painter.add_section() is None and "seconds must be between 0.04 and 580" in painter.status.value


def test_instrumental_takes_say_sections_need_lyrics(turbo):
    take, = turbo.generate(Blueprint(caption="ambient pads", instrumental=True, duration=10), seeds=3)
    painter = RepaintPainter(take, turbo)
    assert "sections need lyrics" in painter.sections_note.value
    assert painter.find_sections_button.disabled and painter.add_section_button.disabled
    assert painter.find_sections() is None and "sections need lyrics" in painter.status.value
    assert painter.add_section() is None and "sections need lyrics" in painter.status.value
    listen = ListenPanel(state=WorkbenchState(engine=turbo, current_take=take), follow_current=True)
    listen.find_sections_button.click()  # disabled in the browser; from Python it still only explains
    assert listen.player.sections == [] and "sections need lyrics" in listen.sections_note.value


# ----------------------------------------------------------------------------------------- the player
@pytest.mark.parametrize("custom", [True, False])
def test_the_player_names_the_section_it_plays(sectioned, custom):
    player = SyncedPlayer(sectioned, use_custom_widget=custom)
    assert [b["name"] for b in player.sections] == NAMES
    for name in ("verse 1", "chorus 1", "outro"):
        section = KNOWN.named(name)
        player.position = (section.start + section.end) / 2
        assert player.current_section == name
    if not custom:  # the core player highlights it in its row of names
        assert "class='section active'" in player.canvas.section_names.value
        active = player.canvas.section_names.value.split("class='section active'")[1]
        assert active.split(">", 1)[1].startswith("outro<")
    player.play_section("chorus 2")
    chorus = KNOWN.named("chorus 2")
    assert player.position == chorus.start and player.playing and player.canvas.stop_at == chorus.end
    assert player.current_section == "chorus 2"
    if not custom:  # the core ticker stops at the end of the section
        player.position = chorus.end + 0.05
        assert not player.playing and player.canvas.stop_at == -1.0
    with pytest.raises(TaskError, match="'bridge' is not in this take: its sections are intro, verse 1"):
        player.play_section("bridge")
    bare = SyncedPlayer(with_notes(sectioned, {}), use_custom_widget=custom)
    assert bare.sections == [] and bare.current_section is None


def test_look_tab_plays_a_section_and_finds_them_for_the_repaint_tab(turbo, song, tmp_path):
    store = TakeStore(tmp_path)
    store.save(song)
    take = store.load(song.id)
    state = WorkbenchState(engine=turbo, store=store, current_take=take)
    listen = ListenPanel(state=state, follow_current=True)
    painter = RepaintPainter(state=state)
    painter.set_visible(False)  # the Repaint tab is behind the Look tab
    assert listen.player.sections == [] and listen.play_section_button.disabled
    listen.find_sections_button.click()
    sections = listen.job.result(timeout=120)
    assert [b["name"] for b in listen.player.sections] == sections.names
    assert list(listen.section_picker.options) == sections.names
    assert painter.sections == sections and list(painter.section_picker.options) == sections.names  # the other tab
    assert painter.canvas.sections == []  # hidden: drawn when shown
    painter.set_visible(True)
    assert painter.canvas.sections == section_bands(sections)
    listen.section_picker.value = sections.names[1]
    listen.play_section_button.click()
    section = sections.named(sections.names[1])
    assert listen.player.position == section.start and listen.player.playing
    assert listen.player.current_section == section.name and f"playing {section.name}" in listen.status.value
