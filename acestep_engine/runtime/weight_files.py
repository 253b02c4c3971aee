"""Reading weights out of safetensors files into memory the process owns, a bounded group at a time.

safetensors (0.8) hands out tensors that live in a private mapping of the file: nothing is read
until a page is touched, and every touched page stays in the process's resident set for as long as
any tensor of that mapping lives. Weights left that way are read lazily by the first generation,
count twice in memory once anything converts or repacks them (the touched pages plus the copy),
and change, or fault, under the running program if the file is rewritten or truncated on disk.

So the engine copies every weight it keeps out of its file, and does it `group_bytes` at a time:
each group's mapping is closed before the next opens, so reading never holds more than the
weights read so far plus one group.

    tensors = read_file(path, torch.bfloat16)              # {key: tensor}, every tensor of a file
    copy_into([(param, path, key), ...], torch.bfloat16)   # param.data <- a copy from the file
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

GROUP_BYTES = 256 << 20

_ELEMENT_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
                  "U16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1, "U8": 1, "BOOL": 1}


def _sizes(path: Path, keys) -> dict[str, int]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        keys = list(f.keys()) if keys is None else keys
        sizes = {}
        for key in keys:
            piece = f.get_slice(key)
            sizes[key] = _ELEMENT_BYTES.get(str(piece.get_dtype()).upper(), 4) * math.prod(piece.get_shape())
    return sizes


def _groups(sizes: dict[str, int], group_bytes: int) -> list[list[str]]:
    groups, group, filled = [], [], 0
    for key, size in sizes.items():
        if group and filled + size > group_bytes:
            groups.append(group)
            group, filled = [], 0
        group.append(key)
        filled += size
    return groups + ([group] if group else [])


def read_groups(path: str | Path, keys=None, group_bytes: int = GROUP_BYTES):
    """Yield `{key: tensor}` of `keys` (default: all, in file order) a group at a time; a group's
    tensors still live in the file's mapping: copy what you keep before asking for the next."""
    from safetensors import safe_open

    path = Path(path)
    for group in _groups(_sizes(path, keys), group_bytes):
        with safe_open(str(path), framework="pt", device="cpu") as f:
            yield {key: f.get_tensor(key) for key in group}


def _owned(tensor: torch.Tensor, dtype: torch.dtype | None, device=None) -> torch.Tensor:
    return tensor.to(device=device, dtype=dtype or tensor.dtype, copy=True)


def read_file(path: str | Path, dtype: torch.dtype | None = None,
              group_bytes: int = GROUP_BYTES) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, in `dtype` (None: as stored), in memory of its own."""
    tensors = {}
    for group in read_groups(path, None, group_bytes):
        for key in list(group):
            tensors[key] = _owned(group.pop(key), dtype)
    return tensors


def copy_into(sources, dtype: torch.dtype | None = None, group_bytes: int = GROUP_BYTES, check=None) -> None:
    """For each `(parameter, path, key)`: `parameter.data` becomes a copy of that tensor of that
    file, in `dtype` (None: the parameter's), on the parameter's device. `check(parameter, key,
    tensor)` may refuse a tensor (raise) before it is copied."""
    by_file: dict[Path, list] = {}
    for param, path, key in sources:
        by_file.setdefault(Path(path), []).append((param, key))
    for path, wanted in by_file.items():
        params = {}
        for param, key in wanted:
            params.setdefault(key, []).append(param)
        for group in read_groups(path, list(params), group_bytes):
            for key in list(group):
                tensor = group.pop(key)  # dropped before the next group maps: one group mapped at a time
                for param in params[key]:
                    if check is not None:
                        check(param, key, tensor)
                    param.data = _owned(tensor, dtype or param.dtype, param.device)


def own_weights(module: torch.nn.Module, keys: dict, group_bytes: int = GROUP_BYTES) -> int:
    """Copy the parameters of `module` named in `keys` (`{name: (path, key)}`, as
    `parking.same_keys` gives) out of their files into memory of their own, in their dtype: for
    modules a library loaded straight from the file's mapping. Returns how many were copied."""
    params = dict(module.named_parameters())
    sources = [(params[name], path, key) for name, (path, key) in keys.items() if name in params]
    copy_into(sources, None, group_bytes)
    return len(sources)
