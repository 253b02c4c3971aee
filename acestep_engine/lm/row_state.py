"""Where one sequence of the 5 Hz LM stands in its Shape: the tokens it may write next, and how each
token moves it on (the state machine behind `constraints.PlannerConstraint`).

Free text never contains special tokens, audio codes or broken UTF-8. A text token is allowed only
when its characters fit what is left of its value's cap (one real token writes up to 128), and
near a token cap only when the character it starts can still be finished; at either cap the value
ends, with no continuation line. A token that ends a value with its newline (".\n", as yaml.dump'ed
chains of thought tokenize) ends it like the newline. The three decisions upstream takes by argmax
rather than by sampling (the language's first token, whether a caption continues after a newline,
ending a free-text genres value) read the row's logits.
"""

from __future__ import annotations

import math

import torch

from .shapes import Shape
from .token_table import BYTES_NEEDED, TokenTable


def _likeliest(scores, ids=None) -> int | None:
    """The id of the highest score (among `ids` when given); None without scores."""
    if scores is None:
        return None
    if ids is None:
        return int(torch.argmax(scores))
    ids = list(ids)
    return ids[int(torch.argmax(scores[torch.tensor(ids, device=scores.device)]))]


class RowState:
    """Where one sequence stands in its Shape."""

    def __init__(self, shape: Shape):
        self.shape = shape
        self.done = False
        self.need = 0  # UTF-8 decoding state of the text (0: it ends on a whole character)
        self.chars = 0  # characters of the free-text value (or answer) so far
        self.value_tokens = 0  # its tokens
        self.codes = 0
        self.tokens = 0  # tokens written by this row
        self.blank = True  # the free-text value so far is only whitespace
        self.value = ""  # the free-text value so far (for a vocabulary)
        self.branched = False  # a greedy segment has made its choice
        if shape.start_codes or not shape.segments:
            self.mode = shape.after
            self.candidates = []
        else:
            self.mode = "trie"
            self.candidates = self._entries(0)

    def _entries(self, index):
        """(segment index, trie node) pairs that may start at `index` (optional ones may be skipped)."""
        entries = []
        segments = self.shape.segments
        self.branched = False
        while index < len(segments):
            entries.append((index, segments[index].trie))
            if not segments[index].optional:
                break
            index += 1
        return entries

    # ---------------------------------------------------------------- allowed tokens
    def allowed(self, table: TokenTable, scores: torch.Tensor | None = None) -> torch.Tensor:
        """`[vocab]` mask of the tokens this row may write next. `scores` (this row's logits over
        the vocabulary) settle the decisions upstream takes by argmax; without them every token
        that fits the shape stays allowed."""
        if self.done:
            return table.mask([table.eos_id])
        if self.shape.max_tokens is not None and self.tokens >= self.shape.max_tokens - 1 and self.need == 0:
            return table.mask([table.eos_id])
        if self.mode == "trie":
            children = {t for _, node in self.candidates for t in node.children}
            if len(self.candidates) == 1 and len(children) > 1 and not self.branched:
                index, _ = self.candidates[0]
                if self.shape.segments[index].greedy and scores is not None:
                    return table.mask([_likeliest(scores, children)])
            return table.mask(children)
        if self.mode == "value_newline":  # a caption's continuation line or the next field
            following = {t for _, node in self._entries(self.segment + 1) for t in node.children}
            segment = self.shape.segments[self.segment]
            go_on = self._free_text(table, segment.text_chars - self.chars, segment.text_tokens - self.value_tokens,
                                    count_newlines=False) & table.starts_with_space & ~table.has_newline
            top = _likeliest(scores)
            continues = top is None or table.text[top][:1] in (" ", "\t", "")
            out = torch.zeros(table.vocab_size, dtype=torch.bool)
            if continues and bool(go_on.any()):
                out |= go_on
            if top is None or not continues or not bool(go_on.any()):  # at the cap the field ends
                out[list(following)] = True
            return out
        if self.mode == "value":
            segment = self.shape.segments[self.segment]
            if segment.vocabulary is not None:
                return segment.vocabulary.allowed(table, self.value)
            chars_left = segment.text_chars - self.chars
            tokens_left = segment.text_tokens - self.value_tokens
            if self.need == 0 and not self.blank and (chars_left <= 0 or tokens_left <= 1):
                return table.mask([table.newline_id])
            if (segment.ends_when_likeliest and not self.blank and self.need == 0
                    and _likeliest(scores) == table.newline_id):
                return table.mask([table.newline_id])
            text = self._free_text(table, chars_left, tokens_left, count_newlines=False)
            # A token may end the value with its newline (".\n": how the LM was taught to end a line).
            ends = table.text_after[self.need] & table.ends_line & (table.width <= chars_left)
            if self.blank:
                ends &= ~table.blank  # a blank value cannot end
            return (text & ~table.has_newline) | ends
        if self.mode == "codes":
            if self.codes >= self.shape.codes:
                return table.mask([table.eos_id])
            return table.valid_codes.clone()
        if self.mode == "text":
            chars_left = math.inf if self.shape.text_chars is None else self.shape.text_chars - self.chars
            tokens_left = None if self.shape.text_tokens is None else self.shape.text_tokens - self.value_tokens
            if self.need == 0 and (chars_left <= 0 or (tokens_left is not None and tokens_left <= 1)):
                return table.mask([table.eos_id])
            out = self._free_text(table, chars_left, tokens_left, count_newlines=True, keep_room=False)
            if self.need == 0:
                out[table.eos_id] = True
            return out
        if self.mode == "stop":
            return table.mask([table.eos_id])
        raise AssertionError(self.mode)

    def _free_text(self, table: TokenTable, chars_left, tokens_left, count_newlines: bool,
                   keep_room: bool = True) -> torch.Tensor:
        """Text tokens that may come next: valid UTF-8 after the text so far, no more characters than
        are left (`count_newlines`: newlines count), and, near a token cap, leaving a token for each
        byte still owed by the character they start plus one for the end. `keep_room`: a blank value
        keeps room for a visible character, so it can always end."""
        size = table.length if count_newlines else table.width
        out = table.text_after[self.need] & (size <= chars_left)
        if tokens_left is not None and tokens_left < 8:
            out &= BYTES_NEEDED[table.need_after[self.need].long()] < tokens_left - 1
        if keep_room and self.blank:
            roomy = size < chars_left
            if tokens_left is not None:
                roomy &= tokens_left > 2
            out &= ~table.blank | roomy
        return out

    def forced(self, table: TokenTable) -> list[int]:
        """Tokens that must come next, whatever the model says: a run through single-child trie
        nodes, across whole forced lines (injected user fields) up to the next real choice."""
        if self.done or self.mode != "trie" or len(self.candidates) != 1:
            return []
        index, node = self.candidates[0]
        run = []
        while True:
            while len(node.children) == 1 and not node.complete:
                token_id, node = next(iter(node.children.items()))
                run.append(token_id)
            if node.children or not node.complete or self.shape.segments[index].text_chars:
                return run
            following = self._entries(index + 1)
            if len(following) != 1:
                return run
            index, node = following[0]

    # ---------------------------------------------------------------- advance
    def advance(self, token_id: int, table: TokenTable) -> None:
        if self.done:
            return
        self.tokens += 1
        if self.mode == "value_newline":
            if table.starts_with_space[token_id] and not table.has_newline[token_id]:
                self.mode = "value"  # a continuation line of the same value
            else:
                self.mode, self.candidates = "trie", self._entries(self.segment + 1)
        if self.mode == "trie":
            moved = [(i, node.children[token_id]) for i, node in self.candidates if token_id in node.children]
            if not moved:
                raise ValueError(f"token {token_id} does not fit the planner's output shape")
            if len(moved) == 1 and len(self.candidates[0][1].children) > 1:
                self.branched = True
            self.candidates = moved
            finished = [i for i, node in moved if node.complete and not node.children]
            if finished:
                self._segment_done(finished[0])
        elif self.mode == "value":
            segment = self.shape.segments[self.segment]
            if table.ends_line[token_id] and segment.vocabulary is None or token_id == table.newline_id:
                self._text(token_id, table)
                room = segment.text_chars - self.chars > 0 and segment.text_tokens - self.value_tokens > 1
                if segment.continues and room:
                    self.mode = "value_newline"
                else:
                    self.mode, self.candidates = "trie", self._entries(self.segment + 1)
            else:
                self._text(token_id, table)
        elif self.mode == "codes":
            if token_id == table.eos_id:
                self.done = True
            else:
                self.codes += 1
        elif token_id == table.eos_id:  # "text" or "stop"
            self.done = True
        else:
            self._text(token_id, table)

    def _text(self, token_id, table):
        text = table.text[token_id]
        self.chars += int(table.length[token_id] if self.mode == "text" else table.width[token_id])
        self.value_tokens += 1
        self.value += text
        self.blank = self.blank and bool(table.blank[token_id])
        self.need = int(table.need_after[self.need, token_id])

    def _segment_done(self, index):
        segment = self.shape.segments[index]
        if segment.text_chars:
            self.mode, self.segment, self.chars, self.need, self.blank, self.value = "value", index, 0, 0, True, ""
            self.value_tokens = 0
            return
        if index + 1 < len(self.shape.segments):
            self.mode, self.candidates = "trie", self._entries(index + 1)
            return
        self.candidates = []
        self.mode = self.shape.after
        self.chars = self.need = self.value_tokens = 0
        self.value = ""
        if self.mode == "stop":
            self.done = True
