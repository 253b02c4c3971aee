"""Checks on checkpoint files before any module is built or any tensor is read.

A config.json with `num_hidden_layers = 10**9`, a negative width, a string where a number belongs,
or a model.safetensors cut short by an interrupted download is refused here with a
CheckpointError naming the file, the key, the value and what is allowed, instead of spending
minutes building layers or failing deep inside torch. The limits are generous (far above the
largest ACE-Step model); they exist to stop nonsense, not to restrict real checkpoints.

Fields can each be inside their limits while their product is not: every config is also measured
as a whole (`dit_footprint`, `vae_footprint`, `text_encoder_footprint`: parameters counted from the
sizes, the largest activations of one song, the FSQ codebook) and refused, with the numbers, when
it could not fit this machine's memory even at 2 bytes a parameter.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError
from ..json_files import read_json

MAX_PARAMETERS = 50e9  # the estimated size of a DiT config above which it is refused as nonsense
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit
MAX_FSQ_CODES = 1 << 20  # the product of fsq_input_levels (the official codebook has 64,000 codes)
MAX_CONFIG_BYTES = 16 << 20  # a config.json is a few kB
BYTES_PER_VALUE = 2  # the least any dtype the loader uses takes (bf16, fp16): the need is a lower bound
SONG_SECONDS = 600  # the longest blueprint
FRAME_RATE = 25  # latent frames a second of the official VAE (a DiT config does not say)
VAE_DECODE_FRAMES = 256 + 2 * 16  # vae_codec's decode window on the CPU with its overlaps, in latent frames
VAE_ENCODE_SECONDS = 30 + 2 * 2  # vae_codec's encode window with its overlaps
TEXT_TOKENS = 4608  # a caption and lyrics at their longest, about one token a character

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
        shown = f"{value}" if abs(value) < 10 ** 30 else f"a number of about {int(abs(value).bit_length() * 0.30103) + 1} digits"
        raise CheckpointError(f"{path}: {key} must be between {lo} and {hi} (got {shown}: too "
                              f"{'small' if value < lo else 'large'})")
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


# ---------------------------------------------------------------------------------- the whole of a config

@dataclass(frozen=True)
class Footprint:
    """What a configuration will allocate, at least: `parameters` (a count), `activations` (values in the
    largest single working tensor for one song, or one window of it), `buffers` (bytes of fixed tables
    such as the FSQ codebook). Each is a lower bound, so a real checkpoint is never refused by it."""

    parameters: int
    activations: int
    buffers: int = 0

    def bytes_needed(self) -> int:
        return (self.parameters + self.activations) * BYTES_PER_VALUE + self.buffers


def _gib(count: float) -> str:
    return f"{count / 2 ** 30:,.1f} GiB"


def machine_memory() -> int | None:
    """Bytes of memory this machine has in all (physical memory plus swap); None if the system does not say."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        physical = None
    swap = 0
    try:
        with open("/proc/meminfo") as f:
            swap = next((int(line.split()[1]) * 1024 for line in f if line.startswith("SwapTotal:")), 0)
    except (OSError, ValueError):
        pass
    if physical is None:
        try:
            import psutil

            return int(psutil.virtual_memory().total + psutil.swap_memory().total)
        except ImportError:
            return None
    return int(physical + swap)


def check_memory(path: Path, what: str, footprint: Footprint, sizes: str, memory: int | None = None) -> None:
    """Refuse `footprint` when even its lower bound cannot fit `memory` (this machine's by default),
    with every number in the message."""
    memory = machine_memory() if memory is None else memory
    need = footprint.bytes_needed()
    if memory is not None and need > memory:
        buffers = f", {_gib(footprint.buffers)} of fixed tables" if footprint.buffers else ""
        raise CheckpointError(
            f"{path}: this {what} needs at least {_gib(need)} to load and run ({footprint.parameters / 1e9:,.2f} "
            f"billion parameters and {footprint.activations / 1e6:,.0f} million activations at {BYTES_PER_VALUE} "
            f"bytes each"
            f"{buffers}), more than this machine's {_gib(memory)} of memory ({sizes}); a config of a real "
            "ACE-Step model does not ask for this")


def _attention(width: int, heads: int, kv_heads: int, head_dim: int) -> int:
    return width * head_dim * (2 * heads + 2 * kv_heads)


def _block(width: int, intermediate: int, heads: int, kv_heads: int, head_dim: int) -> int:
    return _attention(width, heads, kv_heads, head_dim) + 3 * width * intermediate


def dit_footprint(sizes: dict, cfg: dict) -> Footprint:
    """Parameters of the four modules an official DiT folder holds, from its sizes (defaults as the loader's):
    the DiT (self and cross attention, MLP), the condition encoder, the audio tokenizer and detokenizer;
    the MLP's activation for one 600 s song; the FSQ codebook."""
    width, inter = sizes["hidden_size"], sizes["intermediate_size"]
    heads, kv, head_dim = sizes["num_attention_heads"], sizes["num_key_value_heads"], sizes.get("head_dim", 128)
    latent = sizes.get("audio_acoustic_hidden_dim", 64)
    patch = sizes.get("patch_size", 2)
    e_width = sizes.get("encoder_hidden_size", width)
    e_inter = sizes.get("encoder_intermediate_size", inter)
    e_heads = sizes.get("encoder_num_attention_heads", heads)
    e_kv = sizes.get("encoder_num_key_value_heads", kv)
    encoder_block = _block(e_width, e_inter, e_heads, e_kv, head_dim)
    dit = sizes["num_hidden_layers"] * (_block(width, inter, heads, kv, head_dim)
                                        + _attention(width, heads, kv, head_dim))
    dit += 2 * (256 * width + width * width + 6 * width * width)  # two timestep embedders
    dit += sizes.get("in_channels", 3 * latent) * width * patch + width * latent * patch + e_width * width
    encoders = (sizes.get("num_lyric_encoder_hidden_layers", 8) + sizes.get("num_timbre_encoder_hidden_layers", 4)
                + 2 * sizes.get("num_attention_pooler_hidden_layers", 2)) * encoder_block
    encoders += (sizes.get("text_hidden_dim", 1024) + sizes.get("timbre_hidden_dim", latent)) * e_width
    tokens = SONG_SECONDS * FRAME_RATE // patch
    activations = tokens * max(2 * inter, 6 * width)
    levels = cfg.get("fsq_input_levels") or [8, 8, 8, 5, 5, 5]
    codebook = math.prod(levels) * len(levels) * 4 * sizes.get("fsq_input_num_quantizers", 1)
    return Footprint(dit + encoders, activations, codebook)


def vae_footprint(cfg: dict) -> Footprint:
    """Parameters of an AutoencoderOobleck (diffusers' layout: three residual units of a kernel-7 and a
    kernel-1 convolution per block, strided convolutions between) and its widest feature map in one
    decode window or one encode window of vae_codec."""
    enc, dec = cfg.get("encoder_hidden_size", 128), cfg.get("decoder_channels", 128)
    audio, latent = cfg.get("audio_channels", 2), cfg.get("decoder_input_channels", 64)
    ratios = cfg.get("downsampling_ratios") or [2, 4, 4, 6, 10]
    multiples = [1] + list(cfg.get("channel_multiples") or [1, 2, 4, 8, 16])
    rate = cfg.get("sampling_rate", 48000)
    params = audio * enc * 7 + enc * multiples[-1] * enc * 3
    widest_encode, length = 0, VAE_ENCODE_SECONDS * rate
    for i, stride in enumerate(ratios):
        width_in, width_out = enc * multiples[i], enc * multiples[i + 1]
        params += 24 * width_in * width_in + width_in * width_out * 2 * stride
        widest_encode = max(widest_encode, width_in * length)
        length //= stride
    params += latent * dec * multiples[-1] * 7 + dec * audio * 7
    widest_decode, length = dec * multiples[-1] * VAE_DECODE_FRAMES, VAE_DECODE_FRAMES
    for j, stride in enumerate(reversed(ratios)):
        width_in, width_out = dec * multiples[len(ratios) - j], dec * multiples[len(ratios) - j - 1]
        params += width_in * width_out * 2 * stride + 24 * width_out * width_out
        length *= stride
        widest_decode = max(widest_decode, width_out * length)
    return Footprint(params, max(widest_encode, widest_decode))


def text_encoder_footprint(sizes: dict) -> Footprint:
    """Parameters of a Qwen3 encoder (embedding table and layers) and its MLP's activation for the longest prompt."""
    width, inter = sizes.get("hidden_size", 1024), sizes.get("intermediate_size", 3072)
    heads, kv = sizes.get("num_attention_heads", 16), sizes.get("num_key_value_heads", 8)
    params = sizes.get("vocab_size", 151669) * width
    params += sizes.get("num_hidden_layers", 28) * _block(width, inter, heads, kv, sizes.get("head_dim", 128))
    tokens = min(TEXT_TOKENS, sizes.get("max_position_embeddings", TEXT_TOKENS))
    return Footprint(params, tokens * max(2 * inter, 4 * width))


def _sizes_text(cfg: dict, keys) -> str:
    return ", ".join(f"{key}={cfg[key]}" for key in keys if cfg.get(key) is not None)


def check_dit_config(cfg, path, memory: int | None = None) -> dict:
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
        levels = _int_list(path, "fsq_input_levels", cfg["fsq_input_levels"], (1, 16), (2, 1 << 16))
        if math.prod(levels) > MAX_FSQ_CODES:
            raise CheckpointError(f"{path}: fsq_input_levels {levels} make a codebook of {math.prod(levels):,} codes; "
                                  f"at most {MAX_FSQ_CODES:,} are accepted (the official one has 64,000)")
    if cfg.get("model_version") is not None and not isinstance(cfg["model_version"], str):
        raise CheckpointError(f"{path}: model_version must be text (got {cfg['model_version']!r:.80})")
    footprint = dit_footprint(sizes, cfg)
    described = _sizes_text(sizes, ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
                                    "head_dim", "encoder_hidden_size", "num_lyric_encoder_hidden_layers"))
    if footprint.parameters > MAX_PARAMETERS:
        raise CheckpointError(f"{path}: the configuration describes about {footprint.parameters / 1e9:,.0f} billion "
                              f"parameters ({described}); at most {MAX_PARAMETERS / 1e9:g} billion is accepted")
    check_memory(path, "DiT", footprint, described, memory)
    return cfg


def check_vae_config(cfg, path, memory: int | None = None) -> dict:
    """Check an AutoencoderOobleck config.json; absent keys are left to diffusers' defaults."""
    path = _object_file(cfg, path)
    sizes = _sizes(path, cfg, VAE_SIZES)
    for key, (lo_len, hi_len, lo, hi) in VAE_LISTS.items():
        if cfg.get(key) is not None:
            sizes[key] = _int_list(path, key, cfg[key], (lo_len, hi_len), (lo, hi))
    ratios, multiples = cfg.get("downsampling_ratios"), cfg.get("channel_multiples")
    if isinstance(ratios, list) and isinstance(multiples, list) and len(ratios) != len(multiples):
        raise CheckpointError(f"{path}: downsampling_ratios ({len(ratios)}) and channel_multiples "
                              f"({len(multiples)}) must have the same length")
    check_memory(path, "VAE", vae_footprint(sizes), _sizes_text(sizes, ("encoder_hidden_size", "decoder_channels",
                 "channel_multiples", "downsampling_ratios")), memory)
    return cfg


def check_text_encoder_config(cfg, path, memory: int | None = None) -> dict:
    """Check a Qwen3 config.json for its model type and sane sizes before transformers builds it."""
    path = _object_file(cfg, path)
    model_type = cfg.get("model_type")
    if model_type is not None and model_type != "qwen3":
        raise CheckpointError(f"{path}: model_type must be 'qwen3' (got {model_type!r:.80}): the text encoder is "
                              "loaded as a Qwen3 model, and a config of another model type would be misread")
    sizes = _sizes(path, cfg, TEXT_SIZES)
    heads, kv = sizes.get("num_attention_heads"), sizes.get("num_key_value_heads")
    if heads and kv and heads % kv:
        raise CheckpointError(f"{path}: num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kv})")
    check_memory(path, "text encoder", text_encoder_footprint(sizes),
                 _sizes_text(sizes, ("vocab_size", "num_hidden_layers", "hidden_size", "intermediate_size")), memory)
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
            if header_len > MAX_HEADER_BYTES:
                raise CheckpointError(f"{path} is not a readable safetensors file: its header claims {header_len:,} bytes, more "
                                      f"than the {MAX_HEADER_BYTES:,} the format allows")
            if header_len > size - 8:
                raise CheckpointError(f"{path} is not a readable safetensors file: it is truncated (its header claims "
                                      f"{header_len:,} bytes, the file holds {size:,}; an interrupted download? fetch "
                                      "it again)")
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
        checker(read_json(config, CheckpointError, max_bytes=MAX_CONFIG_BYTES, what="a config.json"), config)
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


def check_lm_folder(lm_dir) -> None:
    """A 5 Hz LM folder: a Qwen3 config.json (checked before transformers sees it, which never runs
    code shipped with it) and whole safetensors files."""
    folder = Path(lm_dir)

    def qwen3(cfg, path):
        if cfg.get("model_type") != "qwen3":
            raise CheckpointError(f"{folder} is not a Qwen3 causal LM (config model_type {cfg.get('model_type')!r})")

    _check_folder(folder, qwen3)


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
