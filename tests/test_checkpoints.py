"""Missing checkpoints: exact file lists, the command to fetch them, and targeted downloads."""

import pytest

from acestep_engine import Engine, MissingCheckpointError
from acestep_engine.models import checkpoints as ckpt


def test_missing_files_are_listed_with_commands(tmp_path):
    with pytest.raises(MissingCheckpointError) as err:
        Engine.from_pretrained(tmp_path, dit="acestep-v15-turbo", device="cpu")
    text = str(err.value)
    for path in ("acestep-v15-turbo/model.safetensors", "acestep-v15-turbo/silence_latent.pt",
                 "vae/diffusion_pytorch_model.safetensors", "Qwen3-Embedding-0.6B/config.json"):
        assert path in text
    assert f"acestep download --dit acestep-v15-turbo --dir {tmp_path}" in text
    assert "hf download ACE-Step/Ace-Step1.5 --include 'vae/*'" in text


def test_only_the_missing_component_is_listed(tiny_dir, tmp_path):
    import shutil

    shutil.copytree(tiny_dir, tmp_path / "set")
    (tmp_path / "set" / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    assert ckpt.missing_files(tmp_path / "set") == ["vae/diffusion_pytorch_model.safetensors"]


def test_download_fetches_only_needed_folders_without_code(tmp_path, monkeypatch):
    calls = []

    def fake_snapshot_download(repo_id, local_dir, allow_patterns=None, ignore_patterns=None, token=None):
        calls.append((repo_id, str(local_dir), allow_patterns, ignore_patterns))

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    ckpt.download(tmp_path, dit="acestep-v15-base", lm="acestep-5Hz-lm-0.6B")
    repos = {c[0]: c for c in calls}
    assert repos["ACE-Step/Ace-Step1.5"][2] == ["vae/*", "Qwen3-Embedding-0.6B/*"]
    assert repos["ACE-Step/acestep-v15-base"][1] == str(tmp_path / "acestep-v15-base")
    assert repos["ACE-Step/acestep-5Hz-lm-0.6B"][1] == str(tmp_path / "acestep-5Hz-lm-0.6B")
    assert all("*.py" in c[3] for c in calls)


def test_offline_download_fails_with_one_short_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingCheckpointError) as err:
        Engine.from_pretrained(tmp_path, device="cpu", allow_download=True)
    error, text = err.value, str(err.value)
    assert isinstance(error, ckpt.DownloadError) and error.offline
    assert text.startswith("No network") and "HF_HUB_OFFLINE=1" in text
    assert "acestep-v15-turbo/  (config.json, model.safetensors, silence_latent.pt)" in text
    assert "hf download ACE-Step/Ace-Step1.5 --include 'acestep-v15-turbo/*' 'vae/*' 'Qwen3-Embedding-0.6B/*'" in text
    assert f"into {tmp_path}" in text
    assert "allow_download" not in text  # the caller already passed it
    assert error.__cause__ is None and error.__suppress_context__  # the hub's exception chain is not printed
    assert len(text) < 1200


def test_no_network_is_told_apart_from_other_download_failures(tmp_path, monkeypatch):
    import socket

    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def unreachable(**kwargs):
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except OSError as dns:
            raise RuntimeError("An error happened while trying to locate the files on the Hub") from dns

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    with pytest.raises(ckpt.DownloadError) as err:
        ckpt.ensure_checkpoints(tmp_path, lm="acestep-5Hz-lm-0.6B", allow_download=True)
    assert err.value.offline and "Name or service not known" in str(err.value)
    assert "--local-dir checkpoints/acestep-5Hz-lm-0.6B" in str(err.value)

    def gated(**kwargs):
        raise PermissionError("401 Client Error: this repository is gated")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    with pytest.raises(ckpt.DownloadError) as err:
        ckpt.ensure_checkpoints(tmp_path, allow_download=True)
    text = str(err.value)
    assert not err.value.offline and "Download failed: PermissionError: 401 Client Error" in text
    assert "allow_download" not in text and "acestep-v15-turbo/model.safetensors" in text


def test_ipython_shows_the_download_error_without_the_traceback_chain(tmp_path, monkeypatch, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    shell = InteractiveShell.instance()
    shell.run_cell(f"from acestep_engine.models import ensure_checkpoints\n"
                   f"ensure_checkpoints({str(tmp_path)!r}, lm='acestep-5Hz-lm-0.6B', allow_download=True)")
    shown = capsys.readouterr().out
    assert "DownloadError: No network" in shown and "Traceback" not in shown
    assert "LocalEntryNotFoundError" not in shown and len(shown) < 1500


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A bare checkout of the project (pyproject.toml, notebooks/), the kernel in notebooks/, no env override."""
    monkeypatch.delenv("ACESTEP_CHECKPOINTS_DIR", raising=False)
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "pyproject.toml").write_text('[project]\nname = "acestep-workbench"\n')
    monkeypatch.chdir(repo / "notebooks")
    return repo


def test_default_folder_is_the_project_checkpoints_from_a_subfolder(checkout, tmp_path, monkeypatch, tiny_dir):
    import shutil

    repo = checkout
    assert ckpt.project_root() == repo
    assert ckpt.checkpoint_search_dirs() == [repo / "notebooks" / "checkpoints", repo / "checkpoints"]
    assert ckpt.default_checkpoints_dir() == repo / "checkpoints"  # downloads go to the repository's folder
    note = ckpt.no_weights_note()
    assert f"{repo / 'notebooks' / 'checkpoints'} or {repo / 'checkpoints'}" in note and "demo checkpoint" in note

    shutil.copytree(tiny_dir, repo / "checkpoints")
    assert ckpt.default_checkpoints_dir() == repo / "checkpoints"
    shutil.copytree(tiny_dir, repo / "notebooks" / "checkpoints")  # weights beside the notebook win
    assert ckpt.default_checkpoints_dir() == repo / "notebooks" / "checkpoints"

    monkeypatch.chdir(tmp_path)  # outside a checkout: ./checkpoints
    assert ckpt.project_root() is None
    assert ckpt.default_checkpoints_dir() == tmp_path / "checkpoints"
    monkeypatch.setenv("ACESTEP_CHECKPOINTS_DIR", str(tmp_path / "elsewhere"))
    assert ckpt.checkpoint_search_dirs() == [tmp_path / "elsewhere"]
    assert ckpt.default_checkpoints_dir() == tmp_path / "elsewhere"


def test_a_notebook_kernel_in_notebooks_finds_the_repository_weights(checkout, tiny_dir):
    import shutil

    from workbench.notebook import setup

    repo = checkout
    runtime = setup()
    assert not runtime.has_real_weights and f"no ACE-Step weights in {repo / 'notebooks' / 'checkpoints'}" in repr(runtime)
    shutil.copytree(tiny_dir, repo / "checkpoints")
    runtime = setup()
    assert runtime.has_real_weights and runtime.checkpoints_dir == repo / "checkpoints"


def test_available_variants_lists_complete_dit_folders(tiny_dir):
    assert ckpt.available_variants(tiny_dir) == ["acestep-v15-base", "acestep-v15-turbo"]


def test_unknown_lm_name_is_rejected():
    with pytest.raises(ValueError, match="lm must be one of"):
        ckpt.components_for(lm="acestep-5Hz-lm-9B")


def test_the_qwen3_models_load_with_their_own_modules_and_no_hub_kernels(planner, turbo):
    # transformers 5 kernelizes by default where `kernels` is installed; on a GPU that would fetch and run
    # kernels-community code from the Hub in place of the text encoder's and the LM's own modules.
    assert planner.model.use_kernels is False
    assert turbo.models.text_encoder.use_kernels is False
