"""LoRA from the command line; `train` runs unchanged on one device or under `accelerate launch`.

    python -m acestep_engine.lora prepare songs/ --cache songs/.lora-cache [--checkpoints DIR] [--dit NAME]
    accelerate launch -m acestep_engine.lora train songs/.lora-cache --out loras/my-style [--rank 64] [--steps 1000]
    python -m acestep_engine.lora train ...              # the same on one device

Each process loads the engine on its own device (`accelerate.PartialState().device`).
"""

from __future__ import annotations

import argparse
import sys

from ..cli import device_argument


def _engine(args):
    from accelerate import PartialState

    from .. import Engine

    device = PartialState().device if args.device == "auto" else args.device
    if args.demo:
        return Engine.demo(device=device, dtype=args.dtype)
    return Engine.from_pretrained(args.checkpoints, dit=args.dit, device=device, dtype=args.dtype)


def _print_progress(p) -> None:
    print(f"[{p.stage}] {p.message}", file=sys.stderr, flush=True)


def _prepare(args) -> int:
    from . import prepare_dataset
    from .dataset import check_max_seconds, find_songs

    find_songs(args.folder)  # a missing or empty folder, or a bad --max-seconds, fails before the models load
    check_max_seconds(args.max_seconds)
    dataset = prepare_dataset(_engine(args), args.folder, args.cache, max_seconds=args.max_seconds,
                              progress=_print_progress)
    print(dataset)
    return 0


def _train(args) -> int:
    from . import LoRAConfig, LoRADataset, TrainingConfig, train

    # Settings and the dataset are checked before the models load (minutes on real weights).
    lora = LoRAConfig(rank=args.rank, alpha=args.alpha, dropout=args.dropout, target_modules=args.targets).validate()
    training = TrainingConfig(lr=args.lr, steps=args.steps, epochs=args.epochs, batch_size=args.batch_size,
                              grad_accum=args.grad_accum, warmup=args.warmup, save_every=args.save_every,
                              objective=args.objective, cfg_dropout=args.cfg_dropout, seed=args.seed,
                              mixed_precision=args.mixed_precision,
                              gradient_checkpointing=args.gradient_checkpointing).validate()
    dataset = LoRADataset.load(args.data)
    result = train(_engine(args), dataset, args.out, lora, training, progress=_print_progress,
                   resume=not args.restart)
    print(result.adapter_path)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m acestep_engine.lora", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def model_args(p):
        p.add_argument("--checkpoints", default=None, help="checkpoints folder (default $ACESTEP_CHECKPOINTS_DIR)")
        p.add_argument("--dit", default="acestep-v15-turbo")
        p.add_argument("--device", type=device_argument, default="auto", help="auto, cpu, mps, cuda or cuda:N")
        p.add_argument("--dtype", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                       help="model dtype; a dataset trains only with the dtype it was prepared with")
        p.add_argument("--demo", action="store_true", help="use the tiny demo checkpoint (random weights)")

    prep = sub.add_parser("prepare", help="encode a folder of songs once (VAE latents and conditions)")
    prep.add_argument("folder")
    prep.add_argument("--cache", default=None, help="default: <folder>/.lora-cache")
    prep.add_argument("--max-seconds", type=float, default=240.0)
    model_args(prep)
    prep.set_defaults(run=_prepare)

    tr = sub.add_parser("train", help="train a LoRA on a prepared cache folder")
    tr.add_argument("data", help="the cache folder written by prepare")
    tr.add_argument("--out", required=True)
    tr.add_argument("--rank", type=int, default=64)
    tr.add_argument("--alpha", type=float, default=128.0)
    tr.add_argument("--dropout", type=float, default=0.0)
    tr.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj")
    tr.add_argument("--lr", type=float, default=3e-4)
    tr.add_argument("--steps", type=int, default=1000)
    tr.add_argument("--epochs", type=int, default=None)
    tr.add_argument("--batch-size", type=int, default=1)
    tr.add_argument("--grad-accum", type=int, default=1)
    tr.add_argument("--warmup", type=int, default=100)
    tr.add_argument("--save-every", type=int, default=100)
    tr.add_argument("--objective", default="auto", choices=["auto", "turbo", "base"])
    tr.add_argument("--cfg-dropout", type=float, default=0.15)
    tr.add_argument("--seed", type=int, default=42)
    tr.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "bf16", "fp16"])
    tr.add_argument("--gradient-checkpointing", action="store_true")
    tr.add_argument("--restart", action="store_true", help="ignore (and delete) earlier checkpoints in --out")
    model_args(tr)
    tr.set_defaults(run=_train)

    args = parser.parse_args(argv)
    from ..errors import AceStepError

    try:
        return args.run(args)
    except AceStepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
