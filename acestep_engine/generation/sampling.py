"""The denoising loop shared by every task: flow-matching Euler steps with optional guidance.

`x_t = t * noise + (1 - t) * x0`; the DiT predicts `v = noise - x0`; a step from `t` to `t'`
is `x_t' = x_t - v * (t - t')` and the last step (to 0) gives `x0 = x_t - t * v` (reference 4.1).
Options as upstream: `method="sde"` predicts x0 and re-noises to `t'` with fresh noise, and
`solver="heun"` adds a corrector call per step (plain CFG in the corrector, as upstream).
Tasks differ only in the inputs they pass here (context latents, conditions, step hooks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import GenerationCancelled
from .conditioning import Conditions
from .guidance import MomentumBuffer, apg, cfg


@dataclass
class SamplerSettings:
    schedule: list[float]  # N call times then the final 0
    guidance: float = 1.0  # <= 1: no guidance (one DiT call per step)
    guidance_method: str = "apg"  # "apg" or "cfg"
    guidance_interval: tuple[float, float] = (0.0, 1.0)  # guide only while start <= t <= end
    method: str = "ode"  # "ode" (deterministic Euler) or "sde" (x0 prediction, then fresh noise)
    solver: str = "euler"  # "euler" (1 call per step) or "heun" (2 calls per step)

    @property
    def steps(self) -> int:
        return len(self.schedule) - 1


# inputs(step) -> (context latents [B, T, 2C], conditions): lets a task switch inputs mid-loop.
StepInputs = Callable[[int], tuple[torch.Tensor, Conditions]]
# hook(step, t_next, x) -> x: lets a task edit the state after each update (e.g. repaint injection).
StepHook = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def denoise(transformer, noise: torch.Tensor, inputs: StepInputs, settings: SamplerSettings,
            step_hook: StepHook | None = None, on_step: Callable[[int, int], None] | None = None,
            cancel=None, sde_noise: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:
    """Run the sampler from `noise` `[B, T, C]` to clean latents `[B, T, C]`.

    Times live in the model dtype, as upstream: in bf16 the schedule is quantised and the Euler
    step sizes use the quantised values (reference 10), which keeps seeds comparable.
    `sde_noise()` draws the fresh noise of the SDE method (seeded by the caller).
    """
    from ..runtime.kv_cache import reuse_condition_projections

    if settings.method not in ("ode", "sde"):
        raise ValueError(f"method must be 'ode' or 'sde' (got {settings.method!r:.80})")
    if settings.solver not in ("euler", "heun"):
        raise ValueError(f"solver must be 'euler' or 'heun' (got {settings.solver!r:.80})")
    dtype = noise.dtype
    times = torch.tensor(settings.schedule, dtype=dtype, device=noise.device)
    batch = noise.shape[0]
    momentum = MomentumBuffer()
    x = noise
    with reuse_condition_projections(transformer):
        for i in range(settings.steps):
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled(f"generation cancelled before step {i + 1} of {settings.steps}")
            t, t_next = times[i], times[i + 1]
            context, conditions = inputs(i)
            v = velocity(transformer, x, t.expand(batch), context, conditions, settings, momentum)
            if settings.solver == "heun" and float(t_next) > 0:
                predicted = x - v * (t - t_next)
                corrector = SamplerSettings(settings.schedule, settings.guidance, "cfg", settings.guidance_interval)
                v_next = velocity(transformer, predicted, t_next.expand(batch), context, conditions, corrector)
                v = (v + v_next) / 2
            if settings.method == "sde" and float(t_next) > 0:
                x0 = x - t * v
                fresh = sde_noise() if sde_noise is not None else torch.randn_like(x)
                x = t_next * fresh + (1 - t_next) * x0
            else:
                x = x - v * (t - t_next)
            if step_hook is not None:
                x = step_hook(i, t_next, x)
            if on_step is not None:
                on_step(i + 1, settings.steps)
    return x


def velocity(transformer, x, t, context, conditions: Conditions, settings: SamplerSettings,
             momentum: MomentumBuffer | None = None) -> torch.Tensor:
    start, end = settings.guidance_interval
    guided = settings.guidance > 1.0 and start <= float(t[0]) <= end
    if not guided:
        return transformer(hidden_states=x, timestep=t, timestep_r=t, encoder_hidden_states=conditions.states,
                           context_latents=context, return_dict=False)[0]
    # Conditional and unconditional halves in one batched call.
    out = transformer(hidden_states=torch.cat([x, x]), timestep=torch.cat([t, t]), timestep_r=torch.cat([t, t]),
                      encoder_hidden_states=conditions.guided_states(),
                      context_latents=torch.cat([context, context]), return_dict=False)[0]
    v_cond, v_uncond = out.chunk(2)
    if settings.guidance_method == "cfg":
        return cfg(v_cond, v_uncond, settings.guidance)
    return apg(v_cond, v_uncond, settings.guidance, momentum)
