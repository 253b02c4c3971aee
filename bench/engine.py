"""Engine benchmark on the CPU with real-size configs and random weights (not a test).

    .venv/bin/python bench/engine.py [--seconds 30] [--steps 2] [--skip-vae]

(a) Seconds per DiT step for `--seconds` of audio through the engine's sampler, against calling
    diffusers' AceStepTransformer1DModel directly with the same tensors in the same run (target:
    engine overhead <= 5 %), and the achieved GFLOP/s against a plain fp32 matmul roofline.
(b) VAE decode of 10 s and 60 s with the official VAE config: seconds per audio second and peak
    memory, tiled against untiled (targets: tiled peak at 60 s within 1.2x of 10 s beyond the
    output buffer; tiled time within 1.1x of untiled). Each VAE case runs in a fresh process so
    that the peak resident memory belongs to that case alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OFFICIAL_2B = {
    "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 24, "num_attention_heads": 16,
    "num_key_value_heads": 8, "head_dim": 128, "in_channels": 192, "audio_acoustic_hidden_dim": 64,
    "patch_size": 2, "text_hidden_dim": 1024, "num_lyric_encoder_hidden_layers": 8, "timbre_hidden_dim": 64,
    "num_timbre_encoder_hidden_layers": 4, "timbre_fix_frame": 750, "pool_window_size": 5,
    "num_attention_pooler_hidden_layers": 2, "fsq_dim": 2048, "sliding_window": 128, "use_sliding_window": True,
    "model_version": "turbo", "is_turbo": True,
}
OFFICIAL_VAE = dict(encoder_hidden_size=128, downsampling_ratios=[2, 4, 4, 6, 10], channel_multiples=[1, 2, 4, 8, 16],
                    decoder_channels=128, decoder_input_channels=64, audio_channels=2, sampling_rate=48000)


def matmul_roofline(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, 3 * n)
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


def bench_dit(seconds: float, steps: int, repeats: int = 3) -> dict:
    from acestep_engine.conditioning import Conditions
    from acestep_engine.loader import build_modules
    from acestep_engine.sampling import SamplerSettings, denoise

    torch.manual_seed(0)
    transformer = build_modules(OFFICIAL_2B)["transformer"].eval().requires_grad_(False)
    frames, cond_len = int(seconds * 25), 400
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, frames, 64, generator=g)
    context = torch.randn(1, frames, 128, generator=g)
    states = torch.randn(1, cond_len, 2048, generator=g)
    conditions = Conditions(states, torch.ones(1, cond_len), states)
    settings = SamplerSettings([1.0 - i / steps for i in range(steps)] + [0.0])
    with torch.no_grad():
        transformer(noise, torch.ones(1), torch.ones(1), states, context)  # warm-up

        def direct():
            x = noise
            times = torch.tensor(settings.schedule)
            for i in range(steps):
                t = times[i].expand(1)
                v = transformer(hidden_states=x, timestep=t, timestep_r=t, encoder_hidden_states=states,
                                context_latents=context, return_dict=False)[0]
                x = x - v * (times[i] - times[i + 1])
            return x

        def engine():
            return denoise(transformer, noise, lambda i: (context, conditions), settings)

        # Interleave the two paths and take medians: on a shared CPU, neighbouring runs drift by several %.
        results = {"diffusers": [], "engine": []}
        out = None
        for _ in range(repeats):
            for name, fn in (("diffusers", direct), ("engine", engine)):
                start = time.perf_counter()
                out = fn()
                results[name].append((time.perf_counter() - start) / steps)
        assert torch.allclose(direct(), out, atol=1e-4)
    t_direct = statistics.median(results["diffusers"])
    t_engine = statistics.median(results["engine"])
    flops = dit_flops(OFFICIAL_2B, frames, cond_len)
    return {"seconds_audio": seconds, "frames": frames, "s_per_step_diffusers": t_direct, "s_per_step_engine": t_engine,
            "engine_overhead": t_engine / t_direct - 1, "gflops_per_step": flops / 1e9,
            "achieved_gflops": flops / t_engine / 1e9}


def vae_case(seconds: float, tiled: bool) -> dict:
    """Runs in a child process: decode `seconds` of random latents, report time and peak RSS."""
    from diffusers import AutoencoderOobleck

    from acestep_engine import vae_codec

    torch.manual_seed(0)
    vae = AutoencoderOobleck(**OFFICIAL_VAE).eval().requires_grad_(False)
    latents = torch.randn(int(seconds * 25), 64) * 0.5
    vae_codec.decode(vae, latents[:64], chunk=None)  # warm-up
    import threading

    import numpy as np

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
    vae_codec.decode(vae, latents, chunk=vae_codec.DECODE_CHUNK if tiled else None, out=out)
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    peak = max(peak[0], _rss())
    return {"seconds_audio": seconds, "tiled": tiled, "s_per_audio_s": elapsed / seconds,
            "peak_extra_mb": max(0, peak - baseline) / 2 ** 20, "output_mb": out.nbytes / 2 ** 20}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def bench_vae() -> list[dict]:
    rows = []
    for seconds in (10, 60):
        for tiled in (True, False):
            cmd = [sys.executable, __file__, "--vae-case", str(seconds), "1" if tiled else "0"]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-vae", action="store_true")
    parser.add_argument("--skip-dit", action="store_true")
    parser.add_argument("--vae-case", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.vae_case:
        print(json.dumps(vae_case(float(args.vae_case[0]), args.vae_case[1] == "1")))
        return
    torch.set_num_threads(torch.get_num_threads())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 CPU")
    roofline = matmul_roofline()
    print(f"plain fp32 matmul roofline: {roofline:.1f} GFLOP/s")
    if not args.skip_dit:
        r = bench_dit(args.seconds, args.steps, args.repeats)
        print("\n(a) DiT step, 2B turbo config, {:.0f} s of audio ({} frames)".format(r["seconds_audio"], r["frames"]))
        print("| path | s/step | GFLOP/s | of roofline |")
        print("|---|---|---|---|")
        print(f"| diffusers direct | {r['s_per_step_diffusers']:.2f} | {r['gflops_per_step'] / r['s_per_step_diffusers']:.1f} "
              f"| {r['gflops_per_step'] / r['s_per_step_diffusers'] / roofline:.0%} |")
        print(f"| engine sampler | {r['s_per_step_engine']:.2f} | {r['achieved_gflops']:.1f} "
              f"| {r['achieved_gflops'] / roofline:.0%} |")
        print(f"engine overhead: {r['engine_overhead']:+.1%} (target <= 5 %)")
    if not args.skip_vae:
        rows = bench_vae()
        print("\n(b) VAE decode, official Oobleck config")
        print("| audio | mode | s per audio s | peak extra MB (beyond output) | output MB |")
        print("|---|---|---|---|---|")
        for row in rows:
            extra = max(0.0, row["peak_extra_mb"])
            print(f"| {row['seconds_audio']:.0f} s | {'tiled' if row['tiled'] else 'untiled'} | "
                  f"{row['s_per_audio_s']:.3f} | {extra:.0f} | {row['output_mb']:.0f} |")
        by = {(r["seconds_audio"], r["tiled"]): r for r in rows}
        mem_ratio = by[(60, True)]["peak_extra_mb"] / max(by[(10, True)]["peak_extra_mb"], 1e-9)
        time_ratio = by[(60, True)]["s_per_audio_s"] / by[(60, False)]["s_per_audio_s"]
        print(f"tiled peak 60 s / 10 s: {mem_ratio:.2f}x (target <= 1.2x); "
              f"tiled / untiled time at 60 s: {time_ratio:.2f}x (target <= 1.1x)")


if __name__ == "__main__":
    main()
