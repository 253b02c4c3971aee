"""Park a model's weights on disk between uses: offloading where the device is the host.

    parking.attach(text_encoder, {"layers.0.mlp.up_proj.weight": (path, "layers.0.mlp.up_proj.weight"), ...},
                   dtype=torch.bfloat16)
    parking.park(text_encoder)     # its weights are freed (the page cache keeps the file)
    text_encoder(input_ids=ids)    # restored from the file first, automatically

On a CPU the device is the host, so moving a module "to the CPU" frees nothing. Parking does: the
parked module's parameters are swapped for empty placeholders (the Parameter objects stay, so
adapters, optimisers and compiled graphs keep valid references), and the weights are read again
from the safetensors file they were loaded from when the module next runs: from the page cache
that is about a second per 2 GB here, and nothing is written; they come back as copies in memory
of their own, a group at a time (`weight_files`). Any call into a parked module
restores it first (a forward pre-hook on every submodule that owns weights), so code outside the
pipeline (LoRA data preparation, scoring, the planner) never meets a parked module. Parameters
that are not in the file (LoRA adapters added later) stay resident.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import torch

_lock = threading.RLock()


@dataclass
class _Parking:
    dtype: torch.dtype
    sources: list  # (parameter, path, key in the file, shape)
    full_bytes: int
    parked: bool = False


def attach(module: torch.nn.Module, keys: dict[str, tuple[Path, str]], dtype: torch.dtype) -> bool:
    """Make `module` parkable: `keys` maps its parameter names to (safetensors path, key in that
    file); parameters without a key (LoRA adapters) stay resident. Returns False (and changes
    nothing) when no parameter has a source or a file's shape differs, so that only weights that
    come back exactly are ever parked. Attaching twice keeps the first attachment."""
    from safetensors import safe_open

    if is_parkable(module):
        return True
    params = dict(module.named_parameters())
    sources, shapes = [], {}
    for path in {p for p, _ in keys.values()}:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                shapes[(path, key)] = tuple(f.get_slice(key).get_shape())
    for name, param in params.items():
        where = keys.get(name)
        if where is None:
            continue
        if shapes.get(where) != tuple(param.shape):
            return False
        sources.append((param, Path(where[0]), where[1], tuple(param.shape)))
    if not sources:
        return False
    state = _Parking(dtype=dtype, sources=sources,
                     full_bytes=sum(p.numel() * p.element_size() for p, *_ in sources))

    @torch.compiler.disable  # Python state, outside any compiled graph (see acestep_engine.runtime.compiling)
    def restore_first(*_):
        if state.parked:
            restore(module)

    restore_first.acestep_parking = True  # what the LM's lean decode step may leave to the stock forward
    for sub in module.modules():
        if any(True for _ in sub.parameters(recurse=False)):
            sub.register_forward_pre_hook(restore_first)
    module._acestep_parking = state
    return True


def is_parkable(module) -> bool:
    return getattr(module, "_acestep_parking", None) is not None


def is_parked(module) -> bool:
    state = getattr(module, "_acestep_parking", None)
    return bool(state is not None and state.parked)


def full_bytes(module) -> int | None:
    """The bytes of the module's file-backed weights when resident (None for a module that cannot park)."""
    state = getattr(module, "_acestep_parking", None)
    return None if state is None else state.full_bytes


def park(module) -> int:
    """Free `module`'s file-backed weights; returns the bytes freed (0 if not parkable or parked)."""
    state = getattr(module, "_acestep_parking", None)
    if state is None:
        return 0
    with _lock:
        if state.parked:
            return 0
        freed = 0
        for param, _, _, _ in state.sources:
            freed += param.numel() * param.element_size()
            param.data = torch.empty(0, dtype=param.dtype, device=param.device)
        state.parked = True
        return freed


def restore(module) -> bool:
    """Read a parked module's weights back from its files; True if it was parked."""
    state = getattr(module, "_acestep_parking", None)
    if state is None or not state.parked:
        return False
    from .weight_files import copy_into

    with _lock:
        if not state.parked:
            return False
        shapes = {id(param): (path, shape) for param, path, _, shape in state.sources}

        def unchanged(param, key, tensor):
            path, shape = shapes[id(param)]
            if tuple(tensor.shape) != shape:
                raise RuntimeError(f"{path} changed while {key} was parked: shape {tuple(tensor.shape)}, "
                                   f"expected {shape}")

        # Weights, not inference tensors, whoever restores them; inference_mode(False) alone would turn
        # gradients back on inside a no_grad caller.
        with torch.inference_mode(False), torch.no_grad():
            copy_into([(param, path, key) for param, path, key, _ in state.sources], state.dtype, check=unchanged)
        state.parked = False
        return True


def same_keys(module, paths, prefix: str = "") -> dict[str, tuple[Path, str]]:
    """Keys for a module saved as it is (transformers/diffusers layout, one file or shards): each
    state key, or the key with `prefix` (e.g. "model.") added or taken off, in whichever of `paths`
    holds it."""
    from safetensors import safe_open

    where = {}
    for path in [Path(p) for p in paths]:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                where[key] = path
    keys = {}
    for name, plain in saved_names(module).items():
        for candidate in (plain, prefix + plain, plain.removeprefix(prefix) if prefix else plain):
            if candidate in where:
                keys[name] = (where[candidate], candidate)
                break
    return keys


def saved_names(module) -> dict[str, str]:
    """Each parameter's name as the module's own checkpoint has it: a LoRA-wrapped layer's weight
    without peft's `.base_layer`, and no LoRA adapter weights (they are in no checkpoint file)."""
    return {name: name.replace(".base_layer.", ".") for name, _ in module.named_parameters() if "lora_" not in name}
