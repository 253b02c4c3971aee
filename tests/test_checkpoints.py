"""Missing checkpoints: exact file lists, the command to fetch them, and targeted downloads."""

import pytest

from acestep_engine import Engine, MissingCheckpointError
from acestep_engine import checkpoints as ckpt


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


def test_offline_download_fails_with_the_file_list(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingCheckpointError) as err:
        Engine.from_pretrained(tmp_path, device="cpu", allow_download=True)
    text = str(err.value)
    assert "Download failed" in text and "acestep-v15-turbo/model.safetensors" in text


def test_available_variants_lists_complete_dit_folders(tiny_dir):
    assert ckpt.available_variants(tiny_dir) == ["acestep-v15-base", "acestep-v15-turbo"]


def test_unknown_lm_name_is_rejected():
    with pytest.raises(ValueError, match="lm must be one of"):
        ckpt.components_for(lm="acestep-5Hz-lm-9B")
