"""Render many: a plan of blueprints rendered into one take store, resumable, split between processes.

On the tiny checkpoints, 10 s takes and one or two denoising steps, so each take costs about a second.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from acestep_engine import Blueprint, Engine, TakeStore
from acestep_engine.errors import PlanError
from acestep_engine.render import (RenderProgress, load_plan, plan_from_records, rendered_keys, summary_path,
                                   takes_by_job)
from acestep_engine.render.board import ProgressBoard

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"duration": 10, "steps": 1}


def write_plan(folder: Path, lines, name="plan.jsonl") -> Path:
    path = folder / name
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def render_env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")


@pytest.fixture
def calls(turbo, monkeypatch):
    """The seeds of every `turbo.generate` call a test makes (the engine still generates)."""
    seen = []
    original = turbo.generate

    def generate(blueprint, task=None, batch_size=1, seeds=None, **kwargs):
        seen.append(list(seeds))
        return original(blueprint, task, batch_size=batch_size, seeds=seeds, **kwargs)

    monkeypatch.setattr(turbo, "generate", generate)
    return seen


# ------------------------------------------------------------------------------------------------ the plan

def test_a_plan_with_good_and_bad_lines_renders_the_good_ones_and_names_the_bad_ones(turbo, tmp_path, calls):
    store = TakeStore(tmp_path / "takes")
    plan = write_plan(tmp_path, [
        {"caption": "lo-fi piano", "seeds": [1, 2], "name": "lofi", **QUICK},
        "# comments and blank lines are skipped",
        "",
        {"caption": "too fast", "bpm": 512, **QUICK},
        '{"caption": "half a line",',
        {"caption": "typo", "stepz": 2},
        {"caption": "a cover", "task": "cover", "source": "missing.flac", **QUICK},
        {"caption": "too many steps", "duration": 10, "steps": 99},
        {"caption": "twice", "seeds": [3, 3]},
        {"caption": "tracks", "task": "extract", "source": "missing.flac", "variant": "turbo"},
        {"caption": "no such task", "task": "remix"},
        {"caption": "city pop", "seed": 5, **QUICK},
    ])
    summary = turbo.render_many(plan, store)

    assert [(p.line, p.field) for p in summary.problems] == [
        (4, "bpm"), (5, "json"), (6, "stepz"), (7, "source"), (8, "steps"), (9, "seeds"), (10, "source"),
        (11, "task")]
    messages = [str(p) for p in summary.problems]
    assert messages[0] == "line 4: bpm must be between 30 and 300 (got 512)"
    assert "did you mean 'steps'?" in messages[2]
    assert messages[3] == f"line 7: source: no file {tmp_path / 'missing.flac'}"
    assert messages[4] == "line 8: steps must be between 1 and 20 (got 99)"
    assert messages[5] == "line 9: seeds must not repeat (got 3 more than once)"
    assert [p.line for p in PlanError(summary.problems, "x").problems] == [4, 5, 6, 7, 8, 9, 10, 11]

    assert calls == [[1, 2], [5]]
    assert len(summary.rendered) == 3 and not summary.failed and not summary.skipped and not summary.ok
    records = store.list()
    assert sorted(r["seed"] for r in records) == [1, 2, 5]
    marks = {r["seed"]: r["notes"]["render"] for r in records}
    assert marks[1]["line"] == marks[2]["line"] == 1 and marks[5]["line"] == 12
    assert marks[1]["job"] == marks[2]["job"] != marks[5]["job"]
    assert len({m["key"] for m in marks.values()}) == 3
    assert {r["name"] for r in records if r["seed"] in (1, 2)} == {"lofi (seed 1)", "lofi (seed 2)"}

    saved = json.loads(summary_path(store, "plan").read_text())
    assert saved["counts"] == {"rendered": 3, "skipped": 0, "failed": 0, "not started": 0, "bad lines": 8}
    assert saved["problems"][0] == {"line": 4, "field": "bpm", "message": "bpm must be between 30 and 300 (got 512)"}
    assert str(summary).startswith("plan: 3 rendered, 0 skipped, 0 failed, 8 bad lines in ")
    assert store.problems == []  # the summary sits in a dot folder the store does not list


def test_strict_refuses_every_bad_line_before_anything_renders(turbo, tmp_path, calls):
    store = TakeStore(tmp_path / "takes")
    plan = write_plan(tmp_path, [{"caption": "good", **QUICK}, {"caption": "bad", "duration": 5},
                                 {"caption": "bad", "language": "xx"}])
    with pytest.raises(PlanError) as caught:
        turbo.render_many(plan, store, strict=True)
    assert [(p.line, p.field) for p in caught.value.problems] == [(2, "duration"), (3, "language")]
    assert "line 2: duration must be between 10 and 600 seconds (got 5)" in str(caught.value)
    assert calls == [] and len(store) == 0


def test_a_csv_plan_is_read_with_its_line_numbers(tmp_path):
    path = tmp_path / "plan.csv"
    path.write_text("caption,duration,seeds,bpm,steps,timesignature,name\n"
                    "lo-fi piano,10,1;2;3,84,2,4/4,lofi\n"
                    "\n"
                    "too fast,10,7,512,,,\n"
                    "\"a caption, with a comma\",12.5,9,,,,\n")
    plan = load_plan(path)
    assert [(job.line, job.seeds, job.blueprint.bpm, job.blueprint.timesignature, job.settings, job.name)
            for job in plan.jobs] == [(2, (1, 2, 3), 84, 4, {"steps": 2}, "lofi"), (5, (9,), None, None, {}, "")]
    assert plan.jobs[1].blueprint.caption == "a caption, with a comma" and plan.jobs[1].blueprint.duration == 12.5
    assert [str(p) for p in plan.problems] == ["line 4: bpm must be between 30 and 300 (got 512)"]

    bad_header = tmp_path / "bad.csv"
    bad_header.write_text("caption,durration\nx,10\n")
    with pytest.raises(PlanError, match="'durration' is not a plan field \\(did you mean 'duration'\\?\\)"):
        load_plan(bad_header)
    with pytest.raises(PlanError, match="a render plan must be a .jsonl or .csv file"):
        load_plan(tmp_path / "plan.txt")


def test_count_gives_seeds_derived_from_the_line_so_a_rerun_asks_for_the_same(tmp_path):
    lines = [{"caption": "hook", "count": 3}, {"caption": "hook", "count": 2, "seed": 100},
             {"caption": "other hook", "count": 3}]
    first, again = (plan_from_records(lines).jobs for _ in range(2))
    assert [job.seeds for job in first] == [job.seeds for job in again]
    assert first[1].seeds == (100, 101)
    assert len(set(first[0].seeds)) == 3 and first[0].seeds != first[2].seeds
    assert first[0].seeds[1] == first[0].seeds[0] + 1
    bad = plan_from_records([{"caption": "x", "count": 0}, {"caption": "x", "seeds": [1], "count": 2},
                             {"caption": "x", "seeds": [-1]}, {"blueprint": 7}, {}])
    assert [str(p) for p in bad.problems] == [
        "job 1: count must be between 1 and 1000 (got 0)",
        "job 2: give seeds (a list), or seed and/or count, not both",
        "job 3: seeds must be between 0 and 9223372036854775807 (got -1)",
        "job 4: blueprint must be a blueprint JSON file or an object of blueprint fields (got int)",
        "job 5: needs a blueprint: a blueprint file or object, or at least a caption"]


def test_a_blueprint_file_with_overrides_and_tasks_that_need_the_base_model(tmp_path):
    Blueprint(caption="hook", bpm=100, duration=30).save(tmp_path / "hook.json")
    (tmp_path / "song.wav").write_bytes(b"")  # only its existence is checked before loading
    plan = load_plan(write_plan(tmp_path, [
        {"blueprint": "hook.json", "duration": 12, "seed": 1},
        {"blueprint": "hook.json", "task": "extract_all", "source": "song.wav", "tracks": ["drums", "bass"]},
        {"blueprint": "hook.json", "task": "cover", "source": "song.wav", "strength": 2},
        {"blueprint": "hook.json", "task": "cover", "source": "song.wav", "track": "drums"},
    ]))
    hook, drums, bass = plan.jobs
    assert hook.blueprint.duration == 12 and hook.blueprint.bpm == 100
    assert [(j.task.name, j.task.track, j.variant) for j in (drums, bass)] == [
        ("extract", "drums", "acestep-v15-base"), ("extract", "bass", "acestep-v15-base")]
    assert [(p.line, p.field, p.message) for p in plan.problems] == [
        (3, "strength", "strength must be between 0 and 1 (got 2)"),
        (4, "track", "'track' is not a plan field of the cover task (its fields: audio_codes, noise_strength, "
                     "reference, source, strength)")]


# ------------------------------------------------------------------------------------------------ rendering

def test_a_rerun_skips_what_the_store_has_and_renders_only_what_is_new(turbo, tmp_path, calls):
    store = TakeStore(tmp_path / "takes")
    lines = [{"caption": "hook", "seeds": [1, 2], **QUICK}]
    first = turbo.render_many(lines, store, name="hooks")
    again = turbo.render_many(lines, store, name="hooks")
    assert calls == [[1, 2]]
    assert [o.take_id for o in again.skipped] == [o.take_id for o in first.rendered] and not again.rendered
    assert again.ok and first.ok

    more = turbo.render_many(lines + [{"caption": "hook", "seed": 3, **QUICK},
                                      {"caption": "hook", "seed": 1, **QUICK, "steps": 2}], store, name="hooks")
    assert calls == [[1, 2], [3], [1]]  # another setting is another job, even with the same seed
    assert len(more.skipped) == 2 and len(more.rendered) == 2 and len(store) == 4
    assert set(rendered_keys(store)) == {o.key for o in more.outcomes}


def test_jobs_that_share_a_blueprint_and_settings_render_in_one_forward(turbo, tmp_path, calls):
    store = TakeStore(tmp_path / "takes")
    lines = [{"caption": "shared", "seeds": [11, 12], **QUICK}, {"caption": "other", "seed": 4, **QUICK},
             {"caption": "shared", "seed": 13, **QUICK}]
    summary = turbo.render_many(lines, store, max_batch=8)
    assert calls == [[11, 12, 13], [4]]
    assert [job["lines"] for job in summary.jobs] == [[1, 3], [2]]
    batched = store.load(next(o.take_id for o in summary.rendered if o.seed == 12))
    alone, = turbo.generate(Blueprint(caption="shared", duration=10), seeds=[12], steps=1)
    np.testing.assert_allclose(batched.latents, alone.latents, atol=1e-4)  # seeds draw their own noise

    calls.clear()
    turbo.render_many([{"caption": "shared", "seeds": [21, 22, 23], **QUICK}], store, max_batch=2)
    assert calls == [[21, 22], [23]]


def test_sources_by_take_id_and_a_job_on_another_variant(turbo, tmp_path):
    store = TakeStore(tmp_path / "takes")
    first = turbo.render_many([{"caption": "source", "seed": 1, **QUICK}], store, name="source")
    source_id = first.rendered[0].take_id
    summary = turbo.render_many([
        {"caption": "a cover of it", "task": "cover", "source": source_id, "strength": 0.5, "seed": 2, **QUICK},
        {"caption": "on base", "variant": "base", "seed": 3, **QUICK, "guidance": 1.0},
        {"caption": "bad id", "task": "cover", "source": {"take": "20990101-000000-000-deadbeef"}},
    ], store, name="derived")
    assert [str(p) for p in summary.problems] == [f"job 3: source: no take 20990101-000000-000-deadbeef in {store.folder}"]
    cover, base = (store.record(o.take_id) for o in summary.rendered)
    assert cover["parent_id"] == source_id and cover["task"]["source"] == {"take": source_id}
    assert base["model"]["variant"] == "acestep-v15-base" and base["sampling"]["steps"] == 1


def test_a_job_with_a_lora_loads_it_for_that_job_only(tiny_dir, tmp_path):
    import torch

    from acestep_engine.lora import LoRAConfig, save_adapter
    from acestep_engine.lora.adapters import adapter_state, inject, remove

    engine = Engine.from_pretrained(tiny_dir, dit="acestep-v15-turbo", device="cpu", dtype="fp32")
    config = LoRAConfig(rank=2, alpha=4, target_modules=("q_proj", "v_proj"))
    dit = engine.models.transformer
    inject(dit, "made", config.peft_config())
    torch.manual_seed(0)
    state = {k: torch.randn_like(v) * 0.5 for k, v in adapter_state(dit, "made").items()}
    remove(dit, "made")
    save_adapter(tmp_path / "style", state, config)

    store = TakeStore(tmp_path / "takes")
    summary = engine.render_many([{"caption": "plain", "seed": 1, **QUICK},
                                  {"caption": "plain", "seed": 1, "lora": str(tmp_path / "style"), "lora_scale": 0.8,
                                   **QUICK},
                                  {"caption": "plain", "seed": 1, "lora": str(tmp_path / "nowhere"), **QUICK}], store,
                                 name="before-after")
    problem, = summary.problems
    assert problem.line == 3 and problem.field == "lora" and "is not a LoRA adapter folder" in problem.message
    plain, styled = (store.load(o.take_id) for o in summary.rendered)
    assert plain.model["loras"] == [] and [(a["scale"]) for a in styled.model["loras"]] == [0.8]
    assert not np.allclose(plain.audio, styled.audio)
    assert engine.loras() == []  # unloaded after its job


def test_cancel_stops_after_the_current_step_and_keeps_the_store_whole(turbo, tmp_path, calls):
    store = TakeStore(tmp_path / "takes")
    lines = [{"caption": "one by one", "seeds": [1, 2, 3], "duration": 10, "steps": 3}]
    cancel = threading.Event()
    seen = []

    def progress(p: RenderProgress):
        seen.append(p)
        if p.rendered == 1 and p.running > 0:  # the second take has started denoising
            cancel.set()

    summary = turbo.render_many(lines, store, max_batch=1, cancel=cancel, progress=progress)
    assert summary.cancelled and len(summary.rendered) == 1 and len(summary.not_started) == 2
    assert calls == [[1], [2]] and len(store) == 1 and store.problems == []
    assert seen[-1].rendered == 1 and seen[-1].total == 3
    assert json.loads(summary_path(store, "render").read_text())["cancelled"] is True

    rest = turbo.render_many(lines, store, max_batch=1)
    assert len(rest.skipped) == 1 and len(rest.rendered) == 2 and len(store) == 3 and not rest.cancelled


def test_takes_grouped_by_job_for_a_grid(turbo, tmp_path):
    store = TakeStore(tmp_path / "takes")
    summary = turbo.render_many([{"caption": "row b", "seeds": [9, 3], **QUICK},
                                 {"caption": "row a", "seeds": [1], "name": "first", **QUICK}], store, name="grid")
    store.delete(summary.rendered[0].take_id)  # a deleted take leaves a gap in its row
    rows = takes_by_job(store, "grid")
    assert [(row.label, row.line, row.seeds) for row in rows] == [("row b", 1, [3]), ("first", 2, [1])]
    assert rows[0].by_seed()[3]["id"] == rows[0].take_ids[0]
    everything = takes_by_job(store)
    assert [(row.job, row.seeds) for row in everything] == [(row.job, row.seeds) for row in rows]
    assert takes_by_job(store, summary)[1].caption == "row a"


def test_progress_is_merged_across_processes(tmp_path):
    reports = []
    main = ProgressBoard(tmp_path, 0, 2, total=10, skipped=4, report=reports.append, started=time.perf_counter() - 60)
    other = ProgressBoard(tmp_path, 1, 2, total=10, skipped=0, report=reports.append)
    other.update(force=True, rendered=2, running=0.5)
    main.update(force=True, rendered=1, failed=1)
    merged = main.merged()
    assert (merged.rendered, merged.skipped, merged.failed, merged.running, merged.done) == (3, 4, 1, 0.5, 8)
    assert 3.4 < merged.takes_per_minute < 3.6 and 25 < merged.seconds_left < 28  # 3.5 takes in a minute
    assert merged.summary().startswith("8/10 takes (3 rendered, 4 skipped, 1 failed), 3.5 takes/min, 00:")
    other.close()
    main.close()
    assert reports and all(r.total == 10 for r in reports)  # only the main process reports
    assert RenderProgress(total=3).seconds_left is None


# ------------------------------------------------------------------------------------------------ commands

def test_the_command_checks_and_refuses_before_loading(tmp_path, capsys):
    from acestep_engine.cli import main

    plan = write_plan(tmp_path, [{"caption": "ok", "seeds": [1, 2]}, {"caption": "bad", "bpm": 5}])
    assert main(["render", str(plan), "--out", str(tmp_path / "takes"), "--check"]) == 1
    out = capsys.readouterr().out
    assert "1 job, 2 takes; 1 bad line" in out and "line 2: bpm must be between 30 and 300 (got 5)" in out
    assert main(["render", str(plan), "--out", str(tmp_path / "takes"), "--strict",
                 "--checkpoints", str(tmp_path / "no-weights")]) == 2
    assert "line 2: bpm must be between 30 and 300 (got 5)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["render", str(plan), "--max-batch", "9"])
    assert "must be between 1 and 8 (got 9)" in capsys.readouterr().err


def _takes(store_dir: Path) -> list[dict]:
    return TakeStore(store_dir).list() if store_dir.is_dir() else []


def test_a_render_killed_mid_way_and_restarted_makes_exactly_the_missing_takes(tiny_dir, tmp_path):
    plan = write_plan(tmp_path, [{"caption": "overnight", "seeds": [1, 2, 3, 4, 5, 6], "duration": 10, "steps": 2}])
    out = tmp_path / "takes"
    command = [sys.executable, "-m", "acestep_engine.render", str(plan), "--out", str(out), "--checkpoints",
               str(tiny_dir), "--dtype", "fp32", "--max-batch", "1"]
    worker = subprocess.Popen(command, cwd=ROOT, env=render_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while len(_takes(out)) < 2 and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    before = {r["id"]: r["notes"]["render"]["key"] for r in _takes(out)}
    assert 2 <= len(before) < 6, "the render should be killed mid-way"
    audio_before = {take_id: (out / f"{take_id}.flac").read_bytes() for take_id in before}

    done = subprocess.run(command, cwd=ROOT, env=render_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    store = TakeStore(out)
    after = {r["id"]: r["notes"]["render"]["key"] for r in store.list()}
    assert len(after) == 6 and len(set(after.values())) == 6 and sorted(r["seed"] for r in store.list()) == [1, 2, 3,
                                                                                                           4, 5, 6]
    assert all(after[take_id] == key for take_id, key in before.items())  # the first run's takes are untouched
    assert all((out / f"{take_id}.flac").read_bytes() == data for take_id, data in audio_before.items())
    summary = json.loads(summary_path(store, "plan").read_text())
    assert summary["counts"]["skipped"] == len(before) and summary["counts"]["rendered"] == 6 - len(before)
    assert store.problems == [] and not list(out.glob(".tmp-*"))


def test_ctrl_c_stops_the_command_after_the_current_step_and_a_rerun_continues(tiny_dir, tmp_path):
    plan = write_plan(tmp_path, [{"caption": "stopped", "seeds": [1, 2, 3, 4], "duration": 10, "steps": 4}])
    out = tmp_path / "takes"
    command = [sys.executable, "-m", "acestep_engine.render", str(plan), "--out", str(out), "--checkpoints",
               str(tiny_dir), "--dtype", "fp32", "--max-batch", "1"]
    worker = subprocess.Popen(command, cwd=ROOT, env=render_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    deadline = time.monotonic() + 240
    while not _takes(out) and time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.05)
    worker.send_signal(signal.SIGINT)
    stdout, stderr = worker.communicate(timeout=120)
    assert worker.returncode == 130, stderr[-3000:]
    assert "stopping after the current step" in stderr
    store = TakeStore(out)
    summary = json.loads(summary_path(store, "plan").read_text())
    assert summary["cancelled"] is True and summary["counts"]["rendered"] == len(store) < 4
    assert summary["counts"]["not started"] == 4 - len(store) and store.problems == []

    done = subprocess.run(command, cwd=ROOT, env=render_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and len(TakeStore(out)) == 4, done.stderr[-3000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_under_accelerate_launch_split_the_jobs(tiny_dir, tmp_path):
    plan = write_plan(tmp_path, [{"caption": "first", "seeds": [1, 2], **QUICK},
                                 {"caption": "second", "seeds": [3, 4], **QUICK},
                                 {"caption": "third", "seed": 5, **QUICK}, {"caption": "bad", "bpm": 9}])
    out = tmp_path / "takes"
    # --multi_gpu starts the processes with torchrun; without GPUs they join over gloo on the CPU
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
               str(_free_port()), "-m", "acestep_engine.render", str(plan), "--out", str(out), "--checkpoints",
               str(tiny_dir), "--dtype", "fp32", "--max-batch", "2"]
    done = subprocess.run(command, cwd=ROOT, env=render_env(), capture_output=True, text=True, timeout=400)
    assert done.returncode != 0 and "exitcode  : 1" in done.stderr  # the bad line, reported by the main process
    assert done.stdout.count("plan: 5 rendered, 0 skipped, 0 failed, 1 bad line in ") == 1, done.stderr[-3000:]
    records = TakeStore(out).list()
    keys = [r["notes"]["render"]["key"] for r in records]
    assert sorted(r["seed"] for r in records) == [1, 2, 3, 4, 5] and len(set(keys)) == 5
    by_process = {}
    for record in records:
        by_process.setdefault(record["notes"]["render"]["process"], []).append(record["seed"])
    assert sorted(by_process) == [0, 1], by_process  # both processes rendered, no take twice
    summary = json.loads(summary_path(TakeStore(out), "plan").read_text())
    assert summary["processes"] == 2 and summary["counts"]["rendered"] == 5
    assert sorted({t["process"] for t in summary["takes"]}) == [0, 1]
    assert not list((out / ".renders").glob("plan.run-*"))  # the run's progress files are gone
