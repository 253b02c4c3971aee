"""End-to-end generation at real size on the CPU (not a test): a turbo text2music through `Engine.generate`.

    flock /tmp/acestep-heavy.lock .venv/bin/python bench/end_to_end.py [--seconds 30] [--dtypes auto,fp32]

Writes a real-size checkpoint set with random weights once (official layout, bf16 on disk like the
hub's: 2B turbo DiT, Oobleck VAE, Qwen3-Embedding-0.6B widths with our byte-level tokenizer) under
`--cache` (default /tmp/acestep-bench-real, about 6 GB), then for each dtype runs, in a fresh process,
`Engine.from_pretrained` and one generation of `--seconds` (8 steps, seed 1), and reports:
load time, encode, DiT seconds per step, VAE seconds per audio second, total, the peak resident memory
of the whole process (`ru_maxrss`, loading included) and of the generation alone (sampled), and the
cosine similarity of every dtype's latents against fp32's on the same seed.

`--compile` adds a run with `compile=True` and `--budget 6GB` one under that memory budget (the
plan parks what is not in use on disk). Both generate twice in one process and report the second
(steady state: graphs compiled, modules parked), with the first one's total and compile time.

Each case also measures, in its own process, the matmul rate of its dtype (best of three) and reports
the DiT's and the VAE's share of it (FLOPs as in `bench/engine.py` and `bench/idea_to_song.py`), and
its peak RSS beyond the resident weights.

Targets (issue 14): 30 s in <= 35 s with dtype auto; cosine >= 0.999 against fp32; peak RSS <= 6 GB in
bf16; a 600 s generation runs to the end without swapping. Issue 25: DiT >= 80 % and VAE >= 60 % of
the matmul rate; peak RSS <= the resident weights + 1.5 GB with everything resident.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from acestep_engine.models import REAL_SIZE_DIT, REAL_SIZE_TEXT_ENCODER, REAL_SIZE_VAE  # noqa: E402


def _random_like(key: str, shape, generator) -> torch.Tensor:
    if len(shape) == 1:
        fill = 1.0 if "norm" in key or key.endswith("weight") else 0.0
        return torch.full(shape, fill, dtype=torch.bfloat16)
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
    tensor = torch.empty(shape, dtype=torch.float32).normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)
    return tensor.to(torch.bfloat16)


def write_real_size(root: Path) -> Path:
    """The official layout at real size with random weights (skipped when already there)."""
    from diffusers import AutoencoderOobleck
    from safetensors.torch import save_file
    from transformers import Qwen3Config, Qwen3Model

    from acestep_engine.models.keymap import COMPONENTS, DERIVED_KEYS, diffusers_to_official
    from acestep_engine.models.loader import build_modules
    from acestep_engine.models.tiny_checkpoints import build_tokenizer, official_config, silence_latent_for

    marker = root / "acestep_workbench_checkpoints.json"
    if marker.is_file():
        return root
    root.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    vae = AutoencoderOobleck(**REAL_SIZE_VAE).eval()
    vae.save_pretrained(root / "vae", safe_serialization=True)
    text_dir = root / "Qwen3-Embedding-0.6B"
    build_tokenizer(text_dir)
    with torch.device("meta"):
        text = Qwen3Model(Qwen3Config(**REAL_SIZE_TEXT_ENCODER, bos_token_id=256, eos_token_id=256, pad_token_id=256))
    text_state = {k: _random_like(k, tuple(v.shape), g) for k, v in text.state_dict().items()}
    text.config.torch_dtype = "bfloat16"
    text.config.save_pretrained(text_dir)
    save_file(text_state, str(text_dir / "model.safetensors"), metadata={"format": "pt"})
    del text_state
    config = dict(official_config("tiny", "turbo"), **REAL_SIZE_DIT, torch_dtype="bfloat16")
    config["layer_types"] = ["sliding_attention" if (i + 1) % 2 else "full_attention"
                             for i in range(config["num_hidden_layers"])]
    config["num_audio_decoder_hidden_layers"] = config["num_hidden_layers"]
    dit_dir = root / "acestep-v15-turbo"
    dit_dir.mkdir(exist_ok=True)
    (dit_dir / "config.json").write_text(json.dumps(config, indent=2))
    modules = build_modules(config, empty=True)
    state = {}
    for name in COMPONENTS:
        for key, tensor in modules[name].state_dict().items():
            if key not in DERIVED_KEYS.get(name, ()):
                state[diffusers_to_official(name, key)] = _random_like(key, tuple(tensor.shape), g)
    save_file(state, str(dit_dir / "model.safetensors"), metadata={"format": "pt"})
    del state
    torch.save(silence_latent_for(vae, 15000), dit_dir / "silence_latent.pt")
    marker.write_text(json.dumps({"preset": "real-size", "random_weights": True, "variants": ["turbo"]}))
    return root


def resident_bytes() -> int:
    """This process's resident set now, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def run_case(root: Path, dtype: str, seconds: float, out: Path, compile_dit: bool = False,
             budget: str | None = None, repeat: bool = False) -> dict:
    """In a child process: load, generate once (twice with `repeat`: the second is reported, the
    first pays the compile time), report (latents saved to `out`)."""
    from acestep_engine import Blueprint, Engine
    from acestep_engine.runtime import huge_pages_active

    started = time.perf_counter()
    kwargs = {"compile": True} if compile_dit else {}
    engine = Engine.from_pretrained(root, device="cpu", dtype=dtype, memory_budget=budget, **kwargs)
    loaded = time.perf_counter() - started
    bp = Blueprint(caption="upbeat synth pop, bright lead, punchy drums", lyrics="[verse]\nneon lights\n",
                   duration=seconds, bpm=120)
    first = None
    if repeat:  # the first generation compiles, or parks what its memory plan parks
        first, = engine.generate(bp, seeds=1, steps=8)
    peak, done = [resident_bytes()], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], resident_bytes())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    take, = engine.generate(bp, seeds=1, steps=8)
    done.set()
    sampler.join()
    np.save(out, take.latents)
    t = take.timings
    from engine import dit_flops, matmul_roofline
    from idea_to_song import best, encode_flops, vae_flops_per_audio_second, weight_bytes

    from acestep_engine import Text2Music

    rate = best(lambda: matmul_roofline(dtype=engine.dtype)) * 1e9
    _, frames, conditions = encode_flops(engine, bp, Text2Music())
    dit_share = 8 * dit_flops(REAL_SIZE_DIT, frames, conditions) / rate / t["denoise_s"]
    vae_share = seconds * vae_flops_per_audio_second(engine.models.vae) / rate / t["decode_s"]
    m = engine.models
    weights = weight_bytes(m.transformer, m.condition_encoder, m.audio_tokenizer, m.detokenizer, m.vae,
                           m.text_encoder) / 1e9 if budget is None else None
    return {"dtype": str(engine.dtype).replace("torch.", ""), "dtype_choice": engine.dtype_choice,
            "seconds": seconds, "load_s": loaded, "encode_s": t["encode_s"], "dit_s_per_step": t["denoise_s"] / 8,
            "vae_s_per_audio_s": t["decode_s"] / seconds, "total_s": t["total_s"],
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
            "peak_rss_generate_gb": peak[0] / 1e9, "memory_tier": engine.last_memory_plan.tier,
            "huge_pages": huge_pages_active(),
            "first_total_s": first.timings["total_s"] if first is not None else None,
            "rate_gflops": rate / 1e9, "dit_share": dit_share, "vae_share": vae_share, "weights_gb": weights,
            "compile_s": first.timings.get("compile_s") if first is not None else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--dtypes", default="auto,fp32")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/acestep-bench-real"))
    parser.add_argument("--compile", action="store_true", help="also Engine.from_pretrained(compile=True)")
    parser.add_argument("--budget", default=None, help='also dtype auto under this memory_budget, e.g. "6GB"')
    parser.add_argument("--case", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("ACESTEP_BENCH_THREADS", "2")))
    if args.case:
        dtype, out, compile_flag, budget, repeat = args.case
        print(json.dumps(run_case(args.cache, dtype, args.seconds, Path(out), compile_flag == "1",
                                  None if budget == "-" else budget, repeat == "1")))
        return
    started = time.perf_counter()
    write_real_size(args.cache)
    print(f"real-size checkpoints in {args.cache} ({time.perf_counter() - started:.0f} s)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    rows, latents = [], {}
    cases = [(d, False, None) for d in args.dtypes.split(",") if d]
    cases += [("auto", True, None)] if args.compile else []
    cases += [("auto", False, args.budget)] if args.budget else []
    for dtype, compile_dit, budget in cases:
        out = args.cache / f"latents-{dtype}-{int(compile_dit)}-{budget or 'free'}.npy"
        cmd = [sys.executable, __file__, "--seconds", str(args.seconds), "--cache", str(args.cache),
               "--case", dtype, str(out), "1" if compile_dit else "0", budget or "-", "1" if compile_dit or budget else "0"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            print(result.stderr[-3000:])
            raise SystemExit(f"case {dtype} failed")
        row = json.loads(result.stdout.strip().splitlines()[-1])
        row["compile"], row["budget"] = compile_dit, budget
        rows.append(row)
        latents[(dtype, compile_dit, budget)] = np.load(out).astype(np.float64).ravel()
    reference = latents.get(("fp32", False, None))
    print(f"\n{args.seconds:.0f} s turbo text2music, 8 steps, end to end (Engine.generate), CPU")
    print("| dtype | load s | encode s | DiT s/step | VAE s per audio s | total s | peak RSS GB (all / generate) "
          "| peak - weights GB | matmul GFLOP/s | DiT share | VAE share | cosine vs fp32 | memory tier |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for case, row in zip(cases, rows):
        vec = latents[case]
        cosine = float(vec @ reference / (np.linalg.norm(vec) * np.linalg.norm(reference))) \
            if reference is not None else float("nan")
        extra = f"{row['peak_rss_gb'] - row['weights_gb']:+.2f}" if row["weights_gb"] else "-"
        name = row["dtype"] + (" (auto)" if row["dtype_choice"].startswith("auto") else "") \
            + (" compiled" if row["compile"] else "") + (f" budget {row['budget']}" if row["budget"] else "") \
            + ("" if row["huge_pages"] else " 4 KB pages") \
            + (f" (first run {row['first_total_s']:.1f} s, compiling {row['compile_s'] or 0:.1f} s)"
               if row["first_total_s"] else "")
        print(f"| {name} | {row['load_s']:.1f} | {row['encode_s']:.2f} | {row['dit_s_per_step']:.2f} | "
              f"{row['vae_s_per_audio_s']:.3f} | {row['total_s']:.1f} | {row['peak_rss_gb']:.2f} / "
              f"{row['peak_rss_generate_gb']:.2f} | {extra} | {row['rate_gflops']:.0f} | {row['dit_share']:.0%} | "
              f"{row['vae_share']:.0%} | {cosine:.6f} | {row['memory_tier']} |")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
