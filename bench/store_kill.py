"""Kill test of the take store: SIGKILL a process at random moments while it saves, deletes,
undeletes and renames takes, then open the store and check that no take was lost or left unreadable.

    python bench/store_kill.py                        # the benchmark: 100 kills (prints the figures)
    python bench/store_kill.py --trials 6 --quiet     # what tests/test_take_store_db.py runs

Every trial starts a worker on the same folder (state accumulates, as in a notebook killed over and
over); the worker logs `begin`/`end` of each change to an append-only log before and after doing it,
and its renames are slowed by 0-4 ms (a slow disk) so that kills often land between a change's renames.
After the kill the parent opens the store (which finishes interrupted changes) and checks:
- every take whose save ended is fully present (sidecar, audio, latents load) or fully in the trash;
- a take whose save was interrupted is fully present or has no file left at all;
- no stray files: no temporary files of the dead worker, no journal entries, no audio without a sidecar.
Exit status 1 if any trial fails a check.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

INFRA = {".takestore", ".trash"}


def make_take(take_id: str, rng, parent_id=None):
    import numpy as np

    from acestep_engine import Blueprint, Take

    audio = rng.uniform(-0.5, 0.5, size=(2, int(rng.integers(800, 4800)))).astype(np.float32)
    latents = rng.standard_normal((int(rng.integers(1, 8)), 8)).astype(np.float32)
    return Take(id=take_id, audio=audio, sample_rate=8000, seed=int(rng.integers(0, 2**31)),
                blueprint=Blueprint(caption=f"kill test {take_id}"), task={"name": "text2music"},
                model={"variant": "tiny"}, sampling={"steps": 8}, timings={"total_s": 0.1},
                latents=latents if rng.random() < 0.7 else None, parent_id=parent_id)


def _trashed(store) -> list[str]:
    """`store.trashed()`, or the same read from the folder for stores older than it (for comparisons)."""
    if hasattr(store, "trashed"):
        return store.trashed()
    return sorted(p.name[:-5] for p in store.trash.glob("*.json")) if store.trash.is_dir() else []


def worker(folder: Path, log: Path, seed: int, slow_renames: bool = True) -> None:
    import numpy as np

    from acestep_engine import TakeStore
    from acestep_engine.takes import new_take_id

    rng = np.random.default_rng(seed)
    if slow_renames:  # a slow disk: widen the windows between a change's renames, where kills hurt most
        real_replace = os.replace

        def replace(src, dst):
            time.sleep(float(rng.uniform(0, 0.004)))
            return real_replace(src, dst)

        os.replace = replace
    store = TakeStore(folder, audio_format="flac" if seed % 2 else "wav")
    out = open(log, "a", buffering=1)
    print("ready", flush=True)
    while True:
        present, trashed = store.ids(), _trashed(store)
        roll = rng.random()
        if roll < 0.35 or not present and not trashed:
            op, take_id = "save", new_take_id()
        elif roll < 0.6 and present:
            op, take_id = "delete", str(rng.choice(present))
        elif roll < 0.8 and trashed:
            op, take_id = "undelete", str(rng.choice(trashed))
        elif present:
            op, take_id = "rename", str(rng.choice(present))
        else:
            continue
        out.write(f"begin {op} {take_id}\n")
        if op == "save":
            store.save(make_take(take_id, rng, parent_id=present[-1] if present else None))
        elif op == "delete":
            store.delete(take_id)
        elif op == "undelete":
            store.undelete(take_id)
        else:
            store.rename(take_id, f"name {rng.integers(1000)}")
        out.write(f"end {op} {take_id}\n")


def check(folder: Path, log: Path) -> dict:
    """Open the store and compare it with the log; returns counts and the list of failures."""
    from acestep_engine import TakeStore
    from acestep_engine.takes import read_audio
    LATENTS_SUFFIX = ".latents.safetensors"

    saved, begun = set(), set()
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "save":
            (saved if parts[0] == "end" else begun).add(parts[2])
    store = TakeStore(folder)
    present, trashed = set(store.ids()), set(_trashed(store))
    failures = []
    lost = sorted(saved - present - trashed)
    failures += [f"lost take {t}" for t in lost]
    failures += [f"take {t} is both present and in the trash" for t in sorted(present & trashed)]
    unreadable = 0
    for take_id in sorted(present):
        try:
            store.load(take_id)
        except Exception as exc:  # noqa: BLE001 - any failure is what we count
            unreadable += 1
            failures.append(f"unreadable take {take_id}: {exc}")
    for take_id in sorted(trashed):
        try:
            record = json.loads((store.trash / f"{take_id}.json").read_text())
            read_audio(store.trash / record["audio_file"])
        except Exception as exc:  # noqa: BLE001
            unreadable += 1
            failures.append(f"incomplete take {take_id} in the trash: {exc}")
    known = present | trashed
    for where in (folder, store.trash):
        if not where.is_dir():
            continue
        for path in where.iterdir():
            if path.name in INFRA or path.name.startswith(".tmp-") and where == folder and not \
                    hasattr(store, "trashed"):  # older stores promise only to ignore these
                continue
            stem = path.name[:-len(LATENTS_SUFFIX)] if path.name.endswith(LATENTS_SUFFIX) else path.stem
            mine = present if where == folder else trashed
            if stem not in mine:
                failures.append(f"stray file {path.relative_to(folder)}"
                                + (" (of an interrupted save)" if stem in begun - saved else "")
                                + ("" if stem in known or stem in begun else " (unknown)"))
    journal = folder / ".takestore" / "journal"
    if journal.is_dir() and any(journal.iterdir()):
        failures.append(f"journal not empty: {[p.name for p in journal.iterdir()]}")
    failures += [f"problem: {p}" for p in getattr(store, "problems", [])]
    return dict(saved=len(saved), present=len(present), trashed=len(trashed), lost=len(lost),
                unreadable=unreadable, failures=failures, recovered=len(getattr(store, "recovered", [])))


def _forked_trial(folder: Path, log: Path, seed: int, max_delay: float) -> dict:
    """The worker as a fork of this process: no interpreter start-up, so most of a trial is changes."""
    import acestep_engine.takes.store  # noqa: F401 - imported before forking

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        os.close(read)
        code = 0
        try:
            sys.stdout = os.fdopen(write, "w")
            worker(folder, log, seed)
        except BaseException as exc:  # noqa: BLE001
            with open(log.with_suffix(".errors"), "a") as f:
                f.write(f"{type(exc).__name__}: {exc}\n")
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        line = pipe.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"worker did not start: {line!r}")
        time.sleep(random.Random(seed).uniform(0.0, max_delay))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
        errors = log.with_suffix(".errors")
        return dict(failures=[f"worker ended by itself: {errors.read_text() if errors.exists() else status}"])
    return check(folder, log)


def trial(folder: Path, log: Path, seed: int, max_delay: float) -> dict:
    if hasattr(os, "fork"):
        return _forked_trial(folder, log, seed, max_delay)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, __file__, "--worker", str(folder), str(log), str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"worker did not start: {line!r} {proc.stderr.read()}")
    time.sleep(random.Random(seed).uniform(0.0, max_delay))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    error = proc.stderr.read()
    proc.stderr.close()
    if error.strip():  # the worker must die by the kill only, never by an error of its own
        return dict(failures=[f"worker error: {error.strip().splitlines()[-1]}"], worker_error=True)
    return check(folder, log)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--max-delay", type=float, default=0.4, help="kill within this many seconds of start")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--folder", type=Path, default=None, help="default: a fresh temporary folder")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(Path(args.worker[0]), Path(args.worker[1]), int(args.worker[2]))
        return 0
    folder = args.folder or Path(tempfile.mkdtemp(prefix="store-kill-"))
    log = folder.parent / (folder.name + ".log")
    log.touch()
    failed = recovered = 0
    started = time.perf_counter()
    ops = 0
    for i in range(args.trials):
        result = trial(folder, log, args.seed * 1000 + i, args.max_delay)
        recovered += result.get("recovered", 0)
        if result["failures"]:
            failed += 1
            print(f"trial {i}: " + "; ".join(result["failures"][:5]), file=sys.stderr)
        elif not args.quiet:
            print(f"trial {i}: ok ({result['present']} takes, {result['trashed']} in the trash)")
    lines = log.read_text().splitlines()
    ops = sum(line.startswith("begin") for line in lines)
    final = check(folder, log)
    by_op = {}
    for line in lines:
        if line.startswith("begin"):
            by_op[line.split()[1]] = by_op.get(line.split()[1], 0) + 1
    interrupted = ops - sum(line.startswith("end") for line in lines)
    print(f"{args.trials} kills, {ops} changes started ({', '.join(f'{k} {v}' for k, v in sorted(by_op.items()))}), "
          f"{interrupted} interrupted by the kill, {recovered} finished from the journal on reopening; {final['saved']} takes saved, {final['present']} present, "
          f"{final['trashed']} in the trash; lost {final['lost']}, unreadable {final['unreadable']}; "
          f"{failed} trials failed a check ({time.perf_counter() - started:.0f} s, folder {folder})")
    return 1 if failed or final["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
