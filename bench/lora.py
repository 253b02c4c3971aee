"""LoRA training-step benchmark (not a test): our `train()` loop against a bare peft + diffusers loop.

    .venv/bin/python bench/lora.py [--layers 2] [--seconds 10] [--steps 4] [--rounds 2] [--device cpu]

Both train the same rank-64 / alpha-128 LoRA (q/k/v/o of self- and cross-attention) with the
turbo objective on the same DiT, at the official 2B widths (hidden 2048, 16 heads, 8 KV heads;
`--layers` of the 24 to keep a CPU run short; `--layers 24` on a GPU is the real model), random
weights, and the same synthetic cached songs (`--seconds` of 25 Hz latents, `--tokens`
condition tokens). Ours adds accelerate, seeded draws, loss masks and progress reports; the bare
loop is what a minimal script would write. The runs are interleaved and medians reported, since
neighbouring runs on a shared CPU drift by several percent. Target: overhead <= 5 %.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from acestep_engine.models import REAL_SIZE_DIT  # noqa: E402


def make_engine(layers: int, device: str, dtype: torch.dtype, frames: int):
    """An Engine on a random real-width DiT; only what training touches is real (no VAE/text encoder)."""
    from diffusers.utils import logging as diffusers_logging

    from acestep_engine import Engine
    from acestep_engine.models import resolve_variant
    from acestep_engine.models.loader import LoadedModels, module_classes, module_configs

    diffusers_logging.set_verbosity_error()

    cfg = dict(REAL_SIZE_DIT, num_hidden_layers=layers,
               layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)])
    torch.manual_seed(0)
    transformer = module_classes()["transformer"](**module_configs(cfg)["transformer"])
    transformer = transformer.to(device=device, dtype=dtype).eval().requires_grad_(False)
    encoder = torch.nn.Module()
    encoder.null_condition_emb = torch.nn.Parameter(torch.randn(1, 1, 2048, device=device, dtype=dtype),
                                                    requires_grad=False)
    silence = torch.randn(1, frames, 64, device=device, dtype=dtype) * 0.1
    models = LoadedModels(transformer=transformer, condition_encoder=encoder, audio_tokenizer=None, detokenizer=None,
                          vae=None, text_encoder=None, text_tokenizer=None, silence_latent=silence, config=cfg,
                          variant=resolve_variant("acestep-v15-turbo", cfg), fingerprint="bench")
    return Engine(models, torch.device(device), dtype)


def write_dataset(folder: Path, engine, songs: int, frames: int, tokens: int):
    """Synthetic cached songs in the layout prepare_dataset writes."""
    from safetensors.torch import save_file

    from acestep_engine.lora.dataset import FORMAT_VERSION, MANIFEST, LoRADataset

    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(1)
    entries = []
    for i in range(songs):
        latents = torch.randn(frames, 64, generator=g).to(engine.dtype)
        context = torch.cat([engine.silence(frames).cpu(), torch.ones(frames, 64, dtype=engine.dtype)], dim=-1)
        save_file({"target_latents": latents, "context_latents": context,
                   "encoder_hidden_states": torch.randn(tokens, 2048, generator=g).to(engine.dtype),
                   "encoder_attention_mask": torch.ones(tokens, dtype=torch.bool)}, str(folder / f"song{i}.safetensors"))
        entries.append(dict(id=f"song{i}", file=f"song{i}.safetensors", audio=f"song{i}.wav", seconds=frames / 25,
                            frames=frames, labelled_by="none", blueprint={}, caption_prompt="", lyric_prompt="",
                            key=f"bench{i}"))
    info = {"format": FORMAT_VERSION, "weights": "bench", "dtype": str(engine.dtype).replace("torch.", ""),
            "variant": engine.variant.name, "songs": entries}
    (folder / MANIFEST).write_text(json.dumps(info))
    return LoRADataset.load(folder)


def ours(engine, dataset, steps: int, out: Path) -> list[float]:
    from acestep_engine.lora import LoRAConfig, TrainingConfig, train

    stamps = []
    train(engine, dataset, out, LoRAConfig(rank=64, alpha=128.0),
          TrainingConfig(lr=3e-4, steps=steps, warmup=0, save_every=0, objective="turbo"),
          progress=lambda p: stamps.append(time.perf_counter()) if p.stage == "train" else None, resume=False)
    return [b - a for a, b in zip(stamps, stamps[1:])]  # the first update (set-up, warm-up) is left out


def bare(engine, dataset, steps: int) -> list[float]:
    """The loop a short script would write with peft and diffusers directly."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.tuners_utils import cast_adapter_dtype

    from acestep_engine.lora.adapters import remove
    from acestep_engine.lora.dataset import collate

    transformer = engine.models.transformer
    inject_adapter_in_model(LoraConfig(r=64, lora_alpha=128, target_modules=["to_q", "to_k", "to_v", "to_out.0"]),
                            transformer, adapter_name="bare")
    cast_adapter_dtype(transformer, "bare")
    params = [p for n, p in transformer.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=3e-4, weight_decay=0.01)
    times = torch.tensor([1.0, 0.9545, 0.9, 0.8333, 0.75, 0.6429, 0.5, 0.3])
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if engine.device.type == "cuda" else None
    transformer.train()
    stamps = []
    try:
        for step in range(steps):
            batch = collate([dataset[step % len(dataset)]])
            batch = {k: v.to(engine.device) for k, v in batch.items()}
            x0 = batch["target_latents"]
            noise = torch.randn_like(x0)
            t = times[torch.randint(8, (1,))].to(engine.device, engine.dtype)
            xt = t[:, None, None] * noise + (1 - t[:, None, None]) * x0
            with autocast if autocast is not None else torch.enable_grad():
                v = transformer(hidden_states=xt, timestep=t, timestep_r=t,
                                encoder_hidden_states=batch["encoder_hidden_states"],
                                context_latents=batch["context_latents"], return_dict=False)[0]
            loss = torch.nn.functional.mse_loss(v.float(), (noise - x0).float())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            float(loss.detach())  # as ours: the loss reaches the host every update
            stamps.append(time.perf_counter())
    finally:
        transformer.eval()
        remove(transformer, "bare")
        transformer.requires_grad_(False)
    return [b - a for a, b in zip(stamps, stamps[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tokens", type=int, default=300, help="condition tokens per song")
    parser.add_argument("--steps", type=int, default=4, help="timed updates per run (plus one untimed)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    frames = int(args.seconds * 25)
    engine = make_engine(args.layers, args.device, dtype, frames)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = write_dataset(Path(tmp) / "cache", engine, songs=2, frames=frames, tokens=args.tokens)
        results = {"ours": [], "bare": []}
        for _ in range(args.rounds):
            results["ours"] += ours(engine, dataset, args.steps + 1, Path(tmp) / "out")
            results["bare"] += bare(engine, dataset, args.steps + 1)
    ours_s, bare_s = statistics.median(results["ours"]), statistics.median(results["bare"])
    print(json.dumps({"device": args.device, "dtype": str(dtype).replace("torch.", ""), "layers": args.layers,
                      "seconds_audio": args.seconds, "condition_tokens": args.tokens, "rank": 64,
                      "s_per_update_ours": round(ours_s, 4), "s_per_update_bare": round(bare_s, 4),
                      "overhead": round(ours_s / bare_s - 1, 4), "threads": torch.get_num_threads()}, indent=2))


if __name__ == "__main__":
    main()
