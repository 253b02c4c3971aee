"""oneDNN-packed linear layers for LM decoding (`acestep_engine.runtime.packed_linear`): the same
products as the stock layers, the weights back bit-for-bit afterwards, and the planner's codes
unchanged by them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from acestep_engine import Blueprint
from acestep_engine.runtime import packed_linear
from acestep_engine.runtime.packed_linear import MAX_PACKED_ROWS, packable, packed_linears

pytestmark = pytest.mark.skipif(not packable(torch.float32, "cpu"), reason="this torch build has no oneDNN")
DTYPES = [torch.float32] + ([torch.bfloat16] if packable(torch.bfloat16, "cpu") else [])


class Block(nn.Module):
    def __init__(self, tied: bool = False):
        super().__init__()
        self.embed = nn.Embedding(40, 24)
        self.up = nn.Linear(24, 64)
        self.down = nn.Linear(64, 24, bias=False)
        self.head = nn.Linear(24, 40, bias=False)
        if tied:
            self.head.weight = self.embed.weight

    def forward(self, ids):
        hidden = self.embed(ids)
        return self.head(hidden + self.down(torch.relu(self.up(hidden))))


def _block(dtype, tied=False):
    torch.manual_seed(0)
    return Block(tied).to(dtype).eval()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 2, 5])
def test_packed_layers_give_the_stock_products_and_the_weights_come_back_bit_for_bit(dtype, rows):
    model = _block(dtype)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    ids = torch.randint(0, 40, (rows, 3))
    with torch.no_grad():
        stock = model(ids)
        with packed_linears(model, rows=rows) as packing:
            assert set(packing.layers) == {model.up, model.down, model.head}
            assert all(layer.weight.numel() == 0 for layer in packing.layers)  # one copy: the packed one
            packed = model(ids)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(packed.float(), stock.float(), rtol=tolerance, atol=tolerance)
    for name, param in model.named_parameters():
        assert param.dtype == before[name].dtype and torch.equal(param, before[name]), name
    assert all("forward" not in vars(layer) for layer in model.modules())


def test_an_error_inside_the_block_still_restores_every_weight():
    model = _block(torch.float32)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    with pytest.raises(RuntimeError, match="stop"):
        with packed_linears(model):
            raise RuntimeError("stop")
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), name


def test_gradients_or_another_dtype_inside_the_block_meet_the_stock_layer():
    model = _block(torch.float32)
    hidden = torch.randn(2, 24)
    stock = model.up(hidden)
    with pytest.raises(RuntimeError, match="same dtype") as stock_error:
        model.up(hidden.double())
    with packed_linears(model, rows=2):
        with torch.enable_grad():
            graded = model.up(hidden.clone().requires_grad_(True))
        assert graded.requires_grad and graded.grad_fn is not None
        with pytest.raises(RuntimeError) as packed_error:
            model.up(hidden.double())
    assert str(packed_error.value) == str(stock_error.value)
    torch.testing.assert_close(graded.detach(), stock.detach())


def test_a_weight_tied_to_the_embeddings_stays_dense_and_shared():
    model = _block(torch.float32, tied=True)
    ids = torch.randint(0, 40, (2, 3))
    with torch.no_grad():
        stock = model(ids)
        with packed_linears(model, rows=2) as packing:
            assert model.head not in packing.layers and model.embed.weight.numel() == 40 * 24
            packed = model(ids)
    assert model.head.weight is model.embed.weight
    torch.testing.assert_close(packed, stock, rtol=1e-5, atol=1e-5)


def test_disabled_packing_changes_nothing():
    model = _block(torch.float32)
    with packed_linears(model, enabled=False) as packing:
        assert packing.layers == [] and model.up.weight.numel() == 64 * 24
        head = model.head.weight
        torch.testing.assert_close(packing.matmul(torch.ones(1, 24), head), torch.ones(1, 24) @ head.T)
        assert packing._extra == {}


def test_matmul_packs_a_head_once_per_block_and_leaves_long_inputs_dense(monkeypatch):
    model = _block(torch.float32, tied=True)
    packs = []
    real_pack = packed_linear.pack
    monkeypatch.setattr(packed_linear, "pack", lambda weight, rows: packs.append(weight.shape) or
                        real_pack(weight, rows))
    rows_of_head = model.embed.weight[8:20]
    with torch.no_grad(), packed_linears(model, rows=2) as packing:
        assert packs == [(64, 24), (24, 64)]  # the untied layers; the tied head is left alone
        first = packing.matmul(torch.randn(2, 24), rows_of_head)
        hidden = torch.randn(2, 24)
        torch.testing.assert_close(packing.matmul(hidden, rows_of_head), hidden @ rows_of_head.T,
                                   rtol=1e-5, atol=1e-5)
        assert packs[2:] == [(12, 24)] and first.shape == (2, 12)
        long = torch.randn(MAX_PACKED_ROWS + 1, 24)
        torch.testing.assert_close(packing.matmul(long, rows_of_head), long @ rows_of_head.T)
        assert len(packs) == 3
    assert packing._extra == {}


def test_bf16_is_packed_only_where_the_cpu_multiplies_it_natively(monkeypatch):
    monkeypatch.setattr(packed_linear, "cpu_has_native_bf16", lambda: False)
    assert packable(torch.float32, "cpu") and not packable(torch.bfloat16, "cpu")
    assert not packable(torch.float16, "cpu") and not packable(torch.float32, "meta")
    monkeypatch.setattr(packed_linear, "cpu_has_native_bf16", lambda: True)
    assert packable(torch.bfloat16, "cpu")


@pytest.fixture
def packed_calls(monkeypatch):
    """One entry per product through a packed weight."""
    calls = []
    real = packed_linear.packed_product
    monkeypatch.setattr(packed_linear, "packed_product", lambda *a: calls.append(1) or real(*a))
    return calls


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_the_planner_decodes_packed_and_writes_the_codes_of_the_stock_kernels(planner, monkeypatch, guidance,
                                                                             packed_calls):
    blueprint = Blueprint(caption="warm lo-fi piano", lyrics="[verse]\nrain on the window", bpm=90,
                          keyscale="C major", timesignature=4, duration=12, language="en")
    planner.bring_back()  # an earlier test's memory plan may have parked it
    weights = {name: p.detach().clone() for name, p in planner.model.named_parameters()}
    fast = planner.codes(blueprint, seed=7, guidance=guidance)
    assert packed_calls, "the planner did not decode through the packed layers"
    # The loop ran in inference_mode; the weights it put back are weights (LoRA training needs them so).
    assert not any(p.is_inference() for p in planner.model.parameters())
    monkeypatch.setenv("ACESTEP_FAST_PATHS", "0")
    packed_calls.clear()
    stock = planner.codes(blueprint, seed=7, guidance=guidance)
    assert not packed_calls
    assert fast == stock and fast.count("<|audio_code_") == 60
    planner.bring_back()
    for name, param in planner.model.named_parameters():
        assert torch.equal(param, weights[name]), name


def test_a_machine_where_packing_fails_keeps_the_stock_layers_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(packed_linear, "_broken", [])
    model = _block(torch.float32)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}

    def refuse(weight, rows):
        raise RuntimeError("no reorder for this weight here")

    monkeypatch.setattr(packed_linear, "pack", refuse)
    ids = torch.randint(0, 40, (2, 3))
    with torch.no_grad():
        stock = model(ids)
        with caplog.at_level("WARNING"), packed_linears(model, rows=2) as packing:
            assert packing.layers == [] and not packable(torch.float32, "cpu")
            torch.testing.assert_close(model(ids), stock)
            head = model.head.weight
            torch.testing.assert_close(packing.matmul(torch.ones(1, 24), head), torch.ones(1, 24) @ head.T)
    assert "no reorder for this weight here" in caplog.text
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), name


def test_packing_is_only_for_the_x86_64_cpus_it_was_measured_on(monkeypatch):
    monkeypatch.setattr(packed_linear.platform, "machine", lambda: "arm64")
    assert not packable(torch.float32, "cpu")
    with packed_linears(_block(torch.float32)) as packing:
        assert packing.layers == []


def test_a_planner_that_parks_its_lm_between_calls_decodes_packed_and_parks_again(tiny_dir, turbo, monkeypatch,
                                                                                  packed_calls):
    from acestep_engine.lm import Planner
    from acestep_engine.models import LM_FOLDER, write_lm
    from acestep_engine.runtime import parking

    if not (tiny_dir / LM_FOLDER / "model.safetensors").is_file():
        write_lm(tiny_dir / LM_FOLDER)
    planner = Planner.from_pretrained(LM_FOLDER, checkpoints_dir=tiny_dir, device="cpu", offload=True)
    blueprint = Blueprint(caption="slow piano", bpm=70, keyscale="D minor", timesignature=3, duration=10)
    fast = planner.codes(blueprint, seed=3)
    assert packed_calls and parking.is_parked(planner.model)  # packed while it ran, parked after
    monkeypatch.setenv("ACESTEP_FAST_PATHS", "0")
    assert planner.codes(blueprint, seed=3) == fast and parking.is_parked(planner.model)


def test_a_plan_packs_the_lm_once_for_both_of_its_phases(planner, monkeypatch):
    packs = []
    real = packed_linear.pack
    monkeypatch.setattr(packed_linear, "pack", lambda weight, rows: packs.append(weight.shape) or real(weight, rows))
    monkeypatch.setattr(planner, "offload", False)  # an earlier test's memory plan may have it offloading
    planner.bring_back()
    layers = sum(1 for m in planner.model.model.modules() if type(m) is nn.Linear)
    idea = Blueprint(caption="a slow waltz for a rainy afternoon", duration=10)
    planned, codes = planner.plan(idea, seed=5)
    assert planned.bpm is not None and codes.count("<|audio_code_") == 50
    assert len(packs) == layers + 1  # each layer once, and the audio-code rows of the head
    packs.clear()
    planner.complete(idea, seed=5)  # a phase on its own packs for itself
    assert len(packs) == layers
    assert not any(p.is_inference() or p.numel() == 0 for p in planner.model.parameters())


def test_a_planner_that_parks_its_lm_between_calls_plans_and_parks_again(tiny_dir, turbo, monkeypatch):
    from acestep_engine.lm import Planner
    from acestep_engine.models import LM_FOLDER, write_lm
    from acestep_engine.runtime import parking

    if not (tiny_dir / LM_FOLDER / "model.safetensors").is_file():
        write_lm(tiny_dir / LM_FOLDER)
    planner = Planner.from_pretrained(LM_FOLDER, checkpoints_dir=tiny_dir, device="cpu", offload=True)
    idea = Blueprint(caption="a slow waltz for a rainy afternoon", duration=10)
    fast = planner.plan(idea, seed=5)
    assert parking.is_parked(planner.model) and not planner.decoder.kept
    monkeypatch.setenv("ACESTEP_FAST_PATHS", "0")
    assert planner.plan(idea, seed=5) == fast and parking.is_parked(planner.model)
