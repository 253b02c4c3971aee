"""Linear layers in oneDNN's packed weight layout, for the few-row products of LM decoding.

A decode step multiplies one row per prompt (two with guidance) by every weight matrix of the LM.
torch's default CPU kernel for such a product does not run at the memory bandwidth: on the 2-core
EPYC here a 3072x1024 layer costs 0.46 ms in fp32 for one row and 0.86 ms for two, 0.33 ms in
bf16, where oneDNN, with the weight reordered once into its blocked layout, takes 0.15-0.16 ms
(fp32, one or two rows) and 0.11 ms (bf16). Reordering costs about one multiplication per layer,
so it pays from the second decode step on.

    with packed_linears(model, rows=2) as packing:
        ...decode...                              # every untied nn.Linear of model runs packed
        logits = packing.matmul(hidden, head)     # a weight that is not a layer's (the LM head's rows)

Inside the block each packed layer's dense weight is swapped for an empty placeholder (the packed
copy is the only one, so memory stays at one copy of the weights) and put back bit-for-bit on
exit, after an error too. A call with gradients enabled, or with input in another dtype, runs the
stock `F.linear` on the dense form. Weights shared with another module (an LM head tied to the
embeddings) stay dense. With `enabled=False`, or where `packable` says no, nothing changes.
"""

from __future__ import annotations

import logging
import platform
from contextlib import contextmanager

import torch
from torch import nn

from .hardware import cpu_has_native_bf16
from .heap import give_back_free_memory

log = logging.getLogger(__name__)

MAX_PACKED_ROWS = 16  # beyond this many rows (a long forced run, a prompt) `matmul` multiplies the dense weight


def packable(dtype: torch.dtype, device: torch.device | str) -> bool:
    """Whether oneDNN's packed kernels serve `dtype` on `device`: fp32 on x86-64 CPUs (where they were
    measured; elsewhere the stock kernels run), bf16 only where the CPU multiplies bf16 natively
    (elsewhere oneDNN emulates it slowly)."""
    if torch.device(device).type != "cpu" or not torch.backends.mkldnn.is_available() \
            or platform.machine().lower() not in ("x86_64", "amd64") or _broken:
        return False
    if dtype == torch.float32:
        return True
    return dtype == torch.bfloat16 and cpu_has_native_bf16()


_broken: list[str] = []  # why packing failed on this machine, once it has: then nothing is packed again


def _give_up(exc: Exception) -> None:
    _broken.append(f"{type(exc).__name__}: {exc}")
    log.warning("oneDNN packed linear layers failed here (%s); the stock kernels run instead", _broken[0])


def pack(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """`weight` [out, in] reordered for products with about `rows` rows (an opaque oneDNN tensor)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), max(1, int(rows)))


def packed_product(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`x @ W.T + bias` with W packed by `pack`."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


class Packing:
    """What `packed_linears` yields: the packed layers, and `matmul` for weights that are no layer's."""

    def __init__(self, rows: int, enabled: bool):
        self.rows = rows
        self.enabled = enabled
        self.layers: list[nn.Linear] = []
        self._extra: dict[tuple, torch.Tensor] = {}

    def matmul(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """`x @ weight.T`; packed (a copy made on first use, kept until the block ends) for up to
        MAX_PACKED_ROWS rows of inference in the weight's dtype."""
        rows = x.numel() // max(x.shape[-1], 1)
        if not self.enabled or rows > MAX_PACKED_ROWS or x.dtype != weight.dtype or torch.is_grad_enabled() \
                or not packable(weight.dtype, weight.device):
            return x @ weight.T
        key = (weight.data_ptr(), tuple(weight.shape), tuple(weight.stride()), weight.dtype)
        packed = self._extra.get(key)
        if packed is None:
            try:
                packed = self._extra[key] = pack(weight.contiguous(), self.rows)
            except RuntimeError as exc:
                _give_up(exc)
                return x @ weight.T
        return packed_product(x, packed)

    def release(self) -> None:
        self._extra.clear()


def _shared_weights(root: nn.Module) -> set[int]:
    seen: dict[int, int] = {}
    for _, param in root.named_parameters(remove_duplicate=False):
        seen[id(param)] = seen.get(id(param), 0) + 1
    return {key for key, count in seen.items() if count > 1}


def _packed_forward(layer: nn.Linear, packed: torch.Tensor):
    def forward(x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.dtype != packed.dtype:
            return nn.functional.linear(x, packed.to_dense(), layer.bias)
        return packed_product(x, packed, layer.bias)

    return forward


@contextmanager
def packed_linears(root: nn.Module, rows: int = 1, enabled: bool = True):
    """Run every untied `nn.Linear` under `root` packed for `rows`-row products while the block
    lasts (see the module docstring); yields a `Packing`."""
    packing = Packing(rows, enabled)
    swapped: list[tuple[nn.Linear, torch.Tensor]] = []
    # The heap keeps what each swap frees: handing it back every TRIM_BYTES keeps the freed copies
    # of the weights from piling up beside the new ones (+0.9 GB for a 0.6B LM otherwise).
    trim = _Trimmer()
    try:
        if enabled:
            shared = _shared_weights(root)
            for layer in root.modules():
                weight = getattr(layer, "weight", None)
                if type(layer) is not nn.Linear or weight is None or id(weight) in shared \
                        or "forward" in vars(layer) or weight.numel() == 0 \
                        or not packable(weight.dtype, weight.device):
                    continue
                try:
                    packed = pack(weight, rows)
                except RuntimeError as exc:  # a oneDNN build that cannot reorder this weight: stay stock
                    _give_up(exc)
                    break
                trim.freed(weight.numel() * weight.element_size())
                weight.data = torch.empty(0, dtype=weight.dtype, device=weight.device)
                swapped.append((layer, packed))
                layer.forward = _packed_forward(layer, packed)
                packing.layers.append(layer)
            trim.now()
        yield packing
    finally:
        while swapped:  # one layer at a time, so that each packed copy is freed before the next is unpacked
            layer, packed = swapped.pop()
            del layer.forward
            with torch.inference_mode(False), torch.no_grad():  # a weight again, whatever mode the block ends in
                layer.weight.data = packed.to_dense()
            trim.freed(layer.weight.numel() * layer.weight.element_size())
            del packed
        packing.release()
        trim.now()


TRIM_BYTES = 128 << 20


class _Trimmer:
    def __init__(self):
        self.pending = 0

    def freed(self, size: int) -> None:
        self.pending += size
        if self.pending >= TRIM_BYTES:
            self.now()

    def now(self) -> None:
        if self.pending:
            give_back_free_memory()
            self.pending = 0
