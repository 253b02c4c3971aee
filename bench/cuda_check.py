"""The CUDA path end to end at real size (random weights), for a machine with a GPU (not a test).

    .venv/bin/python bench/cuda_check.py [--cache /tmp/acestep-bench-real] [--long 600]

Loads the real-size checkpoint set of `bench/end_to_end.py` (written if missing) on "cuda" with
dtype "auto", prints the dtype choice and the memory plans, generates 30 s (and `--long` seconds)
of turbo text2music, and reports times, the peak GPU memory against the plan's estimate, and the
latents' cosine against fp32 and against the stock modules (ACESTEP_FAST_PATHS=0) on the same seed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def generate(root: Path, dtype: str, seconds: float, seed: int = 1) -> dict:
    from acestep_engine import Blueprint, Engine

    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    engine = Engine.from_pretrained(root, device="cuda", dtype=dtype)
    loaded = time.perf_counter() - started
    bp = Blueprint(caption="upbeat synth pop, bright lead, punchy drums", lyrics="[verse]\nneon lights\n",
                   duration=seconds, bpm=120)
    plan = engine.plan_memory(bp)
    engine.generate(bp.replace(duration=10), seeds=seed)  # warm-up (cuDNN/cuBLAS heuristics)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    take, = engine.generate(bp, seeds=seed)
    torch.cuda.synchronize()
    return {"engine": repr(engine), "dtype_choice": engine.dtype_choice, "seconds": seconds, "load_s": loaded,
            "timings": take.timings, "peak_gib": torch.cuda.max_memory_allocated() / 2 ** 30,
            "plan": str(plan), "plan_estimate_gib": plan.estimate / 2 ** 30, "latents": take.latents}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", type=Path, default=Path("/tmp/acestep-bench-real"))
    parser.add_argument("--long", type=float, default=600.0)
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        dtype, seconds, out = args.case
        row = generate(args.cache, dtype, float(seconds))
        np.save(out, row.pop("latents"))
        print(json.dumps(row))
        return
    from bench.end_to_end import write_real_size

    write_real_size(args.cache)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, capability {torch.cuda.get_device_capability()}")
    rows = {}
    cases = [("auto", 30.0, {}), ("fp32", 30.0, {}), ("auto", 30.0, {"ACESTEP_FAST_PATHS": "0"}),
             ("auto", args.long, {})]
    for i, (dtype, seconds, env) in enumerate(cases):
        out = args.cache / f"cuda-latents-{i}.npy"
        cmd = [sys.executable, __file__, "--cache", str(args.cache), "--case", dtype, str(seconds), str(out)]
        result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
        if result.returncode != 0:
            print(f"case {dtype} {seconds} {env} failed:\n{result.stderr[-2500:]}", flush=True)
            continue
        row = json.loads(result.stdout.strip().splitlines()[-1])
        rows[i] = (row, np.load(out).astype(np.float64).ravel())
        t = row["timings"]
        label = f"{dtype}{' stock modules' if env else ''}"
        print(f"{label:>22} {seconds:5.0f} s: {row['engine']}; load {row['load_s']:.1f} s, encode "
              f"{t['encode_s']:.2f} s, denoise {t['denoise_s']:.2f} s, decode {t['decode_s']:.2f} s, total "
              f"{t['total_s']:.2f} s; peak {row['peak_gib']:.2f} GiB (plan estimate {row['plan_estimate_gib']:.2f}: "
              f"{row['plan']})", flush=True)

    def cosine(a, b):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    if 0 in rows and 1 in rows:
        print(f"cosine(auto, fp32) = {cosine(rows[0][1], rows[1][1]):.6f}")
    if 0 in rows and 2 in rows:
        print(f"cosine(fast paths, stock modules) = {cosine(rows[0][1], rows[2][1]):.6f}")


if __name__ == "__main__":
    main()
