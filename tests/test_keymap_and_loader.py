"""The official checkpoint layout loads onto diffusers' modules, exactly and safely."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from acestep_engine import CheckpointError, Engine, MissingCheckpointError
from acestep_engine.models.keymap import COMPONENTS, diffusers_to_official, official_to_diffusers, split_state_dict
from acestep_engine.models.loader import build_modules, load_official, module_configs
from acestep_engine.models.tiny_checkpoints import REAL_SIZE_DIT, official_config

# Key names and shapes written out from the reference's 2B table (section 3.3).
OFFICIAL_2B_SHAPES = {
    "null_condition_emb": (1, 1, 2048),
    "decoder.scale_shift_table": (1, 2, 2048),
    "decoder.proj_in.1.weight": (2048, 192, 2),
    "decoder.proj_out.1.weight": (2048, 64, 2),
    "decoder.proj_out.1.bias": (64,),
    "decoder.condition_embedder.weight": (2048, 2048),
    "decoder.time_embed.linear_1.weight": (2048, 256),
    "decoder.time_embed_r.time_proj.weight": (12288, 2048),
    "decoder.layers.23.scale_shift_table": (1, 6, 2048),
    "decoder.layers.0.self_attn.q_proj.weight": (2048, 2048),
    "decoder.layers.0.cross_attn.k_proj.weight": (1024, 2048),
    "decoder.layers.5.self_attn.q_norm.weight": (128,),
    "decoder.layers.5.mlp.gate_proj.weight": (6144, 2048),
    "encoder.text_projector.weight": (2048, 1024),
    "encoder.lyric_encoder.embed_tokens.weight": (2048, 1024),
    "encoder.lyric_encoder.layers.7.self_attn.k_norm.weight": (128,),
    "encoder.timbre_encoder.special_token": (1, 1, 2048),
    "encoder.timbre_encoder.embed_tokens.weight": (2048, 64),
    "tokenizer.audio_acoustic_proj.weight": (2048, 64),
    "tokenizer.attention_pooler.special_token": (1, 1, 2048),
    "tokenizer.quantizer.project_in.weight": (6, 2048),
    "tokenizer.quantizer.project_out.weight": (2048, 6),
    "detokenizer.special_tokens": (1, 5, 2048),
    "detokenizer.proj_out.weight": (64, 2048),
}


def real_size_official_keys():
    modules = build_modules(REAL_SIZE_DIT, empty=True)
    shapes = {}
    for name in COMPONENTS:
        for key, tensor in modules[name].state_dict().items():
            if key != "silence_latent":
                shapes[diffusers_to_official(name, key)] = tuple(tensor.shape)
    return shapes


def test_real_size_config_has_exactly_the_official_keys_and_shapes():
    shapes = real_size_official_keys()
    assert len(shapes) == 677  # the official 2B state dict has 677 tensors
    for key, shape in OFFICIAL_2B_SHAPES.items():
        assert shapes[key] == shape, key
    assert not [k for k in shapes if any(p in k for p in ("to_q", "to_out", "norm_q", "proj_in_conv"))]
    total = sum(torch.Size(s).numel() for s in shapes.values())
    assert abs(total / 1e6 - 2393.87) < 0.05  # parameter count from the reference


@pytest.mark.parametrize("official, component, local", [
    ("decoder.proj_in.1.weight", "transformer", "proj_in_conv.weight"),
    ("decoder.proj_out.1.bias", "transformer", "proj_out_conv.bias"),
    ("decoder.layers.3.cross_attn.o_proj.weight", "transformer", "layers.3.cross_attn.to_out.0.weight"),
    ("decoder.layers.3.self_attn.q_norm.weight", "transformer", "layers.3.self_attn.norm_q.weight"),
    ("encoder.lyric_encoder.layers.0.self_attn.v_proj.weight", "condition_encoder",
     "lyric_encoder.layers.0.self_attn.to_v.weight"),
    ("null_condition_emb", "condition_encoder", "null_condition_emb"),
    ("tokenizer.quantizer.project_in.bias", "audio_tokenizer", "quantizer.project_in.bias"),
    ("detokenizer.layers.1.mlp.down_proj.weight", "detokenizer", "layers.1.mlp.down_proj.weight"),
])
def test_key_rename_both_ways(official, component, local):
    assert official_to_diffusers(official) == (component, local)
    assert diffusers_to_official(component, local) == official


def test_tiny_checkpoint_uses_official_names_and_layout(tiny_dir):
    dit = tiny_dir / "acestep-v15-turbo"
    assert {p.name for p in dit.iterdir()} >= {"config.json", "model.safetensors", "silence_latent.pt"}
    assert (tiny_dir / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    assert (tiny_dir / "Qwen3-Embedding-0.6B" / "tokenizer.json").is_file()
    keys = set(load_file(dit / "model.safetensors"))
    assert {"decoder.proj_in.1.weight", "decoder.layers.0.self_attn.q_proj.weight", "null_condition_emb",
            "encoder.timbre_encoder.special_token", "tokenizer.quantizer.project_out.weight",
            "detokenizer.special_tokens"} <= keys
    parts, unknown = split_state_dict(load_file(dit / "model.safetensors"))
    assert unknown == [] and all(parts[c] for c in COMPONENTS)
    silence = torch.load(dit / "silence_latent.pt", weights_only=True)
    assert silence.shape == (1, 16, 15000)  # [1, channels, 600 s at 25 Hz], like the official file


def test_loaded_modules_reproduce_diffusers_modules_with_the_same_weights(tmp_path):
    """Random diffusers modules -> official file -> our loader: every output identical."""
    from acestep_engine.models import write_tiny_checkpoints

    root = write_tiny_checkpoints(tmp_path, variant="turbo")
    cfg = json.loads((root / "acestep-v15-turbo" / "config.json").read_text())
    torch.manual_seed(123)
    reference = build_modules(cfg)  # fresh random weights, straight on diffusers' classes
    state = {}
    for name in COMPONENTS:
        for key, tensor in reference[name].state_dict().items():
            if key != "silence_latent":
                state[diffusers_to_official(name, key)] = tensor
    save_file(state, str(root / "acestep-v15-turbo" / "model.safetensors"))
    loaded = load_official(root, "acestep-v15-turbo", "cpu", torch.float32)

    g = torch.Generator().manual_seed(0)
    T, C, H, D = 30, cfg["audio_acoustic_hidden_dim"], cfg["hidden_size"], cfg["text_hidden_dim"]
    x, ctx = torch.randn(2, T, C, generator=g), torch.randn(2, T, 2 * C, generator=g)
    enc, t = torch.randn(2, 7, H, generator=g), torch.tensor([0.7, 0.3])
    from acestep_engine.runtime import prepare_transformer

    prepare_transformer(reference["transformer"])  # the loader applies the same fast paths: compare like with like
    for module in reference.values():
        module.eval()
    with torch.no_grad():
        a = reference["transformer"](x, t, t, enc, ctx, return_dict=False)[0]
        b = loaded.transformer(x, t, t, enc, ctx, return_dict=False)[0]
        assert torch.equal(a, b)
        inputs = dict(text_hidden_states=torch.randn(2, 5, D, generator=g),
                      text_attention_mask=torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
                      lyric_hidden_states=torch.randn(2, 6, D, generator=g),
                      lyric_attention_mask=torch.tensor([[1] * 6, [1, 1, 0, 0, 0, 0]]),
                      refer_audio_acoustic_hidden_states_packed=torch.randn(2, 20, C, generator=g),
                      refer_audio_order_mask=torch.tensor([0, 1]))
        for got, want in zip(loaded.condition_encoder(**inputs), reference["condition_encoder"](**inputs)):
            assert torch.equal(got, want)
        q_ref, idx_ref = reference["audio_tokenizer"].tokenize(x)
        q, idx = loaded.audio_tokenizer.tokenize(x)
        assert torch.equal(idx, idx_ref) and torch.equal(q, q_ref)
        assert torch.equal(loaded.detokenizer(q), reference["detokenizer"](q_ref))


def _copy_set(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_tensor_is_named_with_its_shape(tiny_dir, tmp_path):
    root = _copy_set(tiny_dir, tmp_path / "set")
    path = root / "acestep-v15-turbo" / "model.safetensors"
    state = load_file(path)
    del state["decoder.layers.1.cross_attn.k_proj.weight"]
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match=r"missing tensor decoder\.layers\.1\.cross_attn\.k_proj\.weight "
                                              r"\(expected shape \(16, 32\)\)"):
        Engine.from_pretrained(root, device="cpu")


def test_misshaped_tensor_names_key_and_both_shapes(tiny_dir, tmp_path):
    root = _copy_set(tiny_dir, tmp_path / "set")
    path = root / "acestep-v15-turbo" / "model.safetensors"
    state = load_file(path)
    state["encoder.text_projector.weight"] = torch.zeros(32, 17)
    save_file(state, str(path))
    with pytest.raises(CheckpointError) as err:
        Engine.from_pretrained(root, device="cpu")
    assert "encoder.text_projector.weight has shape (32, 17), the model expects (32, 16)" in str(err.value)


def test_corrupt_weights_file_is_reported(tiny_dir, tmp_path):
    root = _copy_set(tiny_dir, tmp_path / "set")
    (root / "acestep-v15-turbo" / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="model.safetensors is not a readable safetensors file"):
        Engine.from_pretrained(root, device="cpu")


class Exploit:
    def __reduce__(self):
        return (print, ("pickle code ran",))


def test_silence_latent_is_never_unpickled(tiny_dir, tmp_path, capsys):
    root = _copy_set(tiny_dir, tmp_path / "set")
    torch.save(Exploit(), root / "acestep-v15-turbo" / "silence_latent.pt")
    with pytest.raises(CheckpointError, match="silence_latent.pt is not a readable tensor file"):
        Engine.from_pretrained(root, device="cpu")
    assert "pickle code ran" not in capsys.readouterr().out


def test_checkpoint_python_files_are_not_executed(tiny_dir):
    # The tiny set ships modeling_*.py files that raise when imported, as a trap.
    trap = (tiny_dir / "acestep-v15-turbo" / "modeling_acestep_v15_turbo.py").read_text()
    assert "raise RuntimeError" in trap
    engine = Engine.from_pretrained(tiny_dir, device="cpu")
    assert engine.variant.name == "acestep-v15-turbo"


def test_config_drives_every_derived_quantity(tiny16_dir):
    engine = Engine.from_pretrained(tiny16_dir, device="cpu")
    assert (engine.sample_rate, engine.hop_length, engine.frame_rate, engine.latent_channels) == (16000, 320, 50.0, 8)
    assert engine.models.silence_latent.shape == (1, 30000, 8)
    assert engine.frames_for(10) == 500


def test_module_configs_follow_xl_encoder_keys():
    cfg = dict(REAL_SIZE_DIT, hidden_size=2560, intermediate_size=9728, num_hidden_layers=32,
               num_attention_heads=32, encoder_hidden_size=2048, encoder_intermediate_size=6144,
               encoder_num_attention_heads=16, encoder_num_key_value_heads=8, in_channels=192)
    configs = module_configs(cfg)
    assert configs["transformer"]["hidden_size"] == 2560 and configs["transformer"]["encoder_hidden_size"] == 2048
    assert configs["condition_encoder"]["hidden_size"] == 2048
    assert configs["condition_encoder"]["num_attention_heads"] == 16
    assert configs["detokenizer"]["hidden_size"] == 2048


def test_config_without_required_key_is_reported(tiny_dir, tmp_path):
    root = _copy_set(tiny_dir, tmp_path / "set")
    cfg_path = root / "acestep-v15-turbo" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["hidden_size"]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="config.json lacks the required key 'hidden_size'"):
        Engine.from_pretrained(root, device="cpu")


def test_official_config_matches_reference_keys():
    cfg = official_config("tiny", "turbo")
    for key in REAL_SIZE_DIT:
        assert key in cfg, key
    assert cfg["auto_map"]["AutoModel"].endswith("AceStepConditionGenerationModel")


@pytest.mark.parametrize("group_bytes", [1, 4096, 1 << 30])
def test_read_file_gives_every_tensor_of_the_file_in_the_asked_dtype(tiny_dir, group_bytes):
    from acestep_engine.runtime.weight_files import read_file

    path = tiny_dir / "acestep-v15-turbo" / "model.safetensors"
    expected = load_file(str(path))
    for dtype in (torch.float32, torch.bfloat16):
        weights = read_file(path, dtype, group_bytes=group_bytes)
        assert list(weights) == list(expected)
        for key, tensor in expected.items():
            assert weights[key].dtype == dtype and torch.equal(weights[key], tensor.to(dtype)), key
