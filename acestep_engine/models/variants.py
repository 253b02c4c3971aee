"""The ACE-Step 1.5 DiT variants, their sampling presets and where they live on the hub.

Presets follow upstream's recommendations (reference 4.2/4.3): turbo variants are distilled to
8 steps at shift 3 with no guidance; base and sft run 50 steps at shift 1 with APG guidance 7.0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAIN_REPO = "ACE-Step/Ace-Step1.5"
TURBO_TASKS = ("text2music", "cover", "repaint")
BASE_TASKS = ("text2music", "cover", "repaint", "extract", "lego", "complete")


@dataclass(frozen=True)
class SamplingPreset:
    """Default sampler settings of a variant; every field can be overridden per generation."""

    steps: int
    shift: float
    guidance: float  # 1.0 means no classifier-free guidance
    guidance_method: str = "apg"  # "apg" or "cfg"; ignored when guidance <= 1


@dataclass(frozen=True)
class Variant:
    name: str
    repo_id: str  # hub repository that holds the folder `name`
    in_main_repo: bool  # True: the folder is a subfolder of MAIN_REPO
    turbo: bool
    preset: SamplingPreset
    tasks: tuple[str, ...]
    size: str = "2B"
    notes: str = ""
    aliases: tuple[str, ...] = field(default=())


_TURBO = SamplingPreset(steps=8, shift=3.0, guidance=1.0)
_BASE = SamplingPreset(steps=50, shift=1.0, guidance=7.0)

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("acestep-v15-turbo", MAIN_REPO, True, True, _TURBO, TURBO_TASKS, aliases=("turbo",)),
        Variant("acestep-v15-turbo-shift1", "ACE-Step/acestep-v15-turbo-shift1", False, True,
                SamplingPreset(steps=8, shift=1.0, guidance=1.0), TURBO_TASKS, aliases=("shift1",)),
        Variant("acestep-v15-turbo-shift3", "ACE-Step/acestep-v15-turbo-shift3", False, True,
                _TURBO, TURBO_TASKS, aliases=("shift3",)),
        Variant("acestep-v15-turbo-continuous", "ACE-Step/acestep-v15-turbo-continuous", False, True,
                _TURBO, TURBO_TASKS, aliases=("continuous",),
                notes="distilled on shifts 1-5; the turbo sampler still snaps shift to 1, 2 or 3"),
        Variant("acestep-v15-sft", "ACE-Step/acestep-v15-sft", False, False, _BASE, TURBO_TASKS,
                aliases=("sft",)),
        Variant("acestep-v15-base", "ACE-Step/acestep-v15-base", False, False, _BASE, BASE_TASKS,
                aliases=("base",), notes="the only variant that can extract, lego and complete"),
        Variant("acestep-v15-xl-turbo", "ACE-Step/acestep-v15-xl-turbo", False, True, _TURBO,
                TURBO_TASKS, size="4B", aliases=("xl-turbo",)),
        Variant("acestep-v15-xl-sft", "ACE-Step/acestep-v15-xl-sft", False, False, _BASE,
                TURBO_TASKS, size="4B", aliases=("xl-sft",)),
        Variant("acestep-v15-xl-base", "ACE-Step/acestep-v15-xl-base", False, False, _BASE,
                BASE_TASKS, size="4B", aliases=("xl-base",)),
    )
}

TEXT_ENCODER_DIR = "Qwen3-Embedding-0.6B"
VAE_DIR = "vae"
LM_VARIANTS = {
    "acestep-5Hz-lm-0.6B": ("ACE-Step/acestep-5Hz-lm-0.6B", False),
    "acestep-5Hz-lm-1.7B": (MAIN_REPO, True),
    "acestep-5Hz-lm-4B": ("ACE-Step/acestep-5Hz-lm-4B", False),
}


def resolve_variant(name: str, config: dict | None = None) -> Variant:
    """Find the variant for a folder name or alias; unknown folders get a preset from their config.

    A folder we do not know (a fine-tune, the demo checkpoint) is classified by its config.json:
    `is_turbo` (or `model_version == "turbo"`) picks the turbo preset, anything else the base one.
    """
    for variant in VARIANTS.values():
        if name == variant.name or name in variant.aliases:
            return variant
    config = config or {}
    turbo = bool(config.get("is_turbo", config.get("model_version") == "turbo"))
    tasks = TURBO_TASKS if turbo else BASE_TASKS
    if not turbo and config.get("model_version") == "sft":
        tasks = TURBO_TASKS
    return Variant(name, "", False, turbo, _TURBO if turbo else _BASE, tasks, size="custom")


def variant_for_task(task_name: str) -> str:
    """The variant to load for a task the current one cannot run (extract/lego/complete)."""
    return "acestep-v15-base" if task_name not in TURBO_TASKS else "acestep-v15-turbo"
