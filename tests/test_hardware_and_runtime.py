"""Model choice by GPU memory, and the notebooks' runtime helper (device, dtype, weights)."""

import pytest
import torch

from acestep_engine.hardware import recommend_models


@pytest.mark.parametrize("gib, lm", [(0, None), (5.9, None), (6, "acestep-5Hz-lm-0.6B"),
                                     (15, "acestep-5Hz-lm-1.7B"), (24, "acestep-5Hz-lm-4B")])
def test_recommend_models_by_gpu_memory(gib, lm):
    assert recommend_models(gib) == ("acestep-v15-turbo", lm)
    with pytest.raises(ValueError, match="gpu_gib must be a memory size in GiB"):
        recommend_models(-1)


def test_runtime_falls_back_to_the_demo_checkpoint_and_finds_real_layouts(tiny_dir, planner, monkeypatch, tmp_path):
    from workbench.notebook import setup

    monkeypatch.setenv("ACESTEP_CHECKPOINTS_DIR", str(tmp_path / "empty"))
    runtime = setup()
    assert not runtime.colab and runtime.device == torch.device("cpu") and runtime.dtype == torch.float32
    assert not runtime.has_real_weights and "demo checkpoint" in repr(runtime)

    monkeypatch.setenv("ACESTEP_CHECKPOINTS_DIR", str(tiny_dir))
    runtime = setup()
    assert runtime.has_real_weights and f"real weights in {tiny_dir}" in repr(runtime)
    engine = runtime.engine("base")
    assert engine.variant.name == "acestep-v15-base"
    found = runtime.planner(engine)
    assert found.name == "acestep-5Hz-lm-0.6B" and found.engine is engine
