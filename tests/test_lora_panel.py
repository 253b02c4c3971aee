"""LoRAPanel driven from Python: choose a folder, prepare, train with the live plot, stop, save, apply."""

import json
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from acestep_engine import Blueprint, Engine
from acestep_engine.lora.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from workbench import BlueprintEditor, GeneratePanel, LoRAPanel
from workbench.lora_panel import loss_png

BP = Blueprint(caption="test", duration=10.0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def engine(tiny_dir):
    return Engine.from_pretrained(tiny_dir, dit="acestep-v15-turbo", device="cpu")


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("panel-songs")
    rate = 48000
    for name, freq, seconds in (("one", 220.0, 2.0), ("two", 330.0, 3.0)):
        t = np.arange(int(seconds * rate)) / rate
        sf.write(folder / f"{name}.wav", (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)
    (folder / "one.json").write_text(json.dumps({"caption": "warm sine", "bpm": 100}))
    return folder


def small_settings(panel, out, steps):
    panel.rank.value, panel.alpha.value, panel.lr.value = 4, 8.0, 1e-2
    panel.steps.value, panel.warmup.value, panel.save_every.value = steps, 1, 3
    panel.output_dir.value = str(out)


def test_panel_prepares_trains_saves_and_applies(engine, songs, tmp_path):
    generate = GeneratePanel(engine, BlueprintEditor(BP))
    panel = LoRAPanel(engine, generate_panel=generate)
    assert panel.save_button.disabled and panel.stop_button.disabled
    panel.folder.value = str(songs)
    panel.cache_dir.value = str(tmp_path / "cache")
    panel.prepare_button.click()
    dataset = panel.job.result(timeout=120)
    assert len(dataset) == 2 and "2 songs" in panel.dataset_info.value and "warm sine" in panel.dataset_info.value
    assert "press Train" in panel.status.value and not panel.train_button.disabled

    small_settings(panel, tmp_path / "out", steps=6)
    empty_plot = panel.loss_plot.value
    panel.train_button.click()
    assert panel.stop_button.disabled is False or panel.job.done.is_set()
    result, _ = panel.job.result(timeout=120)
    assert result.step == 6 and len(panel.losses) == 6 and panel.losses == result.losses
    assert bytes(panel.loss_plot.value) != bytes(empty_plot) and bytes(panel.loss_plot.value).startswith(b"\x89PNG")
    assert panel.progress.value == 1000 and "finished at step 6/6" in panel.status.value
    adapter = tmp_path / "out" / "adapter"
    assert panel.adapter_path.value == str(adapter) and (adapter / ADAPTER_WEIGHTS).is_file()
    assert (tmp_path / "out" / "checkpoints" / "step-6").is_dir() and not panel.save_button.disabled

    panel.save_path.value = str(tmp_path / "loras" / "warm")
    panel.save_button.click()
    saved = tmp_path / "loras" / "warm"
    assert (saved / ADAPTER_WEIGHTS).read_bytes() == (adapter / ADAPTER_WEIGHTS).read_bytes()
    assert (saved / ADAPTER_CONFIG).is_file() and panel.adapter_path.value == str(saved)

    panel.scale.value = 0.5
    panel.apply_button.click()
    assert engine.loras()[0]["name"] == "warm" and engine.loras()[0]["scale"] == 0.5
    assert "warm &times; 0.5" in generate.lora_note.value and "warm" in panel.loaded.value
    panel.scale.value = 1.0
    assert engine.loras()[0]["scale"] == 1.0 and "warm &times; 1" in generate.lora_note.value
    panel.apply_button.click()  # applying again replaces the adapter of the same name
    assert [a["name"] for a in engine.loras()] == ["warm"]
    take = engine.generate(BP, seeds=1)[0]
    assert take.model["loras"][0]["name"] == "warm" and take.model["loras"][0]["scale"] == 1.0
    panel.unload_button.click()
    assert engine.loras() == [] and generate.lora_note.value == "" and "base model" in panel.loaded.value


def test_panel_stop_button_saves_the_adapter_at_the_current_step(engine, songs, tmp_path):
    panel = LoRAPanel(engine)
    panel.folder.value = str(songs)
    panel.cache_dir.value = str(tmp_path / "cache")
    panel.prepare()
    panel.job.result(timeout=120)
    small_settings(panel, tmp_path / "out", steps=100_000)
    empty_plot = bytes(panel.loss_plot.value)
    job = panel.train()
    deadline = time.monotonic() + 60
    while len(panel.losses) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bytes(panel.loss_plot.value) != empty_plot  # the plot follows the run while it trains
    assert not panel.stop_button.disabled and panel.train_button.disabled
    panel.stop_button.click()
    result, _ = job.result(timeout=120)
    assert result.stopped and 2 <= result.step < 100_000
    assert f"stopped at step {result.step}/100000" in panel.status.value
    assert (tmp_path / "out" / "adapter" / ADAPTER_WEIGHTS).is_file()
    assert (tmp_path / "out" / "checkpoints" / f"step-{result.step}").is_dir()
    assert panel.stop_button.disabled and not panel.train_button.disabled and not engine.busy
    # Train again with the same output: it resumes from the stopped step.
    panel.steps.value = result.step + 2
    again, _ = panel.train().result(timeout=120)
    assert again.resumed_from == result.step and again.step == result.step + 2
    assert len(panel.losses) == again.step
    # Another adapter shape cannot resume those checkpoints; the panel says how to start over.
    panel.rank.value = 8
    panel.train().wait(60)
    assert "was trained with LoRA" in panel.status.value and "untick &#x27;resume&#x27;" in panel.status.value
    panel.resume.value, panel.steps.value = False, 2
    fresh, _ = panel.train().result(timeout=120)
    assert fresh.resumed_from is None and fresh.step == 2


def test_panel_reports_mistakes_in_plain_words(engine, songs, tmp_path):
    panel = LoRAPanel(engine)
    songs_box = panel.widget.children[0]

    def under(box):  # the status line is shown inside that step's box
        found = []

        def walk(w):
            found.append(w)
            for child in getattr(w, "children", ()):
                walk(child)
        walk(box)
        return panel.status in found

    panel.prepare_button.click()
    assert "choose the songs folder first" in panel.status.value and panel.job is None
    assert under(songs_box) and not under(panel.widget.children[1])  # under "1. Songs", not "2. Train"
    panel.folder.value = str(tmp_path / "no-such-folder")
    panel.prepare_button.click()
    panel.job.wait(60)
    assert "does not exist" in panel.status.value and not panel.prepare_button.disabled
    (tmp_path / "empty-folder").mkdir()
    panel.folder.value = str(tmp_path / "empty-folder")
    panel.prepare_button.click()
    panel.job.wait(60)
    assert "holds no audio files" in panel.status.value and under(songs_box)
    panel.apply_button.click()  # nothing typed in Adapter: said under "3. Save and apply"
    assert "train an adapter or type an adapter folder first" in panel.status.value
    assert under(panel.widget.children[2])
    panel.folder.value = str(songs)
    panel.cache_dir.value = str(tmp_path / "empty-cache")
    panel.train_button.click()
    assert "prepare the songs first" in panel.status.value
    panel.prepare()
    panel.job.result(timeout=120)
    panel.targets.value = "q_proj, nope_proj"
    panel.output_dir.value = str(tmp_path / "out")
    panel.steps.value, panel.warmup.value = 2, 0
    panel.train_button.click()
    panel.job.wait(60)
    assert "target_modules &#x27;nope_proj&#x27; match no linear layer" in panel.status.value
    panel.targets.value = "q_proj"
    panel.steps.value, panel.warmup.value = 5, 10
    panel.train_button.click()
    assert "warmup must be between 0 and steps (5) (got 10)" in panel.status.value
    panel.adapter_path.value = str(tmp_path / "missing")
    panel.apply_button.click()
    assert "not applied:" in panel.status.value and engine.loras() == []
    panel.save_path.value = str(tmp_path / "copy")
    assert panel.save() is None and "not saved:" in panel.status.value


def test_loss_png_draws_empty_and_full_histories():
    assert loss_png([]).startswith(b"\x89PNG")
    assert loss_png([1.0, 0.8, 0.9, 0.5] * 10).startswith(b"\x89PNG")
