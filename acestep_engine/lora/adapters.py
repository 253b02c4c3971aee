"""LoRA adapters on the DiT: their configuration, their files, and the set loaded into an engine.

On disk an adapter is peft's format as upstream writes it (reference 3.6): a folder with
`adapter_config.json` and `adapter_model.safetensors`, tensor names relative to the official
decoder (`base_model.model.layers.0.cross_attn.k_proj.lora_A.weight`) and target modules in
official naming (`q_proj`, `k_proj`, `v_proj`, `o_proj`). In memory the adapters live on
diffusers' `AceStepTransformer1DModel`, whose attention projections are called `to_q`, `to_k`,
`to_v`, `to_out.0`; the names are translated with keymap's rename, both ways.

Several adapters can be loaded at once, each with its own scale; an adapter at scale 0 is
switched off in every layer, so the model computes exactly what the base model computes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import LoRAError
from ..json_files import read_json
from ..models.keymap import diffusers_to_official, official_to_diffusers

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
OFFICIAL_PREFIX = "base_model.model."  # peft's prefix on upstream's decoder-relative names
METADATA_KEY = "acestep_workbench"
TRAINING_ADAPTER = "acestep_training"
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")  # self- and cross-attention of every layer
RANK_RANGE = (1, 1024)
ALPHA_RANGE = (0.0, 4096.0)  # exclusive lower bound
SCALE_RANGE = (-4.0, 4.0)
_LORA_PARTS = ("lora_A", "lora_B", "lora_magnitude_vector", "lora_embedding_A", "lora_embedding_B")
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# --------------------------------------------------------------------------- names

def official_module_name(name: str) -> str:
    """`layers.0.self_attn.to_out.0` (or `to_q`) -> `layers.0.self_attn.o_proj` (or `q_proj`)."""
    return diffusers_to_official("transformer", name + ".weight")[len("decoder."):-len(".weight")]


def diffusers_module_name(name: str) -> str:
    """Inverse of `official_module_name`; names already in diffusers' spelling pass unchanged."""
    return official_to_diffusers("decoder." + name + ".weight")[1][:-len(".weight")]


def official_key(key: str) -> str:
    """`layers.0.self_attn.to_q.lora_A.weight` -> `base_model.model.layers.0.self_attn.q_proj.lora_A.weight`."""
    return OFFICIAL_PREFIX + diffusers_to_official("transformer", key)[len("decoder."):]


def diffusers_key(key: str) -> str:
    """Inverse of `official_key`. Also accepts names without the peft prefix, or with `decoder.`."""
    local = key.removeprefix(OFFICIAL_PREFIX).removeprefix("decoder.")
    component, name = official_to_diffusers("decoder." + local)
    return name


def _rename_pattern(pattern: str) -> str:
    """Official module names inside a peft rank/alpha pattern -> diffusers' names."""
    for old, new in (("q_proj", "to_q"), ("k_proj", "to_k"), ("v_proj", "to_v"), ("o_proj", r"to_out\.0")):
        pattern = re.sub(rf"(?<![A-Za-z0-9_]){old}(?![A-Za-z0-9_])", new, pattern)
    return pattern


def _module_of(key: str) -> tuple[str, str, str]:
    """`a.b.lora_A.weight` -> (`a.b`, `lora_A`, `.weight`)."""
    parts = key.split(".")
    for i, part in enumerate(parts):
        if part in _LORA_PARTS:
            return ".".join(parts[:i]), part, "".join("." + p for p in parts[i + 1:])
    raise LoRAError(f"{key} is not a LoRA tensor name (expected a part named one of {', '.join(_LORA_PARTS)})")


# --------------------------------------------------------------------------- configuration

def _number(field: str, value, lo, hi, integer=False, lo_open=False, hi_open=False):
    """Check a numeric setting; the error names the field, the allowed range and the value."""
    def shown(x):
        return str(int(x)) if integer else f"{x:g}"

    if lo_open:
        allowed = f"greater than {shown(lo)} and at most {shown(hi)}"
    elif hi_open:
        allowed = f"at least {shown(lo)} and less than {shown(hi)}"
    else:
        allowed = f"between {shown(lo)} and {shown(hi)}"
    ok_type = isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real)
    if isinstance(value, bool) or not ok_type or (not integer and not math.isfinite(value)):
        kind = "a whole number" if integer else "a number"
        raise LoRAError(f"{field} must be {kind} {allowed} (got {value!r:.80})")
    if (value <= lo if lo_open else value < lo) or (value >= hi if hi_open else value > hi):
        raise LoRAError(f"{field} must be {allowed} (got {value!r:.80})")
    return int(value) if integer else float(value)


check_number = _number  # shared with lora.training


@dataclass
class LoRAConfig:
    """Shape of a LoRA adapter on the DiT.

    rank: inner dimension r (1-1024). alpha: the adapter's output is scaled by alpha / rank
    (0 < alpha <= 4096). dropout: on the adapter's input while training, [0, 1).
    target_modules: module names in official spelling; a bare name (`q_proj`) matches that
    projection in every self- and cross-attention, a qualified one (`cross_attn.v_proj`,
    `layers.3.self_attn.q_proj`) only there.
    """

    rank: int = 64
    alpha: float = 128.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_TARGETS

    def validate(self) -> "LoRAConfig":
        rank = _number("rank", self.rank, *RANK_RANGE, integer=True)
        alpha = _number("alpha", self.alpha, *ALPHA_RANGE, lo_open=True)
        dropout = _number("dropout", self.dropout, 0.0, 1.0, hi_open=True)
        targets = self.target_modules
        if isinstance(targets, str):
            targets = [t for t in re.split(r"[,\s]+", targets) if t]
        targets = tuple(dict.fromkeys(str(t).strip() for t in (targets or ()) if str(t).strip()))
        if not targets:
            raise LoRAError(f"target_modules must name at least one module, e.g. {', '.join(DEFAULT_TARGETS)}")
        for t in targets:
            if not re.fullmatch(r"[A-Za-z0-9_.]+", t):
                raise LoRAError(f"target_modules holds {t!r}: names are letters, digits, '_' and '.'")
        return LoRAConfig(rank, alpha, dropout, tuple(targets))

    def peft_config(self, official: bool = False):
        """peft's `LoraConfig`: module names in diffusers' spelling, or in official spelling for files."""
        from peft import LoraConfig

        cfg = self.validate()
        targets = list(cfg.target_modules) if official else [diffusers_module_name(t) for t in cfg.target_modules]
        return LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
                          bias="none", task_type="FEATURE_EXTRACTION", init_lora_weights=True)

    def to_dict(self) -> dict:
        return {"rank": self.rank, "alpha": self.alpha, "dropout": self.dropout,
                "target_modules": list(self.target_modules)}

    @classmethod
    def from_dict(cls, data: dict) -> "LoRAConfig":
        names = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(data, dict):
            raise LoRAError(f"a LoRA configuration must be a mapping of {', '.join(names)} (got {type(data).__name__})")
        unknown = [k for k in data if k not in names]
        if unknown:
            raise LoRAError(f"{unknown[0]} is not a LoRAConfig field (fields: {', '.join(names)})")
        targets = data.get("target_modules", DEFAULT_TARGETS)
        if not isinstance(targets, (str, list, tuple)):
            raise LoRAError(f"target_modules must be a list of module names (got {targets!r:.60})")
        return cls(**{**data, "target_modules": targets if isinstance(targets, str) else tuple(targets)})


def matching_modules(transformer, target_modules) -> dict[str, list[str]]:
    """For each target (official spelling), the diffusers names of the Linear layers it selects."""
    linears = [name for name, module in transformer.named_modules()
               if isinstance(module, torch.nn.Linear) and ".base_layer" not in name and "lora_" not in name]
    found = {}
    for target in target_modules:
        local = diffusers_module_name(target)
        found[target] = [n for n in linears if n == local or n.endswith("." + local)]
    return found


def check_targets(transformer, config: LoRAConfig) -> list[str]:
    """The Linear layers `config` adapts; an error names any target that matches none."""
    found = matching_modules(transformer, config.target_modules)
    missing = [t for t, names in found.items() if not names]
    if missing:
        leaves = sorted({official_module_name(n).split(".")[-1] for names in
                         matching_modules(transformer, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                        "up_proj", "down_proj"]).values() for n in names})
        raise LoRAError(f"target_modules {', '.join(map(repr, missing))} match no linear layer of the DiT "
                        f"(layer names include: {', '.join(leaves)}; qualify with self_attn. or cross_attn.)")
    return sorted({n for names in found.values() for n in names})


# --------------------------------------------------------------------------- tuner layers

def tuner_layers(transformer) -> list[tuple[str, torch.nn.Module]]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [(name, module) for name, module in transformer.named_modules() if isinstance(module, BaseTunerLayer)]


def adapter_names_in(layer) -> set[str]:
    return set(getattr(layer, "lora_A", {}).keys()) | set(getattr(layer, "lora_embedding_A", {}).keys())


def inject(transformer, name: str, peft_config) -> None:
    """Add LoRA layers named `name` to `transformer` (peft's injection, warnings quietened).

    The adapter's weights are float32 even on a bf16/fp16 DiT, as with upstream's PeftModel:
    the optimizer keeps full-precision weights, and loaded adapters compute as upstream's do.
    """
    from peft import inject_adapter_in_model
    from peft.tuners.tuners_utils import cast_adapter_dtype

    configs = dict(getattr(transformer, "peft_config", {}) or {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inject_adapter_in_model(peft_config, transformer, adapter_name=name)
    cast_adapter_dtype(transformer, name)
    configs[name] = peft_config
    transformer.peft_config = configs


def remove(transformer, name: str) -> None:
    """Delete adapter `name`; layers left with no adapter become their original Linear again."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Adapter x was active which is now deleted"
        for module_name, layer in tuner_layers(transformer):
            if name in adapter_names_in(layer):
                layer.delete_adapter(name)
            if not adapter_names_in(layer):
                parent_name, _, child = module_name.rpartition(".")
                parent = transformer.get_submodule(parent_name) if parent_name else transformer
                setattr(parent, child, layer.get_base_layer())
    configs = dict(getattr(transformer, "peft_config", {}) or {})
    configs.pop(name, None)
    if configs:
        transformer.peft_config = configs
    elif "peft_config" in transformer.__dict__:
        del transformer.peft_config


def activate(transformer, scales: dict[str, float], trainable: str | None = None) -> None:
    """Make exactly the adapters in `scales` with a non-zero scale active, at those scales.

    A layer with no active adapter is switched off (peft then returns the base layer's output
    untouched). Only `trainable`'s weights require gradients.
    """
    active = [n for n, s in scales.items() if s != 0]
    for _, layer in tuner_layers(transformer):
        present = [n for n in active if n in adapter_names_in(layer)]
        if not present:
            layer.enable_adapters(False)
            continue
        layer.enable_adapters(True)
        layer.set_adapter(present, inference_mode=True)
        for n in present:
            layer.set_scale(n, scales[n])
    for param_name, param in transformer.named_parameters():
        if "lora_" in param_name:
            param.requires_grad_(trainable is not None and f".{trainable}." in f".{param_name}.")


def adapter_state(transformer, name: str) -> dict[str, torch.Tensor]:
    """Adapter `name`'s tensors under peft's file names, diffusers spelling (`...to_q.lora_A.weight`)."""
    state = {}
    for param_name, param in transformer.named_parameters():
        parts = param_name.split(".")
        for i, part in enumerate(parts[:-1]):
            if part in _LORA_PARTS and parts[i + 1] == name:
                rest = parts[:i + 1] + parts[i + 2:]
                key = ".".join(rest)
                if part == "lora_magnitude_vector":
                    key = key.removesuffix(".weight")  # peft's file name for DoRA magnitudes
                state[key] = param.detach()
                break
    return state


def _parameter_for(key: str, name: str) -> str:
    module, part, rest = _module_of(key)
    if part == "lora_magnitude_vector" and not rest:
        rest = ".weight"
    return f"{module}.{part}.{name}{rest}"


def assign_state(transformer, name: str, state: dict[str, torch.Tensor], source) -> None:
    """Copy file tensors (diffusers spelling) into adapter `name`; every tensor must fit exactly."""
    params = dict(transformer.named_parameters())
    expected = {p for p in params if f".{name}." in f".{p}." and "lora_" in p}
    problems, seen = [], set()
    for key, tensor in state.items():
        target = _parameter_for(key, name)
        if target not in params:
            problems.append(f"unexpected tensor {official_key(key)}")
            continue
        seen.add(target)
        if tuple(params[target].shape) != tuple(tensor.shape):
            problems.append(f"tensor {official_key(key)} has shape {tuple(tensor.shape)}, "
                            f"the DiT expects {tuple(params[target].shape)}")
    problems += [f"missing tensor {p}" for p in sorted(expected - seen)]
    if problems:
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise LoRAError(f"{source} does not fit this DiT:\n  " + "\n  ".join(problems[:10]) + more)
    with torch.no_grad():
        for key, tensor in state.items():
            param = params[_parameter_for(key, name)]
            param.copy_(tensor.to(device=param.device, dtype=param.dtype))


# --------------------------------------------------------------------------- files

def fingerprint_file(path: Path) -> str:
    from ..models.loader import weights_fingerprint

    return weights_fingerprint(path)


def save_adapter(folder, state: dict[str, torch.Tensor], config: LoRAConfig, base_model: str = "",
                 info: dict | None = None) -> Path:
    """Write `state` (diffusers spelling, as `adapter_state` returns it) in peft's format, official names."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    peft_config = config.peft_config(official=True)
    peft_config.base_model_name_or_path = base_model or None
    tensors = {official_key(k): v.detach().float().cpu().contiguous() for k, v in sorted(state.items())}
    metadata = {"format": "pt", METADATA_KEY: json.dumps(info or {}, sort_keys=True, default=str)}
    save_file(tensors, str(folder / ADAPTER_WEIGHTS), metadata=metadata)
    peft_config.save_pretrained(str(folder))
    return folder


@dataclass
class AdapterFiles:
    """An adapter folder read into memory: peft config and tensors in diffusers' spelling."""

    path: Path
    peft_config: object
    state: dict
    info: dict
    fingerprint: str


def _check_adapter_config(raw: dict, path: Path) -> None:
    """The fields of adapter_config.json that we read ourselves, checked for their JSON types."""
    if str(raw.get("peft_type", "LORA")).upper() != "LORA":
        raise LoRAError(f"{path}: peft_type must be LORA (got {raw.get('peft_type')!r:.60})")
    r = raw.get("r", 8)
    if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= 4096:
        raise LoRAError(f"{path}: r must be a whole number between 1 and 4096 (got {r!r:.60})")
    alpha = raw.get("lora_alpha", r)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise LoRAError(f"{path}: lora_alpha must be a finite number (got {alpha!r:.60})")
    for key in ("alpha_pattern", "rank_pattern"):
        value = raw.get(key)
        if value is not None and not (isinstance(value, dict) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value.values())):
            raise LoRAError(f"{path}: {key} must map module names to numbers (got {value!r:.60})")
    dropout = raw.get("lora_dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise LoRAError(f"{path}: lora_dropout must be a number in [0, 1) (got {dropout!r:.60})")


def read_adapter(folder) -> AdapterFiles:
    """Read a peft LoRA folder (ours or upstream's); module names are translated to diffusers'."""
    from peft import LoraConfig
    from safetensors import SafetensorError, safe_open

    folder = Path(folder)
    if folder.is_file() and folder.name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
        folder = folder.parent
    if not folder.is_dir():
        raise LoRAError(f"path {folder}: no such adapter folder (it must hold {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})")
    if (folder / "lokr_weights.safetensors").is_file() and not (folder / ADAPTER_WEIGHTS).is_file():
        raise LoRAError(f"{folder} holds a LoKr adapter (lokr_weights.safetensors); only LoRA adapters are supported")
    for needed in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (folder / needed).is_file():
            raise LoRAError(f"{folder} lacks {needed}: a LoRA adapter folder holds {ADAPTER_CONFIG} "
                            f"and {ADAPTER_WEIGHTS}")
    raw = read_json(folder / ADAPTER_CONFIG, LoRAError)
    _check_adapter_config(raw, folder / ADAPTER_CONFIG)
    try:
        with safe_open(str(folder / ADAPTER_WEIGHTS), framework="pt") as f:
            info = json.loads((f.metadata() or {}).get(METADATA_KEY, "{}"))
            official = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RecursionError) as exc:
        raise LoRAError(f"{folder / ADAPTER_WEIGHTS} is not a readable safetensors file ({exc})") from None
    if not isinstance(info, dict):
        info = {}
    state = {}
    for key, tensor in official.items():
        if not tensor.is_floating_point():
            raise LoRAError(f"{folder / ADAPTER_WEIGHTS}: {key} must hold floating-point weights (got {tensor.dtype})")
        if not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise LoRAError(f"{folder / ADAPTER_WEIGHTS}: {key} holds {bad} NaN or infinite values; the adapter is "
                            "damaged (a training run that diverged?) and would turn every take into noise")
        try:
            state[diffusers_key(key)] = tensor
        except KeyError:
            raise LoRAError(f"{folder / ADAPTER_WEIGHTS}: {key} is not a name on the DiT decoder "
                            f"(expected names like {OFFICIAL_PREFIX}layers.0.self_attn.q_proj.lora_A.weight)") from None
    if not state:
        raise LoRAError(f"{folder / ADAPTER_WEIGHTS} holds no tensors")

    # Target exactly the modules the file has weights for; ranks from the tensor shapes.
    known = {f.name for f in dataclasses.fields(LoraConfig) if f.init}
    kwargs = {k: v for k, v in raw.items() if k in known}
    modules = sorted({_module_of(k)[0] for k in state})
    rank = int(kwargs.get("r", 8))
    ranks = {m: int(state[f"{m}.lora_A.weight"].shape[0]) for m in modules if f"{m}.lora_A.weight" in state}
    rank_pattern = {re.escape(m): r for m, r in ranks.items() if r != rank}
    alpha_pattern = {_rename_pattern(k): v for k, v in (kwargs.get("alpha_pattern") or {}).items()}
    kwargs.update(target_modules=modules, rank_pattern=rank_pattern, alpha_pattern=alpha_pattern,
                  exclude_modules=None, layers_to_transform=None, layers_pattern=None, modules_to_save=None,
                  inference_mode=True, init_lora_weights=True)
    try:
        peft_config = LoraConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        raise LoRAError(f"{folder / ADAPTER_CONFIG} is not a usable LoRA configuration ({exc})") from None
    return AdapterFiles(folder, peft_config, state, info, fingerprint_file(folder / ADAPTER_WEIGHTS))


# --------------------------------------------------------------------------- the engine's adapters

@dataclass
class LoadedAdapter:
    name: str
    path: str
    scale: float
    fingerprint: str
    rank: int
    info: dict

    def describe(self) -> dict:
        return {"name": self.name, "path": self.path, "scale": self.scale, "fingerprint": self.fingerprint,
                "rank": self.rank}


def check_scale(scale) -> float:
    return _number("scale", scale, *SCALE_RANGE)


def adapter_name_for(path: Path) -> str:
    folder = path.parent if path.is_file() else path
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", folder.name).strip("_")[:64]
    return name or "lora"


class AdapterSet:
    """The adapters loaded on one DiT, with their scales. Not thread-safe: `Engine` serialises calls."""

    def __init__(self, transformer):
        self.transformer = transformer
        self.entries: dict[str, LoadedAdapter] = {}

    def load(self, path, name: str | None = None, scale: float = 1.0) -> LoadedAdapter:
        scale = check_scale(scale)
        files = read_adapter(path)
        name = adapter_name_for(files.path) if name is None else name
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name == TRAINING_ADAPTER:
            raise LoRAError(f"name must be 1-64 letters, digits, '_' or '-' and not {TRAINING_ADAPTER!r} "
                            f"(got {name!r:.80})")
        if name in self.entries:
            raise LoRAError(f"an adapter named {name!r} is loaded already: unload it first or pass another name=")
        linears = {n for n, m in self.transformer.named_modules() if isinstance(m, torch.nn.Linear)}
        wrapped = {n for n, _ in tuner_layers(self.transformer)}
        absent = [m for m in files.peft_config.target_modules if m not in linears and m not in wrapped]
        if absent:
            layers = len(getattr(self.transformer, "layers", []))
            raise LoRAError(f"{files.path} adapts {official_module_name(absent[0])}, which this DiT ({layers} layers) "
                            f"does not have: was it trained for another model?")
        inject(self.transformer, name, files.peft_config)
        try:
            assign_state(self.transformer, name, files.state, files.path / ADAPTER_WEIGHTS)
        except Exception:
            remove(self.transformer, name)
            self.apply()
            raise
        entry = LoadedAdapter(name, str(files.path), scale, files.fingerprint, int(files.peft_config.r), files.info)
        self.entries[name] = entry
        self.apply()
        return entry

    def _names(self, name: str | None) -> list[str]:
        if name is None:
            return list(self.entries)
        if name not in self.entries:
            loaded = ", ".join(self.entries) or "none"
            raise LoRAError(f"no adapter named {name!r:.80} is loaded (loaded: {loaded})")
        return [name]

    def set_scale(self, scale: float, name: str | None = None) -> None:
        scale = check_scale(scale)
        for n in self._names(name):
            self.entries[n].scale = scale
        self.apply()

    def unload(self, name: str | None = None) -> None:
        for n in self._names(name):
            remove(self.transformer, n)
            del self.entries[n]
        self.apply()

    def apply(self) -> None:
        activate(self.transformer, {n: e.scale for n, e in self.entries.items()})

    def describe(self) -> list[dict]:
        return [e.describe() for e in self.entries.values()]
