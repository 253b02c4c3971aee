"""How long `TakeStore.list()` takes on a folder of many takes, optionally against another commit.

    python bench/store_list.py --takes 1000                  # this checkout
    python bench/store_list.py --takes 1000 --compare main   # and `main`, same folder, same machine

Two numbers per version, each the median of `--repeats` runs in a fresh interpreter:
- open + first list: a new `TakeStore` (as a new kernel, or the workbench reopening the folder) and its first
  `list()`, served from `.takestore/index.json`;
- next list: `list()` again on the same store object (what every refresh of the Takes tab costs).

With `--compare REF` the engine of git commit REF is extracted into a temporary folder and both versions
time their own copy of the same takes (each keeps its own index), alternating, so both see the same machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TIMER = r"""
import json, sys, time
from acestep_engine import TakeStore
folder, rounds = sys.argv[1], int(sys.argv[2])
started = time.perf_counter()
store = TakeStore(folder)
count = len(store.list())
first = time.perf_counter() - started
again = []
for _ in range(rounds):
    started = time.perf_counter()
    store.list()
    again.append(time.perf_counter() - started)
print(json.dumps({"count": count, "first": first, "again": sorted(again)[len(again) // 2]}))
"""


def fill(folder: Path, count: int) -> None:
    """`count` takes of 0.1 s saved through the store, so the sidecars are what a real save writes."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from acestep_engine import Blueprint, Take, TakeStore
    from acestep_engine.takes import new_take_id

    store = TakeStore(folder)
    rng = np.random.default_rng(0)
    for i in range(count):
        store.save(Take(id=new_take_id(), audio=rng.uniform(-0.3, 0.3, (2, 800)).astype(np.float32), sample_rate=8000,
                        seed=i, blueprint=Blueprint(caption=f"take {i} of a long bench folder", bpm=90 + i % 60),
                        task={"name": ("text2music", "cover", "repaint")[i % 3]}, model={"variant": "tiny"},
                        sampling={"steps": 8}, timings={"total_s": 0.1}, name=f"bench {i}" if i % 4 == 0 else ""))


def time_once(engine_root: Path, folder: Path, rounds: int) -> dict:
    out = subprocess.run([sys.executable, "-c", TIMER, str(folder), str(rounds)], capture_output=True, text=True,
                         cwd=engine_root, env={"PYTHONPATH": str(engine_root), "PATH": "/usr/bin:/bin"}, timeout=600)
    if out.returncode:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.stdout)
    return json.loads(out.stdout.strip().splitlines()[-1])


def extract(ref: str, into: Path) -> Path:
    """The engine package of commit `ref`, as it was there."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "acestep_engine"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--takes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7, help="fresh interpreters per version")
    parser.add_argument("--rounds", type=int, default=20, help="list() calls after the first, per interpreter")
    parser.add_argument("--compare", metavar="REF", help="a git commit to time against (e.g. main)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="store-list-"))
    try:
        fill(work / "takes", args.takes)
        versions = {"this checkout": (ROOT, work / "takes")}
        if args.compare:
            other = extract(args.compare, Path(tempfile.mkdtemp(dir=work)))
            shutil.copytree(work / "takes", work / "takes-other", symlinks=True)
            versions[args.compare] = (other, work / "takes-other")
        for engine_root, folder in versions.values():
            time_once(engine_root, folder, 1)  # each version builds its own index once, untimed
        runs = {name: [] for name in versions}
        for _ in range(args.repeats):
            for name, (engine_root, folder) in versions.items():
                runs[name].append(time_once(engine_root, folder, args.rounds))
        summary = {}
        for name, results in runs.items():
            counts = {r["count"] for r in results}
            summary[name] = (statistics.median(r["first"] for r in results),
                             statistics.median(r["again"] for r in results))
            print(f"{name}: {counts.pop() if len(counts) == 1 else counts} takes listed; open + first list "
                  f"{summary[name][0] * 1e3:.1f} ms, next list {summary[name][1] * 1e3:.1f} ms "
                  f"(medians of {args.repeats})")
        if args.compare:
            mine, theirs = summary["this checkout"], summary[args.compare]
            print(f"ratio this checkout / {args.compare}: open + first list {mine[0] / theirs[0]:.2f}x, "
                  f"next list {mine[1] / theirs[1]:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
