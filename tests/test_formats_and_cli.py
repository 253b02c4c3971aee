"""A diffusers-format repository loads too; bf16 runs; the headless CLI renders a blueprint."""

import json

import numpy as np
import pytest

from acestep_engine import Blueprint, Engine, TakeStore
from acestep_engine.cli import main

BP = Blueprint(caption="ambient pads", duration=10.0, bpm=70)


def test_diffusers_format_repository_gives_the_same_audio(turbo, tmp_path):
    repo = tmp_path / "acestep-v15-turbo-diffusers"
    m = turbo.models
    m.transformer.save_pretrained(repo / "transformer")
    m.condition_encoder.save_pretrained(repo / "condition_encoder")  # silence_latent travels as a buffer
    m.audio_tokenizer.save_pretrained(repo / "audio_tokenizer")
    m.detokenizer.save_pretrained(repo / "audio_token_detokenizer")
    m.vae.save_pretrained(repo / "vae")
    m.text_encoder.save_pretrained(repo / "text_encoder")
    m.text_tokenizer.save_pretrained(repo / "tokenizer")
    (repo / "model_index.json").write_text(json.dumps({"_class_name": "AceStepPipeline"}))
    engine = Engine.from_pretrained(repo, device="cpu", dtype="fp32")
    assert engine.variant.turbo and engine.variant.preset.steps == 8
    a, = engine.generate(BP, seeds=5)
    b, = turbo.generate(BP, seeds=5)
    np.testing.assert_allclose(a.audio, b.audio, atol=1e-5)


def test_bfloat16_runs_end_to_end(tiny_dir):
    engine = Engine.from_pretrained(tiny_dir, device="cpu", dtype="bf16")
    assert str(engine.dtype) == "torch.bfloat16"
    take, = engine.generate(BP, seeds=1)
    assert np.isfinite(take.audio).all() and take.audio.dtype == np.float32
    assert take.model["dtype"] == "bfloat16"
    with pytest.raises(ValueError, match="dtype must be one of"):
        Engine.from_pretrained(tiny_dir, device="cpu", dtype="fp8")


def test_cli_generates_takes(tiny_dir, tmp_path, capsys):
    path = BP.save(tmp_path / "song.json")
    code = main(["generate", str(path), "--checkpoints", str(tiny_dir), "--out", str(tmp_path / "takes"),
                 "--batch", "2", "--seed", "9", "--device", "cpu"])
    assert code == 0
    store = TakeStore(tmp_path / "takes")
    assert sorted(r["seed"] for r in store.list()) == [9, 10]
    assert str(tmp_path / "takes") in capsys.readouterr().out


def test_cli_reports_errors_in_plain_words(tmp_path, capsys):
    path = Blueprint(bpm=999).save(tmp_path / "bad.json")
    assert main(["generate", str(path), "--checkpoints", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err == "error: bpm must be between 30 and 300 (got 999)\n"
