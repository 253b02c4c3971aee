"""Generation settings: one frozen object, built once from a variant's preset and the overrides,
validated once, and recorded in every take as it is (`take.sampling` is `settings.record()` plus the
batch's seeds, `batch_seeds`, which `Engine.replay` reruns).

    settings = GenerationSettings.build(engine.variant, steps=4, solver="heun")
    takes = engine.generate(blueprint, settings=settings)
    GenerationSettings.bounds(engine.variant)["steps"]   # {"min": 1, "max": 20, "default": 8}

This module is the one place that knows the allowed ranges (panels read them from `bounds()`),
and the one place where seeds, batch sizes, progress callbacks and cancel events are checked.

Steps on turbo variants: upstream's PyTorch turbo sampler always runs its fixed 8-step table and
silently ignores `steps`; here `steps` (1-20) is honoured the way upstream's MLX path does, with
an evenly spaced schedule at the snapped shift, so `steps=8` is exactly the official table.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import secrets
from dataclasses import dataclass

from ..errors import TaskError
from .sampling import SamplerSettings
from .schedules import TURBO_SHIFTS, custom_schedule, linear_schedule

MAX_BATCH = 8
SEED_LIMIT = 2 ** 63  # seeds are 0 .. 2**63 - 1 (torch.Generator.manual_seed's range)
METHODS = ("ode", "sde")
SOLVERS = ("euler", "heun")
GUIDANCE_METHODS = ("apg", "cfg")
STEPS_RANGE = {True: (1, 20), False: (1, 200)}  # turbo, base/sft
SHIFT_RANGE = (1.0, 5.0)
GUIDANCE_RANGE = (1.0, 15.0)
NORMALIZATION_DB_RANGE = (-60.0, 0.0)
MAX_TIMESTEPS = 200


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _whole(name: str, value, lo: int, hi: int) -> int:
    """A whole number in [lo, hi]; 3.0 is accepted as 3, 2.7, NaN, True and "3" are refused."""
    if not _is_number(value) or not math.isfinite(value) or float(value) != int(value):
        raise TaskError(f"{name} must be a whole number between {lo} and {hi} (got {value!r:.80})")
    if not lo <= int(value) <= hi:
        raise TaskError(f"{name} must be between {lo} and {hi} (got {value!r:.80})")
    return int(value)


def _real(name: str, value, lo: float, hi: float) -> float:
    """A finite number in [lo, hi] (NaN and Inf are refused by the range test)."""
    if not _is_number(value):
        raise TaskError(f"{name} must be a number between {lo:g} and {hi:g} (got {value!r:.80})")
    if not lo <= float(value) <= hi:
        raise TaskError(f"{name} must be between {lo:g} and {hi:g} (got {value!r:.80})")
    return float(value)


def _choice(name: str, value, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise TaskError(f"{name} must be {' or '.join(repr(a) for a in allowed)} (got {value!r:.80})")
    return value


@dataclass(frozen=True)
class GenerationSettings:
    """Sampler and output settings of one generation (every field is recorded in the take).

    `schedule` holds the N times at which the DiT is called, then the final 0; `steps` is N.
    `shift` is the one the schedule was made with (turbo snaps it to 1, 2 or 3). Build with
    `build()` (never raises on a valid preset, refuses bad overrides with `TaskError`).
    """

    steps: int
    shift: float
    guidance: float  # 1.0: no classifier-free guidance (one DiT call per step)
    guidance_method: str  # "apg" or "cfg"
    guidance_interval: tuple[float, float]  # guide only while start <= t <= end
    method: str  # "ode" (deterministic) or "sde" (x0 prediction, then fresh seeded noise)
    solver: str  # "euler" (1 DiT call per step) or "heun" (2)
    normalize: bool  # peak-normalise the audio to normalization_db
    normalization_db: float  # dBFS, -60 .. 0
    schedule: tuple[float, ...]
    custom_schedule: bool = False  # the schedule came from `timesteps`, not from steps and shift
    turbo: bool = True  # the kind of variant the schedule was made for

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, variant, *, steps=None, shift=None, guidance=None, guidance_method=None,
              guidance_interval=None, timesteps=None, method=None, solver=None, normalize=None,
              normalization_db=None) -> "GenerationSettings":
        """`variant` (an `acestep_engine.models.variants.Variant`, e.g. `engine.variant`) gives the preset;
        None for any setting means its default: the preset's steps, shift, guidance and guidance
        method, guidance over the whole interval (0, 1), "ode", "euler", normalised to -1 dBFS."""
        preset = variant.preset
        guidance_interval = (0.0, 1.0) if guidance_interval is None else guidance_interval
        method = "ode" if method is None else method
        solver = "euler" if solver is None else solver
        normalize = True if normalize is None else normalize
        normalization_db = -1.0 if normalization_db is None else normalization_db
        turbo = bool(variant.turbo)
        lo, hi = STEPS_RANGE[turbo]
        steps = preset.steps if steps is None else _whole("steps", steps, lo, hi)
        shift = float(preset.shift) if shift is None else _real("shift", shift, *SHIFT_RANGE)
        guidance = float(preset.guidance) if guidance is None else _real("guidance", guidance, *GUIDANCE_RANGE)
        if turbo and guidance != 1.0:
            raise TaskError(f"guidance must be 1.0 on the turbo variant {variant.name}: its guidance is distilled "
                            f"into the weights (got {guidance:g})")
        guidance_method = _choice("guidance_method", preset.guidance_method if guidance_method is None
                                  or isinstance(guidance_method, str) and guidance_method == "" else guidance_method, GUIDANCE_METHODS)
        interval = _interval(guidance_interval)
        method = _choice("method", method, METHODS)
        solver = _choice("solver", solver, SOLVERS)
        if not isinstance(normalize, bool):
            raise TaskError(f"normalize must be True or False (got {normalize!r:.80})")
        normalization_db = _real("normalization_db", normalization_db, *NORMALIZATION_DB_RANGE)
        if turbo:  # the turbo weights were distilled on these three shifts only (as upstream)
            shift = float(min(TURBO_SHIFTS, key=lambda s: abs(s - shift)))
        if timesteps is not None:
            schedule = _custom(timesteps, turbo)
        else:
            schedule = tuple(linear_schedule(steps, shift))
        return cls(len(schedule) - 1, shift, guidance, guidance_method, interval, method, solver, normalize,
                   normalization_db, schedule, timesteps is not None, turbo)

    def replace(self, **overrides) -> "GenerationSettings":
        """A copy with `overrides` (the `build` keywords) applied and checked again."""
        check_setting_names(overrides)
        knobs = {"steps": self.steps, "shift": self.shift, "guidance": self.guidance,
                 "guidance_method": self.guidance_method, "guidance_interval": self.guidance_interval,
                 "timesteps": self.schedule if self.custom_schedule else None, "method": self.method,
                 "solver": self.solver, "normalize": self.normalize, "normalization_db": self.normalization_db}
        if ("steps" in overrides or "shift" in overrides) and "timesteps" not in overrides:
            knobs["timesteps"] = None
        knobs.update({k: v for k, v in overrides.items() if v is not None or k == "timesteps"})
        return GenerationSettings.build(_VariantLike(self.turbo), **knobs)

    @classmethod
    def from_record(cls, variant, record: dict) -> "GenerationSettings":
        """The settings a take was made with (`take.sampling`), checked against `variant`."""
        if not isinstance(record, dict):
            raise TaskError(f"a sampling record must be a dict (got {type(record).__name__})")
        knobs = {k: record[k] for k in _KNOBS if k in record}
        if "guidance_interval" in knobs:
            knobs["guidance_interval"] = tuple(knobs["guidance_interval"])
        times = knobs.pop("timesteps", None)
        plain = cls.build(variant, **knobs)
        if times is None or [float(t) for t in times] == list(plain.schedule):
            return plain  # the schedule follows from steps and shift
        knobs.pop("steps", None)
        return cls.build(variant, timesteps=times, **knobs)

    # ------------------------------------------------------------------ use
    def started_at(self, index: int) -> "GenerationSettings":
        """The same settings starting at schedule position `index` (cover's noised start): the
        remaining times become the schedule, so the record says what ran."""
        schedule = self.schedule[index:]
        return dataclasses.replace(self, steps=len(schedule) - 1, schedule=schedule, custom_schedule=True)

    def keeping_loudness(self) -> "GenerationSettings":
        """Normalisation off: the task keeps its source's loudness (repaint, extend)."""
        return dataclasses.replace(self, normalize=False) if self.normalize else self

    def sampler(self) -> SamplerSettings:
        """What the denoising loop reads."""
        return SamplerSettings(list(self.schedule), self.guidance, self.guidance_method, self.guidance_interval,
                               self.method, self.solver)

    def record(self) -> dict:
        """JSON-friendly record written into `take.sampling`."""
        return {"steps": self.steps, "shift": self.shift, "guidance": self.guidance,
                "guidance_method": self.guidance_method, "guidance_interval": list(self.guidance_interval),
                "timesteps": [float(t) for t in self.schedule], "method": self.method, "solver": self.solver,
                "normalize": self.normalize, "normalization_db": self.normalization_db}

    # ------------------------------------------------------------------ bounds for panels
    @staticmethod
    def bounds(variant=None) -> dict:
        """Allowed values per setting: `{"min", "max"}` for numbers, `{"choices"}` for names, plus
        `"default"` (the variant's preset) when `variant` is given. Turbo allows guidance 1 only."""
        turbo = bool(variant.turbo) if variant is not None else False
        lo, hi = STEPS_RANGE[turbo]
        out = {
            "steps": {"min": lo, "max": hi},
            "shift": {"min": SHIFT_RANGE[0], "max": SHIFT_RANGE[1]},
            "guidance": {"min": GUIDANCE_RANGE[0], "max": 1.0 if turbo else GUIDANCE_RANGE[1]},
            "guidance_method": {"choices": GUIDANCE_METHODS},
            "guidance_interval": {"min": 0.0, "max": 1.0},
            "timesteps": {"min": 0.0, "max": 1.0, "max_count": MAX_TIMESTEPS},
            "method": {"choices": METHODS},
            "solver": {"choices": SOLVERS},
            "normalization_db": {"min": NORMALIZATION_DB_RANGE[0], "max": NORMALIZATION_DB_RANGE[1]},
            "batch_size": {"min": 1, "max": MAX_BATCH},
            "seed": {"min": 0, "max": SEED_LIMIT - 1},
        }
        if variant is not None:
            preset = variant.preset
            defaults = {"steps": preset.steps, "shift": preset.shift, "guidance": preset.guidance,
                        "guidance_method": preset.guidance_method, "guidance_interval": (0.0, 1.0),
                        "method": "ode", "solver": "euler", "normalization_db": -1.0, "batch_size": 1}
            for name, value in defaults.items():
                out[name]["default"] = value
        return out


_KNOBS = ("steps", "shift", "guidance", "guidance_method", "guidance_interval", "timesteps", "method", "solver",
          "normalize", "normalization_db")


@dataclass(frozen=True)
class _VariantLike:
    """Enough of a variant for `replace`: every knob is given, so the preset is never read."""

    turbo: bool

    @property
    def name(self) -> str:
        return "turbo" if self.turbo else "base"

    @property
    def preset(self):
        from ..models.variants import VARIANTS

        return VARIANTS["acestep-v15-turbo" if self.turbo else "acestep-v15-base"].preset


def check_setting_names(overrides: dict) -> None:
    """Refuse a misspelt keyword (`stepz=3`) by name instead of ignoring it."""
    unknown = set(overrides) - set(_KNOBS)
    if unknown:
        raise TaskError(f"unknown generation setting(s) {', '.join(sorted(unknown))}: "
                        f"the settings are {', '.join(_KNOBS)}")


def _interval(value) -> tuple[float, float]:
    try:
        start, end = value
    except (TypeError, ValueError):
        raise TaskError(f"guidance_interval must be a pair (start, end) with 0 <= start <= end <= 1 "
                        f"(got {value!r:.80})") from None
    if not (_is_number(start) and _is_number(end) and 0.0 <= start <= end <= 1.0):
        raise TaskError(f"guidance_interval must satisfy 0 <= start <= end <= 1 (got {value!r:.80})")
    return float(start), float(end)


def _custom(timesteps, turbo: bool) -> tuple[float, ...]:
    if isinstance(timesteps, (str, bytes)) or not hasattr(timesteps, "__iter__"):
        raise TaskError(f"timesteps must be a list of numbers in (0, 1] (got {timesteps!r:.80})")
    values = list(timesteps)
    if any(not _is_number(t) for t in values):
        raise TaskError(f"timesteps must be a list of numbers in (0, 1] (got {values!r:.80})")
    try:
        return tuple(custom_schedule(values, turbo))
    except ValueError as exc:
        raise TaskError(str(exc)) from None


# --------------------------------------------------------------------------- the other door checks

def check_batch_size(batch_size) -> int:
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) \
            or not 1 <= batch_size <= MAX_BATCH:
        raise TaskError(f"batch_size must be between 1 and {MAX_BATCH} (got {batch_size!r:.80})")
    return int(batch_size)


def resolve_seeds(seeds, batch_size: int) -> list[int]:
    """The one place seeds are resolved: None -> random (recorded in each take); an int -> seed,
    seed+1, ...; a list -> one seed per item. Seeds are whole numbers in 0 .. 2**63 - 1."""
    batch_size = check_batch_size(batch_size)
    if seeds is None:
        return [secrets.randbelow(2 ** 32) for _ in range(batch_size)]
    if _is_number(seeds):
        first = _whole("seeds", seeds, 0, SEED_LIMIT - 1)
        values = [first + i for i in range(batch_size)]
    elif isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TaskError(f"seeds must be None, a whole number or one whole number per batch item (got {seeds!r:.80})")
    else:
        values = list(seeds)
        if len(values) != batch_size:
            raise TaskError(f"seeds must hold one seed per batch item: {batch_size} (got {len(values)})")
    for value in values:
        if not _is_number(value) or not math.isfinite(value) or float(value) != int(value) \
                or not 0 <= int(value) < SEED_LIMIT:
            raise TaskError(f"seeds must be whole numbers between 0 and 2**63 - 1 (got {value!r} in {seeds!r:.80})")
    return [int(v) for v in values]


def check_progress(progress):
    """None, True (a tqdm bar) or a callable taking `Progress`; returns the callable to report to."""
    from ..progress import TqdmProgress

    if progress is None or progress is False:
        return lambda p: None
    if progress is True:
        return TqdmProgress()
    if not callable(progress):
        raise TaskError(f"progress must be None, True or a callable taking a Progress (got {progress!r:.80})")
    return progress


def check_cancel(cancel) -> None:
    """None or an object with `is_set()` (a `threading.Event`)."""
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise TaskError(f"cancel must be None or a threading.Event (anything with is_set()) (got {cancel!r:.80})")
