"""Two processes saving into one take folder while a third keeps reopening and listing it.

    python bench/store_concurrency.py --takes 50        # the benchmark: 2 x 50 takes
    python bench/store_concurrency.py --takes 8 --quiet # what tests/test_take_store_db.py runs

Two kernels on one takes folder (two notebooks) is an ordinary situation: every save must land,
reopening the store must never remove another process's save in progress, and every listing
must show only whole takes. Exit status 1 unless the folder ends with 2 x N readable takes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def saver(folder: Path, count: int, seed: int) -> None:
    import numpy as np

    from acestep_engine import TakeStore
    from bench.store_kill import make_take
    from acestep_engine.takes import new_take_id

    rng = np.random.default_rng(seed)
    store = TakeStore(folder)
    failures = 0
    for _ in range(count):
        try:
            store.save(make_take(new_take_id(), rng))
        except Exception as exc:  # noqa: BLE001 - counted and reported
            failures += 1
            print(f"save failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    print(f"failures {failures}")


def reopener(folder: Path, stop: Path) -> None:
    from acestep_engine import TakeStore

    opened = listed = partial = 0
    while not stop.exists():
        store = TakeStore(folder)  # recovery runs on every open
        opened += 1
        for record in store.list():
            listed += 1
            if not (folder / record["audio_file"]).is_file():
                partial += 1
    print(f"opened {opened} listed {listed} partial {partial}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--takes", type=int, default=50, help="takes saved by each of the two writers")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        if args.role[0] == "saver":
            saver(Path(args.role[1]), int(args.role[2]), int(args.role[3]))
        else:
            reopener(Path(args.role[1]), Path(args.role[2]))
        return 0

    from acestep_engine import TakeStore

    folder = Path(tempfile.mkdtemp(prefix="store-concurrency-"))
    stop = folder.parent / (folder.name + ".stop")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started = time.perf_counter()

    def spawn(*role):
        return subprocess.Popen([sys.executable, __file__, "--role", *map(str, role)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)

    reader = spawn("reopener", folder, stop)
    writers = [spawn("saver", folder, args.takes, seed) for seed in (1, 2)]
    outputs = [w.communicate() for w in writers]
    stop.touch()
    reader_out, reader_err = reader.communicate()
    seconds = time.perf_counter() - started

    store = TakeStore(folder)
    ids = store.ids()
    unreadable = 0
    for take_id in ids:
        try:
            store.load(take_id)
        except Exception:  # noqa: BLE001
            unreadable += 1
    failed_saves = sum(int(out.split()[-1]) if out.strip() else args.takes for out, _ in outputs)
    errors = [err.strip().splitlines()[-1] for _, err in outputs + [(reader_out, reader_err)] if err.strip()]
    expected = 2 * args.takes
    ok = len(ids) == expected and unreadable == 0 and failed_saves == 0 and not store.problems and not errors
    print(f"2 writers x {args.takes} takes into one folder with a reader reopening it ({reader_out.strip()}): "
          f"{len(ids)} of {expected} takes listed, {unreadable} unreadable, {failed_saves} saves failed, "
          f"{len(store.problems)} problems ({seconds:.1f} s, folder {folder})")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
