"""Workbench benchmark: what a click on Generate costs beyond the model (not a test).

    .venv/bin/python bench/workbench.py [--batch 8] [--seconds 10] [--repeats 3]

Drives the `Workbench` on the demo checkpoint from Python as a person would: sets the batch and
duration, clicks Generate, and waits until the job is over, the status line says how many takes
were made and their result cards are drawn. Click-to-cards time is compared, in the same run and
interleaved, with the model time the takes record (`take.timings["total_s"]`) and with a bare
`engine.generate` of the same batch. Target: click-to-cards <= 1.3x the model time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET = 1.3


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()) or ():
        yield from _walk(child)


def drawn_cards(panel) -> int:
    """Result cards on screen in the Generate tab (each card has a "Use as source" button)."""
    return sum(1 for w in _walk(panel.results) if getattr(w, "description", None) == "Use as source")


def status_text(panel) -> str:
    import re

    return re.sub(r"<[^>]+>", "", panel.status.value)


def click_to_cards(wb, batch: int, timeout: float = 600.0) -> tuple[float, list]:
    """Seconds from the click until the takes' cards are drawn and the status says done."""
    panel = wb.generate_panel
    start = time.perf_counter()
    panel.generate_button.click()
    job = panel.job
    if job is None:
        raise RuntimeError(f"Generate did not start: {status_text(panel)}")
    while True:
        text = status_text(panel)
        if job.done.is_set() and drawn_cards(panel) >= min(batch, 8) and "take" in text and "%" not in text:
            break
        if job.done.is_set() and job.error is not None:
            raise RuntimeError(f"Generate failed: {job.error}")
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"no cards after {timeout} s; status: {text!r}")
        time.sleep(0.002)
    seconds = time.perf_counter() - start
    value = job.result()
    takes = value if isinstance(value, list) else list(getattr(value, "takes", value) or [])
    return seconds, takes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from workbench import Workbench

    torch.manual_seed(0)
    folder = Path(tempfile.mkdtemp(prefix="bench-workbench-"))
    wb = Workbench.demo(takes_dir=folder / "takes", device="cpu", planner=False)
    engine, panel = wb.engine, wb.generate_panel
    blueprint = wb.editor.blueprint.replace(duration=args.seconds)
    wb.editor.set_blueprint(blueprint)
    panel.batch_size.value = args.batch
    seeds = list(range(1, args.batch + 1))

    # Warm-up: first calls pay for lazy imports, allocator growth and matplotlib's font cache.
    engine.generate(blueprint, batch_size=args.batch, seeds=seeds)
    click_to_cards(wb, args.batch)

    clicks, models, bares = [], [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        engine.generate(blueprint, batch_size=args.batch, seeds=seeds)
        bares.append(time.perf_counter() - start)
        seconds, takes = click_to_cards(wb, args.batch)
        clicks.append(seconds)
        models.append(takes[0].timings["total_s"])
        print(f"  click to cards {seconds:6.2f} s | model (take.timings) {models[-1]:6.2f} s | "
              f"bare engine.generate {bares[-1]:6.2f} s | status: {status_text(panel)}", flush=True)

    click, model, bare = statistics.median(clicks), statistics.median(models), statistics.median(bares)
    ratio = click / model
    print(f"batch {args.batch} x {args.seconds:g} s on the demo checkpoint, CPU, {torch.get_num_threads()} threads, "
          f"{args.repeats} interleaved repeats (medians):")
    print(f"  click to cards           {click:6.2f} s")
    print(f"  model time (take.timings){model:6.2f} s   ratio {ratio:.2f}x (target <= {TARGET}x)")
    print(f"  bare engine.generate     {bare:6.2f} s   ratio {click / bare:.2f}x")
    print(f"RATIO {ratio:.2f} {'OK' if ratio <= TARGET else 'ABOVE TARGET'}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
