"""Model choice by GPU memory, and the notebooks' runtime helper (device, dtype, weights)."""

import pytest
import torch

from acestep_engine.errors import DeviceError
from acestep_engine.runtime.hardware import (auto_dtype, auto_dtype_choice, cpu_has_native_bf16, recommend_models,
                                             resolve_dtype)


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
    assert not runtime.colab and runtime.device == torch.device("cpu") and runtime.dtype == auto_dtype("cpu")
    assert not runtime.has_real_weights and "demo checkpoint" in repr(runtime)

    monkeypatch.setenv("ACESTEP_CHECKPOINTS_DIR", str(tiny_dir))
    runtime = setup()
    assert runtime.has_real_weights and f"real weights in {tiny_dir}" in repr(runtime)
    engine = runtime.engine("base")
    assert engine.variant.name == "acestep-v15-base"
    found = runtime.planner(engine)
    assert found.name == "acestep-5Hz-lm-0.6B" and found.engine is engine


def test_auto_dtype_follows_the_cpu_and_fp32_stays_one_argument_away(tiny_dir, monkeypatch):
    from acestep_engine import Engine
    from acestep_engine.runtime import hardware

    native = cpu_has_native_bf16()
    assert auto_dtype("cpu") == (torch.bfloat16 if native else torch.float32)
    for has_bf16, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: has_bf16)
        dtype, why = auto_dtype_choice("cpu")
        assert dtype == expected and ("natively" in why) == has_bf16
        assert resolve_dtype("cpu", "auto") == (expected, f"auto: {why}") == resolve_dtype("cpu", None)
        engine = Engine.from_pretrained(tiny_dir, device="cpu")
        assert engine.dtype == expected and engine.dtype_choice == f"auto: {why}"
        assert next(engine.models.transformer.parameters()).dtype == expected
        assert next(engine.models.vae.parameters()).dtype == expected
        assert next(engine.models.text_encoder.parameters()).dtype == expected
        assert f"cpu, {str(expected)[6:]} (auto)" in repr(engine)
        assert engine.describe()["dtype_choice"] == f"auto: {why}"
    assert auto_dtype_choice("mps")[0] == torch.float32  # fp16 NaNs upstream; bf16 unverified there
    full = Engine.from_pretrained(tiny_dir, device="cpu", dtype="fp32")
    assert full.dtype == torch.float32 and full.dtype_choice == "requested" and "(auto)" not in repr(full)
    assert resolve_dtype("cpu", torch.float16) == (torch.float16, "requested")
    with pytest.raises(DeviceError, match="dtype must be one of auto, bf16.*got 'int8'"):
        resolve_dtype("cpu", "int8")
    with pytest.raises(DeviceError, match="dtype must be one of .*got torch.int64"):
        resolve_dtype("cpu", torch.int64)
    with pytest.raises(DeviceError, match="device must be 'auto', 'cpu'.*got 'gpu0'"):
        Engine.from_pretrained(tiny_dir, device="gpu0")


def test_planner_lm_follows_auto_dtype(tiny_dir, planner):
    from acestep_engine.lm.planner import Planner, default_lm_dtype
    from acestep_engine.models import LM_FOLDER

    assert default_lm_dtype(torch.device("cpu")) == auto_dtype("cpu")
    auto = Planner.from_pretrained(tiny_dir / LM_FOLDER, device="cpu")
    assert next(auto.model.parameters()).dtype == auto_dtype("cpu")
    assert next(planner.model.parameters()).dtype == auto_dtype("cpu")
