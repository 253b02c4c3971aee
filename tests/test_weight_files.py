"""Weights are copied out of their safetensors files, a bounded group at a time
(`acestep_engine.runtime.weight_files`): what the engine holds does not change when a file is
rewritten under it, and reading maps at most one group of a file at once."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from acestep_engine.runtime import parking, weight_files


def _rewrite_in_place(path) -> None:
    """The same file with every tensor's bytes overwritten in place (same inode, header and size),
    as a copy tool or a sync client rewrites a file."""
    with open(path, "r+b") as f:
        header = int.from_bytes(f.read(8), "little")
        f.seek(8 + header)
        f.write(b"\x3f" * (path.stat().st_size - 8 - header))


def test_read_groups_keep_each_group_within_the_bound_and_cover_every_tensor(tmp_path):
    path = tmp_path / "w.safetensors"
    tensors = {f"t{i}": torch.randn(64, 16) for i in range(10)}  # 4 KiB each in fp32
    save_file(tensors, str(path))
    groups = list(weight_files.read_groups(path, group_bytes=3 * 4096))
    assert [len(g) for g in groups] == [3, 3, 3, 1]
    assert [k for g in groups for k in g] == list(tensors)
    big = list(weight_files.read_groups(path, ["t1", "t4"], group_bytes=1))  # a tensor over the bound: alone
    assert [list(g) for g in big] == [["t1"], ["t4"]] and torch.equal(big[1]["t4"], tensors["t4"])


def test_copies_do_not_follow_a_file_rewritten_in_place(tmp_path):
    path = tmp_path / "w.safetensors"
    original = {"a": torch.randn(300, 300), "b": torch.randn(300)}
    save_file(original, str(path))
    mapped = load_file(str(path))  # safetensors' own tensors live in the file's mapping: they follow it
    read = weight_files.read_file(path, group_bytes=1)
    layer = nn.Linear(300, 300)
    weight_files.copy_into([(layer.weight, path, "a"), (layer.bias, path, "b")], group_bytes=1)
    _rewrite_in_place(path)
    for tensors in (read, {"a": layer.weight.detach(), "b": layer.bias.detach()}):
        for key, tensor in original.items():
            assert torch.equal(tensors[key], tensor), key
    assert not torch.equal(mapped["a"], original["a"]), "the rewrite did not reach the file's mapping: this test shows nothing"


def test_copy_into_converts_to_the_parameters_dtype_and_runs_the_check(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"w": torch.randn(4, 3)}, str(path))
    layer = nn.Linear(3, 4, bias=False).to(torch.bfloat16)
    weight_files.copy_into([(layer.weight, path, "w")])
    assert layer.weight.dtype == torch.bfloat16
    assert torch.equal(layer.weight, load_file(str(path))["w"].to(torch.bfloat16))

    def refuse(param, key, tensor):
        raise RuntimeError(f"refused {key}")

    with pytest.raises(RuntimeError, match="refused w"):
        weight_files.copy_into([(layer.weight, path, "w")], check=refuse)


def test_the_engines_text_encoder_and_the_planners_lm_keep_their_weights_when_the_files_change(tiny_dir, tmp_path):
    from acestep_engine import Engine
    from acestep_engine.lm import Planner
    from acestep_engine.models import LM_FOLDER, write_lm

    folder = tmp_path / "checkpoints"
    shutil.copytree(tiny_dir, folder)
    write_lm(folder / LM_FOLDER)
    engine = Engine.from_pretrained(folder, device="cpu", dtype="fp32")
    planner = Planner.from_pretrained(LM_FOLDER, checkpoints_dir=folder, device="cpu", dtype="fp32", offload=False)
    modules = {"text encoder": (engine.models.text_encoder, folder / "Qwen3-Embedding-0.6B" / "model.safetensors"),
               "LM": (planner.model, folder / LM_FOLDER / "model.safetensors")}
    before = {name: {k: v.detach().clone() for k, v in module.state_dict().items()}
              for name, (module, _) in modules.items()}
    for name, (module, path) in modules.items():
        keys = parking.same_keys(module, [path], prefix="model.")
        assert len(keys) == len(dict(module.named_parameters())), name  # every weight found in its file
        _rewrite_in_place(path)
    for name, (module, _) in modules.items():
        for key, tensor in module.state_dict().items():
            assert torch.equal(tensor, before[name][key]), f"{name}: {key} changed with its file"
