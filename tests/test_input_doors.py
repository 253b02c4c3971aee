"""Bad input at every public door is refused with an error of the project's hierarchy that names the
argument (or file), the value and what is allowed: blueprints, audio, JSON files, checkpoint configs
and files, LoRA adapters, datasets and training, and the command line."""

import json
import math
import shutil
import struct

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from acestep_engine import Blueprint, BlueprintError, CheckpointError, Engine, LoRAError
from acestep_engine.errors import AceStepError
from acestep_engine.json_files import read_json
from acestep_engine.models.config_checks import (check_dit_config, check_safetensors_file, check_text_encoder_config,
                                                 check_vae_config)
from acestep_engine.models.tiny_checkpoints import official_config
from acestep_engine.takes.audio_io import (AudioFileError, check_audio_array, check_sample_rate, load_source_audio,
                                           read_audio, resample, wav_bytes, write_audio)

# ---------------------------------------------------------------------------------- blueprint files


def test_a_utf8_file_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + Blueprint(caption="über", bpm=90).to_json().encode())
    assert Blueprint.load(path) == Blueprint(caption="über", bpm=90)
    assert Blueprint.from_json("\ufeff" + Blueprint().to_json()) == Blueprint()


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe{\x00}\x00", "is not UTF-8 text"),  # UTF-16
    ('{"caption": "caf\xe9"}'.encode("latin-1"), "is not UTF-8 text"),
    (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
    (b"{half", "is not valid JSON"),
    (b"", "is not valid JSON"),
    (b"[]", "must be an object"),
    (b'{"tempo": 120}', "tempo is not a blueprint field"),
])
def test_bad_blueprint_files_are_named(tmp_path, content, message):
    path = tmp_path / "song.json"
    path.write_bytes(content)
    with pytest.raises(BlueprintError) as info:
        Blueprint.load(path)
    assert message in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("path", ["does/not/exist.json", ".", 5, None, ""])
def test_blueprint_file_paths_are_checked(tmp_path, path):
    with pytest.raises(BlueprintError, match="^file "):
        Blueprint.load(tmp_path / path if isinstance(path, str) and path else path)


def test_text_that_is_not_unicode_is_named_before_anything_is_written(tmp_path):
    bp = Blueprint(caption="bad \udc80 caption", lyrics="fine")
    assert "caption" in bp.errors() and "not valid Unicode" in bp.errors()["caption"]
    with pytest.raises(BlueprintError, match="^caption holds a character"):
        bp.validate()
    with pytest.raises(BlueprintError, match="^caption holds a character"):
        bp.save(tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(BlueprintError, match="^lyrics holds"):
        Blueprint(lyrics="\ud800").validate()


@pytest.mark.parametrize("field, value", [
    ("bpm", float("nan")), ("bpm", float("inf")), ("bpm", "12O"), ("bpm", True), ("bpm", [120]), ("bpm", 1e9),
    ("duration", float("nan")), ("duration", float("-inf")), ("duration", "30"), ("duration", None), ("duration", 0),
    ("timesignature", float("nan")), ("timesignature", "4/4/4"), ("timesignature", 5),
    ("keyscale", 5), ("keyscale", "H major"), ("language", 5), ("language", "english"),
    ("instrumental", "yes"), ("instrumental", 1), ("caption", 5), ("caption", "x" * 600), ("lyrics", b"bytes"),
    ("planned", "caption"), ("planned", ["tempo"]),
])
def test_wrong_types_and_values_in_blueprint_fields_are_named(field, value):
    bp = Blueprint(**{field: value})
    with pytest.raises(BlueprintError) as info:
        bp.validate()
    assert info.value.field == field and str(info.value).startswith(field)


def test_numpy_values_are_accepted_in_blueprints():
    bp = Blueprint(bpm=np.int64(120), duration=np.float32(30.0), instrumental=np.bool_(True)).validate()
    assert bp.bpm == 120 and bp.duration == 30.0 and bp.instrumental is True


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60), st.binary(max_size=60),
                 st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
                              lambda inner: st.lists(inner, max_size=3)
                              | st.dictionaries(st.sampled_from(["caption", "bpm", "duration", "keyscale",
                                                                 "language", "x"]), inner, max_size=4),
                              max_leaves=10).map(lambda v: json.dumps(v))))
def test_from_json_and_validate_raise_only_blueprint_errors(text):
    try:
        Blueprint.from_json(text).validate()
    except BlueprintError:
        pass


# ---------------------------------------------------------------------------------- audio


@pytest.mark.parametrize("rate", [0, -48000, 0.5, float("nan"), float("inf"), "48000", None, True, 10**9])
def test_sample_rates_are_checked(rate):
    with pytest.raises(AudioFileError, match="sample"):
        load_source_audio((np.zeros((2, 100), np.float32), rate), 48000)
    with pytest.raises(AudioFileError):
        load_source_audio((np.zeros((2, 100), np.float32), 48000), rate)
    with pytest.raises(AudioFileError):
        wav_bytes(np.zeros((2, 10)), rate)


def test_whole_float_and_numpy_rates_are_accepted():
    assert check_sample_rate(48000.0) == 48000 and check_sample_rate(np.int32(16000)) == 16000
    assert load_source_audio((np.zeros(1600, np.float32), np.int64(16000)), 16000).shape == (2, 1600)


@pytest.mark.parametrize("array, message", [
    (np.zeros((48000, 8), np.float32), r"wrong shape \(48000, 8\).*channels first"),
    (np.zeros((48000, 3), np.float32), r"wrong shape \(48000, 3\)"),
    (np.full((2, 100), np.nan, np.float32), "NaN or infinite"),
    (np.array([[0.0, np.inf, 0.0]]), "NaN or infinite"),
    (np.zeros((2, 0), np.float32), "empty"),
    (np.zeros((1, 2, 3)), "1 or 2 dimensions"),
    (np.zeros(()), "1 or 2 dimensions"),
    (np.array(["a", "b"]), "real numbers"),
    (np.zeros(4, np.complex64), "real numbers"),
    ([[0.0, 1.0], [0.0]], "not an array of numbers"),
    ("loud", "numeric array"),
    (None, "numeric array"),
])
def test_bad_audio_arrays_are_named(array, message):
    with pytest.raises(AudioFileError, match=message):
        load_source_audio((array, 48000), 48000)


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(hnp.floating_dtypes(sizes=(32, 64)) | hnp.integer_dtypes(sizes=(16, 32)),
                  hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=12)))
def test_any_array_is_either_usable_audio_or_an_audio_error(array):
    try:
        audio = check_audio_array(array)
    except AudioFileError:
        return
    assert audio.ndim == 2 and audio.shape[0] <= 8 and audio.shape[1] > 0 and np.isfinite(audio).all()


def test_audio_file_errors_name_the_file(tmp_path):
    nan = tmp_path / "nan.wav"
    sf.write(str(nan), np.full((100, 2), np.nan, np.float32), 8000, subtype="FLOAT")
    with pytest.raises(AudioFileError, match="nan.wav: holds NaN"):
        read_audio(nan)
    with pytest.raises(AudioFileError, match="must be a file path"):
        read_audio(5)
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    with pytest.raises(AudioFileError, match="folder.wav: no such audio file"):
        read_audio(folder)
    with pytest.raises(AudioFileError, match="out.mp3: format must be"):
        write_audio(tmp_path / "out.mp3", np.zeros((2, 10)), 8000)
    with pytest.raises(AudioFileError, match="NaN"):
        write_audio(tmp_path / "out.wav", np.full((2, 10), np.nan), 8000)
    with pytest.raises(AudioFileError, match="sample_rate"):
        write_audio(tmp_path / "out.wav", np.zeros((2, 10)), 0)
    with pytest.raises(AudioFileError, match="rate_from"):
        resample(np.zeros((2, 10)), 0, 8000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.wav", "nan.wav"]


# ---------------------------------------------------------------------------------- JSON files


@pytest.mark.parametrize("content, message", [
    (b"[" * 100_000, "nested too deeply"), (b"\x80\x81", "not UTF-8"), (b"{", "not valid JSON"),
    (b"[1]", "must hold an object"), (b'"text"', "must hold an object"),
])
def test_json_readers_name_the_file(tmp_path, content, message):
    path = tmp_path / "thing.json"
    path.write_bytes(content)
    for error in (CheckpointError, LoRAError):
        with pytest.raises(error) as info:
            read_json(path, error)
        assert message in str(info.value) and str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="missing"):
        read_json(tmp_path / "absent.json", CheckpointError)


# ---------------------------------------------------------------------------------- checkpoint configs

BAD_DIT = [
    ("num_hidden_layers", 10**9, "num_hidden_layers must be between 1 and 512"),
    ("num_hidden_layers", 0, "num_hidden_layers must be between"),
    ("num_hidden_layers", "24", "num_hidden_layers must be a whole number"),
    ("num_hidden_layers", 2.5, "num_hidden_layers must be a whole number"),
    ("num_hidden_layers", None, "lacks the required key 'num_hidden_layers'"),
    ("hidden_size", -64, "hidden_size must be between"),
    ("hidden_size", [64], "hidden_size must be a whole number"),
    ("hidden_size", True, "hidden_size must be a whole number"),
    ("intermediate_size", 10**12, "intermediate_size must be between"),
    ("num_key_value_heads", 3, "must be a multiple of num_key_value_heads"),
    ("head_dim", 0, "head_dim must be between"),
    ("rms_norm_eps", float("nan"), "rms_norm_eps must be a finite number"),
    ("rms_norm_eps", 0, "rms_norm_eps must be a finite number"),
    ("rope_theta", float("inf"), "rope_theta must be a finite number"),
    ("attention_dropout", 1.5, "attention_dropout must be a finite number"),
    ("attention_bias", "no", "attention_bias must be true or false"),
    ("layer_types", ["full_attention"], "layer_types must list"),
    ("layer_types", "full_attention", "layer_types must list"),
    ("fsq_input_levels", [8, "8"], "fsq_input_levels[1] must be a whole number"),
    ("fsq_input_levels", 8, "fsq_input_levels must be a list"),
    ("pool_window_size", 0, "pool_window_size must be between"),
    ("audio_acoustic_hidden_dim", 10**6, "audio_acoustic_hidden_dim must be between"),
    ("model_version", 5, "model_version must be text"),
]


@pytest.mark.parametrize("key, value, message", BAD_DIT)
def test_bad_dit_configs_are_refused_before_building(key, value, message):
    cfg = official_config("tiny")
    if value is None:
        del cfg[key]
    else:
        cfg[key] = value
    with pytest.raises(CheckpointError) as info:
        check_dit_config(cfg, "ck/config.json")
    assert message in str(info.value) and "ck/config.json" in str(info.value)


def test_a_config_of_absurd_total_size_is_refused():
    cfg = official_config("tiny")
    cfg.update(num_hidden_layers=512, hidden_size=32768, intermediate_size=131072, layer_types=None)
    with pytest.raises(CheckpointError, match="billion parameters"):
        check_dit_config(cfg, "c.json")
    for preset in ("tiny", "tiny-16k", "demo"):
        check_dit_config(official_config(preset), "c.json")
    real = dict(official_config("tiny"), hidden_size=2560, intermediate_size=9728, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=8, head_dim=128, layer_types=None)
    check_dit_config(real, "xl.json", memory=64 << 30)  # the XL DiT's sizes pass (on a machine that can hold it)


@pytest.mark.parametrize("checker, cfg, message", [
    (check_vae_config, {"sampling_rate": 0}, "sampling_rate must be between"),
    (check_vae_config, {"audio_channels": "2"}, "audio_channels must be a whole number"),
    (check_vae_config, {"downsampling_ratios": [2, 0]}, "downsampling_ratios[1] must be between"),
    (check_vae_config, {"downsampling_ratios": [2, 4], "channel_multiples": [1]}, "the same length"),
    (check_vae_config, [], "must hold an object"),
    (check_text_encoder_config, {"num_hidden_layers": 10**9}, "num_hidden_layers must be between"),
    (check_text_encoder_config, {"num_attention_heads": 5, "num_key_value_heads": 2}, "multiple"),
    (check_text_encoder_config, {"vocab_size": -1}, "vocab_size must be between"),
])
def test_bad_vae_and_text_encoder_configs(checker, cfg, message):
    with pytest.raises(CheckpointError) as info:
        checker(cfg, "part/config.json")
    assert message in str(info.value)


def _copy_checkpoints(tiny_dir, tmp_path):
    root = tmp_path / "ck"
    shutil.copytree(tiny_dir, root, ignore=shutil.ignore_patterns("acestep-v15-base", "acestep-5Hz*"))
    return root


def test_loading_refuses_a_huge_config_before_building_anything(tiny_dir, tmp_path, monkeypatch):
    from acestep_engine.models import loader

    root = _copy_checkpoints(tiny_dir, tmp_path)
    cfg_path = root / "acestep-v15-turbo" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["num_hidden_layers"] = 10**9
    cfg_path.write_text(json.dumps(cfg))
    built = []
    monkeypatch.setattr(loader, "build_modules", lambda *a, **k: built.append(1))
    with pytest.raises(CheckpointError, match="num_hidden_layers must be between 1 and 512 .got 1000000000."):
        Engine.from_pretrained(root, dit="acestep-v15-turbo", device="cpu")
    assert built == []
    cfg_path.write_bytes(b"[" * 100_000)
    with pytest.raises(CheckpointError, match="nested too deeply"):
        Engine.from_pretrained(root, dit="acestep-v15-turbo", device="cpu")


@pytest.mark.parametrize("part", ["acestep-v15-turbo/model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                                  "Qwen3-Embedding-0.6B/model.safetensors"])
def test_a_truncated_safetensors_file_is_named(tiny_dir, tmp_path, part):
    root = _copy_checkpoints(tiny_dir, tmp_path)
    path = root / part
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is truncated") as info:
        Engine.from_pretrained(root, dit="acestep-v15-turbo", device="cpu")
    assert str(path) in str(info.value)


def test_a_truncated_or_oversized_lm_folder_is_named(tmp_path):
    from acestep_engine.lm import Planner
    from acestep_engine.models import LM_FOLDER, write_lm

    folder = tmp_path / LM_FOLDER
    write_lm(folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is truncated") as info:
        Planner.from_pretrained(folder, device="cpu")
    assert str(weights) in str(info.value)
    weights.write_bytes(data)
    config = folder / "config.json"
    with open(config, "r+b") as f:
        f.truncate(64 << 20)  # sparse: 64 MB of a config.json, never read
    with pytest.raises(CheckpointError, match="config.json is 64.0 MB; a config.json may be at most"):
        Planner.from_pretrained(folder, device="cpu")


@pytest.mark.parametrize("content, message", [
    (b"", "truncated or empty"), (b"\x01\x00", "truncated or empty"),
    (struct.pack("<Q", 10**12) + b"{}", "header claims"), (struct.pack("<Q", 4) + b"\xff\xfe\xfd\xfc", "unreadable header"),
    (struct.pack("<Q", 2) + b"[]", "unreadable header"),
    (struct.pack("<Q", 33) + b'{"t": {"data_offsets": [0, "x"]}}', "no valid data_offsets"),
    (struct.pack("<Q", 48) + b'{"t": {"dtype": "F32", "data_offsets": [0, 64]}}' + bytes(8), "is truncated"),
])
def test_safetensors_headers_are_checked(tmp_path, content, message):
    path = tmp_path / "w.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        check_safetensors_file(path)


# ---------------------------------------------------------------------------------- LoRA


def _adapter(folder, tensor=None, config=None, key="layers.0.self_attn.q_proj.lora_A.weight"):
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps(config if config is not None else
                                                           {"peft_type": "LORA", "r": 2, "lora_alpha": 4}))
    weights = tensor if tensor is not None else torch.zeros(2, 16)
    save_file({f"base_model.model.{key}": weights}, str(folder / "adapter_model.safetensors"))
    return folder


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_inf_adapters_are_refused_at_load(tmp_path, value):
    from acestep_engine.lora import read_adapter

    tensor = torch.zeros(2, 16)
    tensor[1, 3] = value
    folder = _adapter(tmp_path / "bad", tensor)
    with pytest.raises(LoRAError, match="holds 1 NaN or infinite values") as info:
        read_adapter(folder)
    assert "adapter_model.safetensors" in str(info.value) and "q_proj.lora_A" in str(info.value)
    with pytest.raises(LoRAError, match="floating-point"):
        read_adapter(_adapter(tmp_path / "int", torch.zeros(2, 16, dtype=torch.int32)))


@pytest.mark.parametrize("config, message", [
    ([], "must hold an object"), ({"peft_type": "LOKR"}, "peft_type must be LORA"),
    ({"r": "8"}, "r must be a whole number"), ({"r": 0}, "r must be a whole number"), ({"r": True}, "r must be"),
    ({"lora_alpha": "16"}, "lora_alpha must be a finite number"), ({"lora_alpha": float("nan")}, "lora_alpha"),
    ({"alpha_pattern": []}, "alpha_pattern must map"), ({"rank_pattern": {"q": "4"}}, "rank_pattern must map"),
    ({"lora_dropout": 2}, "lora_dropout must be"),
])
def test_wrong_json_types_in_adapter_configs_are_named(tmp_path, config, message):
    from acestep_engine.lora import read_adapter

    folder = _adapter(tmp_path / "a", config=config)
    with pytest.raises(LoRAError, match=message) as info:
        read_adapter(folder)
    assert "adapter_config.json" in str(info.value)
    (folder / "adapter_config.json").write_bytes(b"[" * 100_000)
    with pytest.raises(LoRAError, match="nested too deeply"):
        read_adapter(folder)


@pytest.mark.parametrize("data, message", [
    ([], "must be a mapping"), ({"rank": 4, "target_modules": 5}, "target_modules must be a list"),
    ({"ranks": 4}, "ranks is not a LoRAConfig field"),
])
def test_lora_config_from_wrong_json_types(data, message):
    from acestep_engine.lora import LoRAConfig

    with pytest.raises(LoRAError, match=message):
        LoRAConfig.from_dict(data)


def _checkpoint_state():
    return {"step": 3, "epoch": 0, "batch_in_epoch": 1, "micro": 3, "losses": [0.5], "lrs": [0.1],
            "lora": {"rank": 4, "alpha": 8.0, "dropout": 0.0, "target_modules": ["q_proj"]}, "parameters": [],
            "param_groups": [{}], "objective": "turbo"}


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("lora"), "lacks 'lora'"), (lambda s: s.update(lora=[]), "lora must be dict"),
    (lambda s: s.update(lora={"rank": "4"}), "lora is not a LoRA configuration"),
    (lambda s: s.update(step="3"), "step must be int"), (lambda s: s.update(step=True), "step must be int"),
    (lambda s: s.update(losses=["x"]), "lists of numbers"), (lambda s: s.update(param_groups=[1]), "param_groups"),
])
def test_trainer_state_of_the_wrong_shape_is_named(tmp_path, change, message):
    from acestep_engine.lora.training import read_trainer_state

    state = _checkpoint_state()
    read_trainer_state_ok = tmp_path / "ok"
    read_trainer_state_ok.mkdir()
    (read_trainer_state_ok / "trainer_state.json").write_text(json.dumps(state))
    assert read_trainer_state(read_trainer_state_ok)["step"] == 3
    change(state)
    (tmp_path / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(LoRAError, match=message) as info:
        read_trainer_state(tmp_path)
    assert "trainer_state.json" in str(info.value)


def test_nan_songs_are_refused_at_preparation(turbo, tmp_path):
    from acestep_engine.lora import prepare_dataset

    songs = tmp_path / "songs"
    songs.mkdir()
    sf.write(str(songs / "ok.wav"), np.zeros((48000, 2), np.float32), 48000, subtype="FLOAT")
    audio = np.zeros((48000, 2), np.float32)
    audio[100] = np.nan
    sf.write(str(songs / "nan.wav"), audio, 48000, subtype="FLOAT")
    dataset = prepare_dataset(turbo, songs, tmp_path / "cache")  # the NaN song is skipped with its reason
    assert len(dataset) == 1 and [name for name, _ in dataset.skipped] == ["nan.wav"]
    assert "nan.wav: holds NaN" in dataset.skipped[0][1]
    (songs / "nan.wav").unlink()
    (songs / "ok.wav").rename(songs / "nan.wav")  # alone, a bad song leaves nothing to prepare: refused by name
    sf.write(str(songs / "nan.wav"), audio, 48000, subtype="FLOAT")
    with pytest.raises(LoRAError, match="nan.wav: holds NaN"):
        prepare_dataset(turbo, songs, tmp_path / "cache2")
    (songs / "nan.wav").rename(songs / "ok.wav")
    sf.write(str(songs / "ok.wav"), np.zeros((48000, 2), np.float32), 48000, subtype="FLOAT")
    (songs / "ok.txt").write_bytes(b"caf\xe9")
    with pytest.raises(LoRAError, match="ok.txt is not UTF-8"):
        prepare_dataset(turbo, songs, tmp_path / "cache")
    (songs / "ok.txt").unlink()
    (songs / "ok.json").write_bytes(b"[" * 100_000)
    with pytest.raises(LoRAError, match="ok.json is not usable JSON"):
        prepare_dataset(turbo, songs, tmp_path / "cache")


def test_a_nan_loss_stops_training_with_a_named_error(turbo, tmp_path, monkeypatch):
    from acestep_engine.lora import LoRAConfig, TrainingConfig, prepare_dataset, train, training as training_module

    songs = tmp_path / "songs"
    songs.mkdir()
    t = np.arange(48000) / 48000
    sf.write(str(songs / "a.wav"), np.stack([0.3 * np.sin(2 * np.pi * 220 * t)] * 2, axis=1), 48000)
    dataset = prepare_dataset(turbo, songs, tmp_path / "cache")
    real = training_module.objective_loss
    calls = {"n": 0}

    def diverging(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] >= 3 else loss

    monkeypatch.setattr(training_module, "objective_loss", diverging)
    with pytest.raises(LoRAError, match=r"the training loss became nan at step 3 of 6: training diverged"):
        train(turbo, dataset, tmp_path / "out", LoRAConfig(rank=2, alpha=4.0), TrainingConfig(steps=6, warmup=0))
    assert turbo.lora_adapters() == [] if hasattr(turbo, "lora_adapters") else True
    assert all(math.isfinite(p.float().sum().item()) for p in turbo.models.transformer.parameters())


# ---------------------------------------------------------------------------------- command line


@pytest.mark.parametrize("args, message", [
    (["--batch", "0"], "--batch: must be between 1 and 8 (got 0)"),
    (["--batch", "two"], "--batch: must be a whole number (got 'two')"),
    (["--seed", "-1"], "--seed: must be between 0 and"),
    (["--seed", "1.7"], "--seed: must be a whole number (got '1.7')"),
    (["--steps", "0"], "--steps: must be between 1 and 200"),
    (["--shift", "nan"], "--shift: must be a finite number above 0 (got 'nan')"),
    (["--guidance", "inf"], "--guidance: must be a finite number above 0"),
    (["--duration", "-5"], "--duration: must be a finite number above 0"),
    (["--device", "gpu"], "--device: must be auto, cpu"),
    (["--format", "mp3"], "--format: invalid choice"),
])
def test_cli_arguments_are_checked_with_named_errors(tmp_path, capsys, args, message):
    from acestep_engine.cli import main

    path = Blueprint(caption="x").save(tmp_path / "bp.json")
    with pytest.raises(SystemExit) as info:
        main(["generate", str(path), "--demo", *args])
    assert info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe", "is not UTF-8 text"), (b"[" * 100_000, "nested too deeply"), (b'{"bpm": 5000}', "bpm must be"),
])
def test_cli_names_a_bad_blueprint_file_before_loading_models(tmp_path, capsys, monkeypatch, content, message):
    from acestep_engine import engine as engine_module
    from acestep_engine.cli import main

    monkeypatch.setattr(engine_module.Engine, "demo", classmethod(lambda cls, **k: pytest.fail("loaded a model")))
    path = tmp_path / "bp.json"
    path.write_bytes(content)
    assert main(["generate", str(path), "--demo", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert main(["generate", str(tmp_path / "missing.json"), "--demo"]) == 2
    assert "missing.json could not be read" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    path.write_text(Blueprint().to_json())
    assert main(["generate", str(path), "--demo", "--out", str(tmp_path / "file")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_every_error_named_here_is_in_the_hierarchy():
    for error in (AudioFileError, BlueprintError, CheckpointError, LoRAError):
        assert issubclass(error, AceStepError)


@pytest.mark.parametrize("argv, message", [
    (["prepare", "{tmp}/absent"], "does not exist or is not a folder"),
    (["prepare", "{tmp}/songs", "--max-seconds", "nan"], "max_seconds must be between"),
    (["train", "{tmp}/songs", "--out", "{tmp}/o", "--rank", "0"], "rank must be"),
    (["train", "{tmp}/songs", "--out", "{tmp}/o", "--lr", "inf"], "lr must be"),
    (["train", "{tmp}/songs", "--out", "{tmp}/o", "--warmup", "-1"], "warmup must be"),
    (["train", "{tmp}/songs", "--out", "{tmp}/o"], "holds no prepared dataset"),
])
def test_lora_command_line_checks_before_loading_models(tmp_path, capsys, monkeypatch, argv, message):
    from acestep_engine import engine as engine_module
    from acestep_engine.lora.__main__ import main

    (tmp_path / "songs").mkdir()
    sf.write(str(tmp_path / "songs" / "a.wav"), np.zeros((4800, 2), np.float32), 48000)
    monkeypatch.setattr(engine_module.Engine, "demo", classmethod(lambda cls, **k: pytest.fail("loaded a model")))
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--demo"]) == 2
    assert message in capsys.readouterr().err


def test_lora_command_line_refuses_a_bad_device(capsys):
    from acestep_engine.lora.__main__ import main

    with pytest.raises(SystemExit):
        main(["prepare", "songs", "--device", "gpu0"])
    assert "--device: must be auto, cpu" in capsys.readouterr().err
