"""Panels driven from Python on the tiny checkpoint: set fields, click, wait for the worker, check."""

import html
import re
import stat
import threading

import pytest
import soundfile as sf

from acestep_engine import Blueprint, TakeStore
from workbench import BlueprintEditor, GeneratePanel, SpectrogramView, TakeCard
from workbench.generate import parse_seeds
from workbench.jobs import JobRunner

BP = Blueprint(caption="lo-fi piano", lyrics="[verse]\nhello", bpm=84, keyscale="F minor", timesignature=4,
               duration=10.0, language="en")


def test_editor_round_trips_a_blueprint():
    editor = BlueprintEditor(BP)
    assert editor.blueprint.validate() == BP.validate()
    assert editor.errors == {}


def test_editor_shows_invalid_values_inline_and_blocks_generation(turbo, tmp_path):
    editor = BlueprintEditor(BP)
    editor.bpm.value = "512"
    editor.duration.value = 3.0
    assert "bpm must be between 30 and 300 (got 512)" in editor.error_box.value
    assert "duration must be between 10 and 600 seconds (got 3.0)" in editor.error_box.value
    panel = GeneratePanel(turbo, editor, TakeStore(tmp_path))
    assert panel.generate() is None
    assert "bpm must be between 30 and 300 (got 512)" in panel.status.value
    assert len(TakeStore(tmp_path)) == 0
    editor.bpm.value = "120"
    editor.duration.value = 10.0
    assert editor.error_box.value == ""


def test_editor_json_load_and_save(tmp_path):
    editor = BlueprintEditor(BP)
    editor.path.value = str(tmp_path / "song.json")
    editor.save_button.click()
    assert "saved" in editor.file_status.value
    other = BlueprintEditor()
    other.path.value = str(tmp_path / "song.json")
    other.load_button.click()
    assert other.blueprint.validate() == BP.validate()
    other.path.value = str(tmp_path / "missing.json")
    other.load_button.click()
    assert other.file_status.value.startswith("not loaded:")


def test_plan_buttons_are_gated_run_the_planner_and_mark_planned_fields(planner):
    editor = BlueprintEditor(Blueprint(caption="x", lyrics="[verse]\nla", duration=20))
    assert editor.fill_button.disabled and "No planner loaded" in editor.plan_status.value
    assert editor.load_planner_button.layout.display == "none"  # nothing to load it with yet
    editor.planner_loader = lambda: planner
    editor.set_planner(None)
    assert editor.load_planner_button.layout.display is None
    editor.load_planner_button.click()
    assert editor.planner is planner and not editor.fill_button.disabled

    editor.fill_button.click()
    editor.plan_job.result(timeout=120)
    assert editor.planned_fields == {"bpm", "keyscale", "timesignature", "language"}
    assert editor.caption.value == "x" and editor.duration.value == 20.0 and editor.bpm.value
    assert editor.bpm.description.endswith("✦") and not editor.caption.description.endswith("✦")
    assert "planned ✦: <b>bpm, keyscale, language, timesignature</b>" in editor.plan_status.value
    assert editor.blueprint.planned == ("bpm", "keyscale", "language", "timesignature")
    editor.bpm.value = "99"  # the user takes the field back
    assert "bpm" not in editor.planned_fields and editor.bpm.description == "BPM"

    editor.idea.value = "rainy night"
    editor.instrumental.value = True
    editor.inspire_button.click()
    planned = editor.plan_job.result(timeout=120)
    assert editor.blueprint.validate() == planned and planned.instrumental and editor.caption.value


def test_planning_can_be_cancelled_and_bad_blueprints_are_refused(planner):
    editor = BlueprintEditor(Blueprint(caption="keep me", bpm=None), planner=planner)
    editor.idea.value = "a long idea"
    job = editor.plan("inspire")
    job.cancel()
    job.wait(120)
    assert "cancelled" in editor.plan_status.value and editor.caption.value == "keep me"
    editor.bpm.value = "999"
    assert editor.plan("complete") is None
    assert "fix the blueprint first: bpm must be between 30 and 300" in editor.plan_status.value


def test_generate_panel_runs_on_a_worker_and_saves_takes(turbo, tmp_path):
    store = TakeStore(tmp_path)
    panel = GeneratePanel(turbo, BlueprintEditor(BP), store)
    assert panel.steps.value == 8 and panel.shift.value == 3.0 and panel.guidance.disabled
    panel.batch_size.value = 2
    panel.seeds.value = "5"
    panel.generate_button.click()
    takes = panel.job.result(timeout=120)
    assert panel.job.thread is not threading.main_thread()
    assert [t.seed for t in takes] == [5, 6] and len(store) == 2
    assert len(panel.results.children) == 2 and panel.progress.value == 1000
    assert "2 take(s)" in panel.status.value
    assert not panel.generate_button.disabled and panel.cancel_button.disabled


def test_second_generate_while_running_is_refused(turbo, tmp_path):
    panel = GeneratePanel(turbo, BlueprintEditor(BP), TakeStore(tmp_path))
    gate = threading.Event()
    original = turbo.generate

    def slow_generate(*args, **kwargs):
        gate.wait(30)
        return original(*args, **kwargs)

    turbo.generate = slow_generate
    try:
        job = panel.generate()
        again = panel.generate()
        assert again is job and "already running" in panel.status.value
    finally:
        gate.set()
        job.result(timeout=120)
        del turbo.generate


def test_cancel_stops_and_saves_nothing(turbo, tmp_path):
    store = TakeStore(tmp_path)
    panel = GeneratePanel(turbo, BlueprintEditor(BP), store)
    original = turbo.generate

    def generate_then_cancel(*args, **kwargs):
        progress = kwargs["progress"]

        def cancel_at_step_2(p):
            progress(p)
            if p.stage == "denoise" and p.step == 2:
                panel.cancel_button.click()

        kwargs["progress"] = cancel_at_step_2
        return original(*args, **kwargs)

    turbo.generate = generate_then_cancel
    try:
        panel.generate_button.click()
        panel.job.wait(120)
    finally:
        del turbo.generate
    assert "cancelled" in panel.status.value and len(store) == 0 and panel.results.children == ()


def test_errors_appear_in_the_panel(turbo, tmp_path):
    panel = GeneratePanel(turbo, BlueprintEditor(BP), TakeStore(tmp_path))
    panel.task.value = "cover"
    assert "no source" in panel.source_label.value
    panel.generate_button.click()
    assert "cover needs a source" in panel.status.value
    panel.task.value = "text2music"
    panel.seeds.value = "one, two"
    panel.generate_button.click()
    assert "seeds must be whole numbers" in panel.status.value


def test_use_as_source_then_cover_and_recall(turbo, tmp_path):
    store = TakeStore(tmp_path)
    editor = BlueprintEditor(BP)
    panel = GeneratePanel(turbo, editor, store)
    panel.seeds.value = "1"
    panel.generate_button.click()
    first, = panel.job.result(timeout=120)
    card = TakeCard(first, on_recall=panel.recall, on_use_as_source=panel.set_source)
    card.source_button.click()
    assert panel.source is first
    panel.task.value = "cover"
    panel.cover_strength.value = 0.5
    panel.generate_button.click()
    cover, = panel.job.result(timeout=120)
    assert cover.parent_id == first.id and store.lineage(cover.id) == [first.id, cover.id]
    editor.caption.value = "something else"
    card.recall_button.click()
    assert editor.caption.value == BP.caption


def test_spectrogram_view_renders_png_with_a_b_players(turbo):
    a, b = turbo.generate(BP, batch_size=2, seeds=[1, 2])
    view = SpectrogramView(a, compare=b)
    assert view.image.value[:8] == b"\x89PNG\r\n\x1a\n" and len(view.players.children) == 2
    before = view.image.value
    view.beat_grid.value = False
    assert view.image.value != before


def test_parse_seeds():
    assert parse_seeds("", 2) is None and parse_seeds("42", 3) == 42 and parse_seeds("1, 2 3", 3) == [1, 2, 3]


def test_job_runner_reports_errors_through_result():
    runner = JobRunner()

    def fail(cancel):
        raise ValueError("boom")

    job = runner.start("fail", fail)
    with pytest.raises(ValueError, match="boom"):
        job.result(timeout=5)
    assert not runner.busy


def test_take_browser_lists_filters_renames_deletes_with_undo_and_exports(turbo, tmp_path):
    from workbench import TakeBrowser

    store = TakeStore(tmp_path / "takes")
    first, second = turbo.generate(BP, batch_size=2, seeds=[1, 2])
    for take in (first, second):
        store.save(take)
    recalled = []
    browser = TakeBrowser(store, on_recall=recalled.append)
    assert len(browser.takes.options) == 2 and browser.selected == second.id  # newest first
    browser.search.value = "nothing matches this"
    assert browser.takes.options == ()
    browser.search.value = ""
    browser.select(first.id)
    browser.name.value = "keeper"
    browser.rename_button.click()
    assert store.record(first.id)["name"] == "keeper"
    browser.export_path.value = str(tmp_path / "out")
    assert [value for _, value in browser.export_format.options] == ["wav", "flac", "mp3", "ogg", "opus"]
    for fmt, suffix in (("flac", "flac"), ("mp3", "mp3"), ("ogg", "ogg"), ("opus", "opus")):
        browser.export_format.value = fmt
        browser.export_button.click()
        written = tmp_path / "out" / f"keeper.{suffix}"
        assert written.is_file() and sf.info(str(written)).frames > 0, browser.status.value
        assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(next((tmp_path / "takes").glob(f"{first.id}.*")).stat().st_mode)
    browser.compare_with.value = second.id
    assert "SpectrogramView" not in browser.status.value and len(browser.detail.children) == 1
    browser.recall_button.click()
    assert recalled[0].id == first.id
    browser.delete_button.click()
    assert first.id not in store and not browser.undo_button.disabled
    browser.undo_button.click()
    assert first.id in store and browser.selected == first.id
    assert browser.problems.value == ""

    # A sidecar damaged outside the workbench: its take leaves the list, and the tab says which file and why.
    sidecar = tmp_path / "takes" / f"{second.id}.json"
    sidecar.write_text("{ not json")
    browser.refresh_button.click()
    assert [value for _, value in browser.takes.options] == [first.id]
    assert "1 file(s) in the folder are not usable takes" in browser.problems.value
    assert html.escape(str(sidecar)) in browser.problems.value


def test_workbench_composes_panels_around_one_store(turbo, tmp_path):
    from workbench import Workbench

    bench = Workbench(turbo, TakeStore(tmp_path))
    assert "Demo checkpoint" in bench.header.banner.value and "acestep-v15-turbo" in bench.header.models.value
    machine = bench.header.machine.value  # device, dtype, memory tier, the LM size to plan with
    assert "cpu" in machine and "float32" in machine and "all on device" in machine
    assert "LM to plan with: acestep-5Hz-lm-0.6B" in machine
    bench.state.blueprint = Blueprint(caption="long", duration=240)
    assert "a 240 s take: all on device" in bench.header.machine.value
    bench.generate_panel.seeds.value = "3"
    bench.generate_panel.generate_button.click()
    take, = bench.generate_panel.job.result(timeout=120)
    assert bench.current_take is take and bench.browser.selected == take.id
    assert bench.look.listen.player is None  # the Look tab is not shown: it draws when it is
    bench.tabs.selected_index = 2
    assert bench.look.listen.player.take is take and bench.look.listen.player.canvas.image_a.startswith("data:image/png")
    bench.use_as_source(take)
    assert bench.generate_panel.source is take and bench.generate_panel.task.value == "cover"
    bench.editor.caption.value = "changed"
    bench.recall(take)
    assert bench.editor.caption.value == take.blueprint.caption and bench.tabs.selected_index == 0


def test_workbench_editing_tabs_follow_the_current_take(turbo, tmp_path):
    from workbench import Workbench

    bench = Workbench(turbo, TakeStore(tmp_path))
    assert "generate or select a take first" in bench.painter.heading.value
    assert bench.painter.controls.layout.display == "none"
    first, second = turbo.generate(BP, batch_size=2, seeds=[1, 2])
    bench.set_current_take(first)
    assert bench.painter.take is first and bench.cover_lab.source is first and bench.tracks.source is first
    bench.set_current_take(second)
    assert bench.painter.take is second and bench.tracks.source is second
    assert [bench.tabs.get_title(i) for i in range(8)] == ["Blueprint", "Generate", "Look", "Repaint", "Cover",
                                                           "Tracks", "Takes", "LoRA"]


def test_take_restore_and_as_source(turbo):
    take, = turbo.generate(BP, seeds=1)
    restored = take.restore()
    assert restored == take.blueprint and restored is not take.blueprint
    assert take.as_source() is take


def test_recall_restores_blueprint_task_and_seed(turbo, tmp_path):
    from acestep_engine import Cover
    from workbench import Workbench

    store = TakeStore(tmp_path)
    bench = Workbench(turbo, store)
    source, = turbo.generate(BP, seeds=5)
    store.save(source)
    cover, = turbo.generate(BP.replace(caption="jazz"), Cover(source, strength=0.25), seeds=9)
    store.save(cover)
    bench.recall(cover)
    assert bench.editor.caption.value == "jazz" and bench.generate_panel.seeds.value == "9"
    assert bench.generate_panel.task.value == "cover" and bench.generate_panel.source.id == source.id
    assert bench.generate_panel.cover_strength.value == 0.25


def test_workbench_loads_the_planner_beside_the_dit_and_thinks_first(turbo, planner, tmp_path):
    from workbench import Workbench

    bench = Workbench(turbo, TakeStore(tmp_path))
    assert bench.generate_panel.think.disabled and "needs a planner" in bench.generate_panel.think_note.value
    bench.editor.load_planner_button.click()  # finds acestep-5Hz-lm-0.6B next to the DiT
    assert bench.planner.name == "acestep-5Hz-lm-0.6B" and bench.planner.engine is turbo
    assert not bench.generate_panel.think.disabled and not bench.lora_panel.use_planner.disabled

    bench.set_planner(planner)
    bench.editor.set_blueprint(Blueprint(caption="x", duration=10, bpm=90))
    panel = bench.generate_panel
    panel.think.value = True
    panel.batch_size.value = 2
    panel.seeds.value = "7"
    panel.generate_button.click()
    takes = panel.job.result(timeout=240)
    assert [t.seed for t in takes] == [7, 8]
    expected = planner.codes_batch(Blueprint(caption="x", duration=10, bpm=90), 2, seeds=7)
    assert [t.task["audio_codes"] for t in takes] == expected
    assert all(t.duration == pytest.approx(10.0, abs=0.05) for t in takes)


def test_the_words_a_musician_reads(turbo, tmp_path):
    """Item 10 of issue 22: ranges instead of silent clamps, no repr in the header, plain key and
    language lists, messages that follow what was done."""
    from workbench import RepaintPainter, Workbench
    from workbench.editor import LANGUAGE_NAMES

    bench = Workbench(turbo, TakeStore(tmp_path / "takes"), blueprint=BP)
    try:
        models = bench.header.models.value
        shown = re.sub(r"title='[^']*'", "", models)  # the full description stays in the tooltip
        assert "<b>turbo</b> &middot; CPU fp32 &middot; demo weights" in shown and "Engine(" not in shown
        assert "takes saved in <code>" in models
        keys = bench.editor.keyscale.options
        assert not any(k.split()[0] in ("B#", "Cb", "E#", "Fb") for k in keys if k != "auto") and "F# minor" in keys
        languages = dict((v, label) for label, v in bench.editor.language.options)
        assert languages["yue"] == "Cantonese (yue)" and languages["ht"] == "Haitian Creole (ht)"
        assert set(languages) == set(LANGUAGE_NAMES)
        panel = bench.generate_panel
        for steps in (0, 100):  # refused with the range, never clamped
            panel.steps.value = steps
            assert panel.generate() is None and f"steps must be between 1 and 20 (got {steps})" in panel.status.value
        panel.steps.value = 8
        panel.seeds.value = "-1"
        assert panel.generate() is None and "seeds must be whole numbers &gt;= 0 (got -1)" in panel.status.value
        panel.seeds.value = "2"
        take, = panel.generate().result(timeout=120)
        bench.use_as_source(take)  # says what it did
        assert panel.task.value == "cover" and "press Generate to cover it" in panel.status.value
    finally:
        bench.close()
    painter = RepaintPainter(take, turbo)
    assert painter.repaint() is None and "paint a region" in painter.status.value
    painter.regions = [(1.0, 2.0)]  # the complaint goes once a region is painted
    assert "paint a region" not in painter.status.value
    painter.regions = []
    painter.extend_right.value = 2.0
    painter.repaint_button.click()
    painter.job.result(timeout=120)
    assert painter.status.value.startswith("extended:")


def test_inspire_keeps_one_step_of_undo(turbo, planner, tmp_path):
    editor = BlueprintEditor(BP, planner=planner)
    typed = editor.blueprint
    assert editor.undo_plan_button.disabled
    editor.idea.value = "a song about trains"
    editor.inspire_button.click()
    planned = editor.plan_job.result(timeout=300)
    assert editor.blueprint.caption == planned.caption and not editor.undo_plan_button.disabled
    editor.undo_plan_button.click()
    assert editor.blueprint == typed and editor.undo_plan_button.disabled
    assert "back as it was" in editor.plan_status.value
