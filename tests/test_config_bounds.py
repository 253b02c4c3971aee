"""A checkpoint folder from someone else (a forum download) cannot exhaust the machine: a config whose
fields are each inside their limits but whose product asks for more memory than the machine has is
refused before any tensor exists, with the numbers; the estimates count what the real modules hold.
Also here: a text encoder config of another model type, a NaN or huge silence latent, a safetensors
header over the format's limit, a config.json with an enormous number, a range error naming its end."""

import json
import math
import shutil

import pytest
import torch

from acestep_engine import CheckpointError, Engine
from acestep_engine.models import config_checks
from acestep_engine.models.config_checks import (DIT_REQUIRED, DIT_SIZES, MAX_FSQ_CODES, check_dit_config,
                                                 check_safetensors_file, check_text_encoder_config, check_vae_config,
                                                 dit_footprint, text_encoder_footprint, vae_footprint)
from acestep_engine.models.tiny_checkpoints import (REAL_SIZE_DIT, REAL_SIZE_TEXT_ENCODER, REAL_SIZE_VAE,
                                                    official_config)

GIB = 1 << 30
XL_DIT = dict(REAL_SIZE_DIT, hidden_size=2560, intermediate_size=9728, num_hidden_layers=32, num_attention_heads=32,
              num_key_value_heads=8, encoder_hidden_size=2048, encoder_intermediate_size=6144,
              encoder_num_attention_heads=16, encoder_num_key_value_heads=8)


def _dit_sizes(cfg):
    return {k: cfg[k] for k in DIT_SIZES if cfg.get(k) is not None}


# ---------------------------------------------------------------------------------- the estimates are right

def _meta_parameters(modules) -> int:
    return sum(p.numel() for m in modules if m is not None for p in m.parameters())


@pytest.mark.parametrize("cfg", [official_config("tiny"), official_config("demo"), REAL_SIZE_DIT, XL_DIT],
                         ids=["tiny", "demo", "2B", "XL"])
def test_the_dit_estimate_counts_what_the_modules_hold(cfg):
    from acestep_engine.models.loader import build_modules

    cfg = {**cfg, "layer_types": None}
    actual = _meta_parameters(build_modules(cfg, empty=True).values())
    estimate = dit_footprint(_dit_sizes(cfg), cfg).parameters
    assert 0.9 * actual <= estimate <= actual, (estimate, actual)  # a lower bound, close at every size
    if cfg["hidden_size"] >= 2048:
        assert estimate >= 0.99 * actual


@pytest.mark.parametrize("preset", ["tiny", "tiny-16k", "real"])
def test_the_vae_estimate_counts_what_the_module_holds(preset):
    from accelerate import init_empty_weights
    from diffusers import AutoencoderOobleck

    from acestep_engine.models.tiny_checkpoints import PRESETS

    if preset == "real":
        cfg = REAL_SIZE_VAE
    else:
        p = PRESETS[preset]
        cfg = dict(encoder_hidden_size=2 * p["latent_channels"], downsampling_ratios=p["downsampling_ratios"],
                   channel_multiples=p["vae_multiples"], decoder_channels=p["vae_channels"],
                   decoder_input_channels=p["latent_channels"], audio_channels=2, sampling_rate=p["sample_rate"])
    with init_empty_weights():
        vae = AutoencoderOobleck(**cfg)
    actual = _meta_parameters([vae])
    assert 0.9 * actual <= vae_footprint(cfg).parameters <= actual


def test_the_text_encoder_estimate_counts_what_the_model_holds():
    from accelerate import init_empty_weights
    from transformers import Qwen3Config, Qwen3Model

    with init_empty_weights():
        model = Qwen3Model(Qwen3Config(**REAL_SIZE_TEXT_ENCODER))
    actual = _meta_parameters([model])
    assert 0.99 * actual <= text_encoder_footprint(REAL_SIZE_TEXT_ENCODER).parameters <= actual


# ---------------------------------------------------------------------------------- products beyond the machine

def test_real_checkpoints_pass_on_a_machine_that_can_hold_them():
    check_dit_config(dict(REAL_SIZE_DIT), "dit/config.json", memory=8 * GIB)
    check_dit_config(dict(XL_DIT), "xl/config.json", memory=16 * GIB)
    check_vae_config(dict(REAL_SIZE_VAE), "vae/config.json", memory=2 * GIB)
    check_text_encoder_config(dict(REAL_SIZE_TEXT_ENCODER, model_type="qwen3"), "te/config.json", memory=2 * GIB)
    for preset in ("tiny", "tiny-16k", "demo"):
        check_dit_config(official_config(preset), "tiny/config.json", memory=GIB // 4)


def test_a_dit_whose_fields_pass_but_whose_product_cannot_fit_is_refused_with_the_numbers():
    cfg = dict(REAL_SIZE_DIT, hidden_size=8192, intermediate_size=32768, num_hidden_layers=8, num_attention_heads=64,
               num_key_value_heads=8, layer_types=None)
    with pytest.raises(CheckpointError) as info:
        check_dit_config(cfg, "forum/config.json", memory=16 * GIB)
    message = str(info.value)
    assert message.startswith("forum/config.json: this DiT needs at least ")
    assert "billion parameters" in message and "more than this machine's 16.0 GiB" in message
    assert "num_hidden_layers=8, hidden_size=8192, intermediate_size=32768" in message
    check_dit_config(cfg, "forum/config.json", memory=64 * GIB)  # the same config fits a bigger machine


def test_a_vae_of_128_gib_is_refused_before_it_is_built():
    cfg = dict(REAL_SIZE_VAE, encoder_hidden_size=2048, decoder_channels=2048, channel_multiples=[1, 2, 4, 8, 32])
    assert vae_footprint(cfg).bytes_needed() > 120 * GIB
    with pytest.raises(CheckpointError, match=r"this VAE needs at least 126.6 GiB .*more than this machine's 64.0 GiB"
                                              r".*decoder_channels=2048"):
        check_vae_config(cfg, "vae/config.json", memory=64 * GIB)


def test_a_codebook_beyond_the_limit_is_refused():
    cfg = official_config("tiny")
    cfg["fsq_input_levels"] = [65536, 65536, 2]
    with pytest.raises(CheckpointError, match=f"codebook of 8,589,934,592 codes; at most {MAX_FSQ_CODES:,}"):
        check_dit_config(cfg, "c.json", memory=64 * GIB)


def test_the_machine_memory_is_what_the_system_reports():
    memory = config_checks.machine_memory()
    assert memory is None or GIB // 4 < memory < 1 << 50


def test_the_default_is_this_machines_memory(monkeypatch):
    monkeypatch.setattr(config_checks, "machine_memory", lambda: 3 * GIB)
    with pytest.raises(CheckpointError, match="more than this machine's 3.0 GiB"):
        check_dit_config(dict(REAL_SIZE_DIT), "dit/config.json")
    monkeypatch.setattr(config_checks, "machine_memory", lambda: None)  # a system that does not say: no bound
    check_dit_config(dict(REAL_SIZE_DIT), "dit/config.json")


def _copy_checkpoints(tiny_dir, tmp_path):
    root = tmp_path / "ck"
    shutil.copytree(tiny_dir, root, ignore=shutil.ignore_patterns("acestep-v15-base", "acestep-5Hz*"))
    return root


@pytest.mark.parametrize("part, change", [
    ("vae", dict(encoder_hidden_size=4096, decoder_channels=4096, channel_multiples=[1, 2, 4, 8, 16],
                 downsampling_ratios=[2, 4, 4, 6, 10])),
    ("Qwen3-Embedding-0.6B", dict(vocab_size=1 << 24, hidden_size=32768, num_attention_heads=256,
                                  num_key_value_heads=256, head_dim=128)),
    ("acestep-v15-turbo", dict(hidden_size=8192, intermediate_size=32768, num_hidden_layers=16, num_attention_heads=64,
                               head_dim=128,
                               num_key_value_heads=8, layer_types=None)),
])
def test_loading_refuses_an_oversized_part_before_building_anything(tiny_dir, tmp_path, monkeypatch, part, change):
    import diffusers
    import transformers

    from acestep_engine.models import loader

    root = _copy_checkpoints(tiny_dir, tmp_path)
    path = root / part / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(change)
    path.write_text(json.dumps(cfg))
    built = []
    monkeypatch.setattr(loader, "build_modules", lambda *a, **k: built.append("dit"))
    monkeypatch.setattr(diffusers.AutoencoderOobleck, "from_pretrained", lambda *a, **k: built.append("vae"))
    monkeypatch.setattr(transformers.Qwen3Model, "from_pretrained", lambda *a, **k: built.append("text"))
    monkeypatch.setattr(config_checks, "machine_memory", lambda: 32 * GIB)
    with pytest.raises(CheckpointError, match=f"{part}/config.json: this .* needs at least .* more than this "
                                              "machine's 32.0 GiB"):
        Engine.from_pretrained(root, dit="acestep-v15-turbo", device="cpu")
    assert built == []


# ---------------------------------------------------------------------------------- other parts of a folder

@pytest.mark.parametrize("model_type, refused", [("llama", True), ("bert", True), (5, True), ("qwen3", False),
                                                 (None, False)])
def test_a_text_encoder_of_another_model_type_is_not_loaded_as_qwen3(model_type, refused):
    cfg = dict(REAL_SIZE_TEXT_ENCODER)
    if model_type is not None:
        cfg["model_type"] = model_type
    if refused:
        with pytest.raises(CheckpointError, match=f"model_type must be 'qwen3' .got {model_type!r}"):
            check_text_encoder_config(cfg, "te/config.json", memory=64 * GIB)
    else:
        check_text_encoder_config(cfg, "te/config.json", memory=64 * GIB)


def test_a_text_encoder_folder_of_another_model_type_is_refused_at_loading(tiny_dir, tmp_path):
    root = _copy_checkpoints(tiny_dir, tmp_path)
    path = root / "Qwen3-Embedding-0.6B" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "model_type": "llama"}))
    with pytest.raises(CheckpointError, match=r"Qwen3-Embedding-0.6B/config.json: model_type must be 'qwen3'"):
        Engine.from_pretrained(root, dit="acestep-v15-turbo", device="cpu")


@pytest.mark.parametrize("fill", [float("nan"), float("inf")])
def test_a_silence_latent_that_is_not_finite_is_named(tiny_dir, tmp_path, fill):
    root = _copy_checkpoints(tiny_dir, tmp_path)
    path = root / "acestep-v15-turbo" / "silence_latent.pt"
    silence = torch.load(path, weights_only=True)
    silence[0, 0, 3] = fill
    torch.save(silence, path)
    with pytest.raises(CheckpointError, match=f"{path} must hold finite floating-point values .* 1 of "):
        Engine.from_pretrained(root, dit="acestep-v15-turbo", device="cpu")


def test_a_huge_silence_latent_is_refused_unread(tmp_path):
    from acestep_engine.models.loader import MAX_SILENCE_BYTES, load_silence_latent

    path = tmp_path / "silence_latent.pt"
    with open(path, "wb") as f:
        f.truncate(MAX_SILENCE_BYTES + 1)  # sparse
    with pytest.raises(CheckpointError, match=f"{path} is [\\d,]+ bytes; a silence latent is at most"):
        load_silence_latent(path, 64)


def test_a_header_over_the_format_limit_is_not_called_truncated(tmp_path):
    import struct

    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", 200 << 20) + b"{}")
    with pytest.raises(CheckpointError) as info:
        check_safetensors_file(path)
    assert "more than the 104,857,600 the format allows" in str(info.value)
    assert "truncated" not in str(info.value)
    path.write_bytes(struct.pack("<Q", 1000) + b"{}")
    with pytest.raises(CheckpointError, match="it is truncated"):
        check_safetensors_file(path)


@pytest.mark.parametrize("digits", [5000, 200_000])
def test_a_config_with_an_enormous_number_is_named(tiny_dir, tmp_path, digits):
    root = _copy_checkpoints(tiny_dir, tmp_path)
    path = root / "acestep-v15-turbo" / "config.json"
    path.write_text(path.read_text().replace('"num_hidden_layers": 2', '"num_hidden_layers": ' + "9" * digits))
    with pytest.raises(CheckpointError, match=f"{path} is not usable JSON: it holds a number too long"):
        Engine.from_pretrained(root, dit="acestep-v15-turbo", device="cpu")


@pytest.mark.parametrize("value, end", [(0, "too small"), (-5, "too small"), (513, "too large"),
                                        (10 ** 4000, "too large")])
def test_a_range_error_names_the_end_the_value_passed(value, end):
    cfg = official_config("tiny")
    cfg["num_hidden_layers"] = value
    with pytest.raises(CheckpointError) as info:
        check_dit_config(cfg, "c.json")
    assert f"num_hidden_layers must be between 1 and 512 (got" in str(info.value) and end in str(info.value)
    assert len(str(info.value)) < 300


def test_a_config_file_too_large_for_a_config_is_refused_unread(tiny_dir, tmp_path):
    root = _copy_checkpoints(tiny_dir, tmp_path)
    path = root / "vae" / "config.json"
    with open(path, "r+b") as f:
        f.truncate(1 << 30)  # sparse
    with pytest.raises(CheckpointError, match=f"{path} is 1024.0 MB; a config.json may be at most 16.0 MB"):
        Engine.from_pretrained(root, dit="acestep-v15-turbo", device="cpu")


def test_estimates_never_overflow_or_take_long_at_the_field_limits():
    cfg = {k: hi for k, (lo, hi) in DIT_SIZES.items()}
    cfg.update(num_key_value_heads=512, num_attention_heads=512, encoder_num_attention_heads=512,
               encoder_num_key_value_heads=512)
    assert all(k in cfg for k in DIT_REQUIRED)
    footprint = dit_footprint(_dit_sizes(cfg), cfg)
    assert footprint.parameters > 1e14 and math.isfinite(footprint.bytes_needed())
    with pytest.raises(CheckpointError, match="billion parameters"):
        check_dit_config(cfg, "c.json", memory=1 << 50)
