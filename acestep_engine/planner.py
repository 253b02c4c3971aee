"""The 5 Hz LM planner: from an idea or a half-filled blueprint to a full blueprint and audio codes.

    planner = Planner.from_pretrained("acestep-5Hz-lm-1.7B")          # or Planner.demo()
    blueprint = planner.inspire("a rainy-night lo-fi song about missing the last train")
    blueprint = planner.complete(Blueprint(caption="city pop", bpm=112))  # fills only the open fields
    codes = planner.codes(blueprint)                                      # duration x 5 audio codes
    takes = engine.generate(blueprint, Text2Music(audio_codes=codes))

The LM is transformers' `Qwen3ForCausalLM` loaded from the official `acestep-5Hz-lm-*` folder (no
code from the checkpoint runs). Prompts are rendered by the checkpoint's chat template
(`lm_prompts`); every token is checked by `constraints.PlannerConstraint`, so the output always
parses into a valid blueprint. Decoding is a KV-cached loop: guidance runs the conditional and
unconditional prompts as one batch, forced tokens (injected user fields, fixed text) are fed in
one forward, each row samples from its own seeded generator, and `cancel` is checked per token.

Deliberate differences from upstream: `complete` never rewrites a caption the user wrote (upstream's
`use_cot_caption` does); `understand` writes the audio's true duration instead of asking the LM;
instrumental plans get no lyric phase (lyrics stay empty, `instrumental=True`).
"""

from __future__ import annotations

import inspect
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import lm_prompts as prompts
from .blueprint import DURATION_RANGE, Blueprint
from .checkpoints import default_checkpoints_dir, ensure_checkpoints
from .constraints import DEFAULT_CODEBOOK_SIZE, PlannerConstraint, Shape, TokenTable, codes_shape, cot_shape
from .errors import CheckpointError, GenerationCancelled, TaskError
from .progress import Progress
from .variants import LM_VARIANTS

ENV_DEMO_LM = "acestep-5Hz-lm-0.6B"
PLANNABLE = ("caption", "bpm", "keyscale", "timesignature", "language", "duration")
CODES_PER_SECOND = 5


@dataclass(frozen=True)
class SamplingOptions:
    """LM sampling knobs (upstream defaults). `guidance` applies to the audio-code phase only."""

    temperature: float = 0.85
    top_p: float | None = 0.9
    top_k: int | None = None
    guidance: float = 2.0
    negative_prompt: str | None = None
    repetition_penalty: float = 1.0

    def check(self) -> "SamplingOptions":
        if not 0.0 < self.temperature <= 5.0:
            raise TaskError(f"temperature must be between 0 (exclusive) and 5 (got {self.temperature})")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise TaskError(f"top_p must be between 0 (exclusive) and 1, or None (got {self.top_p})")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 0):
            raise TaskError(f"top_k must be a whole number >= 0, or None (got {self.top_k!r})")
        if not 1.0 <= self.guidance <= 15.0:
            raise TaskError(f"guidance must be between 1 (off) and 15 (got {self.guidance})")
        if not 1.0 <= self.repetition_penalty <= 5.0:
            raise TaskError(f"repetition_penalty must be between 1 (off) and 5 (got {self.repetition_penalty})")
        return self


def default_lm_dtype(device: torch.device) -> torch.dtype:
    """What dtype "auto" means for the LM on `device`: bf16 on CUDA (fp16 where bf16 is missing) and on
    CPUs with native bf16, fp32 on other CPUs and MPS (`hardware.auto_dtype`)."""
    from .hardware import auto_dtype

    return auto_dtype(device)


class Planner:
    """An ACE-Step 1.5 5 Hz LM with its tokenizer, planning blueprints and audio codes."""

    def __init__(self, model, tokenizer, device: torch.device, name: str = "planner", path: str | None = None,
                 codebook_size: int = DEFAULT_CODEBOOK_SIZE, engine=None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = device
        self.name = name
        self.path = path
        self.engine = engine
        self.table = TokenTable(tokenizer, model.config.vocab_size, codebook_size)
        self.is_demo = bool(getattr(model.config, "acestep_workbench_random_weights", False)) \
            or (path is not None and (Path(path).parent / "acestep_workbench_checkpoints.json").is_file())
        self._lock = threading.Lock()
        # transformers renamed the KV-cache argument (past_key_values -> cache); use what this version takes.
        parameters = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path_or_name: str | Path = "acestep-5Hz-lm-1.7B", checkpoints_dir=None,
                        device="auto", dtype=None, allow_download: bool = False, engine=None) -> "Planner":
        """Load a 5 Hz LM: a folder, a name of LM_VARIANTS under `checkpoints_dir`, or its hub repo id.

        Missing files are downloaded only with `allow_download=True`; otherwise the error lists them
        and the command that fetches them. `engine` (optional) lends its DiT's audio tokenizer to
        `understand` and its codebook size to the code phase.
        """
        from transformers import AutoTokenizer, Qwen3ForCausalLM

        from .loader import resolve_device

        folder = cls._resolve_folder(path_or_name, checkpoints_dir, allow_download)
        device, _ = resolve_device(device, None)
        if isinstance(dtype, str):
            dtype = resolve_device(device, dtype)[1]
        dtype = dtype or default_lm_dtype(device)
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
        if model_type != "qwen3":  # checked before transformers sees it: never trust_remote_code
            raise CheckpointError(f"{folder} is not a Qwen3 causal LM (config model_type {model_type!r})")
        from transformers.utils import logging as tlogging

        verbosity = tlogging.get_verbosity()
        tlogging.set_verbosity_error()
        tlogging.disable_progress_bar()
        try:
            model = Qwen3ForCausalLM.from_pretrained(folder, dtype=dtype, use_safetensors=True).to(device)
            tokenizer = AutoTokenizer.from_pretrained(folder)
        finally:
            tlogging.set_verbosity(verbosity)
            tlogging.enable_progress_bar()
        codebook = cls._codebook_size(engine)
        return cls(model, tokenizer, device, name=Path(folder).name, path=str(folder), codebook_size=codebook,
                   engine=engine)

    @staticmethod
    def _resolve_folder(path_or_name, checkpoints_dir, allow_download) -> Path:
        candidate = Path(path_or_name).expanduser()
        if candidate.is_dir() and (candidate / "config.json").is_file():
            return candidate
        name = str(path_or_name).split("/")[-1]
        if name not in LM_VARIANTS:
            raise CheckpointError(f"planner must be a folder with config.json or one of "
                                  f"{', '.join(LM_VARIANTS)} (got {str(path_or_name)!r})")
        root = Path(checkpoints_dir) if checkpoints_dir else default_checkpoints_dir()
        ensure_checkpoints(root, dit=None, lm=name, allow_download=allow_download)
        return root / name

    @staticmethod
    def _codebook_size(engine) -> int:
        quantizer = getattr(getattr(getattr(engine, "models", None), "audio_tokenizer", None), "quantizer", None)
        return int(getattr(quantizer, "codebook_size", DEFAULT_CODEBOOK_SIZE))

    @classmethod
    def demo(cls, device="auto", engine=None) -> "Planner":
        """The tiny random demo planner beside the demo checkpoint (written on first use)."""
        from .engine import demo_checkpoints_dir
        from .quiet import quiet_loading
        from .testing import LM_FOLDER, write_lm

        folder = demo_checkpoints_dir() / LM_FOLDER
        if not (folder / "model.safetensors").is_file():
            with quiet_loading():
                write_lm(folder, preset="demo", seed=1234)
        return cls.from_pretrained(folder, device=device, engine=engine)

    def attach(self, engine) -> "Planner":
        """Use `engine`'s audio tokenizer for `understand` and its codebook for the code phase."""
        self.engine = engine
        self.table.codebook_size = min(self._codebook_size(engine), self.table.codebook_size)
        self.table.valid_codes[:] = False
        self.table.valid_codes[[t for c, t in self.table.code_ids.items() if c < self.table.codebook_size]] = True
        return self

    def describe(self) -> dict:
        return {"planner": self.name, "demo": self.is_demo, "dtype": str(self.model.dtype).replace("torch.", ""),
                "device": str(self.device)}

    def __repr__(self) -> str:
        demo = ", demo (random weights)" if self.is_demo else ""
        return f"Planner({self.name}, {self.device}, {str(self.model.dtype).replace('torch.', '')}{demo})"

    # ------------------------------------------------------------------ planning
    def inspire(self, query: str, instrumental: bool = False, language: str | None = None, *, seed=None,
                progress=None, cancel=None, **sampling) -> Blueprint:
        """A whole blueprint (metadata, caption, lyrics) from a one-line idea (upstream's simple mode).

        `language` (a code of LANGUAGES) is injected as the vocal language; otherwise the LM picks it.
        """
        if not isinstance(query, str) or not query.strip():
            raise TaskError("query must be a non-empty description of the song (got an empty one)")
        if len(query) >= 2048:
            raise TaskError(f"query must be shorter than 2048 characters (got {len(query)})")
        if not isinstance(instrumental, bool):
            raise TaskError(f"instrumental must be True or False (got {instrumental!r})")
        fixed = {}
        if language not in (None, "", "unknown"):
            fixed["language"] = Blueprint(language=language).validate().language
        messages = prompts.inspire_messages(query.strip(), instrumental)
        after = "stop" if instrumental else "text"
        text = self._run([self._render(messages, True)], [cot_shape(self.table, fixed, genres=True, after=after)],
                         seed, progress, cancel, "think", sampling)[0]
        planned = self._parse(text, Blueprint(instrumental=instrumental), fixed)
        lyrics = "" if instrumental else prompts.split_lyrics(text)
        return planned.replace(lyrics=lyrics, instrumental=instrumental, planned=_planned(PLANNABLE + ("lyrics",)))

    def complete(self, blueprint: Blueprint, fields=None, *, seed=None, progress=None, cancel=None,
                 **sampling) -> Blueprint:
        """Fill the fields the user left open (the chain-of-thought phase); the others are injected
        into the LM's reasoning and come back unchanged.

        Open fields: an empty caption, bpm/keyscale/timesignature None, language "unknown". Duration
        always has a value in a Blueprint, so it is planned only when named in `fields` (which, if
        given, lists exactly the fields to plan). Lyrics are the user's (upstream's generate flow
        never writes lyrics; use `inspire` or `format`). The result's `planned` names what the LM wrote.
        """
        return self.complete_batch([blueprint], fields, seeds=seed, progress=progress, cancel=cancel,
                                   **sampling)[0]

    def complete_batch(self, blueprints, fields=None, *, seeds=None, progress=None, cancel=None,
                       **sampling) -> list[Blueprint]:
        """`complete` for several blueprints in one batched decode."""
        jobs = []
        for blueprint in blueprints:
            bp = _checked(blueprint)
            plan = self._fields_to_plan(bp, fields)
            fixed = {k: v for k, v in prompts.cot_values(bp).items() if k not in plan}
            jobs.append((bp, plan, fixed))
        texts = self._run([self._render(prompts.think_messages(bp.caption, bp.effective_lyrics), True)
                           for bp, _, _ in jobs],
                          [cot_shape(self.table, fixed) for _, _, fixed in jobs], seeds, progress, cancel, "think",
                          sampling)
        out = []
        for (bp, plan, fixed), text in zip(jobs, texts):
            planned = self._parse(text, bp, fixed)
            kept = {name: getattr(bp, name) for name in PLANNABLE if name not in plan}
            out.append(planned.replace(**kept, lyrics=bp.lyrics, instrumental=bp.instrumental,
                                       planned=_planned(plan)))
        return out

    def format(self, blueprint: Blueprint, *, seed=None, progress=None, cancel=None, **sampling) -> Blueprint:
        """Rewrite caption and lyrics into the LM's preferred form; the user's metadata is kept
        (open metadata fields are planned too). Empty rewritten lyrics fall back to the user's."""
        bp = _checked(blueprint)
        values = prompts.cot_values(bp)
        fixed = {k: v for k, v in values.items() if k != "caption"}
        after = "stop" if bp.instrumental else "text"
        text = self._run([self._render(prompts.format_messages(bp.caption, bp.effective_lyrics), True)],
                         [cot_shape(self.table, fixed, genres=True, after=after)], seed, progress, cancel,
                         "think", sampling)[0]
        planned = self._parse(text, bp, fixed)
        lyrics = bp.lyrics if bp.instrumental else (prompts.split_lyrics(text) or bp.lyrics)
        open_fields = [f for f in PLANNABLE if f not in fixed and f != "caption"]
        kept = {name: getattr(bp, name) for name in PLANNABLE if name in fixed}
        return planned.replace(**kept, lyrics=lyrics, instrumental=bp.instrumental,
                               planned=_planned(["caption", "lyrics"] + open_fields))

    def understand(self, audio, engine=None, *, seed=None, progress=None, cancel=None, **sampling) -> Blueprint:
        """Describe audio as a blueprint: audio -> 5 Hz codes (the DiT checkpoint's tokenizer) ->
        caption, metadata and lyrics. `audio` is anything `engine.generate` takes as a source, or a
        code string `<|audio_code_N|>...`. The duration is the audio's own."""
        from .sources import audio_to_codes, parse_audio_codes

        engine = engine or self.engine
        if isinstance(audio, str) and audio.lstrip().startswith("<|audio_code_"):
            codes = audio
        else:
            if engine is None:
                raise TaskError("understand needs an engine (its DiT holds the audio tokenizer): "
                                "pass engine=... or Planner.from_pretrained(..., engine=engine)")
            codes = audio_to_codes(engine, audio)
        count = len(parse_audio_codes(codes, self.table.codebook_size))
        lo, hi = DURATION_RANGE
        fixed = {"duration": int(min(max(count / CODES_PER_SECOND, lo), hi))}
        text = self._run([self._render(prompts.understand_messages(codes), True)],
                         [cot_shape(self.table, fixed, genres=True, after="text")], seed, progress, cancel,
                         "think", sampling)[0]
        planned = self._parse(text, Blueprint(), fixed)
        lyrics = prompts.split_lyrics(text)
        instrumental = not lyrics.strip() or lyrics.strip().lower() == "[instrumental]"
        return planned.replace(lyrics="" if instrumental else lyrics, instrumental=instrumental,
                               duration=float(fixed["duration"]), planned=_planned(PLANNABLE + ("lyrics",)))

    def codes(self, blueprint: Blueprint, *, seed=None, progress=None, cancel=None, **sampling) -> str:
        """Exactly `int(duration) x 5` audio codes `<|audio_code_N|>...` for `blueprint`, with LM
        guidance (default 2.0: conditional and unconditional prompts decoded as one batch).

        The blueprint's metadata and caption form the chain of thought in the prompt (open fields
        are left out: `complete` first to plan them). Render with
        `engine.generate(blueprint, Text2Music(audio_codes=codes))`.
        """
        return self.codes_batch(blueprint, 1, seeds=seed, progress=progress, cancel=cancel, **sampling)[0]

    def codes_batch(self, blueprint: Blueprint, batch_size: int = 2, *, seeds=None, progress=None, cancel=None,
                    **sampling) -> list[str]:
        """`batch_size` (1-8) independent code strings for one blueprint, decoded as one batch."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= 8:
            raise TaskError(f"batch_size must be between 1 and 8 (got {batch_size!r})")
        bp = _checked(blueprint)
        options = SamplingOptions(**sampling).check()
        count = int(bp.duration) * CODES_PER_SECOND
        cot = prompts.cot_text(prompts.cot_values(bp))
        cond = prompts.with_newline(self._render(prompts.codes_messages(bp.caption, bp.effective_lyrics, cot), False))
        negative = options.negative_prompt if options.negative_prompt not in (None, prompts.NO_USER_INPUT) else None
        uncond = prompts.with_newline(self._render(prompts.codes_messages(
            negative if negative is not None else bp.caption, bp.effective_lyrics, prompts.cot_text({})), False))
        unconditional = [uncond] * batch_size if options.guidance > 1.0 else None
        written = self._run([cond] * batch_size, [codes_shape(count) for _ in range(batch_size)], seeds, progress,
                            cancel, "codes", sampling, unconditional=unconditional, decode=False)
        return ["".join(f"<|audio_code_{self.table.code_value[t]}|>" for t in ids if t in self.table.code_value)
                for ids in written]

    def plan(self, blueprint: Blueprint, *, seed=None, progress=None, cancel=None, **sampling):
        """Upstream's "thinking" flow: complete the open fields, then write the codes.
        Returns (planned blueprint, code string)."""
        planned = self.complete(blueprint, seed=seed, progress=progress, cancel=cancel,
                                **{k: v for k, v in sampling.items() if k not in ("guidance", "negative_prompt")})
        return planned, self.codes(planned, seed=seed, progress=progress, cancel=cancel, **sampling)

    # ------------------------------------------------------------------ internals
    def _render(self, messages, add_generation_prompt: bool) -> str:
        return prompts.render(self.tokenizer, messages, add_generation_prompt)

    @staticmethod
    def _fields_to_plan(bp: Blueprint, fields) -> list[str]:
        if fields is not None:
            unknown = [f for f in fields if f not in PLANNABLE]
            if unknown:
                raise TaskError(f"fields must be among {', '.join(PLANNABLE)} (got {', '.join(map(str, unknown))})")
            return [f for f in PLANNABLE if f in fields]
        values = prompts.cot_values(bp)
        return [f for f in PLANNABLE if f not in values]

    def _parse(self, text: str, base: Blueprint, fixed: dict) -> Blueprint:
        values = prompts.parse_cot(text)
        fields = {name: values[name] for name in PLANNABLE if name in values}
        fields.update(fixed)
        fields["caption"] = str(fields.get("caption", base.caption)).strip()
        planned = base.replace(**fields)
        return planned.validate()

    def _run(self, texts, shapes, seeds, progress, cancel, stage, sampling, unconditional=None, decode=True):
        options = SamplingOptions(**{k: v for k, v in sampling.items()}).check()
        seeds = _seeds(seeds, len(texts))
        report = progress if callable(progress) else (lambda p: None)
        with self._lock:
            return self._decode(texts, shapes, seeds, options, report, cancel, stage, unconditional, decode)

    @torch.no_grad()
    def _decode(self, texts, shapes, seeds, options, report, cancel, stage, unconditional, decode):
        table, device = self.table, self.device
        rows = len(texts)
        guided = unconditional is not None and options.guidance > 1.0
        prompts_ = list(texts) + (list(unconditional) if guided else [])
        ids, mask = self._left_padded(prompts_)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        constraint = PlannerConstraint(table, shapes)
        generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        budget = max(_budget(shape) for shape in shapes)
        history = ids[:rows].clone()
        constraint.observe(history)
        written: list[list[int]] = [[] for _ in range(rows)]

        from transformers import DynamicCache

        cache = DynamicCache()
        codes_only = all(shape.start_codes for shape in shapes)
        feed, feed_positions = ids, positions
        produced = 0
        started = time.perf_counter()
        while not constraint.done:
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled("planning cancelled")
            logits = self._next_logits(feed, mask, feed_positions, cache, codes_only)
            if guided:
                cond, uncond = logits[:rows], logits[rows:]
                logits = uncond + options.guidance * (cond - uncond)
            scores = constraint(history, logits)
            forced = constraint.forced()
            if all(forced) and all(not row.done for row in constraint.rows):
                step = min(len(run) for run in forced)
                chosen = torch.tensor([run[:step] for run in forced], device=device)
            else:
                chosen = self._sample(scores, history, generators, options).unsqueeze(1)
            for i in range(rows):
                if not constraint.rows[i].done:
                    written[i].extend(chosen[i].tolist())
            history = torch.cat([history, chosen.to(history.device)], dim=1)
            constraint.observe(history)
            feed = torch.cat([chosen, chosen], dim=0) if guided else chosen
            step_len = feed.shape[1]
            mask = torch.cat([mask, torch.ones(mask.shape[0], step_len, dtype=mask.dtype, device=device)], dim=1)
            last = feed_positions[:, -1:]
            feed_positions = last + torch.arange(1, step_len + 1, device=device)
            produced += step_len
            if produced % 16 < step_len or constraint.done:
                report(Progress(stage, min(produced, budget), budget, 0, rows,
                                f"{stage}: {produced} tokens, {produced / (time.perf_counter() - started):.0f}/s"))
            if produced > budget + 64:
                raise TaskError(f"the planner did not finish within {budget} tokens")
        for i in range(rows):
            while written[i] and written[i][-1] == table.eos_id:
                written[i].pop()
        if not decode:
            return written
        return [self.tokenizer.decode(w, skip_special_tokens=False) for w in written]

    def _next_logits(self, feed, mask, positions, cache, codes_only) -> torch.Tensor:
        """fp32 logits of the last position, `[rows, vocab]`. In the code phase only audio codes and
        EOS can follow, so only their rows of the LM head are computed (about 30 % of the vocabulary
        for the official LM; the others stay -inf, which the constraint would impose anyway)."""
        kwargs = dict(input_ids=feed, attention_mask=mask, position_ids=positions, use_cache=True,
                      **{self._cache_arg: cache})
        head = self._code_head() if codes_only else None
        if head is None:
            return self.model(**kwargs, logits_to_keep=1).logits[:, -1, :].float()
        first, weight = head
        hidden = self.model.model(**kwargs).last_hidden_state[:, -1, :]
        logits = torch.full((hidden.shape[0], self.table.vocab_size), float("-inf"), device=hidden.device)
        logits[:, first: first + weight.shape[0]] = (hidden @ weight.T).float()
        eos = self.model.lm_head.weight[self.table.eos_id]
        logits[:, self.table.eos_id] = (hidden @ eos).float()
        return logits

    def _code_head(self):
        """(first token id, LM-head rows) of the valid audio codes when their ids are contiguous (they
        are in the official tokenizer); the rows are a view, so nothing is copied."""
        key = self.table.codebook_size
        if getattr(self, "_code_head_cache", (None,))[0] != key:
            ids = [self.table.code_ids[c] for c in range(self.table.codebook_size)]
            contiguous = ids == list(range(ids[0], ids[0] + len(ids)))
            head = None
            if contiguous and getattr(self.model.lm_head, "bias", None) is None:
                head = ids[0], self.model.lm_head.weight[ids[0]: ids[0] + len(ids)]
            self._code_head_cache = (key, head)
        return self._code_head_cache[1]

    def _left_padded(self, texts):
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.table.eos_id
        encoded = [self.table.encode(text) for text in texts]
        width = max(len(e) for e in encoded)
        ids = torch.full((len(texts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(texts), width), dtype=torch.long)
        for i, e in enumerate(encoded):
            ids[i, width - len(e):] = torch.tensor(e)
            mask[i, width - len(e):] = 1
        return ids.to(self.device), mask.to(self.device)

    @staticmethod
    def _sample(scores, history, generators, options: SamplingOptions) -> torch.Tensor:
        """CFG'd, constrained logits -> repetition penalty -> top-k -> top-p -> temperature -> draw.

        Each row samples among the tokens it may write, not the whole vocabulary."""
        if options.repetition_penalty != 1.0:
            scores = scores.clone()
            seen = torch.gather(scores, 1, history)
            seen = torch.where(seen < 0, seen * options.repetition_penalty, seen / options.repetition_penalty)
            scores.scatter_(1, history, seen)
        return torch.stack([Planner._draw_row(row, generator, options) for row, generator in zip(scores, generators)])

    @staticmethod
    def _draw_row(scores, generator, options: SamplingOptions) -> torch.Tensor:
        """One row, over the tokens it may write only (so each row's draw is independent of the batch)."""
        candidates = torch.isfinite(scores).nonzero().squeeze(1)
        if candidates.numel() == 1:  # forced: no draw, so the random stream follows real choices only
            return candidates[0]
        scores = scores[candidates]
        if options.top_k:
            kth = torch.topk(scores, min(options.top_k, scores.numel())).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if options.top_p is not None and options.top_p < 1.0:
            ordered, order = torch.sort(scores, descending=True)
            probs = ordered.softmax(-1)
            drop = probs.cumsum(-1) - probs >= options.top_p  # the most likely token always stays
            scores = scores.masked_fill(drop.scatter(0, order, drop), float("-inf"))
        probs = (scores / options.temperature).softmax(-1)
        return candidates[torch.multinomial(probs, 1, generator=generator)[0]]


def _budget(shape: Shape) -> int:
    """An upper bound on the tokens a shape needs (for progress and a runaway guard)."""
    if shape.start_codes:
        return shape.codes + 1
    cot = 64 + 600 + 250  # fields, caption and genres text
    return cot + {"stop": 0, "codes": shape.codes + 1, "text": shape.text_chars + 1}[shape.after]


def _seeds(seeds, count: int) -> list[int]:
    if seeds is None:
        return [secrets.randbelow(2 ** 63) for _ in range(count)]
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return [(seeds + i) % 2 ** 63 for i in range(count)]
    seeds = list(seeds)
    if len(seeds) != count or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise TaskError(f"seeds must be an int or {count} ints (got {seeds!r})")
    return seeds


def _checked(blueprint) -> Blueprint:
    if not isinstance(blueprint, Blueprint):
        raise TaskError(f"blueprint must be a Blueprint (got {type(blueprint).__name__})")
    return blueprint.validate()


def _planned(fields) -> tuple[str, ...]:
    return tuple(sorted(set(fields)))


logging.getLogger(__name__).addHandler(logging.NullHandler())
