"""How the 5 Hz LM picks a token: the sampling options (upstream's defaults) and the draw.

    options = SamplingOptions.of({"temperature": 0.9})     # checked; errors name the option and its range
    token = draw_row(scores, generator, options)          # one row, among the tokens it may write

Order: guidance, constraint, repetition penalty, temperature, top-k, top-p, draw (upstream's default
nano-vllm backend; its PyTorch backend applies temperature last).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from ..blueprint import MAX_CAPTION_CHARS
from ..errors import TaskError

MAX_NEGATIVE_PROMPT_CHARS = MAX_CAPTION_CHARS  # it stands in for the caption of the unconditional prompt


def check_number(name: str, value, lo: float, hi: float, *, lo_open: bool = False, whole: bool = False,
            optional: bool = False):
    """`value` checked as a finite real number (a whole one with `whole`) in [lo, hi] ((lo, hi] with
    `lo_open`), or None with `optional`; the TaskError names the argument, the value and the range."""
    if value is None and optional:
        return None
    def shown(x):
        return str(int(x)) if float(x).is_integer() else f"{x:g}"

    allowed = f"{'a whole number' if whole else 'a number'} {'above' if lo_open else 'from'} {shown(lo)} " \
              f"{'up to' if lo_open else 'to'} {shown(hi)}" + (", or None" if optional else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or (whole and not isinstance(value, numbers.Integral)):
        raise TaskError(f"{name} must be {allowed} (got {value!r} of type {type(value).__name__})")
    if not math.isfinite(value) or not ((lo < value) if lo_open else (lo <= value)) or not value <= hi:
        raise TaskError(f"{name} must be {allowed} (got {value!r})")
    return int(value) if whole else float(value)


@dataclass(frozen=True)
class SamplingOptions:
    """LM sampling knobs (upstream defaults). `guidance` applies to the audio-code phase only.

    `top_p` defaults to 0.9 in `complete` and `codes` and to None (off) in inspire, format and
    understand, as upstream. Order: guidance, constraint, repetition penalty, temperature, top-k,
    top-p, draw (upstream's default nano-vllm backend; its PyTorch backend applies temperature last).
    """

    temperature: float = 0.85
    top_p: float | None = 0.9
    top_k: int | None = None
    guidance: float = 2.0
    negative_prompt: str | None = None
    repetition_penalty: float = 1.0

    @classmethod
    def of(cls, sampling: dict, top_p: float | None = 0.9) -> "SamplingOptions":
        """Checked options from a call's `**sampling` keywords (`top_p`: this mode's default)."""
        names = [f.name for f in cls.__dataclass_fields__.values()]
        unknown = sorted(set(sampling) - set(names))
        if unknown:
            raise TaskError(f"unknown sampling option {', '.join(map(repr, unknown))}: "
                            f"the options are {', '.join(names)}")
        return cls(**{"top_p": top_p, **sampling}).check()

    def check(self) -> "SamplingOptions":
        check_number("temperature", self.temperature, 0.0, 5.0, lo_open=True)
        check_number("top_p", self.top_p, 0.0, 1.0, lo_open=True, optional=True)
        check_number("top_k", self.top_k, 0, 10 ** 6, whole=True, optional=True)
        check_number("guidance", self.guidance, 1.0, 15.0)
        check_number("repetition_penalty", self.repetition_penalty, 1.0, 5.0)
        if self.negative_prompt is not None:
            if not isinstance(self.negative_prompt, str):
                raise TaskError(f"negative_prompt must be text or None (got {type(self.negative_prompt).__name__})")
            if len(self.negative_prompt) >= MAX_NEGATIVE_PROMPT_CHARS:
                raise TaskError(f"negative_prompt must be shorter than {MAX_NEGATIVE_PROMPT_CHARS} characters "
                                f"(got {len(self.negative_prompt)})")
        return self


def sample_rows(scores, history, generators, options: SamplingOptions) -> torch.Tensor:
    """CFG'd, constrained logits -> repetition penalty -> temperature -> top-k -> top-p -> draw.

    Each row samples among the tokens it may write, not the whole vocabulary."""
    if options.repetition_penalty != 1.0:
        scores = scores.clone()
        seen = torch.gather(scores, 1, history)
        seen = torch.where(seen < 0, seen * options.repetition_penalty, seen / options.repetition_penalty)
        scores.scatter_(1, history, seen)
    return torch.stack([draw_row(row, generator, options) for row, generator in zip(scores, generators)])


def draw_row(scores, generator, options: SamplingOptions, dense: bool = False) -> torch.Tensor:
    """One row, over the tokens it may write only (so each row's draw is independent of the batch).
    `dense`: every entry of `scores` is a candidate (returns an index into `scores`).

    Top-k and top-p keep the likeliest tokens and the draw is made over the row with the others
    masked, so a seed gives the token it always gave; the nucleus is found from a partial sort or a
    mass histogram (`nucleus`), not by sorting the ~150,000 text tokens of a real vocabulary."""
    if dense:
        candidates = None
    else:
        candidates = torch.isfinite(scores).nonzero().squeeze(1)
        if candidates.numel() == 1:  # forced: no draw, so the random stream follows real choices only
            return candidates[0]
        scores = scores[candidates]
    scores = scores / options.temperature  # before top-p, as upstream's nano-vllm sampler
    top_p = options.top_p if options.top_p is not None and options.top_p < 1.0 else None
    if options.top_k or top_p is not None:
        values, kept = nucleus(scores, options.top_k, top_p)
        scores = torch.full_like(scores, float("-inf")).index_put_((kept,), values)
    pick = torch.multinomial(scores.softmax(-1), 1, generator=generator)[0]
    return pick if candidates is None else candidates[pick]


# From about this many tokens a partial sort (topk) costs more than the mass histogram of a whole
# 150,000-token row (2-core EPYC: topk of 2,048 1.2 ms, of 44,740 6 ms; the histogram 1.25 ms).
FLAT_FROM = 2048


def nucleus(scores: torch.Tensor, top_k: int | None, top_p: float | None,
            first: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, indices) of the tokens top-k then top-p keep: the smallest set of the best tokens
    whose probability reaches `top_p` (the likeliest always stays), within the `top_k` best.

    Looks at the `first` best tokens and widens that until the kept set ends inside them (a peaked
    row: a partial sort of a few dozen tokens); a row where more than FLAT_FROM tokens (or a quarter
    of them) may stay is cut by a mass histogram instead of a sort (`_flat_cut`). Exact either way;
    the order is the scores' own for a peaked row, the vocabulary's for a flat one."""
    limit = scores.numel() if not top_k else min(top_k, scores.numel())
    if top_p is None:
        return torch.topk(scores, limit)
    total = torch.logsumexp(torch.topk(scores, limit).values if top_k else scores, -1).double()
    count = min(first, limit)
    while True:
        values, order = torch.topk(scores, count)
        probs = (values.double() - total).exp()  # float64: the mass at the cut is a long sum
        keep = (probs.cumsum(-1) - probs) < top_p  # the mass before each token is under top_p
        kept = int(keep.sum())
        if kept < count or count == limit:
            return values[:kept], order[:kept]
        # Each token left weighs at most the last one: at least this many more are needed.
        short = (top_p - float(probs.sum())) / max(float(probs[-1]), 1e-30)
        if count + short > min(limit / 4, FLAT_FROM):
            if top_k:
                values, order = torch.topk(scores, limit)
                cut = _flat_cut(values, total, top_p)
                return values[cut], order[cut]
            cut = _flat_cut(scores, total, top_p)
            return scores[cut], cut
        count = min(limit, max(2 * count, int(count + 2 * short)))


def _flat_cut(scores: torch.Tensor, total: torch.Tensor, top_p: float, bins: int = 4096) -> torch.Tensor:
    """Indices of the tokens whose mass before them (in score order) is under `top_p`,
    without a sort: the probability mass per score bin says which bin the cut falls in; only that
    bin is sorted."""
    probs = (scores.double() - total).exp()
    lo, hi = float(scores.min()), float(scores.max())
    if not hi > lo:
        return torch.arange(scores.numel(), device=scores.device)[: max(1, math.ceil(top_p * scores.numel()))]
    bucket = ((scores.double() - lo) * (bins / (hi - lo))).long().clamp_(0, bins - 1)  # higher bin: better
    mass = torch.zeros(bins, dtype=torch.float64, device=scores.device).scatter_add_(0, bucket, probs)
    above = mass.flip(0).cumsum(0).flip(0) - mass  # mass of the bins above each bin
    cut = int((above < top_p).nonzero().min())  # the lowest bin whose tokens may still start under top_p
    inside = (bucket == cut).nonzero().squeeze(1)
    order = torch.argsort(scores[inside], descending=True)
    before = above[cut] + probs[inside][order].cumsum(0) - probs[inside][order]
    keep = bucket > cut
    keep[inside[order][before < top_p]] = True
    return keep.nonzero().squeeze(1)
