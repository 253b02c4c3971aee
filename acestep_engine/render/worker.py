"""The work behind `acestep render` and `python -m acestep_engine.render` (their arguments are in
`acestep_engine.cli`): a render plan into a take store, in one process or in every process
accelerate starts (one device each, all writing into the same store).

    acestep render plan.jsonl --out takes/ [--checkpoints DIR] [--dit NAME] [--demo] [--strict]
    accelerate launch -m acestep_engine.render plan.jsonl --out takes/        # every GPU, or a cluster
    accelerate.notebook_launcher(render_command, args=(["plan.jsonl", "--out", "takes/"],), num_processes=2)

Exit status: 0 when every take is in the store, 1 when some lines were bad or takes failed (the
rest rendered), 2 when nothing could start (an unreadable plan, `--strict` with bad lines, no
weights), 130 when stopped by Ctrl-C (the takes saved so far stay; a rerun makes the rest).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

STOPPED = 130


def run(args) -> int:
    """Render `args.plan` into `args.out` as `acestep render` was asked to; returns the exit status."""
    from ..takes import TakeStore
    from .plan import load_plan
    from .runner import Processes

    _log_to_stderr()
    processes = Processes.current()
    say = print if processes.main else (lambda *a, **k: None)
    store = TakeStore(args.out, audio_format=args.format)
    variant = "acestep-v15-turbo" if args.demo else args.dit
    plan = load_plan(args.plan, store, variant, args.name)
    if args.check:
        say(plan)
        return 1 if plan.problems else 0
    if args.strict:
        plan.check()
    for problem in plan.problems:
        if processes.main:
            logging.getLogger("acestep_engine.render").warning("%s: %s (left out)", plan.source, problem)
    engine = _engine(args, processes)
    cancel = threading.Event()
    with _stop_on_signals(cancel, say):
        try:
            from .runner import render_many

            summary = render_many(engine, plan, store, progress=processes.main, cancel=cancel, strict=args.strict,
                                  max_batch=args.max_batch)
        except KeyboardInterrupt:
            say("stopped: the takes saved so far are in the store; run the same command again for the rest",
                file=sys.stderr)
            return STOPPED
    if not processes.main:
        return 0  # the main process reports for all: another status would make the launcher stop it
    say(summary)
    say(f"summary: {summary.path}")
    if summary.cancelled:
        return STOPPED
    return 0 if summary.ok else 1


def _engine(args, processes):
    from ..engine import Engine

    device = args.device
    if device == "auto" and processes.count > 1:
        from accelerate import PartialState

        device = PartialState().device
    if args.demo:
        engine = Engine.demo(device=device, dtype=args.dtype)
    else:
        engine = Engine.from_pretrained(args.checkpoints, dit=args.dit, device=device, dtype=args.dtype,
                                        allow_download=args.download)
    print(f"{processes}{engine}", file=sys.stderr)
    return engine


class _TqdmHandler(logging.Handler):
    """Log lines written above a running tqdm bar instead of through it."""

    def emit(self, record):
        from tqdm.auto import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # a log line must never stop a render
            self.handleError(record)


def _log_to_stderr() -> None:
    logger = logging.getLogger("acestep_engine.render")
    if not any(isinstance(h, _TqdmHandler) for h in logger.handlers):
        handler = _TqdmHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO)


class _stop_on_signals:
    """Ctrl-C (SIGINT) or SIGTERM: stop after the current denoising step; a second Ctrl-C stops at once.
    Only the main thread can install handlers; elsewhere (a notebook's worker thread) nothing changes."""

    def __init__(self, cancel: threading.Event, say):
        self.cancel, self.say, self.saved = cancel, say, {}

    def _handle(self, signum, frame):
        if self.cancel.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not self.cancel.is_set():
            self.say("stopping after the current step (Ctrl-C again to stop at once)", file=sys.stderr)
        self.cancel.set()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.saved[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)
        return False
