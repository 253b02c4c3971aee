"""Load an official ACE-Step 1.5 checkpoint set onto diffusers' and transformers' modules.

No code that ships with a checkpoint is imported or run: the module classes are diffusers'
(`AceStepTransformer1DModel`, `AceStepConditionEncoder`, `AceStepAudioTokenizer`,
`AceStepAudioTokenDetokenizer`, `AutoencoderOobleck`) and transformers' `Qwen3Model`; their
configurations are translated from the checkpoint's config.json; weights are read from
safetensors only, and `silence_latent.pt` with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..arguments import shown
from ..errors import CheckpointError
from ..json_files import read_json
from ..runtime import parking, weight_files
from ..runtime.heap import give_back_free_memory
from .config_checks import MAX_CONFIG_BYTES, check_diffusers_repo, check_dit_folder, check_shared_folders
from .keymap import COMPONENTS, DERIVED_KEYS, split_state_dict
from .variants import TEXT_ENCODER_DIR, VAE_DIR, Variant, resolve_variant


@dataclass
class LoadedModels:
    """Everything one Engine runs on. Shapes and rates are read from the configs, never assumed."""

    transformer: torch.nn.Module
    condition_encoder: torch.nn.Module
    audio_tokenizer: torch.nn.Module | None
    detokenizer: torch.nn.Module | None
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    text_tokenizer: object
    silence_latent: torch.Tensor  # [1, frames, latent_channels] in the model dtype
    config: dict  # the DiT checkpoint's config.json
    variant: Variant
    fingerprint: str
    paths: dict = field(default_factory=dict)

    @property
    def sample_rate(self) -> int:
        return int(self.vae.config.sampling_rate)

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame (1920 for the official VAE)."""
        hop = 1
        for ratio in self.vae.config.downsampling_ratios:
            hop *= int(ratio)
        return hop

    @property
    def latent_channels(self) -> int:
        return int(self.transformer.config.audio_acoustic_hidden_dim)

    @property
    def frame_rate(self) -> float:
        """Latent frames per second (25 for the official VAE)."""
        return self.sample_rate / self.hop_length

    @property
    def audio_channels(self) -> int:
        return int(self.vae.config.audio_channels)


# --------------------------------------------------------------------------- configs

def _encoder_dims(cfg: dict) -> dict:
    """Width of the condition encoder, tokenizer and detokenizer (smaller than the DiT in XL)."""
    return dict(
        hidden_size=cfg.get("encoder_hidden_size") or cfg["hidden_size"],
        intermediate_size=cfg.get("encoder_intermediate_size") or cfg["intermediate_size"],
        num_attention_heads=cfg.get("encoder_num_attention_heads") or cfg["num_attention_heads"],
        num_key_value_heads=cfg.get("encoder_num_key_value_heads") or cfg["num_key_value_heads"],
    )


def _common(cfg: dict) -> dict:
    return dict(
        head_dim=cfg.get("head_dim", 128),
        rope_theta=float(cfg.get("rope_theta", 1_000_000.0)),
        attention_bias=bool(cfg.get("attention_bias", False)),
        attention_dropout=float(cfg.get("attention_dropout", 0.0)),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        sliding_window=int(cfg.get("sliding_window") or 128),
    )


def module_configs(cfg: dict) -> dict[str, dict]:
    """Translate an official config.json (AceStepConfig) into kwargs of the diffusers modules."""
    try:
        common = _common(cfg)
        layers = int(cfg["num_hidden_layers"])
        layer_types = cfg.get("layer_types")
        if not cfg.get("use_sliding_window", True):
            layer_types = ["full_attention"] * layers
        encoder = {**_encoder_dims(cfg), **common}
        latent = int(cfg.get("audio_acoustic_hidden_dim", 64))
        transformer = dict(
            hidden_size=cfg["hidden_size"], intermediate_size=cfg["intermediate_size"],
            num_hidden_layers=layers, num_attention_heads=cfg["num_attention_heads"],
            num_key_value_heads=cfg["num_key_value_heads"], in_channels=int(cfg.get("in_channels", 3 * latent)),
            audio_acoustic_hidden_dim=latent, patch_size=int(cfg.get("patch_size", 2)),
            layer_types=layer_types, encoder_hidden_size=cfg.get("encoder_hidden_size"),
            is_turbo=bool(cfg.get("is_turbo", cfg.get("model_version") == "turbo")),
            model_version=cfg.get("model_version"), **common,
        )
        condition_encoder = dict(
            text_hidden_dim=int(cfg.get("text_hidden_dim", 1024)),
            timbre_hidden_dim=int(cfg.get("timbre_hidden_dim", latent)),
            num_lyric_encoder_hidden_layers=int(cfg.get("num_lyric_encoder_hidden_layers", 8)),
            num_timbre_encoder_hidden_layers=int(cfg.get("num_timbre_encoder_hidden_layers", 4)),
            **encoder,
        )
        pooler_layers = int(cfg.get("num_attention_pooler_hidden_layers", 2))
        audio_tokenizer = dict(
            audio_acoustic_hidden_dim=latent, pool_window_size=int(cfg.get("pool_window_size", 5)),
            fsq_dim=int(cfg.get("fsq_dim", encoder["hidden_size"])),
            fsq_input_levels=list(cfg.get("fsq_input_levels", [8, 8, 8, 5, 5, 5])),
            fsq_input_num_quantizers=int(cfg.get("fsq_input_num_quantizers", 1)),
            num_attention_pooler_hidden_layers=pooler_layers, **encoder,
        )
        detokenizer = dict(
            audio_acoustic_hidden_dim=latent, pool_window_size=int(cfg.get("pool_window_size", 5)),
            num_attention_pooler_hidden_layers=pooler_layers, **encoder,
        )
    except KeyError as exc:
        raise CheckpointError(f"config.json lacks the required key {exc.args[0]!r}") from None
    return dict(transformer=transformer, condition_encoder=condition_encoder,
                audio_tokenizer=audio_tokenizer, detokenizer=detokenizer)


def module_classes() -> dict[str, type]:
    from diffusers import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step import (AceStepAudioTokenDetokenizer, AceStepAudioTokenizer,
                                              AceStepConditionEncoder)

    return dict(transformer=AceStepTransformer1DModel, condition_encoder=AceStepConditionEncoder,
                audio_tokenizer=AceStepAudioTokenizer, detokenizer=AceStepAudioTokenDetokenizer)


def build_modules(cfg: dict, empty: bool = False) -> dict[str, torch.nn.Module]:
    """Instantiate the four DiT-checkpoint modules; with `empty`, parameters live on the meta device."""
    classes = module_classes()
    configs = module_configs(cfg)
    if empty:
        from accelerate import init_empty_weights

        with init_empty_weights():
            return {name: classes[name](**configs[name]) for name in COMPONENTS}
    return {name: classes[name](**configs[name]) for name in COMPONENTS}


# --------------------------------------------------------------------------- weights

MAX_SILENCE_BYTES = 256 << 20

def _check_and_assign(name: str, module: torch.nn.Module, weights: dict, source: Path) -> None:
    expected = {k: v for k, v in module.state_dict().items() if k not in DERIVED_KEYS.get(name, ())}
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    wrong = [(k, tuple(weights[k].shape), tuple(v.shape)) for k, v in expected.items()
             if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    from .keymap import diffusers_to_official

    if missing or unexpected or wrong:
        lines = [f"{source} does not match the configuration in config.json ({name}):"]
        lines += [f"  missing tensor {diffusers_to_official(name, k)} (expected shape {tuple(expected[k].shape)})"
                  for k in missing[:10]]
        lines += [f"  unexpected tensor {diffusers_to_official(name, k)}" for k in unexpected[:10]]
        lines += [f"  tensor {diffusers_to_official(name, k)} has shape {got}, the model expects {want}"
                  for k, got, want in wrong[:10]]
        more = len(missing) + len(unexpected) + len(wrong) - min(len(missing), 10) - min(len(unexpected), 10) \
            - min(len(wrong), 10)
        if more > 0:
            lines.append(f"  ... and {more} more")
        raise CheckpointError("\n".join(lines))
    module.load_state_dict(weights, strict=False, assign=True)


def load_silence_latent(path: Path, channels: int) -> torch.Tensor:
    """Read `silence_latent.pt` ([1, channels, frames] fp32) as [1, frames, channels], safely: at most
    MAX_SILENCE_BYTES, finite values only (NaN silence would turn every generation into NaN)."""
    try:
        size = Path(path).stat().st_size
    except OSError as exc:
        raise CheckpointError(f"{path} could not be read ({exc.strerror or exc})") from None
    if size > MAX_SILENCE_BYTES:
        raise CheckpointError(f"{path} is {size:,} bytes; a silence latent is at most {MAX_SILENCE_BYTES:,} "
                              "(the official one, 600 s of 64 channels, is 3.8 MB)")
    try:
        tensor = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable tensor file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 3 or tensor.shape[0] != 1 \
            or channels not in (tensor.shape[1], tensor.shape[2]):
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise CheckpointError(f"{path} must hold a tensor of shape [1, {channels}, frames] (got {shape})")
    if not tensor.is_floating_point() or tensor.numel() == 0 or not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).sum()) if tensor.is_floating_point() else tensor.numel()
        raise CheckpointError(f"{path} must hold finite floating-point values (got {tensor.dtype} with {bad:,} of "
                              f"{tensor.numel():,} values NaN, infinite or unusable)")
    if tensor.shape[1] == channels and tensor.shape[2] != channels:
        tensor = tensor.transpose(1, 2)
    return tensor.float().contiguous()


def weights_fingerprint(path: str | Path, samples: int = 16, sample_bytes: int = 1 << 16) -> str:
    """A cheap, content-based id of a safetensors file: its header plus evenly spaced data samples.

    Hashing all 4.8 GB of a real DiT would take longer than loading it; the header fixes names,
    shapes and dtypes, and the samples tell fine-tunes of the same architecture apart.
    """
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        digest.update(f.read(min(header_len, size)))
        for i in range(samples):
            f.seek(int(i * max(size - sample_bytes, 0) / max(samples - 1, 1)))
            digest.update(f.read(sample_bytes))
    return digest.hexdigest()[:16]


def _read_json(path: Path) -> dict:
    return read_json(path, CheckpointError, max_bytes=MAX_CONFIG_BYTES, what="a config.json")


def load_dit(dit_dir: Path, device, dtype) -> tuple[dict, dict, torch.Tensor, str]:
    """Load model.safetensors + config.json + silence_latent.pt of one official DiT folder."""
    from safetensors import SafetensorError

    check_dit_folder(dit_dir)  # sizes and file integrity before any module is built

    cfg = _read_json(dit_dir / "config.json")
    modules = build_modules(cfg, empty=True)
    weights_path = dit_dir / "model.safetensors"
    try:
        state = weight_files.read_file(weights_path, dtype)  # copied out of the file, a group at a time
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file ({exc})") from exc
    parts, unknown = split_state_dict(state)
    del state
    if unknown:
        raise CheckpointError(f"{weights_path} has tensors that belong to no ACE-Step module: "
                              + ", ".join(sorted(unknown)[:10]))
    for name in COMPONENTS:
        if name in ("audio_tokenizer", "detokenizer") and not parts[name]:
            modules[name] = None  # a checkpoint without tokenizer weights cannot cover; text2music still runs
            continue
        _check_and_assign(name, modules[name], parts[name], weights_path)
    del parts
    latent = int(modules["transformer"].config.audio_acoustic_hidden_dim)
    silence = load_silence_latent(dit_dir / "silence_latent.pt", latent)
    encoder = modules["condition_encoder"]
    encoder.register_buffer("silence_latent", silence.clone(), persistent=True)
    for name, module in modules.items():
        if module is not None:
            module.to(device=device, dtype=dtype).eval().requires_grad_(False)
    prepare_dit_modules(modules)
    return cfg, modules, silence.to(device=device, dtype=dtype), weights_fingerprint(weights_path)


def prepare_dit_modules(modules: dict) -> None:
    """Fast paths on the DiT, and the attention path its device and dtype need on every module of the
    DiT checkpoint (`acestep_engine.runtime.attention`)."""
    from ..runtime.fast_paths import prepare_attention, prepare_transformer

    prepare_transformer(modules["transformer"])
    for name in ("condition_encoder", "audio_tokenizer", "detokenizer"):
        if modules.get(name) is not None:
            prepare_attention(modules[name], modules["transformer"].acestep_attention)


def load_vae(vae_dir: Path, device, dtype):
    from diffusers import AutoencoderOobleck

    if not (vae_dir / "diffusion_pytorch_model.safetensors").is_file():
        raise CheckpointError(f"{vae_dir}/diffusion_pytorch_model.safetensors is missing")
    try:
        vae = AutoencoderOobleck.from_pretrained(vae_dir, use_safetensors=True, torch_dtype=dtype)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"the VAE in {vae_dir} could not be loaded: {exc}") from exc
    from ..runtime.fast_paths import prepare_vae

    return prepare_vae(vae.to(device).eval().requires_grad_(False))


def transformers_attention(device, dtype) -> str | None:
    """transformers' `attn_implementation` for a Qwen3 on `device` in `dtype`: "eager" (a float32
    softmax) where SDPA's fp16 softmax overflows (`runtime.attention`), else its default (None)."""
    from ..runtime.attention import FP32_SOFTMAX, attention_path_for

    return "eager" if attention_path_for(device, dtype) == FP32_SOFTMAX else None


def qwen3_options(device, dtype) -> dict:
    """`from_pretrained` keywords for the Qwen3 text encoder and LM: safetensors only, no code from the
    checkpoint, and no hub kernels: transformers 5 kernelizes by default where the `kernels` package is
    installed (a dependency of transformers), and on a GPU that downloads kernels-community's RMSNorm
    and rotary code from the Hub and runs it, with other numerics than the modules upstream runs."""
    return dict(dtype=dtype, use_safetensors=True, trust_remote_code=False, use_kernels=False,
                attn_implementation=transformers_attention(device, dtype))


def load_text_encoder(text_dir: Path, device, dtype):
    from transformers import AutoTokenizer, Qwen3Model

    try:
        tokenizer = AutoTokenizer.from_pretrained(text_dir, trust_remote_code=False)
        model = Qwen3Model.from_pretrained(text_dir, **qwen3_options(device, dtype))
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"the text encoder in {text_dir} could not be loaded: {exc}") from exc
    model = model.to(device).eval().requires_grad_(False)
    if torch.device(device).type == "cpu":
        own_saved_weights(model, text_dir)
    return model, tokenizer


def own_saved_weights(model, folder: Path) -> None:
    """Copy a transformers model's weights out of its folder's safetensors files, where
    `from_pretrained` leaves them mapped (see `runtime.weight_files`)."""
    files = sorted(Path(folder).glob("*.safetensors"))
    weight_files.own_weights(model, parking.same_keys(model, files, prefix="model."))


def load_official(checkpoints_dir: Path, dit: str, device, dtype) -> LoadedModels:
    checkpoints_dir = Path(checkpoints_dir)
    check_shared_folders(checkpoints_dir)
    dit_dir = checkpoints_dir / dit
    cfg, modules, silence, fingerprint = load_dit(dit_dir, device, dtype)
    vae = load_vae(checkpoints_dir / VAE_DIR, device, dtype)
    text_encoder, tokenizer = load_text_encoder(checkpoints_dir / TEXT_ENCODER_DIR, device, dtype)
    models = LoadedModels(
        transformer=modules["transformer"], condition_encoder=modules["condition_encoder"],
        audio_tokenizer=modules["audio_tokenizer"], detokenizer=modules["detokenizer"], vae=vae,
        text_encoder=text_encoder, text_tokenizer=tokenizer, silence_latent=silence, config=cfg,
        variant=resolve_variant(dit, cfg), fingerprint=fingerprint,
        paths=dict(checkpoints=str(checkpoints_dir), dit=str(dit_dir)),
    )
    _check_consistency(models)
    make_parkable(models, checkpoints_dir / TEXT_ENCODER_DIR, dtype)
    give_back_free_memory()  # what reading and converting left free in the heap
    return models


def load_diffusers_format(repo_dir: Path, device, dtype) -> LoadedModels:
    """Load a diffusers-format ACE-Step repository (model_index.json, transformer/, ...)."""
    from diffusers import AutoencoderOobleck
    from transformers import AutoTokenizer, Qwen3Model

    repo_dir = Path(repo_dir)
    check_diffusers_repo(repo_dir)
    classes = module_classes()
    kwargs = dict(use_safetensors=True, torch_dtype=dtype)
    modules = {}
    for name, folder in (("transformer", "transformer"), ("condition_encoder", "condition_encoder"),
                         ("audio_tokenizer", "audio_tokenizer"), ("detokenizer", "audio_token_detokenizer")):
        if (repo_dir / folder).is_dir():
            modules[name] = classes[name].from_pretrained(repo_dir / folder, **kwargs).to(device).eval()
        else:
            modules[name] = None
    from ..runtime.fast_paths import prepare_vae

    vae = prepare_vae(AutoencoderOobleck.from_pretrained(repo_dir / "vae", **kwargs).to(device).eval())
    text_encoder = Qwen3Model.from_pretrained(repo_dir / "text_encoder", **qwen3_options(device, dtype))
    tokenizer = AutoTokenizer.from_pretrained(repo_dir / "tokenizer")
    cfg = dict(modules["transformer"].config)
    silence = modules["condition_encoder"].silence_latent.to(device=device, dtype=dtype)
    weight_file = next((repo_dir / "transformer").glob("*.safetensors"))
    models = LoadedModels(
        transformer=modules["transformer"], condition_encoder=modules["condition_encoder"],
        audio_tokenizer=modules["audio_tokenizer"], detokenizer=modules["detokenizer"], vae=vae,
        text_encoder=text_encoder.to(device).eval(), text_tokenizer=tokenizer, silence_latent=silence,
        config=cfg, variant=resolve_variant(repo_dir.name, cfg), fingerprint=weights_fingerprint(weight_file),
        paths=dict(checkpoints=str(repo_dir), dit=str(repo_dir / "transformer")),
    )
    for module in (models.transformer, models.condition_encoder, models.vae, models.text_encoder):
        module.requires_grad_(False)
    prepare_dit_modules({"transformer": models.transformer, "condition_encoder": models.condition_encoder,
                         "audio_tokenizer": models.audio_tokenizer, "detokenizer": models.detokenizer})
    _check_consistency(models)
    parts = dict(condition_encoder="condition_encoder", audio_tokenizer="audio_tokenizer",
                 detokenizer="audio_token_detokenizer", text_encoder="text_encoder")
    for name, folder in parts.items():
        module = getattr(models, name)
        if module is not None:
            files = sorted((repo_dir / folder).glob("*.safetensors"))
            if files:
                parking.attach(module, parking.same_keys(module, files, prefix="model."), dtype)
    models.paths["transformer_files"] = [str(p) for p in sorted((repo_dir / "transformer").glob("*.safetensors"))]
    return models


def make_parkable(models: LoadedModels, text_dir: Path, dtype) -> None:
    """Let the memory plan park the encoders (and, on demand, the DiT) between uses on the host."""
    from .keymap import diffusers_to_official

    weights = Path(models.paths["dit"]) / "model.safetensors"
    for name in ("condition_encoder", "audio_tokenizer", "detokenizer"):
        module = getattr(models, name)
        if module is not None:
            keys = {k: (weights, diffusers_to_official(name, plain))
                    for k, plain in parking.saved_names(module).items()}
            parking.attach(module, keys, dtype)
    text_weights = sorted(text_dir.glob("*.safetensors"))
    if text_weights:
        parking.attach(models.text_encoder, parking.same_keys(models.text_encoder, text_weights, prefix="model."),
                       dtype)


def make_transformer_parkable(models: LoadedModels, dtype) -> bool:
    """Attach the DiT to its file when a plan first parks it (its hooks cost nothing until then)."""
    transformer = models.transformer
    if parking.is_parkable(transformer):
        return True
    from .keymap import diffusers_to_official

    files = models.paths.get("transformer_files")
    if files:  # a diffusers-format repository
        keys = parking.same_keys(transformer, files)
    else:
        weights = Path(models.paths["dit"]) / "model.safetensors"
        if not weights.is_file():
            return False
        keys = {name: (weights, diffusers_to_official("transformer", plain))
                for name, plain in parking.saved_names(transformer).items()}
    return parking.attach(transformer, keys, dtype)


def _check_consistency(models: LoadedModels) -> None:
    """The three checkpoints must agree on the sizes they exchange."""
    text_dim = models.condition_encoder.config.text_hidden_dim
    if models.text_encoder.config.hidden_size != text_dim:
        raise CheckpointError(
            f"text encoder width {models.text_encoder.config.hidden_size} does not match the DiT's "
            f"text_hidden_dim {text_dim}")
    vae_latent = int(models.vae.config.decoder_input_channels)
    if vae_latent != models.latent_channels:
        raise CheckpointError(f"VAE latent channels {vae_latent} do not match the DiT's "
                              f"audio_acoustic_hidden_dim {models.latent_channels}")


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """What dtype "auto" means on `device` (see `hardware.auto_dtype_choice`): bf16 on CUDA GPUs that
    have it and on CPUs with native bf16, fp16 on older GPUs, fp32 elsewhere (MPS included)."""
    from ..runtime.hardware import auto_dtype

    return auto_dtype(device)


def resolve_device(device="auto", dtype="auto") -> tuple[torch.device, torch.dtype]:
    """(device, dtype) from the user's arguments; "auto"/None for either picks for this machine."""
    return resolve_device_and_dtype(device, dtype)[:2]


def resolve_device_and_dtype(device="auto", dtype="auto") -> tuple[torch.device, torch.dtype, str]:
    """(device, dtype, how the dtype was chosen: "requested" or "auto: <reason>")."""
    from ..errors import DeviceError
    from ..runtime.hardware import resolve_dtype

    if isinstance(dtype, str) and len(dtype) > 32:
        raise DeviceError(f"dtype must be a dtype name such as 'auto', 'bf16', 'fp16' or 'fp32' (got a text of "
                          f"{len(dtype)} characters)")
    if device is None or isinstance(device, str) and device == "auto":
        device = default_device()
    else:
        try:
            if not isinstance(device, (str, torch.device)):
                raise TypeError
            device = torch.device(device)
        except (RuntimeError, TypeError, ValueError, OverflowError):
            raise DeviceError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' (got {shown(device)})") from None
    dtype, how = resolve_dtype(device, dtype)
    return device, dtype, how


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
