"""The 5 Hz LM's decoding loop: KV-cached, constrained, guided, one seeded generator per row.

    decoder = Decoder(model, tokenizer, table, device)
    written = decoder.run(prompts, shapes, seeds, options, report, cancel, "think", None, decode=True)

Guidance runs the conditional and unconditional prompts as one batch; forced tokens (injected user
fields, fixed text) are fed in one forward; each row samples from its own seeded generator; `cancel`
is checked per token. In the code phase only the audio-code rows of the LM head are computed.
On CPUs the LM's linear layers run in oneDNN's packed layout while a loop lasts
(`runtime.packed_linear`), its unpadded one-token bf16 steps attend with the query heads folded
(`decode_attention`), its one-token steps skip transformers' module plumbing (`lean_step`, same
bits) and the loop runs in `torch.inference_mode`; `ACESTEP_FAST_PATHS=0` keeps the stock kernels and
forward under `no_grad`.
"""

from __future__ import annotations

import inspect
import time
from contextlib import contextmanager, nullcontext

import torch

from ..errors import GenerationCancelled, TaskError
from ..progress import Progress
from ..runtime.fast_paths import fast_paths_enabled
from ..runtime.packed_linear import packed_linears
from .constraints import PlannerConstraint
from .decode_attention import decode_attention
from .growing_cache import growing_cache
from .lean_step import LeanStep
from .sampling import draw_row, sample_rows
from .shapes import budget as shape_budget
from .token_table import TokenTable


class Decoder:
    """Runs prompts through `model` under the planner's constraint (see the module docstring)."""

    def __init__(self, model, tokenizer, table: TokenTable, device: torch.device):
        self.model = model
        self.tokenizer = tokenizer
        self.table = table
        self.device = device
        # transformers renamed the KV-cache argument (past_key_values -> cache); use what this version takes.
        parameters = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"
        self._code_head_cache = (None,)
        self._packing = None
        self._lean = None
        self._kept = False

    def forget_code_head(self) -> None:
        """Drop the LM-head view of the code rows (before the weights move: it must not keep them alive)."""
        self._code_head_cache = (None,)

    @torch.no_grad()
    def run(self, texts, shapes, seeds, options, report, cancel, stage, unconditional, decode):
        table, device = self.table, self.device
        rows = len(texts)
        guided = unconditional is not None and options.guidance > 1.0
        prompts_ = list(texts) + (list(unconditional) if guided else [])
        ids, mask = self._left_padded(prompts_)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        constraint = PlannerConstraint(table, shapes)
        generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        budget = max(shape_budget(shape) for shape in shapes)
        history = ids[:rows].clone()
        constraint.observe(history)
        written: list[list[int]] = [[] for _ in range(rows)]

        cache = growing_cache()
        codes_only = all(shape.start_codes for shape in shapes)
        head = self.code_head() if codes_only else None
        # The code phase's own step (same draws as the general one, over the code rows only) unless a
        # repetition penalty needs the whole history.
        fast = head is not None and options.repetition_penalty == 1.0
        feed, feed_positions = ids, positions
        produced = 0
        started = time.perf_counter()
        # inference_mode, not only no_grad: a step is some 700 small operations besides its matmuls, and
        # inference tensors skip their view and version bookkeeping (about 5 % of a 0.6B LM's step here).
        with self._fast_kernels(self.model.model if codes_only else self.model, len(prompts_)), \
                (torch.inference_mode() if fast_paths_enabled() else nullcontext()):
            while not constraint.done:
                if cancel is not None and cancel.is_set():
                    raise GenerationCancelled("planning cancelled")
                if fast:
                    chosen = self._code_step(feed, mask, feed_positions, cache, head, constraint, generators, options,
                                             rows if guided else 0)
                else:
                    chosen = self._general_step(feed, mask, feed_positions, cache, codes_only, constraint, history,
                                                generators, options, rows if guided else 0)
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

    def _general_step(self, feed, mask, positions, cache, codes_only, constraint, history, generators, options,
                      guided_rows) -> torch.Tensor:
        """One step of any phase: `[rows, n]` chosen tokens (n > 1 when forced text is fed at once)."""
        logits = self.next_logits(feed, mask, positions, cache, codes_only)
        if guided_rows:
            cond, uncond = logits[:guided_rows], logits[guided_rows:]
            logits = uncond + options.guidance * (cond - uncond)
        scores = constraint(history, logits)
        forced = constraint.forced()
        if all(forced) and all(not row.done for row in constraint.rows):
            step = min(len(run) for run in forced)
            return torch.tensor([run[:step] for run in forced], device=self.device)
        return sample_rows(scores, history, generators, options).unsqueeze(1)

    def _code_step(self, feed, mask, positions, cache, head, constraint, generators, options,
                   guided_rows) -> torch.Tensor:
        """One step of the code phase, `[rows, 1]`: the hidden state times the code rows of the LM head
        only, guidance over those, and each row's draw among all codes (EOS, with no draw, once the
        row has its count). Draws equal `_general_step`'s, which masks the same logits to the same
        candidates, without building, masking and scanning vocabulary-wide tensors each token."""
        first, weight = head
        logits = self._head(self._last_hidden(feed, mask, positions, cache), weight).float()
        if guided_rows:
            cond, uncond = logits[:guided_rows], logits[guided_rows:]
            logits = uncond + options.guidance * (cond - uncond)
        chosen = []
        for i, row in enumerate(constraint.rows):
            if row.done or row.codes >= row.shape.codes:
                chosen.append(self.table.eos_id)
            else:
                chosen.append(first + int(draw_row(logits[i], generators[i], options, dense=True)))
        return torch.tensor(chosen, device=self.device).unsqueeze(1)

    def next_logits(self, feed, mask, positions, cache, codes_only) -> torch.Tensor:
        """fp32 logits of the last position, `[rows, vocab]`. In the code phase only audio codes and
        EOS can follow, so only their rows of the LM head are computed (about 30 % of the vocabulary
        for the official LM; the others stay -inf, which the constraint would impose anyway)."""
        head = self.code_head() if codes_only else None
        if head is None:
            if self._lean is not None and self._lean.applies(feed, cache):
                return self.model.lm_head(self._lean(feed, mask, positions, cache)[:, -1:, :])[:, -1, :].float()
            return self.model(input_ids=feed, attention_mask=mask, position_ids=positions, use_cache=True,
                              logits_to_keep=1, **{self._cache_arg: cache}).logits[:, -1, :].float()
        first, weight = head
        hidden = self._last_hidden(feed, mask, positions, cache)
        logits = torch.full((hidden.shape[0], self.table.vocab_size), float("-inf"), device=hidden.device)
        logits[:, first: first + weight.shape[0]] = self._head(hidden, weight).float()
        eos = self.model.lm_head.weight[self.table.eos_id]
        logits[:, self.table.eos_id] = (hidden @ eos).float()
        return logits

    def _last_hidden(self, feed, mask, positions, cache) -> torch.Tensor:
        """`[rows, hidden]`: the LM's final hidden state at the last fed position (`lean_step` where it applies)."""
        if self._lean is not None and self._lean.applies(feed, cache):
            return self._lean(feed, mask, positions, cache)[:, -1, :]
        return self.model.model(input_ids=feed, attention_mask=mask, position_ids=positions, use_cache=True,
                                **{self._cache_arg: cache}).last_hidden_state[:, -1, :]

    def _head(self, hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """hidden @ weight.T for LM-head rows: packed once per loop where the loop runs packed."""
        return self._packing.matmul(hidden, weight) if self._packing is not None else hidden @ weight.T

    @property
    def kept(self) -> bool:
        """Whether `kept_fast_kernels` holds the LM's layers packed now (it must not be moved or parked)."""
        return self._kept

    @contextmanager
    def kept_fast_kernels(self):
        """Keep the loops' fast kernels (packed layers, folded attention, lean steps) from one run to
        the next while the block lasts: the phases of one plan pack the LM's layers once instead of
        twice (packing and unpacking a 0.6B LM's layers costs 0.5-1 s on the 2-core EPYC here, as much
        as ten decode steps). The layers only (`model.model`): an untied head's rows stay a view."""
        if self._kept or not fast_paths_enabled():
            yield
            return
        with self._fast_kernels(self.model.model, 2):
            self._kept = True
            try:
                yield
            finally:
                self._kept = False

    @contextmanager
    def _fast_kernels(self, root, rows: int):
        """The loop's linear layers under `root` in oneDNN's packed layout (`runtime.packed_linear`),
        its one-token steps through `decode_attention` and `lean_step`. The code phase packs the
        layers only (`model.model`): its head rows are a view of `lm_head`. Inside
        `kept_fast_kernels` the kept ones serve."""
        if not fast_paths_enabled() or self._kept:
            yield
            return
        from ..runtime import parking

        parking.restore(self.model)  # pack real weights, not a parked module's placeholders
        with packed_linears(root, rows=rows) as packing, decode_attention(self.model):
            self._packing, self._lean = packing, LeanStep.of(self.model)
            try:
                yield
            finally:
                self._packing = self._lean = None

    def code_head(self):
        """(first token id, LM-head rows) of the valid audio codes when their ids are contiguous (they
        are in the official tokenizer); the rows are a view, so nothing is copied."""
        from ..runtime import parking

        parking.restore(self.model)  # a parked LM's head is empty; the view below must see the weights
        weight = self.model.lm_head.weight
        key = (self.table.codebook_size, weight.data_ptr(), weight.device)  # new weights: a new view
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
