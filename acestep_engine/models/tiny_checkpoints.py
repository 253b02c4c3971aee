"""Tiny, randomly initialised ACE-Step 1.5 checkpoint sets in the official on-disk layout.

Tests, the offline demo and the notebooks run the real loader on these: the DiT folder holds a
config.json with the official keys, a model.safetensors with the official tensor names, a
silence_latent.pt and (like the hub) Python files, which here raise if anyone executes them; the
VAE and text-encoder folders are written by diffusers' and transformers' own `save_pretrained`,
and the tokenizer is a byte-level BPE we build ourselves (256 one-byte tokens), or, given
`tokenizer=folder`, a real one such as Qwen3's: the text encoder then uses it as it is, the LM adds
the 65,535 audio-code tokens to it, and both embedding tables are sized to it. Random weights make
noise, not music.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .keymap import COMPONENTS, DERIVED_KEYS, diffusers_to_official
from .variants import TEXT_ENCODER_DIR, VAE_DIR

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")

# Each preset fixes the audio format (VAE) and the model widths. "tiny" keeps the official audio
# format (48 kHz, hop 1920, 25 Hz) with fewer latent channels; "tiny-16k" differs from the
# official format in every derived quantity (rate, hop, frame rate, latent channels) so that
# tests catch any hard-coded 48000, 1920, 25 or 64.
PRESETS = {
    "tiny": dict(sample_rate=48000, downsampling_ratios=[2, 4, 4, 6, 10], latent_channels=16,
                 hidden_size=32, intermediate_size=64, layers=2, heads=2, kv_heads=1, head_dim=16,
                 text_hidden_dim=16, text_layers=1, vae_channels=4, vae_multiples=[1, 1, 1, 2, 2],
                 sliding_window=4),
    "tiny-16k": dict(sample_rate=16000, downsampling_ratios=[2, 4, 4, 10], latent_channels=8,
                     hidden_size=32, intermediate_size=64, layers=2, heads=2, kv_heads=1, head_dim=16,
                     text_hidden_dim=16, text_layers=1, vae_channels=4, vae_multiples=[1, 1, 2, 2],
                     sliding_window=8),
    "demo": dict(sample_rate=48000, downsampling_ratios=[2, 4, 4, 6, 10], latent_channels=16,
                 hidden_size=64, intermediate_size=128, layers=4, heads=4, kv_heads=2, head_dim=16,
                 text_hidden_dim=32, text_layers=2, vae_channels=8, vae_multiples=[1, 1, 1, 2, 2],
                 sliding_window=16),
}

ENV_DEMO_DIR = "ACESTEP_DEMO_DIR"


def demo_checkpoints_dir() -> Path:
    """`$ACESTEP_DEMO_DIR`, else `~/.cache/acestep-workbench/demo-v2`."""
    env = os.environ.get(ENV_DEMO_DIR)
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "acestep-workbench" / "demo-v2"


DIT_FOLDERS = {"turbo": "acestep-v15-turbo", "base": "acestep-v15-base", "sft": "acestep-v15-sft"}

# The official checkpoints' sizes (reference 2): the 2B turbo DiT's config.json keys that set shapes,
# the Oobleck VAE's and Qwen3-Embedding-0.6B's. Benchmarks build real-size random models from them,
# and tests check estimates and key maps against them.
REAL_SIZE_DIT = {
    "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 24, "num_attention_heads": 16,
    "num_key_value_heads": 8, "head_dim": 128, "in_channels": 192, "audio_acoustic_hidden_dim": 64,
    "patch_size": 2, "text_hidden_dim": 1024, "num_lyric_encoder_hidden_layers": 8, "timbre_hidden_dim": 64,
    "num_timbre_encoder_hidden_layers": 4, "timbre_fix_frame": 750, "pool_window_size": 5,
    "num_attention_pooler_hidden_layers": 2, "fsq_dim": 2048, "fsq_input_levels": [8, 8, 8, 5, 5, 5],
    "fsq_input_num_quantizers": 1, "sliding_window": 128, "use_sliding_window": True, "model_version": "turbo",
    "is_turbo": True,
}
REAL_SIZE_VAE = dict(encoder_hidden_size=128, downsampling_ratios=[2, 4, 4, 6, 10], channel_multiples=[1, 2, 4, 8, 16],
                     decoder_channels=128, decoder_input_channels=64, audio_channels=2, sampling_rate=48000)
REAL_SIZE_TEXT_ENCODER = dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                              num_key_value_heads=8, head_dim=128, vocab_size=151669, max_position_embeddings=32768,
                              rope_theta=1000000.0, tie_word_embeddings=True)

_CODE_TRAP = '''raise RuntimeError(
    "acestep-workbench must never execute code shipped with a checkpoint, but {name} was imported")
'''


def official_config(preset: str = "tiny", variant: str = "turbo") -> dict:
    """A config.json in the official AceStepConfig format, sized by `preset`."""
    p = PRESETS[preset]
    frame_rate = p["sample_rate"] / _prod(p["downsampling_ratios"])
    layers = p["layers"]
    modeling = "modeling_acestep_v15_turbo" if variant == "turbo" else "modeling_acestep_v15_base"
    return {
        "architectures": ["AceStepConditionGenerationModel"],
        "auto_map": {"AutoConfig": "configuration_acestep_v15.AceStepConfig",
                     "AutoModel": f"{modeling}.AceStepConditionGenerationModel"},
        "model_type": "acestep",
        "model_version": variant,
        "is_turbo": variant == "turbo",
        "hidden_size": p["hidden_size"],
        "intermediate_size": p["intermediate_size"],
        "num_hidden_layers": layers,
        "num_audio_decoder_hidden_layers": layers,
        "num_attention_heads": p["heads"],
        "num_key_value_heads": p["kv_heads"],
        "head_dim": p["head_dim"],
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "max_position_embeddings": 32768,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "use_sliding_window": True,
        "sliding_window": p["sliding_window"],
        "layer_types": ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(layers)],
        "in_channels": 3 * p["latent_channels"],
        "audio_acoustic_hidden_dim": p["latent_channels"],
        "patch_size": 2,
        "text_hidden_dim": p["text_hidden_dim"],
        "num_lyric_encoder_hidden_layers": 2,
        "timbre_hidden_dim": p["latent_channels"],
        "num_timbre_encoder_hidden_layers": 1,
        "timbre_fix_frame": int(round(30 * frame_rate)),
        "pool_window_size": 5,
        "num_attention_pooler_hidden_layers": 2,
        "fsq_dim": p["hidden_size"],
        "fsq_input_levels": [8, 8, 8, 5, 5, 5],
        "fsq_input_num_quantizers": 1,
        "vocab_size": 64003,
        "tie_word_embeddings": True,
        "data_proportion": 0.5,
        "timestep_mu": -0.4,
        "timestep_sigma": 1.0,
        "torch_dtype": "float32",
        "acestep_workbench_random_weights": True,
    }


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def build_tokenizer(folder: Path, audio_codes: int = 0, chat_template: str | None = None) -> int:
    """Write a byte-level BPE tokenizer (Qwen2Tokenizer files) with the Qwen3 special tokens.

    `audio_codes` > 0 adds the planner's `<|audio_code_0|>`... tokens and makes `<|im_end|>` the
    end of a turn, as in the 5 Hz LM's tokenizer. Returns the vocabulary size.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS[:3]])
    # Like Qwen3, <think> and </think> are added tokens but not special ones (decoding keeps them).
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in SPECIAL_TOKENS[3:]])
    if audio_codes:
        tokenizer.add_tokens([AddedToken(f"<|audio_code_{i}|>", special=False, normalized=False)
                              for i in range(audio_codes)])
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    eos = "<|im_end|>" if audio_codes else "<|endoftext|>"
    config = {"tokenizer_class": "Qwen2Tokenizer", "eos_token": eos, "pad_token": "<|endoftext|>",
              "model_max_length": 32768, "clean_up_tokenization_spaces": False}
    if chat_template:
        config["chat_template"] = chat_template
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"eos_token": eos, "pad_token": "<|endoftext|>"}, indent=2))
    return tokenizer.get_vocab_size()


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
                   "added_tokens.json", "chat_template.jinja")


def _load_tokenizer(folder: Path):
    """transformers' tokenizer of a folder of tokenizer files (checked: it must hold tokenizer.json)."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file():
        raise ValueError(f"tokenizer must be a folder with tokenizer.json (got {str(folder)!r})")
    return AutoTokenizer.from_pretrained(folder)


def copy_tokenizer(source: Path, folder: Path) -> int:
    """Copy a tokenizer's files unchanged into `folder`; returns its size (`len(tokenizer)`)."""
    import shutil

    tokenizer = _load_tokenizer(source)
    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (Path(source) / name).is_file():
            shutil.copyfile(Path(source) / name, folder / name)
    return len(tokenizer)


def write_text_encoder(folder: Path, preset: str = "tiny", seed: int = 0, tokenizer: Path | None = None) -> None:
    """A tiny Qwen3-Embedding in the official layout, on our byte-level tokenizer or on `tokenizer`."""
    from transformers import Qwen3Config, Qwen3Model

    p = PRESETS[preset]
    if tokenizer is None:
        build_tokenizer(folder)
        vocab_size, special = 256 + len(SPECIAL_TOKENS), 256
    else:
        vocab_size = copy_tokenizer(tokenizer, folder)
        special = _load_tokenizer(folder).convert_tokens_to_ids("<|endoftext|>")
    config = Qwen3Config(vocab_size=vocab_size, hidden_size=p["text_hidden_dim"],
                         intermediate_size=2 * p["text_hidden_dim"], num_hidden_layers=p["text_layers"],
                         num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                         max_position_embeddings=4096, bos_token_id=special, eos_token_id=special,
                         pad_token_id=special)
    torch.manual_seed(seed)
    Qwen3Model(config).save_pretrained(folder, safe_serialization=True)


LM_FOLDER = "acestep-5Hz-lm-0.6B"
LM_CODE_TOKENS = 65535  # as the official LM: codes 0-65534, of which the FSQ codebook uses 0-63999


def write_lm_tokenizer(source: Path, folder: Path) -> int:
    """The 5 Hz LM's tokenizer made from a Qwen3 tokenizer, as the official LM's is: the 65,535
    `<|audio_code_N|>` tokens added in order (ids `len(source) + N`), `<|im_end|>` the end of a turn,
    the source's own chat template kept. Returns the vocabulary size."""
    from tokenizers import AddedToken

    tokenizer = _load_tokenizer(source)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"tokenizer {source} has no chat template: the LM's prompts are rendered by it")
    first = len(tokenizer)
    tokenizer.add_tokens([AddedToken(f"<|audio_code_{i}|>", special=False, normalized=False)
                          for i in range(LM_CODE_TOKENS)])
    if tokenizer.convert_tokens_to_ids("<|audio_code_0|>") != first:
        raise ValueError(f"tokenizer {source}: the audio-code tokens did not get consecutive ids from {first}")
    tokenizer.eos_token = "<|im_end|>"
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    return len(tokenizer)


def write_lm(folder: Path, preset: str = "tiny", seed: int = 0, with_model_prefix: bool = True,
             tokenizer: Path | None = None) -> None:
    """A tiny 5 Hz LM in the official layout: a Qwen3ForCausalLM (tied embeddings) saved as
    model.safetensors, and our byte-level tokenizer with the ChatML, think and audio-code tokens
    and a chat template, or (`tokenizer=folder`) that Qwen3 tokenizer with the audio-code tokens
    added (`write_lm_tokenizer`). `with_model_prefix=False` drops the `model.` key prefix, as some
    upstream LM checkpoints do."""
    from safetensors.torch import save_file
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from .chat_template import CHAT_TEMPLATE

    p = PRESETS[preset]
    if tokenizer is None:
        vocab_size = build_tokenizer(folder, audio_codes=LM_CODE_TOKENS, chat_template=CHAT_TEMPLATE)
    else:
        vocab_size = write_lm_tokenizer(tokenizer, folder)
    from tokenizers import Tokenizer

    tokens = Tokenizer.from_file(str(folder / "tokenizer.json"))
    width = 2 * p["text_hidden_dim"]
    config = Qwen3Config(vocab_size=vocab_size, hidden_size=width, intermediate_size=2 * width,
                         num_hidden_layers=p["text_layers"], num_attention_heads=2, num_key_value_heads=1,
                         head_dim=16, max_position_embeddings=8192, tie_word_embeddings=True,
                         bos_token_id=tokens.token_to_id("<|endoftext|>"),
                         eos_token_id=tokens.token_to_id("<|im_end|>"),
                         pad_token_id=tokens.token_to_id("<|endoftext|>"))
    torch.manual_seed(seed + 3)
    model = Qwen3ForCausalLM(config)
    model.save_pretrained(folder, safe_serialization=True)
    if not with_model_prefix:
        from safetensors.torch import load_file

        state = load_file(str(folder / "model.safetensors"))
        save_file({k.removeprefix("model."): v for k, v in state.items()}, str(folder / "model.safetensors"),
                  metadata={"format": "pt"})
    (folder / "modeling_qwen3_acestep.py").write_text(_CODE_TRAP.format(name="modeling_qwen3_acestep.py"))


def write_vae(folder: Path, preset: str = "tiny", seed: int = 0):
    from diffusers import AutoencoderOobleck

    p = PRESETS[preset]
    torch.manual_seed(seed + 1)
    # Oobleck's encoder width is also its output: mean and scale of every latent channel.
    vae = AutoencoderOobleck(encoder_hidden_size=2 * p["latent_channels"],
                             downsampling_ratios=p["downsampling_ratios"],
                             channel_multiples=p["vae_multiples"],
                             decoder_channels=p["vae_channels"], decoder_input_channels=p["latent_channels"],
                             audio_channels=2, sampling_rate=p["sample_rate"])
    vae.save_pretrained(folder, safe_serialization=True)
    return vae


def silence_latent_for(vae, frames: int) -> torch.Tensor:
    """VAE-encoded digital silence, [1, channels, frames] like the official file.

    Silence is stationary, so one encoded frame from the middle of 1 s of zeros is tiled.
    """
    hop = _prod(vae.config.downsampling_ratios)
    with torch.no_grad():
        zeros = torch.zeros(1, 2, hop * 64)
        mean = vae.encode(zeros).latent_dist.mean  # [1, C, 64]
    frame = mean[:, :, mean.shape[-1] // 2: mean.shape[-1] // 2 + 1]
    return frame.repeat(1, 1, frames).contiguous()


def official_state_dict(config: dict, seed: int = 0, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Random weights for `config`, under the official checkpoint's tensor names."""
    from .loader import build_modules

    torch.manual_seed(seed + 2)
    modules = build_modules(config)
    state = {}
    for name in COMPONENTS:
        for key, tensor in modules[name].state_dict().items():
            if key in DERIVED_KEYS.get(name, ()):
                continue
            state[diffusers_to_official(name, key)] = tensor.detach().to(dtype).contiguous()
    return state


def write_dit(folder: Path, vae, preset: str = "tiny", variant: str = "turbo", seed: int = 0,
              dtype=torch.float32) -> None:
    from safetensors.torch import save_file

    config = official_config(preset, variant)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_file(official_state_dict(config, seed, dtype), str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    frame_rate = vae.config.sampling_rate / _prod(vae.config.downsampling_ratios)
    torch.save(silence_latent_for(vae, int(round(600 * frame_rate))), folder / "silence_latent.pt")
    modeling = "modeling_acestep_v15_turbo.py" if variant == "turbo" else "modeling_acestep_v15_base.py"
    for name in ("configuration_acestep_v15.py", modeling):
        (folder / name).write_text(_CODE_TRAP.format(name=name))


def write_tiny_checkpoints(path, variant: str = "turbo", preset: str = "tiny", seed: int = 0,
                           dtype=torch.float32, with_lm: bool = False, tokenizer=None) -> Path:
    """Write a complete checkpoint set (DiT `variant`, VAE, text encoder) under `path`.

    `variant` is "turbo", "base" or "sft" (folder `acestep-v15-<variant>`). Several variants can
    share one folder: the VAE and text encoder are written once per preset. `with_lm` adds a tiny
    5 Hz LM planner as `acestep-5Hz-lm-0.6B/`. `tokenizer` (a folder with a Qwen3 tokenizer.json,
    tokenizer_config.json with its chat template, ...) builds the set on that real vocabulary
    instead of our byte-level one (see the module docstring). Returns `path`.
    """
    if variant not in DIT_FOLDERS:
        raise ValueError(f"variant must be one of {', '.join(DIT_FOLDERS)} (got {variant!r})")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)} (got {preset!r})")
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    marker = root / "acestep_workbench_checkpoints.json"
    info = json.loads(marker.read_text()) if marker.is_file() else {}
    if info.get("preset") not in (None, preset):
        raise ValueError(f"{root} already holds '{info['preset']}' checkpoints; use another folder for '{preset}'")
    vocabulary = "byte-level" if tokenizer is None else _tokenizer_fingerprint(tokenizer)
    if info.get("vocabulary", "byte-level") != vocabulary and info:
        raise ValueError(f"{root} already holds checkpoints on another tokenizer; use another folder")
    from diffusers import AutoencoderOobleck

    if (root / VAE_DIR / "config.json").is_file() and info.get("preset") == preset:
        vae = AutoencoderOobleck.from_pretrained(root / VAE_DIR)
    else:
        vae = write_vae(root / VAE_DIR, preset, seed)
        write_text_encoder(root / TEXT_ENCODER_DIR, preset, seed, tokenizer=tokenizer)
    write_dit(root / DIT_FOLDERS[variant], vae, preset, variant, seed, dtype)
    if with_lm and not (root / LM_FOLDER / "model.safetensors").is_file():
        write_lm(root / LM_FOLDER, preset, seed, tokenizer=tokenizer)
    variants = sorted(set(info.get("variants", [])) | {variant})
    marker.write_text(json.dumps({"preset": preset, "seed": seed, "variants": variants, "vocabulary": vocabulary,
                                  "random_weights": True}, indent=2))
    return root


def _tokenizer_fingerprint(folder) -> str:
    """sha256 of a tokenizer folder's tokenizer.json (which tokenizer a checkpoint set was built on)."""
    import hashlib

    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"tokenizer must be a folder with tokenizer.json (got {str(folder)!r})")
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
