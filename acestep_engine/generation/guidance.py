"""Classifier-free guidance for base/SFT models: APG (upstream's default) and plain CFG.

APG (adaptive projected guidance, reference 4.3): the guidance direction is smoothed with a
negative momentum, its norm clipped along the time axis, and only its component orthogonal to
the conditional velocity is kept.
"""

from __future__ import annotations

import torch


class MomentumBuffer:
    """Running average of the guidance direction; one per generation (it must not leak across)."""

    def __init__(self, momentum: float = -0.75):
        self.momentum = momentum
        self.running = None

    def update(self, value: torch.Tensor) -> torch.Tensor:
        self.running = value if self.running is None else value + self.momentum * self.running
        return self.running


def apg(cond: torch.Tensor, uncond: torch.Tensor, scale: float, buffer: MomentumBuffer | None = None,
        norm_threshold: float = 2.5, eta: float = 0.0, dims=(1,)) -> torch.Tensor:
    """Guided velocity from conditional and unconditional velocities `[B, T, C]`."""
    diff = cond - uncond
    if buffer is not None:
        diff = buffer.update(diff)
    if norm_threshold > 0:
        norm = diff.norm(p=2, dim=dims, keepdim=True)
        diff = diff * torch.minimum(torch.ones_like(norm), norm_threshold / norm.clamp_min(1e-12))
    unit = torch.nn.functional.normalize(cond.double(), dim=dims)
    diff64 = diff.double()
    parallel = (diff64 * unit).sum(dim=dims, keepdim=True) * unit
    orthogonal = diff64 - parallel
    update = (orthogonal + eta * parallel).to(cond.dtype)
    return cond + (scale - 1) * update


def cfg(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    return uncond + scale * (cond - uncond)
