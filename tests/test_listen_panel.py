"""ListenPanel and SyncedPlayer from Python: badges, Measure / Score / LRC off the kernel thread, sorting,
the synced player's traits and its core-widget fallback."""

import numpy as np
import pytest

from acestep_engine import Blueprint, GenerationCancelled, TakeStore
from acestep_engine.lm import parse_lrc

LYRICS = "[verse]\nfirst line sung\nsecond line sung\n[chorus]\nthird line sung"
LRC = "[00:01.00]first line sung\n[00:04.50]second line sung\n[00:08.00]third line sung\n"


@pytest.fixture(scope="module")
def takes(turbo):
    bp = Blueprint(caption="test pop", lyrics=LYRICS, bpm=100, keyscale="C major", language="en", duration=10)
    return turbo.generate(bp, batch_size=2, seeds=[5, 6])


@pytest.fixture()
def store(tmp_path, takes):
    store = TakeStore(tmp_path / "takes")
    for take in takes:
        store.save(take)
    return store


def test_badges_scores_sorting_and_lrc(store, turbo, planner, takes):
    from workbench.listen import ListenPanel

    panel = ListenPanel(store, turbo, planner, use_custom_widget=False)
    a, b = (t.id for t in takes)
    assert set(panel.row_buttons) == {a, b} and "not measured" in panel.badges[a].value
    panel.row_buttons[a]["measure"].click()
    panel.job.result(timeout=300)
    adherence = store.record(a)["notes"]["adherence"]
    assert adherence["bpm_asked"] == 100 and adherence["key_asked"] == "C major"
    assert "100 →" in panel.badges[a].value and "LUFS" in panel.badges[a].value
    assert "not measured" in panel.badges[b].value
    panel.measure_all_button.click()
    panel.job.result(timeout=300)
    assert "adherence" in store.record(b)["notes"]

    panel.row_buttons[b]["score"].click()
    panel.job.result(timeout=300)
    panel.score_all_button.click()  # only the take without a score is scored
    panel.job.result(timeout=300)
    scores = {i: store.record(i)["notes"]["quality_score"]["score"] for i in (a, b)}
    assert all(0 <= s <= 1 for s in scores.values()) and "score 0." in panel.badges[a].value
    panel.sort.value = "score"
    assert panel.sorted_ids() == sorted(scores, key=lambda i: -scores[i])
    panel.sort.value = "oldest"
    assert panel.sorted_ids() == [a, b]

    player = panel.select(a)
    panel.row_buttons[a]["lrc"].click()
    panel.job.result(timeout=300)
    lrc = store.record(a)["notes"]["lrc"]
    assert [text for _, text in parse_lrc(lrc)] == ["first line sung", "second line sung", "third line sung"]
    assert [text for _, text in player.lines] == ["first line sung", "second line sung", "third line sung"]
    assert "lyrics aligned" in panel.badges[a].value and panel.progress.value == 1000


def test_cancel_and_missing_planner(store, turbo, planner, takes):
    from workbench.listen import ListenPanel

    panel = ListenPanel(store, turbo, None, use_custom_widget=False)
    assert panel.score_all_button.disabled and all(r["score"].disabled for r in panel.row_buttons.values())
    assert panel.score(takes[0].id) is None and "needs the 5 Hz LM planner" in panel.status.value
    panel.set_planner(planner)
    job = panel.score_all()
    panel.cancel_button.click()
    with pytest.raises(GenerationCancelled):
        job.result(timeout=300)
    assert "cancelled" in panel.status.value and panel.cancel_button.disabled


def test_instrumental_takes_have_no_lrc_button(tmp_path, turbo):
    from workbench.listen import ListenPanel

    store = TakeStore(tmp_path)
    take = turbo.generate(Blueprint(caption="pads", instrumental=True, duration=10), seeds=1)[0]
    store.save(take)
    panel = ListenPanel(store, turbo, use_custom_widget=False)
    assert panel.row_buttons[take.id]["lrc"].disabled


def test_synced_player_traits(takes):
    from workbench.synced_player import SyncedPlayer

    a, b = takes
    a.notes["lrc"] = LRC
    player = SyncedPlayer(a, use_custom_widget=True)
    canvas = player.canvas
    # no audio in the widget state until the browser asks for a side's audio (Play)
    assert canvas.audio_a == b"" and canvas.audio_b == b"" and canvas.image_a.startswith("data:image/png")
    canvas._message(canvas, {"event": "load", "side": "a"}, [])
    assert canvas.audio_a[:4] == b"RIFF" and canvas.audio_b == b""
    player.release()
    assert canvas.audio_a == b"" and not canvas.playing
    assert canvas.lines_a == [[1.0, "first line sung"], [4.5, "second line sung"], [8.0, "third line sung"]]
    assert 0.0 < canvas.plot_left < canvas.plot_right < 1.0 and canvas.duration_a == pytest.approx(a.duration)
    assert player.current_line == -1
    player.position = 5.0
    assert canvas.position == 5.0 and player.current_line == 1
    player.set_takes(a, b, compare_lrc="[00:02.00]other take")
    player.current = "b"
    assert player.lines == [[2.0, "other take"]] and player.current_line == 0 and canvas.label_b.startswith("B:")
    player.play()  # playing from Python sends the shown side's audio
    assert canvas.playing and canvas.audio_b[:4] == b"RIFF" and canvas.audio_a == b""
    assert "export default" in canvas._esm


def test_core_widget_fallback_moves_playhead_highlights_and_switches(takes):
    from workbench.synced_player import CorePlayer, SyncedPlayer

    a, b = takes
    a.notes["lrc"] = LRC
    player = SyncedPlayer(a, compare=b, compare_lrc="[00:00.00]b only", use_custom_widget=False)
    core = player.canvas
    assert isinstance(core, CorePlayer) and core.ticker.max == round(a.duration / core.TICK_S)
    assert "class='line active'" not in core.lyrics.value
    core.slider.value = 50  # what the Play ticker does in the browser, 0.1 s per tick
    assert player.position == pytest.approx(5.0) and player.current_line == 1
    assert "class='line active' style='background:#ffe08a;font-weight:bold'>second line sung" in core.lyrics.value
    left_5 = float(core.marker.value.split("left:")[1].split("%")[0])
    player.position = 8.5  # seeking from Python moves the slider and the playhead
    assert core.slider.value == 85 and float(core.marker.value.split("left:")[1].split("%")[0]) > left_5
    assert ">third line sung" in core.lyrics.value.split("active")[1]
    core.side.value = "b"  # A/B: same position, B's lyrics and player
    assert player.current == "b" and player.position == pytest.approx(8.5)
    assert "b only" in core.lyrics.value and core.audio_box.children[0] is core.players["b"]
    core.ticker.playing = True
    assert player.playing
    player.pause()
    assert not core.ticker.playing


def test_look_tab_plays_the_current_batch_and_cards_show_the_badges(turbo, planner, tmp_path):
    from workbench import Workbench
    from workbench.views import close_tree

    bench = Workbench(turbo, TakeStore(tmp_path / "takes"), planner=planner,
                      blueprint=Blueprint(caption="look", lyrics=LYRICS, bpm=100, duration=10, language="en"))
    try:
        panel = bench.generate_panel
        panel.batch_size.value, panel.seeds.value = 2, "11"
        panel.generate_button.click()
        first, second = panel.job.result(timeout=300)
        bench.tabs.selected_index = 2  # Look: drawn when shown
        listen = bench.look.listen
        assert set(listen.sorted_ids()) == {first.id, second.id}  # the current take's batch
        assert listen.player.take.id == bench.current_take.id and listen.player.is_custom
        listen.player.play()
        assert listen.player.canvas.audio_a[:4] == b"RIFF"
        bench.tabs.selected_index = 1  # a hidden tab holds no audio
        assert listen.player.canvas.audio_a == b"" and not listen.player.playing
        bench.tabs.selected_index = 2
        card = panel.results.cards[second.id]
        assert card.badge.layout.display == "none"  # nothing measured yet
        listen.row_buttons[second.id]["score"].click()
        listen.job.result(timeout=300)
        listen.row_buttons[second.id]["measure"].click()
        listen.job.result(timeout=300)
        assert "score 0." in card.badge.value and "100 →" in card.badge.value and card.badge.layout.display is None
        assert "score 0." in listen.badges[second.id].value
        listen.row_buttons[first.id]["compare"].click()  # A/B against the other take of the batch
        assert listen.player.compare.id == first.id and listen.player.current == "b"
        assert panel.generate_button.disabled is False and listen.cancel_button.disabled
    finally:
        close_tree(bench.widget)
