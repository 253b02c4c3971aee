"""The notebooks' setup cell in Colab (google.colab faked): the custom widget manager, where the weights
go (the runtime's /content/checkpoints, or Google Drive when asked), and the same call outside Colab."""

import sys
import types
from pathlib import Path

import pytest

from acestep_engine.models.checkpoints import ENV_CHECKPOINTS_DIR, default_checkpoints_dir


@pytest.fixture
def colab(monkeypatch):
    """A fake google.colab that records what setup() asked of it."""
    calls = []
    output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append("widget manager"))
    drive = types.SimpleNamespace(mount=lambda path: calls.append(f"mount {path}"))
    package = types.ModuleType("google.colab")
    package.output, package.drive = output, drive
    monkeypatch.setitem(sys.modules, "google.colab", package)
    monkeypatch.setitem(sys.modules, "google.colab.output", output)
    monkeypatch.setitem(sys.modules, "google.colab.drive", drive)
    monkeypatch.setenv(ENV_CHECKPOINTS_DIR, "")  # recorded, so what setup() sets is undone after the test
    monkeypatch.delenv(ENV_CHECKPOINTS_DIR)
    return calls


def test_in_colab_the_weights_go_to_the_runtimes_content_checkpoints(colab):
    from workbench.notebook import COLAB_CHECKPOINTS, setup

    runtime = setup()
    assert runtime.colab and colab == ["widget manager"]
    assert runtime.checkpoints_dir == COLAB_CHECKPOINTS == Path("/content/checkpoints")
    assert default_checkpoints_dir() == COLAB_CHECKPOINTS  # the workbench, the engine and the CLI agree
    assert "Colab" in repr(runtime) and "/content/checkpoints" in repr(runtime)


def test_in_colab_drive_mounts_google_drive_and_keeps_the_weights_there(colab):
    from workbench.notebook import DRIVE_CHECKPOINTS, setup

    runtime = setup(checkpoints="drive")
    assert colab == ["mount /content/drive", "widget manager"]
    assert runtime.checkpoints_dir == DRIVE_CHECKPOINTS and str(DRIVE_CHECKPOINTS).startswith("/content/drive/MyDrive/")


def test_a_folder_chosen_in_colab_or_outside_it_is_used_everywhere(colab, tmp_path):
    from workbench.notebook import setup

    assert setup(checkpoints=tmp_path / "mine").checkpoints_dir == tmp_path / "mine"
    assert default_checkpoints_dir() == tmp_path / "mine"


def test_outside_colab_drive_is_refused_by_name_and_the_default_is_unchanged(monkeypatch, tmp_path):
    from workbench.notebook import setup

    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setenv(ENV_CHECKPOINTS_DIR, str(tmp_path))
    with pytest.raises(ValueError, match='checkpoints="drive" needs Google Colab'):
        setup(checkpoints="drive")
    runtime = setup()
    assert not runtime.colab and runtime.checkpoints_dir == tmp_path
