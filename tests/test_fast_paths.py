"""The fast execution paths give the stock modules' results, save like them, and cancel between tiles."""

import threading

import numpy as np
import pytest
import torch

from acestep_engine.errors import GenerationCancelled
from acestep_engine.models import vae_codec
from acestep_engine.runtime import fast_paths


def _stock_vae(tiny_dir, dtype=torch.float32):
    from diffusers import AutoencoderOobleck

    vae = AutoencoderOobleck.from_pretrained(tiny_dir / "vae", torch_dtype=dtype).eval().requires_grad_(False)
    with torch.no_grad():  # the tiny checkpoint's Snake parameters are all zero: make them matter
        g = torch.Generator().manual_seed(3)
        for module in vae.modules():
            if hasattr(module, "alpha") and hasattr(module, "beta"):
                module.alpha.copy_(torch.randn(module.alpha.shape, generator=g) * 0.3)
                module.beta.copy_(torch.randn(module.beta.shape, generator=g) * 0.3)
    return vae


@pytest.mark.parametrize("layout", ["1d", "2d"])
def test_prepared_vae_decodes_and_encodes_like_the_stock_one(tiny_dir, layout):
    stock = _stock_vae(tiny_dir)
    fast = fast_paths.prepare_vae(_stock_vae(tiny_dir), enabled=True, layout=layout)
    assert fast_paths.vae_layout(fast) == layout and not any(hasattr(m, "weight_g") for m in fast.modules())
    assert any(isinstance(m, fast_paths.FusedSnake) for m in fast.modules())
    latents = torch.randn(40, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = stock.decode(latents.T.unsqueeze(0)).sample[0].numpy()
    got = vae_codec.decode(fast, latents, chunk=None)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    audio = torch.from_numpy(want)
    with torch.no_grad():
        want_z = stock.encode(audio.unsqueeze(0)).latent_dist.mean[0].T
    torch.testing.assert_close(vae_codec.encode(fast, audio), want_z, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layout", ["1d", "2d"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lean_residual_units_give_the_same_bits_as_diffusers_forward(tiny_dir, layout, dtype):
    import copy

    from diffusers.models.autoencoders.autoencoder_oobleck import OobleckResidualUnit

    lean = fast_paths.prepare_vae(_stock_vae(tiny_dir, dtype), enabled=True, layout=layout)
    units = [m for m in lean.modules() if isinstance(m, OobleckResidualUnit)]
    assert units and all(type(m) is not OobleckResidualUnit for m in units)
    stock = copy.deepcopy(lean)
    for module in stock.modules():
        if isinstance(module, OobleckResidualUnit):
            module.__class__ = OobleckResidualUnit
    latents = torch.randn(40, 16, generator=torch.Generator().manual_seed(0)).to(dtype)
    assert np.array_equal(vae_codec.decode(lean, latents, chunk=16), vae_codec.decode(stock, latents, chunk=16))
    audio = torch.from_numpy(vae_codec.decode(stock, latents, chunk=None))
    assert torch.equal(vae_codec.encode(lean, audio), vae_codec.encode(stock, audio))


def test_prepared_vae_saves_a_checkpoint_the_stock_class_loads(tiny_dir, tmp_path):
    from diffusers import AutoencoderOobleck

    fast = fast_paths.prepare_vae(_stock_vae(tiny_dir), enabled=True, layout="2d")
    fast.save_pretrained(tmp_path / "vae")
    again = AutoencoderOobleck.from_pretrained(tmp_path / "vae").eval()
    z = torch.randn(1, 16, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(again.decode(z).sample, fast_paths.run_decoder(fast, z), rtol=1e-4, atol=1e-5)


def test_fast_paths_switch_off(tiny_dir, monkeypatch):
    monkeypatch.setenv(fast_paths.ENV_FAST_PATHS, "0")
    stock = fast_paths.prepare_vae(_stock_vae(tiny_dir))
    assert fast_paths.vae_layout(stock) == "1d" and any(hasattr(m, "weight_g") for m in stock.modules())
    from diffusers.models.autoencoders.autoencoder_oobleck import OobleckResidualUnit

    units = [m for m in stock.modules() if isinstance(m, OobleckResidualUnit)]
    assert units and all(type(m) is OobleckResidualUnit for m in units)  # diffusers' own forward


def test_snake_kernel_falls_back_to_eager_when_compile_fails(monkeypatch):
    kernel = fast_paths._SnakeKernel()
    kernel._failed = False

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    x, alpha, inv = torch.randn(1, 3, 10), torch.rand(1, 3, 1) + 0.5, torch.rand(1, 3, 1) + 0.5
    with torch.no_grad():
        out = kernel(x, alpha, inv)
    assert kernel.mode == "eager"
    torch.testing.assert_close(out, x + inv * torch.sin(alpha * x) ** 2)


def test_prepared_transformer_matches_the_stock_one(tiny_dir):
    from acestep_engine.models.loader import build_modules
    from acestep_engine.models.tiny_checkpoints import official_config

    cfg = official_config("tiny", "turbo")

    def make():
        torch.manual_seed(0)
        return build_modules(cfg)["transformer"].eval().requires_grad_(False)

    stock, fast = make(), fast_paths.prepare_transformer(make(), enabled=True)
    g = torch.Generator().manual_seed(0)
    frames = 37  # odd: the patchify pads
    x, ctx = torch.randn(2, frames, 16, generator=g), torch.randn(2, frames, 32, generator=g)
    states, t = torch.randn(2, 9, 32, generator=g), torch.tensor([0.7, 0.3])
    with torch.no_grad():
        want = stock(x, t, t, states, ctx, return_dict=False)[0]
        got = fast(x, t, t, states, ctx, return_dict=False)[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_decoding_is_cancellable_between_tiles(turbo, monkeypatch):
    calls = []
    cancel = threading.Event()
    original = vae_codec._decode_window

    def watch(vae, z, samples):
        calls.append(z.shape[-1])
        if len(calls) == 2:
            cancel.set()
        return original(vae, z, samples)

    latents = torch.zeros(4 * 32, turbo.latent_channels, dtype=turbo.dtype)
    monkeypatch.setattr(vae_codec, "_decode_window", watch)
    with pytest.raises(GenerationCancelled, match="VAE decoding"):
        vae_codec.decode(turbo.models.vae, latents, chunk=32, overlap=4, cancel=cancel)
    assert len(calls) == 2  # the third window never started
    cancel.set()  # a short decode (one window) still checks before it starts
    with pytest.raises(GenerationCancelled):
        vae_codec.decode(turbo.models.vae, latents[:8], cancel=cancel)
    with pytest.raises(ValueError, match="chunk must be a whole number"):
        vae_codec.decode(turbo.models.vae, latents, chunk=0)
