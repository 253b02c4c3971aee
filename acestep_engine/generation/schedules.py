"""Flow-matching timestep schedules of ACE-Step 1.5 (reference 4.2).

`t = 1` is pure noise, `t = 0` clean latents. A schedule here is the list of the N times at
which the DiT is called, followed by the final 0.
"""

from __future__ import annotations

TURBO_STEPS = 8
TURBO_SHIFTS = (1.0, 2.0, 3.0)


def shifted(t: float, shift: float) -> float:
    return shift * t / (1 + (shift - 1) * t)


def linear_schedule(steps: int, shift: float = 1.0) -> list[float]:
    """Base/SFT schedule: `linspace(1, 0, steps + 1)`, then the shift transform."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1 (got {steps})")
    if shift <= 0:
        raise ValueError(f"shift must be positive (got {shift})")
    return [shifted(1 - i / steps, shift) for i in range(steps + 1)]


def turbo_schedule(shift: float = 3.0) -> list[float]:
    """The fixed 8-step turbo table; shift is snapped to the nearest of 1, 2, 3 as upstream does."""
    snapped = min(TURBO_SHIFTS, key=lambda s: abs(s - shift))
    return linear_schedule(TURBO_STEPS, snapped)


def turbo_grid() -> list[float]:
    """The distinct non-zero times of the three turbo tables (custom turbo times snap to these)."""
    values = {}
    for s in TURBO_SHIFTS:
        for t in turbo_schedule(s)[:-1]:
            values.setdefault(round(t, 9), t)
    return sorted(values.values(), reverse=True)


def custom_schedule(timesteps, turbo: bool) -> list[float]:
    """User-given times (descending, in (0, 1]); turbo models only know the 20 trained values."""
    times = [float(t) for t in timesteps]
    while times and times[-1] == 0:
        times.pop()
    if not times or len(times) > 200:
        raise ValueError("timesteps must hold between 1 and 200 values in (0, 1]")
    if any(not 0 < t <= 1 for t in times) or any(a <= b for a, b in zip(times, times[1:])):
        raise ValueError(f"timesteps must be strictly decreasing values in (0, 1] (got {list(timesteps)})")
    if turbo:
        grid = turbo_grid()
        times = [min(grid, key=lambda g: abs(g - t)) for t in times]
        times = sorted(set(times), reverse=True)
    return times + [0.0]


def make_schedule(turbo: bool, steps: int, shift: float, timesteps=None) -> list[float]:
    if timesteps is not None:
        return custom_schedule(timesteps, turbo)
    if turbo:
        return turbo_schedule(shift)
    return linear_schedule(steps, shift)
