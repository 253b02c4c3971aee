"""What replaying one take of a batch costs, and how far the same seed generated alone lands from it.

    flock /tmp/acestep-heavy.lock .venv/bin/python bench/replay.py [--batch 4] [--seconds 10] [--dtype bf16]
        [--real-size] [--threads 2]

Generates a batch, then `Engine.replay` of its last take (the whole batch denoised again, only that
take decoded) and the same seed alone; reports the times, whether the replay is bit for bit equal,
and the latent cosine and peak audio difference (dB) of the lone seed against the batch take. The
same two ways of reproducing a take are the choices issue 23 names: run the batch composition
(exact; costs the batch's denoising) or make items independent (a batch of one per forward: costs
the batching). `--real-size` uses bench/end_to_end.py's real-size random-weight set (about 6 GB in
/tmp/acestep-bench-real); the default is the demo-size set.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--real-size", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from acestep_engine import Blueprint, Engine
    from acestep_engine.models import write_tiny_checkpoints

    if args.real_size:
        from end_to_end import write_real_size

        root = write_real_size(Path("/tmp/acestep-bench-real"))
    else:
        root = write_tiny_checkpoints(Path(tempfile.mkdtemp()) / "demo", preset="demo", seed=1234)
    engine = Engine.from_pretrained(root, device="cpu", dtype=args.dtype)
    blueprint = Blueprint(caption="lo-fi piano", lyrics="[verse]\nla la la", bpm=90, duration=args.seconds)
    seeds = list(range(1, args.batch + 1))
    engine.generate(blueprint, seeds=[99])  # warm up

    start = time.perf_counter()
    batch = engine.generate(blueprint, batch_size=args.batch, seeds=seeds)
    t_batch = time.perf_counter() - start
    take = batch[-1]
    start = time.perf_counter()
    again = engine.replay(take)
    t_replay = time.perf_counter() - start
    start = time.perf_counter()
    alone, = engine.generate(blueprint, seeds=[take.seed])
    t_alone = time.perf_counter() - start

    exact = np.array_equal(again.audio, take.audio) and np.array_equal(again.latents, take.latents)
    a, b = torch.from_numpy(alone.latents).flatten(), torch.from_numpy(take.latents).flatten()
    cosine = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    peak = float(np.max(np.abs(alone.audio - take.audio)))
    print(f"{engine!r}, {torch.get_num_threads()} threads, {args.seconds:g} s takes")
    print(f"batch of {args.batch}: {t_batch:.2f} s; replay of one take: {t_replay:.2f} s "
          f"({t_replay / t_alone:.2f}x generating one take alone, {t_replay / t_batch:.2f}x the batch); "
          f"alone: {t_alone:.2f} s")
    print(f"replay equals the batch take bit for bit: {exact}")
    print(f"the same seed alone: latent cosine {cosine:.7f}, peak audio difference "
          f"{20 * np.log10(max(peak, 1e-12)):.1f} dB" + (" (identical)" if peak == 0 else ""))


if __name__ == "__main__":
    main()
