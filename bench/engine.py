"""Engine benchmark on the CPU with real-size configs and random weights (not a test).

    flock /tmp/acestep-heavy.lock .venv/bin/python bench/engine.py [--seconds 30] [--steps 2]
        [--dtype auto|fp32|bf16] [--skip-vae] [--skip-dit] [--vae-long]

The matmul rate of the chosen dtype (2048 x 2048 x 6144) is measured first, in the same run.
(a) Seconds per DiT step for `--seconds` of audio through the engine's sampler with the fast paths
    (`acestep_engine.runtime.fast_paths`), against diffusers' AceStepTransformer1DModel run stock on the same
    tensors, interleaved; GFLOP per step (`dit_flops`), achieved GFLOP/s and its share of the
    measured matmul rate (target >= 60 % in bf16). Also the engine's sampler (`sampling.denoise`)
    against a bare diffusers-style Euler loop that calls the same prepared module directly, in
    the same run: the engine's overhead over bare diffusers (target <= 5 %).
(b) VAE decode with the official Oobleck config: seconds per audio second and peak memory, the fast
    paths against stock, tiled against untiled, 10 s and 60 s (and 600 s with `--vae-long`); the
    decoder's GFLOP per audio second from torch's FLOP counter (targets: <= 0.35 s per audio second
    in bf16; peak at 600 s within 1.2x of 60 s). Each VAE case runs in a fresh process so that the
    peak resident memory belongs to that case alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from acestep_engine.models import REAL_SIZE_DIT, REAL_SIZE_VAE  # noqa: E402


def matmul_roofline(n: int = 2048, repeats: int = 5, dtype=torch.float32) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, 3 * n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n * n * 3 * n * repeats / (time.perf_counter() - start) / 1e9


def dit_flops(cfg: dict, frames: int, cond_len: int) -> float:
    """Multiply-adds x2 of one DiT forward (linear layers and attention), batch 1."""
    h, inter, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    heads, kv, hd, win = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["sliding_window"]
    tokens = (frames + 1) // 2
    per_layer = 0.0
    per_layer += tokens * (h * heads * hd * 2 + h * kv * hd * 2)  # self q,o + k,v
    per_layer += tokens * h * heads * hd * 2 + cond_len * h * kv * hd * 2  # cross q,o + k,v of the conditions
    per_layer += tokens * 3 * h * inter  # MLP
    per_layer += tokens * tokens * heads * hd * 2 + tokens * cond_len * heads * hd * 2  # attention (dense)
    total = layers * per_layer + tokens * (cfg["in_channels"] * 2 * h + h * 2 * 64) + cond_len * h * h
    return 2 * total


def bench_dit(seconds: float, steps: int, repeats: int = 3, dtype=torch.float32) -> dict:
    from acestep_engine.generation import Conditions, SamplerSettings, denoise
    from acestep_engine.models.loader import build_modules
    from acestep_engine.runtime import fast_paths

    def build(fast: bool):
        torch.manual_seed(0)
        model = build_modules(REAL_SIZE_DIT)["transformer"].eval().requires_grad_(False).to(dtype)
        return fast_paths.prepare_transformer(model, enabled=True) if fast else model

    stock, fast = build(False), build(True)
    frames, cond_len = int(seconds * 25), 400
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, frames, 64, generator=g).to(dtype)
    context = torch.randn(1, frames, 128, generator=g).to(dtype)
    states = torch.randn(1, cond_len, 2048, generator=g).to(dtype)
    conditions = Conditions(states, torch.ones(1, cond_len), states)
    settings = SamplerSettings([1.0 - i / steps for i in range(steps)] + [0.0])
    with torch.no_grad():
        one = torch.ones(1, dtype=dtype)
        stock(noise, one, one, states, context)  # warm-up
        fast(noise, one, one, states, context)

        def engine(model):
            return denoise(model, noise, lambda i: (context, conditions), settings)

        def bare(model):  # what a user of diffusers writes: the module called step by step, Euler update
            x = noise
            times = torch.tensor(settings.schedule, dtype=dtype)
            for i in range(steps):
                t = times[i].expand(1)
                v = model(hidden_states=x, timestep=t, timestep_r=t, encoder_hidden_states=states,
                          context_latents=context, return_dict=False)[0]
                x = x - v * (times[i] - times[i + 1])
            return x

        # Interleave the paths and take medians: on a shared CPU, neighbouring runs drift by several %.
        paths = {"stock": lambda: engine(stock), "fast": lambda: engine(fast), "bare": lambda: bare(fast)}
        results = {name: [] for name in paths}
        outs = {}
        for _ in range(repeats):
            for name, fn in paths.items():
                start = time.perf_counter()
                outs[name] = fn()
                results[name].append((time.perf_counter() - start) / steps)

    def cosine(a, b):
        return float(torch.nn.functional.cosine_similarity(a.float().flatten(), b.float().flatten(), dim=0))

    t_stock, t_fast, t_bare = (statistics.median(results[name]) for name in ("stock", "fast", "bare"))
    flops = dit_flops(REAL_SIZE_DIT, frames, cond_len)
    return {"seconds_audio": seconds, "frames": frames, "s_per_step_stock": t_stock, "s_per_step_fast": t_fast,
            "s_per_step_bare": t_bare, "engine_overhead": t_fast / t_bare - 1,
            "speedup": t_stock / t_fast, "gflops_per_step": flops / 1e9, "achieved_gflops": flops / t_fast / 1e9,
            "cosine_fast_vs_stock": cosine(outs["stock"], outs["fast"]),
            "cosine_engine_vs_bare": cosine(outs["fast"], outs["bare"])}


def vae_case(seconds: float, mode: str, dtype_name: str) -> dict:
    """Runs in a child process: decode `seconds` of random latents, report time and peak RSS.
    `mode`: "fast-tiled" (what the engine runs), "fast-untiled", "stock-tiled" (no fast paths)."""
    import threading

    import numpy as np
    from diffusers import AutoencoderOobleck

    from acestep_engine.models import vae_codec
    from acestep_engine.runtime import fast_paths

    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    vae = AutoencoderOobleck(**REAL_SIZE_VAE).eval().requires_grad_(False).to(dtype)
    fast_paths.prepare_vae(vae, enabled=mode.startswith("fast"))
    latents = torch.randn(int(seconds * 25), 64) * 0.5
    vae_codec.decode(vae, latents[:64], chunk=None)  # warm-up
    flops = None
    if seconds <= 10 and mode == "fast-tiled":
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            vae_codec.decode(vae, latents[:25], chunk=None)
        flops = counter.get_total_flops()  # one second of audio
    out = np.zeros((2, latents.shape[0] * 1920), dtype=np.float32)  # touched: part of the baseline
    baseline = _rss()
    peak = [baseline]
    done = threading.Event()

    def sample():  # ru_maxrss would include the model's initialisation peak; sample the live RSS instead
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    vae_codec.decode(vae, latents, chunk="auto" if mode.endswith("-tiled") else None, out=out)
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    peak = max(peak[0], _rss())
    return {"seconds_audio": seconds, "mode": mode, "s_per_audio_s": elapsed / seconds,
            "peak_extra_mb": max(0, peak - baseline) / 2 ** 20, "output_mb": out.nbytes / 2 ** 20,
            "gflop_per_audio_s": flops / 1e9 if flops else None}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def bench_vae(dtype_name: str, long: bool) -> list[dict]:
    rows = []
    cases = [(10, "fast-tiled"), (10, "stock-tiled"), (60, "fast-tiled"), (60, "stock-tiled"), (60, "fast-untiled")]
    if long:
        cases.append((600, "fast-tiled"))
    for seconds, mode in cases:
        cmd = [sys.executable, __file__, "--vae-case", str(seconds), mode, dtype_name]
        env = {**os.environ, "ACESTEP_FAST_PATHS": "0"} if mode.startswith("stock") else None  # 4 KB pages too
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--skip-vae", action="store_true")
    parser.add_argument("--skip-dit", action="store_true")
    parser.add_argument("--vae-long", action="store_true", help="also decode 600 s (peak memory against 60 s)")
    parser.add_argument("--vae-case", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("ACESTEP_BENCH_THREADS", "2")))
    if args.vae_case:
        print(json.dumps(vae_case(float(args.vae_case[0]), args.vae_case[1], args.vae_case[2])))
        return
    from acestep_engine.runtime import huge_pages_active, resolve_dtype

    dtype, how = resolve_dtype("cpu", args.dtype)
    name = str(dtype).replace("torch.", "")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {name} ({how}), "
          f"{'huge' if huge_pages_active() else '4 KB'} pages for large buffers (the stock rows: 4 KB), "
          f"load average {os.getloadavg()[0]:.1f}")
    roofline = matmul_roofline(dtype=dtype)
    fp32 = matmul_roofline() if dtype != torch.float32 else roofline
    print(f"matmul 2048x2048x6144: {roofline:.1f} GFLOP/s in {name}, {fp32:.1f} GFLOP/s in fp32")
    if not args.skip_dit:
        r = bench_dit(args.seconds, args.steps, args.repeats, dtype)
        print("\n(a) DiT step, 2B turbo config, {:.0f} s of audio ({} frames), {:.0f} GFLOP per step".format(
            r["seconds_audio"], r["frames"], r["gflops_per_step"]))
        print(f"| path | s/step | GFLOP/s | share of {name} matmul rate |")
        print("|---|---|---|---|")
        for label, key in (("engine sampler, diffusers stock module", "s_per_step_stock"),
                           ("bare diffusers Euler loop, prepared module", "s_per_step_bare"),
                           ("engine sampler, prepared module (what Engine runs)", "s_per_step_fast")):
            rate = r["gflops_per_step"] / r[key]
            print(f"| {label} | {r[key]:.2f} | {rate:.1f} | {rate / roofline:.0%} |")
        print(f"fast paths: speed-up {r['speedup']:.2f}x; cosine(fast, stock) = {r['cosine_fast_vs_stock']:.6f}")
        overhead = r["engine_overhead"]
        print(f"engine sampler over bare loop on the same module: {overhead:+.1%} (target <= +5 %): "
              f"{'OK' if overhead <= 0.05 else 'MISSED'}; cosine(engine, bare) = {r['cosine_engine_vs_bare']:.6f}")
    if not args.skip_vae:
        rows = bench_vae(name, args.vae_long)
        flops = next(r["gflop_per_audio_s"] for r in rows if r["gflop_per_audio_s"])
        print(f"\n(b) VAE decode, official Oobleck config, {name}, {flops:.0f} GFLOP per audio second "
              f"(floor {flops / roofline:.3f} s at the {name} matmul rate)")
        print("| audio | mode | s per audio s | share of matmul rate | peak extra MB (beyond output) | output MB |")
        print("|---|---|---|---|---|---|")
        for row in rows:
            share = flops / row["s_per_audio_s"] / roofline
            print(f"| {row['seconds_audio']:.0f} s | {row['mode']} | {row['s_per_audio_s']:.3f} | {share:.0%} | "
                  f"{row['peak_extra_mb']:.0f} | {row['output_mb']:.0f} |")
        by = {(r["seconds_audio"], r["mode"]): r for r in rows}
        print(f"fast / stock time at 60 s: "
              f"{by[(60, 'fast-tiled')]['s_per_audio_s'] / by[(60, 'stock-tiled')]['s_per_audio_s']:.2f}x; "
              f"tiled / untiled at 60 s: "
              f"{by[(60, 'fast-tiled')]['s_per_audio_s'] / by[(60, 'fast-untiled')]['s_per_audio_s']:.2f}x")
        if (600, "fast-tiled") in by:
            ratio = by[(600, "fast-tiled")]["peak_extra_mb"] / max(by[(60, "fast-tiled")]["peak_extra_mb"], 1e-9)
            print(f"tiled peak 600 s / 60 s: {ratio:.2f}x (target <= 1.2x)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
