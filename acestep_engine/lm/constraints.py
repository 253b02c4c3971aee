"""Constrained decoding for the 5 Hz LM, as a transformers `LogitsProcessor` (reference 5.3-5.4).

The planner's output has a fixed shape (`shapes`), so every token is checked against it while it
is chosen: one `row_state.RowState` per batch row says which tokens may come next. Token ids are
always looked up from the tokenizer (`token_table`). Even a randomly initialised model therefore
writes a valid blueprint.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from .row_state import RowState
from .shapes import Shape
from .token_table import TokenTable


class PlannerConstraint(LogitsProcessor):
    """Masks every token that would break the planner's output shape (one Shape per batch row).

    Works in `model.generate(logits_processor=[...])` and in the planner's own loop: each call
    reads the tokens appended to `input_ids` since the previous call and advances the rows.
    """

    def __init__(self, table: TokenTable, shapes: list[Shape]):
        self.table = table
        self.rows = [RowState(shape) for shape in shapes]
        self._seen: int | None = None

    def observe(self, input_ids: torch.Tensor) -> None:
        length = input_ids.shape[1]
        if self._seen is None:
            self._seen = length
            return
        for position in range(self._seen, length):
            for row, token_id in zip(self.rows, input_ids[:, position].tolist()):
                row.advance(int(token_id), self.table)
        self._seen = length

    def allowed(self, scores: torch.Tensor | None = None) -> torch.Tensor:
        """`[rows, vocab]` bool mask of the tokens each row may write next (`scores`: the rows'
        logits, for the decisions upstream takes by argmax)."""
        return torch.stack([row.allowed(self.table, None if scores is None else scores[i])
                            for i, row in enumerate(self.rows)])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.observe(input_ids)
        allowed = self.allowed(scores).to(scores.device)[:, : scores.shape[-1]]
        return scores.masked_fill(~allowed, float("-inf"))

    def forced(self) -> list[list[int]]:
        return [row.forced(self.table) for row in self.rows]

    @property
    def done(self) -> bool:
        return all(row.done for row in self.rows)
