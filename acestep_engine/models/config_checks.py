"""Checks on checkpoint files before any module is built or any tensor is read.

A config.json with `num_hidden_layers = 10**9`, a negative width, a string where a number belongs,
or a model.safetensors cut short by an interrupted download is refused here with a
CheckpointError naming the file, the key, the value and what is allowed, instead of spending
minutes building layers or failing deep inside torch. The limits are generous (far above the
largest ACE-Step model); they exist to stop nonsense, not to restrict real checkpoints.
"""

from __future__ import annotations

import json
import math
import numbers
import struct
from pathlib import Path

from ..errors import CheckpointError
from ..json_files import read_json

MAX_PARAMETERS = 50e9  # the estimated size of a DiT config above which it is refused as nonsense
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit

# key -> (lowest, highest) for whole numbers; a key that is absent is left to the loader's default.
DIT_SIZES = {
    "hidden_size": (1, 32768), "intermediate_size": (1, 131072), "num_hidden_layers": (1, 512),
    "num_attention_heads": (1, 512), "num_key_value_heads": (1, 512), "head_dim": (1, 2048),
    "audio_acoustic_hidden_dim": (1, 4096), "in_channels": (1, 16384), "patch_size": (1, 64),
    "text_hidden_dim": (1, 32768), "timbre_hidden_dim": (1, 32768), "num_lyric_encoder_hidden_layers": (0, 512),
    "num_timbre_encoder_hidden_layers": (0, 512), "pool_window_size": (1, 256),
    "num_attention_pooler_hidden_layers": (0, 512), "fsq_dim": (1, 32768), "fsq_input_num_quantizers": (1, 64),
    "sliding_window": (1, 1 << 20), "encoder_hidden_size": (1, 32768), "encoder_intermediate_size": (1, 131072),
    "encoder_num_attention_heads": (1, 512), "encoder_num_key_value_heads": (1, 512),
    "num_audio_decoder_hidden_layers": (1, 512), "max_position_embeddings": (1, 1 << 24),
    "vocab_size": (1, 1 << 24), "timbre_fix_frame": (1, 1 << 20),
}
DIT_REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")
DIT_REALS = {"rope_theta": (0.0, 1e12, False), "rms_norm_eps": (0.0, 1.0, False), "attention_dropout": (0.0, 1.0, True)}
DIT_FLAGS = ("attention_bias", "use_sliding_window", "is_turbo")
LAYER_TYPES = ("sliding_attention", "full_attention")

VAE_SIZES = {"sampling_rate": (1, 1_536_000), "audio_channels": (1, 8), "encoder_hidden_size": (1, 16384),
             "decoder_channels": (1, 16384), "decoder_input_channels": (1, 4096)}
VAE_LISTS = {"downsampling_ratios": (1, 16, 1, 64), "channel_multiples": (1, 16, 1, 64)}  # length lo-hi, item lo-hi

TEXT_SIZES = {"hidden_size": (1, 32768), "intermediate_size": (1, 131072), "num_hidden_layers": (1, 512),
              "num_attention_heads": (1, 512), "num_key_value_heads": (1, 512), "head_dim": (1, 2048),
              "vocab_size": (1, 1 << 24), "max_position_embeddings": (1, 1 << 24)}


def _whole(path: Path, key: str, value, lo: int, hi: int) -> int:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise CheckpointError(f"{path}: {key} must be a whole number between {lo} and {hi} (got {value!r:.80})")
    if not lo <= value <= hi:
        raise CheckpointError(f"{path}: {key} must be between {lo} and {hi} (got {value})")
    return int(value)


def _sizes(path: Path, cfg: dict, limits: dict, required=()) -> dict:
    for key in required:
        if key not in cfg or cfg[key] is None:
            raise CheckpointError(f"{path} lacks the required key {key!r}")
    return {key: _whole(path, key, cfg[key], *limits[key]) for key in limits if cfg.get(key) is not None}


def _reals(path: Path, cfg: dict, limits: dict) -> None:
    for key, (lo, hi, lo_closed) in limits.items():
        value = cfg.get(key)
        if value is None:
            continue
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) \
            and (lo <= value if lo_closed else lo < value) and value <= hi
        if not ok:
            low = "[" if lo_closed else "("
            raise CheckpointError(f"{path}: {key} must be a finite number in {low}{lo:g}, {hi:g}] (got {value!r:.80})")


def _flags(path: Path, cfg: dict, keys) -> None:
    for key in keys:
        if key in cfg and cfg[key] is not None and not isinstance(cfg[key], bool):
            raise CheckpointError(f"{path}: {key} must be true or false (got {cfg[key]!r:.80})")


def _int_list(path: Path, key: str, value, length: tuple[int, int], item: tuple[int, int]) -> list[int]:
    if not isinstance(value, list) or not length[0] <= len(value) <= length[1]:
        raise CheckpointError(f"{path}: {key} must be a list of {length[0]} to {length[1]} whole numbers "
                              f"(got {value!r:.80})")
    return [_whole(path, f"{key}[{i}]", v, *item) for i, v in enumerate(value)]


def _object_file(cfg, path) -> Path:
    """`path` as a Path, once `cfg` (what the file holds) is a JSON object; else the error naming it."""
    path = Path(path)
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path} must hold an object {{...}} (got {type(cfg).__name__})")
    return path


def check_dit_config(cfg, path) -> dict:
    """Check an official DiT config.json (AceStepConfig) before any module is built; returns it."""
    path = _object_file(cfg, path)
    sizes = _sizes(path, cfg, DIT_SIZES, DIT_REQUIRED)
    _reals(path, cfg, DIT_REALS)
    _flags(path, cfg, DIT_FLAGS)
    heads, kv = sizes["num_attention_heads"], sizes["num_key_value_heads"]
    if heads % kv:
        raise CheckpointError(f"{path}: num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kv})")
    for prefix in ("encoder_",):
        eh, ekv = sizes.get(f"{prefix}num_attention_heads", heads), sizes.get(f"{prefix}num_key_value_heads", kv)
        if eh % ekv:
            raise CheckpointError(f"{path}: {prefix}num_attention_heads ({eh}) must be a multiple of "
                                  f"{prefix}num_key_value_heads ({ekv})")
    layers = sizes["num_hidden_layers"]
    layer_types = cfg.get("layer_types")
    if layer_types is not None and cfg.get("use_sliding_window", True):
        if not isinstance(layer_types, list) or len(layer_types) != layers \
                or not all(isinstance(t, str) and t in LAYER_TYPES for t in layer_types):
            raise CheckpointError(f"{path}: layer_types must list {layers} entries (num_hidden_layers), each one of "
                                  f"{', '.join(LAYER_TYPES)} (got {layer_types!r:.80})")
    if cfg.get("fsq_input_levels") is not None:
        _int_list(path, "fsq_input_levels", cfg["fsq_input_levels"], (1, 16), (2, 1 << 16))
    if cfg.get("model_version") is not None and not isinstance(cfg["model_version"], str):
        raise CheckpointError(f"{path}: model_version must be text (got {cfg['model_version']!r:.80})")
    width, head_dim = sizes["hidden_size"], sizes.get("head_dim", 128)
    per_layer = 2 * width * head_dim * (heads + kv) + 3 * width * sizes["intermediate_size"]
    estimate = layers * per_layer
    if estimate > MAX_PARAMETERS:
        raise CheckpointError(f"{path}: the configuration describes about {estimate / 1e9:,.0f} billion parameters "
                              f"(num_hidden_layers={layers}, hidden_size={width}, intermediate_size="
                              f"{sizes['intermediate_size']}); at most {MAX_PARAMETERS / 1e9:g} billion is accepted")
    return cfg


def check_vae_config(cfg, path) -> dict:
    """Check an AutoencoderOobleck config.json; absent keys are left to diffusers' defaults."""
    path = _object_file(cfg, path)
    _sizes(path, cfg, VAE_SIZES)
    for key, (lo_len, hi_len, lo, hi) in VAE_LISTS.items():
        if cfg.get(key) is not None:
            _int_list(path, key, cfg[key], (lo_len, hi_len), (lo, hi))
    ratios, multiples = cfg.get("downsampling_ratios"), cfg.get("channel_multiples")
    if isinstance(ratios, list) and isinstance(multiples, list) and len(ratios) != len(multiples):
        raise CheckpointError(f"{path}: downsampling_ratios ({len(ratios)}) and channel_multiples "
                              f"({len(multiples)}) must have the same length")
    return cfg


def check_text_encoder_config(cfg, path) -> dict:
    """Check a Qwen3 config.json for sane sizes before transformers builds it."""
    path = _object_file(cfg, path)
    sizes = _sizes(path, cfg, TEXT_SIZES)
    heads, kv = sizes.get("num_attention_heads"), sizes.get("num_key_value_heads")
    if heads and kv and heads % kv:
        raise CheckpointError(f"{path}: num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kv})")
    return cfg


def check_safetensors_file(path) -> None:
    """Refuse a safetensors file whose header is unreadable or whose tensors run past its end
    (a download cut short), naming the file. Reads only the header."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path} is not a readable safetensors file (truncated or empty: {size} bytes)")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > min(MAX_HEADER_BYTES, size - 8):
                raise CheckpointError(f"{path} is not a readable safetensors file (truncated? its header claims "
                                      f"{header_len} bytes, the file holds {size})")
            header = json.loads(f.read(header_len).decode("utf-8"))
    except OSError as exc:
        raise CheckpointError(f"{path} could not be read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{path} is not a readable safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a readable safetensors file (unreadable header)")
    data = size - 8 - header_len
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise CheckpointError(f"{path} is not a readable safetensors file (tensor {name!r:.80} has no valid "
                                  "data_offsets)")
        end = max(end, offsets[1])
    if end > data:
        raise CheckpointError(f"{path} is not a readable safetensors file: it is truncated (its tensors need {end} "
                              f"bytes of data, the file holds {data}; an interrupted download? fetch it again)")


def _check_folder(folder: Path, checker) -> None:
    config = folder / "config.json"
    if config.is_file():
        checker(read_json(config, CheckpointError), config)
    for weights in sorted(folder.glob("*.safetensors")):
        check_safetensors_file(weights)


def check_dit_folder(dit_dir) -> None:
    """config.json and model.safetensors of one official DiT folder (missing files are the loader's to name)."""
    _check_folder(Path(dit_dir), check_dit_config)


def check_shared_folders(checkpoints_dir) -> None:
    """The VAE and text-encoder folders beside the DiT folders."""
    from .variants import TEXT_ENCODER_DIR, VAE_DIR

    root = Path(checkpoints_dir)
    _check_folder(root / VAE_DIR, check_vae_config)
    _check_folder(root / TEXT_ENCODER_DIR, check_text_encoder_config)


def check_diffusers_repo(repo_dir) -> None:
    """A diffusers-format repository: every component's config sizes and safetensors files."""
    root = Path(repo_dir)
    index = root / "model_index.json"
    if index.is_file():
        read_json(index, CheckpointError)
    for folder, checker in (("vae", check_vae_config), ("text_encoder", check_text_encoder_config),
                            ("transformer", _check_diffusers_sizes), ("condition_encoder", _check_diffusers_sizes),
                            ("audio_tokenizer", _check_diffusers_sizes),
                            ("audio_token_detokenizer", _check_diffusers_sizes)):
        if (root / folder).is_dir():
            _check_folder(root / folder, checker)


def _check_diffusers_sizes(cfg, path) -> dict:
    """diffusers' ACE-Step module configs use the official key names for their sizes."""
    path = _object_file(cfg, path)
    _sizes(path, cfg, DIT_SIZES)
    _reals(path, cfg, DIT_REALS)
    return cfg
