"""Render-many benchmark: takes per minute for 20 short jobs (not a test).

    .venv/bin/python bench/render_many.py [--jobs 20] [--captions 5] [--seconds 10] [--checkpoints DIR]

The same 20 jobs (5 blueprints x 4 seeds, one job per plan line) rendered four ways, each from a
fresh interpreter into a fresh take store, wall clock from start to exit (loading included):

  generate x 20   20 separate `acestep generate` calls, one take each (the way before `acestep render`)
  render, 1 proc  `acestep render plan.jsonl` in one process (the 4 seeds of a blueprint in one forward)
  ... max-batch 1 the same with `--max-batch 1` (what loading once gains without batching)
  render, 2 procs `accelerate launch --multi_gpu --num_processes 2 -m acestep_engine.render` (two CPU
                  processes joined over gloo without a GPU; one process per GPU on a machine with two)

Prints takes per minute and the ratio of each to the 20 `acestep generate` calls. On the demo
checkpoint (random weights, the default) loading and process start-up weigh more than on real
weights, where the model time per take dominates; pass --checkpoints for real weights.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = ["rainy-night lo-fi hip hop, dusty piano", "bright city pop, slap bass", "slow piano ballad, strings",
            "driving synthwave, gated drums", "acoustic folk, finger-picked guitar", "dub techno, deep chords"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    return seconds


def _count(folder: Path) -> int:
    sys.path.insert(0, str(ROOT))
    from acestep_engine import TakeStore

    return len(TakeStore(folder))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--captions", type=int, default=5, help="distinct blueprints among the jobs")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each take")
    parser.add_argument("--checkpoints", type=Path, default=None, help="real weights (default: the demo checkpoint)")
    parser.add_argument("--skip-generate", action="store_true", help="leave out the slow 20 x acestep generate")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="acestep-bench-render-"))
    weights = ["--checkpoints", str(args.checkpoints)] if args.checkpoints else ["--demo"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    env.pop("OMP_NUM_THREADS", None)  # each launcher picks the threads per process itself
    jobs = [{"caption": CAPTIONS[i % args.captions], "duration": args.seconds, "seed": i} for i in range(args.jobs)]
    plan = work / "plan.jsonl"
    plan.write_text("".join(json.dumps(job) + "\n" for job in jobs))
    acestep = [sys.executable, "-m", "acestep_engine.cli"]

    if not args.checkpoints:  # the demo checkpoint is written on first use: not part of any timing
        _run([sys.executable, "-c", "import sys; sys.path.insert(0, '.'); from acestep_engine import Engine; "
                                    "Engine.demo(device='cpu')"], env)

    results = {}
    if not args.skip_generate:
        out = work / "generate"
        started = time.perf_counter()
        for i, job in enumerate(jobs):
            blueprint = work / f"blueprint-{i}.json"
            blueprint.write_text(json.dumps({"caption": job["caption"], "duration": job["duration"]}))
            _run(acestep + ["generate", str(blueprint), "--out", str(out), "--seed", str(job["seed"])] + weights, env)
        results["generate x %d" % args.jobs] = (time.perf_counter() - started, _count(out))
    for label, extra, launcher in (
            ("render, 1 proc", [], acestep),
            ("render, 1 proc, max-batch 1", ["--max-batch", "1"], acestep),
            ("render, 2 procs", [], [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                                     "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                                     "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
                                     "-m", "acestep_engine.render"])):
        out = work / label.replace(" ", "-").replace(",", "")
        command = launcher + (["render"] if launcher is acestep else []) + [str(plan), "--out", str(out)]
        results[label] = (_run(command + extra + weights, env), _count(out))

    print(f"{args.jobs} jobs ({args.captions} blueprints x {args.jobs // args.captions} seeds), "
          f"{args.seconds:g} s takes, {'real weights' if args.checkpoints else 'demo checkpoint'}, "
          f"{os.cpu_count()} CPUs")
    base = next(iter(results.values()))
    for label, (seconds, takes) in results.items():
        rate = 60.0 * takes / seconds
        ratio = rate / (60.0 * base[1] / base[0])
        print(f"  {label:30s} {takes:3d} takes in {seconds:7.1f} s  {rate:6.1f} takes/min  {ratio:5.2f}x")
    return 0 if all(takes == args.jobs for _, takes in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
