import pytest
import torch

from acestep_engine.generation.guidance import MomentumBuffer, apg, cfg
from acestep_engine.generation.schedules import linear_schedule, turbo_grid, turbo_schedule

# The three turbo tables, from the reference (section 4.2).
TURBO_TABLES = {
    1.0: [1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125],
    2.0: [1.0, 0.93333, 0.85714, 0.76923, 0.66667, 0.54545, 0.4, 0.22222],
    3.0: [1.0, 0.95455, 0.9, 0.83333, 0.75, 0.64286, 0.5, 0.3],
}


@pytest.mark.parametrize("shift", [1.0, 2.0, 3.0])
def test_turbo_tables(shift):
    schedule = turbo_schedule(shift)
    assert schedule[:-1] == pytest.approx(TURBO_TABLES[shift], abs=1e-5) and schedule[-1] == 0.0


def test_turbo_shift_snaps_to_nearest():
    assert turbo_schedule(2.6) == turbo_schedule(3.0) and turbo_schedule(1.4) == turbo_schedule(1.0)


def test_turbo_grid_has_twenty_values():
    assert len(turbo_grid()) == 20


def test_linear_schedule_and_shift():
    assert linear_schedule(4) == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    assert linear_schedule(2, shift=3.0) == pytest.approx([1.0, 0.75, 0.0])


def test_apg_without_difference_is_the_conditional_velocity():
    cond = torch.randn(2, 10, 4)
    assert torch.allclose(apg(cond, cond.clone(), 7.0, MomentumBuffer()), cond)


def test_apg_keeps_only_the_orthogonal_part():
    cond = torch.randn(1, 50, 3)
    uncond = cond * 0.5  # the difference is parallel to cond: APG (eta 0) drops it, CFG does not
    assert torch.allclose(apg(cond, uncond, 7.0, None, norm_threshold=0), cond, atol=1e-6)
    assert not torch.allclose(cfg(cond, uncond, 7.0), cond)


def test_apg_clips_the_guidance_norm_along_time():
    cond = torch.zeros(1, 100, 2)
    cond[..., 0] = 1.0
    uncond = cond.clone()
    uncond[..., 1] = -10.0  # orthogonal difference of norm 100 along time
    out = apg(cond, uncond, 2.0, None, norm_threshold=2.5)
    assert (out - cond).norm(dim=1).max().item() == pytest.approx(2.5, rel=1e-5)


def test_momentum_buffer_carries_state():
    buffer = MomentumBuffer(-0.75)
    first = buffer.update(torch.ones(1))
    second = buffer.update(torch.ones(1))
    assert first.item() == 1.0 and second.item() == pytest.approx(0.25)
