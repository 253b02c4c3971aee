"""`acestep` command line: headless generation and checkpoint downloads.

    acestep generate blueprint.json --out takes/ [--checkpoints DIR] [--dit NAME] [--batch 2] [--seed 42]
    acestep render plan.jsonl --out takes/ [--strict] [--demo]     (see acestep_engine.render)
    acestep download [--dit acestep-v15-turbo] [--lm acestep-5Hz-lm-1.7B] [--dir checkpoints]
    acestep variants [--dir checkpoints]
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

_DEVICE_RE = re.compile(r"auto|cpu|mps|(cuda|xpu)(:\d+)?")


def whole_number(lo: int, hi: int | None = None):
    """argparse type: a whole number in [lo, hi]; the message names the range and the value."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number (got {text!r:.80})") from None
        if value < lo or (hi is not None and value > hi):
            allowed = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"must be {allowed} (got {value})")
        return value
    return parse


def _positive_real(text: str) -> float:
    """argparse type: a finite number above 0 (the engine then checks its own range)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (got {text!r:.80})") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0 (got {text!r:.80})")
    return value


def device_argument(text: str) -> str:
    """argparse type for --device (shared with `python -m acestep_engine.lora`)."""
    if not _DEVICE_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, mps, cuda, cuda:N, xpu or xpu:N (got {text!r:.80})")
    return text


def _generate(args) -> int:
    from . import Blueprint, Engine, TakeStore

    blueprint = Blueprint.load(args.blueprint)
    if args.duration is not None:
        blueprint = blueprint.replace(duration=args.duration)
    blueprint = blueprint.validate()  # fail before spending time on loading models
    store = TakeStore(args.out, audio_format=args.format)
    if args.demo:
        engine = Engine.demo(device=args.device, dtype=args.dtype)
    else:
        engine = Engine.from_pretrained(args.checkpoints, dit=args.dit, device=args.device, dtype=args.dtype,
                                        allow_download=args.download)
    print(engine, file=sys.stderr)
    seeds = None if args.seed is None else args.seed
    takes = engine.generate(blueprint, batch_size=args.batch, seeds=seeds, progress=True, steps=args.steps,
                            shift=args.shift, guidance=args.guidance)
    for take in takes:
        path = store.save(take)
        print(f"{path}\tseed={take.seed}\t{take.duration:.1f} s")
    return 0


def _download(args) -> int:
    from .models.checkpoints import download

    root = download(args.dir, dit=args.dit, lm=args.lm)
    print(f"checkpoints ready in {root}")
    return 0


def _variants(args) -> int:
    from .models.checkpoints import available_variants
    from .models.variants import VARIANTS

    present = set(available_variants(args.dir))
    for name, v in VARIANTS.items():
        mark = "*" if name in present else " "
        print(f"{mark} {name:32s} {v.size:4s} steps={v.preset.steps:<3d} shift={v.preset.shift:<4} "
              f"guidance={v.preset.guidance:<4} tasks={','.join(v.tasks)}")
    return 0


def _render(args) -> int:
    from .render.worker import run

    return run(args)


def add_render_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of `acestep render` (also `python -m acestep_engine.render` and `render_command`)."""
    from .generation.settings import MAX_BATCH

    parser.add_argument("plan", type=Path, help="a .jsonl or .csv render plan, one job per line")
    parser.add_argument("--out", type=Path, default=Path("takes"), help="the take store (default: takes/)")
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help="default: $ACESTEP_CHECKPOINTS_DIR or ./checkpoints")
    parser.add_argument("--dit", default="acestep-v15-turbo", help="the DiT of lines that name no variant")
    parser.add_argument("--demo", action="store_true", help="use the embedded demo checkpoint (random weights)")
    parser.add_argument("--download", action="store_true", help="download missing checkpoint files")
    parser.add_argument("--device", type=device_argument, default="auto",
                        help="auto (under accelerate: this process's device), cpu, mps, cuda or cuda:N")
    parser.add_argument("--dtype", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                        help="auto: bf16 where the GPU or CPU has it, else fp32")
    parser.add_argument("--strict", action="store_true", help="render nothing if any line is bad")
    parser.add_argument("--check", action="store_true", help="check the plan and say what it asks for; render nothing")
    parser.add_argument("--max-batch", type=whole_number(1, MAX_BATCH), default=MAX_BATCH,
                        help=f"seeds of one job rendered together, 1-{MAX_BATCH} (fewer where memory needs it)")
    parser.add_argument("--name", default=None, help="the render's name (default: the plan's file name); its "
                                                      "summary is <out>/.renders/<name>.json")
    parser.add_argument("--format", choices=("flac", "wav"), default="flac")
    return parser


def render_command(argv=None) -> int:
    """`acestep render` as a function of its command line (a list; default: sys.argv). Pass it to
    `accelerate.notebook_launcher(render_command, args=(["plan.jsonl", "--out", "takes/"],), num_processes=2)`
    to start the same workers as `accelerate launch -m acestep_engine.render plan.jsonl --out takes/`."""
    parser = argparse.ArgumentParser(prog="python -m acestep_engine.render",
                                     description="Render a plan of blueprints into a take store")
    args = add_render_arguments(parser).parse_args(None if argv is None else [str(a) for a in argv])
    return _run_reporting_errors(_render, args)


def _run_reporting_errors(func, args) -> int:
    from .errors import AceStepError

    try:
        return func(args)
    except AceStepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="acestep", description="ACE-Step 1.5 workbench engine")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="render a blueprint JSON file into takes")
    gen.add_argument("blueprint", type=Path)
    gen.add_argument("--out", type=Path, default=Path("takes"))
    gen.add_argument("--checkpoints", type=Path, default=None, help="default: $ACESTEP_CHECKPOINTS_DIR or ./checkpoints")
    gen.add_argument("--dit", default="acestep-v15-turbo")
    gen.add_argument("--demo", action="store_true", help="use the embedded demo checkpoint (random weights)")
    gen.add_argument("--download", action="store_true", help="download missing checkpoint files")
    gen.add_argument("--device", type=device_argument, default="auto", help="auto, cpu, mps, cuda or cuda:N")
    gen.add_argument("--dtype", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                     help="auto: bf16 where the GPU or CPU has it, else fp32")
    gen.add_argument("--batch", type=whole_number(1, 8), default=1, help="takes per run, 1-8")
    gen.add_argument("--seed", type=whole_number(0, 2**63 - 1), default=None)
    gen.add_argument("--steps", type=whole_number(1, 200), default=None, help="denoising steps, 1-200")
    gen.add_argument("--shift", type=_positive_real, default=None)
    gen.add_argument("--guidance", type=_positive_real, default=None)
    gen.add_argument("--duration", type=_positive_real, default=None, help="override the blueprint's duration (s)")
    gen.add_argument("--format", choices=("flac", "wav"), default="flac")
    gen.set_defaults(func=_generate)

    render = sub.add_parser("render", help="render a plan (JSONL or CSV, one job per line) into a take store; "
                                           "resumable, and split between processes under accelerate launch")
    add_render_arguments(render).set_defaults(func=_render)

    dl = sub.add_parser("download", help="download checkpoints from the Hugging Face hub")
    dl.add_argument("--dit", default="acestep-v15-turbo")
    dl.add_argument("--lm", default=None)
    dl.add_argument("--dir", type=Path, default=None)
    dl.set_defaults(func=_download)

    var = sub.add_parser("variants", help="list the known DiT variants and which are on disk")
    var.add_argument("--dir", type=Path, default=None)
    var.set_defaults(func=_variants)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return _run_reporting_errors(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
