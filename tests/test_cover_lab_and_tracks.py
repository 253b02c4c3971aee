"""CoverLab iterations with lineage and replay; TracksPanel with capability gating."""

import numpy as np
import pytest

from acestep_engine import Blueprint, Engine, TakeStore
from workbench import CoverLab, TracksPanel

BP = Blueprint(caption="bossa nova guitar", bpm=96, keyscale="D major", duration=10.0)


@pytest.fixture(scope="module")
def take(turbo):
    take, = turbo.generate(BP, seeds=31)
    return take


def test_cover_the_cover_and_replay_a_step(turbo, take, tmp_path):
    store = TakeStore(tmp_path)
    store.save(take)
    lab = CoverLab(take, turbo, store)
    lab.editor.caption.value = "synthwave"
    lab.strength.value = 0.5
    lab.seed.value = "7"
    lab.generate_button.click()
    first, = lab.job.result(timeout=120)
    assert first.parent_id == take.id and first.blueprint.caption == "synthwave"
    assert first.task["strength"] == 0.5
    assert lab.source is first and [t.id for t in lab.lineage] == [take.id, first.id]  # the cover is current
    lab.generate_button.click()
    second, = lab.job.result(timeout=120)
    assert store.lineage(second.id) == [take.id, first.id, second.id]
    lab.replay(first)
    again, = lab.job.result(timeout=120)
    assert np.array_equal(again.audio, first.audio) and "replayed" in lab.status.value
    lab.set_source(first)  # back to an earlier step: the lineage is cut there
    assert [t.id for t in lab.lineage] == [take.id, first.id]
    other, = turbo.generate(BP, seeds=99)
    lab.set_source(other)  # an unrelated take starts a new lineage
    assert lab.lineage == [other]


def test_cover_lab_reports_bad_input(turbo, take):
    lab = CoverLab(take, turbo)
    lab.editor.bpm.value = "5"
    assert lab.cover() is None and "bpm must be between 30 and 300" in lab.status.value


def test_tracks_are_gated_on_turbo_and_load_base_on_request(tiny_dir, take, tmp_path):
    engine = Engine.from_pretrained(tiny_dir, device="cpu")
    panel = TracksPanel(take, engine, TakeStore(tmp_path))
    assert panel.run_button.disabled and "need the acestep-v15-base checkpoint" in panel.gate.value
    assert panel.run() is None and "load the acestep-v15-base checkpoint first" in panel.status.value
    panel.load_base_button.click()
    assert not panel.run_button.disabled and panel.engine.variant.name == "acestep-v15-base"
    panel.extract_tracks.value = ("vocals", "drums")
    panel.seed.value = "1"
    panel.run_button.click()
    takes = panel.job.result(timeout=300)
    assert [t.task["track"] for t in takes] == ["vocals", "drums"]
    assert all(t.parent_id == take.id for t in takes) and len(panel.results.children) == 2


def test_lego_region_and_complete(base, take, tmp_path):
    panel = TracksPanel(take, base, TakeStore(tmp_path))
    panel.operation.value = "lego"
    panel.lego_track.value = "guitar"
    panel.lego_start.value, panel.lego_end.value = "2", "6"
    panel.run_button.click()
    lego, = panel.job.result(timeout=300)
    assert (lego.task["track"], lego.task["start"], lego.task["end"]) == ("guitar", 2.0, 6.0)
    panel.operation.value = "complete"
    panel.complete_tracks.value = ("drums", "bass", "keyboard")
    panel.run_button.click()
    complete, = panel.job.result(timeout=300)
    assert complete.task["tracks"] == ["drums", "bass", "keyboard"]
    panel.operation.value = "lego"
    panel.lego_start.value = "soon"
    panel.run_button.click()
    assert "the region must be two numbers of seconds" in panel.status.value
