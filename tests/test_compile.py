"""`Engine.from_pretrained(..., compile=True)`: regional torch.compile of the DiT, reported, reused."""

import numpy as np
import pytest
import torch

from acestep_engine import Blueprint, Engine

BP = Blueprint(caption="compiled lo-fi", duration=10.0)


class CountingBackend:
    """A torch.compile backend that runs graphs eagerly and counts how many it was given."""

    __name__ = "counting"

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


@pytest.fixture
def counted(tiny_dir):
    torch._dynamo.reset()
    backend = CountingBackend()
    engine = Engine.from_pretrained(tiny_dir, device="cpu", dtype="fp32", compile=backend)
    yield engine, backend
    torch._dynamo.reset()


def test_compiled_dit_gives_the_eager_result_and_reports_its_graphs(counted, turbo):
    engine, backend = counted
    assert "compiled" in repr(engine) and engine.compilation.blocks == len(engine.models.transformer.layers)
    take, = engine.generate(BP, seeds=5)
    eager, = turbo.generate(BP, seeds=5)
    np.testing.assert_allclose(take.latents, eager.latents, rtol=1e-4, atol=1e-5)
    assert backend.graphs > 0 and engine.compilation.graphs == backend.graphs
    assert take.timings["compile_s"] > 0 and take.model["compile"] == "counting"


def test_a_new_duration_does_not_recompile(counted):
    engine, backend = counted
    engine.generate(BP, seeds=1)
    engine.generate(BP, seeds=2)  # the cross-attention K/V memo switches on and off: same graphs
    after_first = backend.graphs
    for seconds in (12.0, 14.5, 17.0):
        take, = engine.generate(BP.replace(duration=seconds), seeds=3)
        assert "compile_s" not in take.timings
    assert backend.graphs == after_first


def test_exclusive_blocks_run_the_dit_eagerly(counted):
    engine, backend = counted
    engine.generate(BP, seeds=1)
    compiled = backend.graphs
    model = engine.models.transformer
    x, t = torch.randn(1, 40, 16), torch.tensor([0.5])
    with engine.exclusive("a test"):
        model(x, t, t, torch.randn(1, 9, 32), torch.randn(1, 40, 32))
    assert backend.graphs == compiled


def test_a_failing_backend_falls_back_to_eager(tiny_dir, turbo):
    torch._dynamo.reset()

    def broken(gm, example_inputs):
        raise RuntimeError("no C++ compiler here")

    engine = Engine.from_pretrained(tiny_dir, device="cpu", dtype="fp32", compile=broken)
    take, = engine.generate(BP, seeds=5)
    eager, = turbo.generate(BP, seeds=5)
    np.testing.assert_allclose(take.latents, eager.latents, rtol=1e-5, atol=1e-6)
    assert "no C++ compiler here" in engine.compilation.error and "compiled" not in repr(engine)
    torch._dynamo.reset()


def test_inductor_compiles_the_tiny_dit(tiny_dir, turbo):
    """The real backend, end to end (a C++ compiler is part of the CI image's toolchain)."""
    torch._dynamo.reset()
    engine = Engine.from_pretrained(tiny_dir, device="cpu", dtype="fp32", compile=True)
    take, = engine.generate(BP, seeds=7)
    again, = engine.generate(BP.replace(duration=13.0), seeds=7)
    eager, = turbo.generate(BP, seeds=7)
    np.testing.assert_allclose(take.latents, eager.latents, rtol=1e-3, atol=1e-4)
    assert engine.compilation.error is None and engine.compilation.graphs > 0
    assert take.timings["compile_s"] > 0 and "compile_s" not in again.timings
    torch._dynamo.reset()


@pytest.mark.parametrize("bad", ["turbo-mode", 3, 1.5])
def test_an_unknown_compile_option_is_refused_before_loading(tiny_dir, bad):
    with pytest.raises(ValueError, match="compile must be True, False"):
        Engine.from_pretrained(tiny_dir, device="cpu", compile=bad)
