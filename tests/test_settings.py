"""GenerationSettings: built once, checked once, recorded as it is; every bad setting refused by name."""

import threading

import numpy as np
import pytest

from acestep_engine import Blueprint, GenerationError, TaskError
from acestep_engine.generation.settings import GenerationSettings, resolve_seeds
from acestep_engine.models import VARIANTS

BP = Blueprint(caption="settings check", duration=10.0)
TURBO, BASE = VARIANTS["acestep-v15-turbo"], VARIANTS["acestep-v15-base"]


def test_preset_and_overrides_build_one_frozen_object():
    settings = GenerationSettings.build(BASE, steps=4, solver="heun", guidance_interval=[0.2, 0.8])
    assert (settings.steps, settings.shift, settings.guidance, settings.solver) == (4, 1.0, 7.0, "heun")
    assert settings.guidance_interval == (0.2, 0.8) and len(settings.schedule) == 5
    with pytest.raises(AttributeError):
        settings.steps = 5
    again = settings.replace(steps=6)
    assert again.steps == 6 and again.solver == "heun" and settings.steps == 4
    assert GenerationSettings.from_record(BASE, settings.record()) == settings


def test_bounds_are_the_ones_the_checks_use():
    turbo, base = GenerationSettings.bounds(TURBO), GenerationSettings.bounds(BASE)
    assert turbo["steps"] == {"min": 1, "max": 20, "default": 8}
    assert base["steps"] == {"min": 1, "max": 200, "default": 50}
    assert turbo["guidance"]["max"] == 1.0 and base["guidance"]["max"] == 15.0
    assert base["solver"]["choices"] == ("euler", "heun") and base["batch_size"]["max"] == 8
    for variant, bounds in ((TURBO, turbo), (BASE, base)):
        GenerationSettings.build(variant, steps=bounds["steps"]["max"], shift=bounds["shift"]["max"],
                                 normalization_db=bounds["normalization_db"]["min"])
        with pytest.raises(TaskError, match="steps must be between"):
            GenerationSettings.build(variant, steps=bounds["steps"]["max"] + 1)


@pytest.mark.parametrize("overrides, message", [
    (dict(steps=2.7), r"steps must be a whole number between 1 and 20 \(got 2.7\)"),
    (dict(steps=True), "steps must be a whole number"),
    (dict(steps=float("nan")), "steps must be a whole number"),
    (dict(steps=21), r"steps must be between 1 and 20 \(got 21\)"),
    (dict(shift=float("nan")), r"shift must be between 1 and 5 \(got nan\)"),
    (dict(shift="3"), "shift must be a number between 1 and 5"),
    (dict(normalization_db=float("nan")), r"normalization_db must be between -60 and 0 \(got nan\)"),
    (dict(normalization_db=100), r"normalization_db must be between -60 and 0 \(got 100\)"),
    (dict(normalization_db=float("-inf")), "normalization_db must be between -60 and 0"),
    (dict(normalize="yes"), "normalize must be True or False"),
    (dict(guidance=7.0), "guidance must be 1.0 on the turbo variant"),
    (dict(guidance_interval="0-1"), "guidance_interval must"),
    (dict(guidance_interval=(0.5, float("nan"))), "guidance_interval must satisfy"),
    (dict(method="rk"), "method must be 'ode' or 'sde'"),
    (dict(timesteps="1,0.5"), "timesteps must be a list of numbers"),
    (dict(timesteps=[1.0, float("nan")]), "timesteps must be strictly decreasing"),
])
def test_bad_settings_are_refused_with_the_name_and_range(overrides, message):
    with pytest.raises(TaskError, match=message):
        GenerationSettings.build(TURBO, **overrides)


def test_steps_three_point_zero_is_three():
    assert GenerationSettings.build(BASE, steps=3.0).steps == 3


@pytest.mark.parametrize("seeds, message", [
    ([1.7], r"seeds must be whole numbers between 0 and 2\*\*63 - 1 \(got 1.7"),
    (1.7, "seeds must be a whole number"),
    ([-1], "seeds must be whole numbers"),
    ([float("nan")], "seeds must be whole numbers"),
    ("42", "seeds must be None, a whole number"),
    ([True], "seeds must be whole numbers"),
    ([1, 2], "seeds must hold one seed per batch item: 1"),
])
def test_bad_seeds_are_refused(seeds, message):
    with pytest.raises(TaskError, match=message):
        resolve_seeds(seeds, 1)


def test_seeds_resolve_in_one_place():
    assert resolve_seeds(40, 3) == [40, 41, 42] and resolve_seeds([np.int64(5)], 1) == [5]
    assert resolve_seeds(2.0, 1) == [2]
    random = resolve_seeds(None, 4)
    assert len(random) == 4 and all(0 <= s < 2 ** 32 for s in random)


def test_the_take_records_the_settings_object(turbo, base):
    settings = GenerationSettings.build(turbo.variant, steps=4, method="sde", normalization_db=-3.0)
    take, = turbo.generate(BP, seeds=1, settings=settings)
    assert take.sampling == {**settings.record(), "batch_seeds": [1]}  # and the batch it was made in
    assert np.max(np.abs(take.audio)) == pytest.approx(10 ** (-3 / 20), rel=1e-5)
    # keyword overrides apply on top of a settings object
    take, = turbo.generate(BP, seeds=1, settings=settings, solver="heun")
    assert take.sampling == {**settings.replace(solver="heun").record(), "batch_seeds": [1]}
    # the default: the variant's preset
    take, = base.generate(BP, seeds=1, steps=2)
    assert take.sampling == {**GenerationSettings.build(base.variant, steps=2).record(), "batch_seeds": [1]}
    with pytest.raises(TaskError, match="settings were built for a turbo variant"):
        base.generate(BP, settings=settings)
    with pytest.raises(TaskError, match="unknown generation setting"):
        turbo.generate(BP, stepz=3)


@pytest.mark.parametrize("call, message", [
    (lambda e: e.generate(BP, cancel="yes"), r"cancel must be None or a threading.Event .*\(got 'yes'\)"),
    (lambda e: e.generate(BP, "cover"), "task must be a task object such as Cover.*not the string 'cover'"),
    (lambda e: e.generate(BP, {"name": "cover"}), "task must be a task object"),
    (lambda e: e.generate(BP, progress="bar"), "progress must be None, True or a callable"),
    (lambda e: e.generate(BP, batch_size=2.0), "batch_size must be between 1 and 8"),
    (lambda e: e.generate(BP, seeds=[1.7]), "seeds must be whole numbers"),
    (lambda e: e.generate("a song"), "blueprint must be a Blueprint"),
    (lambda e: e.generate(BP, settings={"steps": 3}), "settings must be a GenerationSettings"),
])
def test_wrong_types_at_the_engine_door_are_named(turbo, call, message):
    with pytest.raises(TaskError, match=message):
        call(turbo)


def test_exclusive_waits_for_a_generation_then_refuses_new_ones(turbo):
    entered = threading.Event()
    with turbo.exclusive("a test run") as held:
        assert held is turbo and turbo.busy
        with pytest.raises(GenerationError, match="a test run is using this engine's DiT"):
            turbo.generate(BP, seeds=1)
        entered.set()
    assert not turbo.busy
    take, = turbo.generate(BP, seeds=1, steps=1)  # free again
    assert take.sampling["steps"] == 1


def test_quiet_loading_is_public_and_restores_verbosity():
    from transformers.utils import logging as tlogging

    from acestep_engine.runtime import quiet_loading

    before = tlogging.get_verbosity()
    with quiet_loading():
        assert tlogging.get_verbosity() == tlogging.ERROR
    assert tlogging.get_verbosity() == before
