"""Upstream ACE-Step 1.5's LM quality score of a take (`test_time_scaling.py`).

    score = quality_score(planner, take)          # 0-1: caption 0.5, lyrics 0.3, metadata 0.2
    save_quality_score(store, take.id, score)

The 5 Hz LM reads the take's audio codes in its "understand" prompt. Caption and lyrics are scored
by pointwise mutual information, the mean log-probability of their chain-of-thought text given the
codes minus that given "NO USER INPUT", squashed by `sigmoid(PMI / 0.1)`. Each metadata field (bpm,
duration, keyscale, language, timesignature) is scored by rank-weighted top-10 recall of its tokens
given the codes. The score is the weighted mean of caption 0.5, lyrics 0.3 and the mean metadata
recall 0.2, the weights renormalised over the parts present (an instrumental take has no lyrics
part). The codes come from the take's own latents through the DiT checkpoint's audio tokenizer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from ..errors import GenerationCancelled, TaskError
from ..progress import Progress

SCORE_SCALE = 0.1  # PMI / scale goes through the sigmoid
TOP_K = 10
WEIGHTS = {"caption": 0.5, "lyrics": 0.3, "metadata": 0.2}
METADATA_FIELDS = ("bpm", "duration", "keyscale", "language", "timesignature")
UNCONDITIONAL_CODES = "NO USER INPUT"


@dataclass(frozen=True)
class QualityScore:
    """Upstream's quality score of one take. Parts are 0-1 (None when absent); `log_probs` holds the
    two mean log-probabilities behind each PMI part: {"caption": (given codes, without codes)}."""

    score: float
    caption: float | None
    lyrics: float | None
    metadata: float | None
    fields: dict = field(default_factory=dict)  # metadata field -> top-k recall
    log_probs: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)  # the renormalised weights used
    codes: int = 0  # 5 Hz audio codes read

    def to_dict(self) -> dict:
        out = asdict(self)
        out["log_probs"] = {k: list(v) for k, v in self.log_probs.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "QualityScore":
        data = dict(data)
        data["log_probs"] = {k: tuple(v) for k, v in data.get("log_probs", {}).items()}
        return cls(**data)

    def summary(self) -> str:
        parts = [f"{name} {value:.2f}" for name, value in
                 (("caption", self.caption), ("lyrics", self.lyrics), ("metadata", self.metadata)) if value is not None]
        return f"score {self.score:.3f} ({', '.join(parts)})"


def pmi_to_score(pmi: float, scale: float = SCORE_SCALE) -> float:
    """`sigmoid(pmi / scale)`: 0.5 when the codes do not help, towards 1 when they do."""
    z = -pmi / scale
    return 0.0 if z > 700 else 1.0 / (1.0 + math.exp(z))


def combine(parts: dict, weights: dict | None = None) -> tuple[float, dict]:
    """Weighted mean of the parts present ({"caption", "lyrics", "metadata"} -> 0-1 or None), with the
    weights renormalised over them. Returns (score, weights used)."""
    weights = weights or WEIGHTS
    present = {name: value for name, value in parts.items() if value is not None}
    total = sum(weights[name] for name in present)
    if total == 0:
        raise TaskError("quality_score found nothing to score (no caption, lyrics or metadata)")
    used = {name: weights[name] / total for name in present}
    return sum(present[name] * used[name] for name in present), used


def field_target(name: str, value) -> str:
    """`<think>\\n{name}: {value}\\n</think>\\n`, the value dumped as the LM writes YAML."""
    from .prompts import field_line

    return f"<think>\n{field_line(name, value).strip()}\n</think>\n"


def lyrics_target(lyrics: str) -> str:
    return f"<think>\n</think>\n# Lyric\n{lyrics}\n"


def understand_prompt(planner, codes: str) -> str:
    """The LM's "understand" prompt for `codes`, rendered by its chat template, ready for the answer."""
    from . import prompts

    return prompts.render(planner.tokenizer, prompts.understand_messages(codes), True)


def _cache_kwargs(model, cache) -> dict:
    # transformers renamed the KV-cache argument (past_key_values -> cache); use what this version takes.
    import inspect

    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    return {name: cache}


class _PromptScorer:
    """Teacher-forced log-probabilities of several targets after one prompt: the prompt runs once and
    its KV cache is cropped back for each target (the same numbers as one forward over prompt + target)."""

    def __init__(self, planner, prompt: str):
        from transformers import DynamicCache

        self.planner = planner
        self.prompt = prompt
        self.prompt_ids = planner.table.encode(prompt)
        self.cache = DynamicCache()
        ids = torch.tensor([self.prompt_ids], device=planner.device)
        out = planner.model(input_ids=ids, use_cache=True, logits_to_keep=1,  # [1, 1, vocab], not [1, N, vocab]
                            **_cache_kwargs(planner.model, self.cache))
        self.last_logits = out.logits[0, -1:].float()

    @torch.no_grad()
    def target_logits(self, target: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits `[T, vocab]` predicting each target token, target ids `[T]`)."""
        full = self.planner.table.encode(self.prompt + target)
        n = len(self.prompt_ids)
        target_ids = torch.tensor(full[n:], device=self.planner.device)
        if full[:n] != self.prompt_ids:  # the tokenizer merged across the boundary: score it in one piece
            return _full_logits(self.planner, full, n), target_ids
        if len(target_ids) == 0:
            return self.last_logits[:0], target_ids
        extra = self.cache.get_seq_length() - n
        if extra > 0:  # a negative count removes tokens in every transformers version
            self.cache.crop(-extra)
        positions = torch.arange(n, n + len(target_ids), device=self.planner.device)[None]
        out = self.planner.model(input_ids=target_ids[None], position_ids=positions, use_cache=True,
                                 **_cache_kwargs(self.planner.model, self.cache))
        return torch.cat([self.last_logits, out.logits[0, :-1].float()]), target_ids


def _full_logits(planner, ids: list[int], prompt_len: int) -> torch.Tensor:
    keep = len(ids) - prompt_len + 1  # the logits of the last prompt token and of the target
    out = planner.model(input_ids=torch.tensor([ids], device=planner.device), logits_to_keep=keep)
    return out.logits[0, :-1].float()


def mean_log_prob(logits: torch.Tensor, target_ids: torch.Tensor) -> float:
    """Mean log-probability of `target_ids` under `logits` (no temperature); -inf for an empty target."""
    if len(target_ids) == 0:
        return float("-inf")
    return float(torch.log_softmax(logits, dim=-1).gather(1, target_ids[:, None]).mean())


def top_k_recall(logits: torch.Tensor, target_ids: torch.Tensor, k: int = TOP_K) -> float:
    """Mean over target tokens of `1 - (rank - 1) / k` when the token is among the top k, else 0."""
    if len(target_ids) == 0:
        return 0.0
    top = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).indices
    hits = top == target_ids[:, None]
    ranks = hits.float().argmax(dim=-1)
    weights = torch.where(hits.any(dim=-1), 1.0 - ranks.float() / k, torch.zeros_like(ranks, dtype=torch.float))
    return float(weights.mean())


def take_codes(engine, take) -> str:
    """The take's 5 Hz audio codes `<|audio_code_N|>...`, from its stored latents when they were made by
    `engine`'s weights, else from its audio (VAE encode), through the DiT checkpoint's audio tokenizer."""
    from ..generation.sources import audio_to_codes

    if engine.models.audio_tokenizer is None:
        raise TaskError(f"the checkpoint {engine.variant.name} has no audio tokenizer, so it cannot read a "
                        "take's audio codes")
    return audio_to_codes(engine, take)


def quality_score(planner, take, engine=None, *, codes: str | None = None, progress=None,
                  cancel=None) -> QualityScore:
    """Upstream's quality score of `take` (see the module docstring) with the 5 Hz LM `planner`.

    The codes are read from the take with `engine` (default: the planner's attached engine) unless
    given as `codes`. `progress(Progress)` is called per LM pass; `cancel` (an Event) stops between passes.
    """
    from . import prompts

    if planner is None:
        raise TaskError("quality_score needs the 5 Hz LM planner: load one with Planner.from_pretrained(...) "
                        "(or Planner.demo()) and pass it as planner")
    engine = engine or getattr(planner, "engine", None)
    if codes is None:
        if engine is None:
            raise TaskError("quality_score needs an engine to read the take's audio codes: pass engine=... or "
                            "attach one with planner.attach(engine)")
        codes = take_codes(engine, take)
    from ..generation.sources import parse_audio_codes

    count = len(parse_audio_codes(codes, planner.table.codebook_size))
    bp = take.blueprint.validate()
    values = prompts.cot_values(bp)
    metadata = {name: values[name] for name in METADATA_FIELDS if name in values}
    lyrics = "" if bp.instrumental else bp.lyrics.strip()
    passes = 2 + len(metadata) + bool(bp.caption) + (2 if lyrics else 0)
    report = progress if callable(progress) else (lambda p: None)
    done = 0

    def step(message):
        nonlocal done
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled("scoring cancelled")
        done += 1
        report(Progress("score", done, passes, 0, 1, message))

    with torch.no_grad():
        step("reading the codes")
        given = _PromptScorer(planner, understand_prompt(planner, codes))
        step("reading without codes")
        without = _PromptScorer(planner, understand_prompt(planner, UNCONDITIONAL_CODES))
        fields_ = {}
        for name, value in metadata.items():
            step(f"metadata: {name}")
            fields_[name] = top_k_recall(*given.target_logits(field_target(name, value)))
        log_probs, parts = {}, {"caption": None, "lyrics": None,
                                "metadata": sum(fields_.values()) / len(fields_) if fields_ else None}
        for name, target in (("caption", field_target("caption", bp.caption) if bp.caption else None),
                             ("lyrics", lyrics_target(lyrics) if lyrics else None)):
            if target is None:
                continue
            step(f"{name} given the codes")
            conditional = mean_log_prob(*given.target_logits(target))
            if name == "lyrics":
                step("lyrics without the codes")
            unconditional = mean_log_prob(*without.target_logits(target))
            log_probs[name] = (conditional, unconditional)
            parts[name] = pmi_to_score(conditional - unconditional)
    score, used = combine(parts)
    return QualityScore(score=score, caption=parts["caption"], lyrics=parts["lyrics"], metadata=parts["metadata"],
                        fields=fields_, log_probs=log_probs, weights=used, codes=count)


def save_quality_score(store, take_id: str, score: QualityScore) -> None:
    """Record the score in the take's sidecar notes (`notes["quality_score"]`)."""
    store.update_notes(take_id, quality_score=score.to_dict())
