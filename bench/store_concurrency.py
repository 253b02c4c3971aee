"""Two processes saving into one take folder while a third keeps reopening and listing it.

    python bench/store_concurrency.py --takes 50 --spawn  # the benchmark: 2 x 50 takes, three interpreters
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


class _Fork:
    """A role run in a fork of this process (no interpreter start-up), with Popen's communicate()."""

    def __init__(self, role):
        import io
        import traceback

        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(out_r)
            os.close(err_r)
            code = 0
            sys.stdout, sys.stderr = io.TextIOWrapper(os.fdopen(out_w, "wb")), io.TextIOWrapper(os.fdopen(err_w, "wb"))
            try:
                main(["--role", *map(str, role)])
            except BaseException:  # noqa: BLE001 - reported through stderr
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(out_w)
        os.close(err_w)
        self._out, self._err = os.fdopen(out_r), os.fdopen(err_r)

    def communicate(self):
        out, err = self._out.read(), self._err.read()  # outputs are a few lines: no pipe can fill up
        self._out.close()
        self._err.close()
        os.waitpid(self.pid, 0)
        return out, err


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--takes", type=int, default=50, help="takes saved by each of the two writers")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--spawn", action="store_true",
                        help="fresh interpreters instead of forks of this one (slower to start, same result)")
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

    if args.spawn or not hasattr(os, "fork"):
        def start(*role):
            return subprocess.Popen([sys.executable, __file__, "--role", *map(str, role)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env)
    else:
        import bench.store_kill  # noqa: F401 - imported once here, before forking

        def start(*role):
            return _Fork(role)

    reader = start("reopener", folder, stop)
    writers = [start("saver", folder, args.takes, seed) for seed in (1, 2)]
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
    problems = getattr(store, "problems", [])  # stores older than `problems` (for comparisons)
    ok = len(ids) == expected and unreadable == 0 and failed_saves == 0 and not problems and not errors
    print(f"2 writers x {args.takes} takes into one folder with a reader reopening it ({reader_out.strip()}): "
          f"{len(ids)} of {expected} takes listed, {unreadable} unreadable, {failed_saves} saves failed, "
          f"{len(problems)} problems ({seconds:.1f} s, folder {folder})")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
