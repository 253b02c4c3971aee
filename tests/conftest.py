"""Shared fixtures: tiny checkpoint sets in the official layout, written once per test session."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """48 kHz, hop 1920 tiny set with turbo and base DiTs."""
    from acestep_engine.testing import write_tiny_checkpoints

    root = tmp_path_factory.mktemp("tiny-checkpoints")
    write_tiny_checkpoints(root, variant="turbo")
    write_tiny_checkpoints(root, variant="base")
    return root


@pytest.fixture(scope="session")
def tiny16_dir(tmp_path_factory):
    """16 kHz, hop 320, 8 latent channels: nothing like the official format."""
    from acestep_engine.testing import write_tiny_checkpoints

    root = tmp_path_factory.mktemp("tiny16-checkpoints")
    write_tiny_checkpoints(root, variant="turbo", preset="tiny-16k")
    return root


# The shared engines run in fp32 whatever dtype "auto" picks on the machine (bf16 on CPUs
# with native bf16): many tests compare against fp32 references at tight tolerances. The "auto"
# default is exercised by every engine a test loads without a dtype, and by the notebooks.
@pytest.fixture(scope="session")
def turbo(tiny_dir):
    from acestep_engine import Engine

    return Engine.from_pretrained(tiny_dir, dit="acestep-v15-turbo", device="cpu", dtype="fp32")


@pytest.fixture(scope="session")
def base(tiny_dir):
    from acestep_engine import Engine

    return Engine.from_pretrained(tiny_dir, dit="acestep-v15-base", device="cpu", dtype="fp32")


@pytest.fixture(scope="session")
def planner(tiny_dir, turbo):
    """The tiny 5 Hz LM planner beside the tiny DiTs (official folder name), attached to `turbo`."""
    from acestep_engine.planner import Planner
    from acestep_engine.testing import LM_FOLDER, write_lm

    write_lm(tiny_dir / LM_FOLDER)
    return Planner.from_pretrained("acestep-5Hz-lm-0.6B", checkpoints_dir=tiny_dir, device="cpu", engine=turbo)
