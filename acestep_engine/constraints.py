"""Constrained decoding for the 5 Hz LM, as a transformers `LogitsProcessor` (reference 5.3-5.4).

The planner's output has a fixed shape, so every token is checked against it while it is chosen:

    <think>                                   forced
    bpm: 120                                  a number in 30-300, or the user's value, forced
    caption: a dreamy lo-fi song              free text on one line (continuation lines start with a space)
    duration: 180                             10-600 (or the user's value)
    genres: lo-fi, jazz                       optional, free text (understand / inspire / format only)
    keyscale: C major                         one of the 70 names
    language: en                              one of the 51 codes
    timesignature: 4                          2, 3, 4 or 6
    </think>                                  forced
    then: stop | exactly N audio codes and EOS | free text (lyrics) until EOS

Choice fields are tries over the tokenizer's own tokenizations of every allowed line, so numbers
stay in range and keys and languages are spelled exactly; user values are one-line tries, so they
are injected unchanged. Free text never contains special tokens, audio codes or broken UTF-8.
Token ids are always looked up from the tokenizer. Even a randomly initialised model therefore
writes a valid blueprint.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from transformers import LogitsProcessor

from .blueprint import BPM_RANGE, DURATION_RANGE, KEYSCALES, LANGUAGES, TIME_SIGNATURES
from .lm_prompts import END_THINK, THINK, field_line

CODE_TOKEN = re.compile(r"^<\|audio_code_(\d+)\|>$")
DEFAULT_CODEBOOK_SIZE = 64000  # FSQ levels 8*8*8*5*5*5; the LM has 65535 code tokens, the rest never valid
MAX_CAPTION_CHARS = 500  # captions must stay under 512 characters
MAX_GENRES_CHARS = 200
MAX_LYRICS_CHARS = 4000  # lyrics must stay under 4096 characters


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of the GPT-2 byte-to-unicode table used by byte-level BPE vocabularies (Qwen's)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars)}


# UTF-8 decoding states: (continuation bytes still needed, allowed range of the next byte). The
# narrowed ranges rule out overlong forms, surrogates, code points past U+10FFFF and C1 controls.
_UTF8_STATES = ((0, 0x00, 0x7F), (1, 0x80, 0xBF), (2, 0x80, 0xBF), (3, 0x80, 0xBF),
                (2, 0xA0, 0xBF), (2, 0x80, 0x9F), (3, 0x90, 0xBF), (3, 0x80, 0x8F), (1, 0xA0, 0xBF))
_STATE_INDEX = {state: i for i, state in enumerate(_UTF8_STATES)}
_LEADS = {0xC2: (1, 0xA0, 0xBF), 0xE0: (2, 0xA0, 0xBF), 0xED: (2, 0x80, 0x9F), 0xF0: (3, 0x90, 0xBF),
          0xF4: (3, 0x80, 0x8F)}


def _utf8_step(state: int, data: bytes) -> int | None:
    """The decoding state after `data`, starting in `state`; None if `data` breaks UTF-8 there."""
    need, lo, hi = _UTF8_STATES[state]
    for byte in data:
        if need:
            if not lo <= byte <= hi:
                return None
            need, lo, hi = need - 1, 0x80, 0xBF
        elif byte < 0x80:
            continue
        elif byte in _LEADS:
            need, lo, hi = _LEADS[byte]
        elif 0xC3 <= byte <= 0xDF:
            need, lo, hi = 1, 0x80, 0xBF
        elif 0xE1 <= byte <= 0xEF:
            need, lo, hi = 2, 0x80, 0xBF
        elif 0xF1 <= byte <= 0xF3:
            need, lo, hi = 3, 0x80, 0xBF
        else:
            return None
    return _STATE_INDEX[(need, lo, hi) if need else (0, 0x00, 0x7F)]


class TokenTable:
    """What every token id of a tokenizer is: special, audio code, newline, text and its UTF-8 shape.

    `vocab_size` is the model's (its logits may be wider than the tokenizer). Built once per planner.
    """

    def __init__(self, tokenizer, vocab_size: int | None = None, codebook_size: int = DEFAULT_CODEBOOK_SIZE):
        self.tokenizer = tokenizer
        size = max(len(tokenizer), vocab_size or 0)
        self.vocab_size = size
        added = tokenizer.get_added_vocab()
        self.code_ids: dict[int, int] = {}  # code value -> token id
        for text, token_id in added.items():
            match = CODE_TOKEN.match(text)
            if match:
                self.code_ids[int(match.group(1))] = token_id
        if not self.code_ids:
            raise ValueError("the planner's tokenizer has no <|audio_code_N|> tokens")
        self.codebook_size = min(codebook_size, max(self.code_ids) + 1)
        self.code_value = {token_id: code for code, token_id in self.code_ids.items()}
        self.valid_codes = torch.zeros(size, dtype=torch.bool)
        self.valid_codes[[t for c, t in self.code_ids.items() if c < self.codebook_size]] = True

        self.eos_id = self.id_of("<|im_end|>", fallback=tokenizer.eos_token_id)
        self.think_id = self.id_of(THINK)
        self.end_think_id = self.id_of(END_THINK)
        reserved = set(tokenizer.all_special_ids) | {self.eos_id, self.think_id, self.end_think_id}
        reserved |= {token_id for text, token_id in added.items() if text.startswith("<|") and text.endswith("|>")}

        byte_of = _byte_decoder()
        tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        self.text: list[str] = texts + [""] * (size - len(texts))
        # text_after[state, id]: the token may follow text in UTF-8 decoding state `state` (0: complete
        # characters), and need_after[state, id] is the state it leaves.
        states = len(_UTF8_STATES)
        self.text_after = torch.zeros(states, size, dtype=torch.bool)
        self.need_after = torch.zeros(states, size, dtype=torch.int8)
        self.has_newline = torch.zeros(size, dtype=torch.bool)
        self.starts_with_space = torch.zeros(size, dtype=torch.bool)
        for token_id, token in enumerate(tokens):
            if token_id in reserved or token is None:
                continue
            if token_id in self.code_value:
                continue
            try:
                data = bytes(byte_of[c] for c in token)
            except KeyError:  # not a byte-level vocabulary entry
                data = texts[token_id].encode("utf-8")
            if not data:
                continue
            decoded = data.decode("utf-8", errors="ignore")
            if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in decoded):
                continue
            # Only a token that starts with a continuation byte can follow an unfinished character.
            entries = range(1, states) if 0x80 <= data[0] <= 0xBF else (0,)
            for entry in entries:
                after = _utf8_step(entry, data)
                if after is not None:
                    self.text_after[entry, token_id] = True
                    self.need_after[entry, token_id] = after
            self.has_newline[token_id] = "\n" in decoded
            self.starts_with_space[token_id] = data[:1] in (b" ", b"\t")
        newline = self.encode("\n")
        if len(newline) != 1:
            raise ValueError("the planner's tokenizer must write a newline as one token")
        self.newline_id = newline[0]

    def id_of(self, token: str, fallback=None) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            if fallback is None:
                raise ValueError(f"the planner's tokenizer has no {token} token")
            return fallback
        return token_id

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def mask(self, ids) -> torch.Tensor:
        out = torch.zeros(self.vocab_size, dtype=torch.bool)
        out[list(ids)] = True
        return out


# ---------------------------------------------------------------------------------- the shape
class Trie:
    """Token-id sequences sharing prefixes; `complete` marks the node that ends a whole line."""

    def __init__(self):
        self.children: dict[int, Trie] = {}
        self.complete = False

    @classmethod
    def of(cls, sequences) -> "Trie":
        root = cls()
        for sequence in sequences:
            node = root
            for token_id in sequence:
                node = node.children.setdefault(token_id, cls())
            node.complete = True
        return root


@dataclass
class Segment:
    """One part of the output. `trie` covers a whole line (choice fields, forced text) or, for a free
    text field, its `key:` prefix, after which up to `max_chars` characters of text follow."""

    name: str
    trie: Trie
    text_chars: int = 0  # > 0: a free-text value follows the trie
    optional: bool = False


@dataclass
class Shape:
    """What the LM may write: the chain-of-thought segments, then what follows `</think>`.

    `after`: "stop" (generation ends at `</think>`), "codes" (exactly `codes` audio codes then EOS),
    or "text" (free text with newlines, e.g. lyrics, until EOS). `start_codes` skips the chain of
    thought (the codes phase, whose prompt already holds it).
    """

    segments: list[Segment] = field(default_factory=list)
    after: str = "stop"
    codes: int = 0
    text_chars: int = MAX_LYRICS_CHARS
    start_codes: bool = False


def _number_lines(name, lo, hi):
    return [f"{name}: {n}\n" for n in range(int(lo), int(hi) + 1)]


def cot_shape(table: TokenTable, fixed: dict | None = None, genres: bool = False, max_duration: float = 600,
              after: str = "stop", codes: int = 0) -> Shape:
    """The chain-of-thought shape: fields in upstream order, `fixed` values injected as written.

    `fixed` maps field names (bpm, caption, duration, keyscale, language, timesignature) to the
    user's values; each becomes a forced line. `genres` allows the optional genres line.
    """
    fixed = dict(fixed or {})

    def lines_trie(lines):
        return Trie.of(table.encode(line) for line in lines)

    def choice(name, lines):
        if name in fixed:
            return Segment(name, lines_trie([field_line(name, fixed[name])]))
        return Segment(name, lines_trie(lines))

    duration_hi = min(DURATION_RANGE[1], max_duration)
    segments = [
        Segment("<think>", Trie.of([[table.think_id] + table.encode("\n")])),
        choice("bpm", _number_lines("bpm", *BPM_RANGE)),
        (Segment("caption", lines_trie([field_line("caption", fixed["caption"])])) if "caption" in fixed
         else Segment("caption", Trie.of([table.encode("caption:")]), text_chars=MAX_CAPTION_CHARS)),
        choice("duration", _number_lines("duration", DURATION_RANGE[0], duration_hi)),
    ]
    if genres:
        segments.append(Segment("genres", Trie.of([table.encode("genres:")]), text_chars=MAX_GENRES_CHARS,
                                optional=True))
    segments += [
        choice("keyscale", [f"keyscale: {k}\n" for k in KEYSCALES]),
        choice("language", [f"language: {code}\n" for code in LANGUAGES]),
        choice("timesignature", [f"timesignature: {n}\n" for n in TIME_SIGNATURES]),
        Segment("</think>", Trie.of([[table.end_think_id]])),
    ]
    return Shape(segments, after=after, codes=codes)


def codes_shape(count: int) -> Shape:
    """Exactly `count` audio codes, then EOS (the prompt already holds the chain of thought)."""
    return Shape([], after="codes", codes=count, start_codes=True)


# ---------------------------------------------------------------------------------- per-row state
class _Row:
    """Where one sequence stands in its Shape."""

    def __init__(self, shape: Shape):
        self.shape = shape
        self.done = False
        self.need = 0  # UTF-8 decoding state of the text (0: it ends on a whole character)
        self.chars = 0
        self.codes = 0
        self.blank = True  # the free-text value so far is only whitespace
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
        while index < len(segments):
            entries.append((index, segments[index].trie))
            if not segments[index].optional:
                break
            index += 1
        return entries

    # ---------------------------------------------------------------- allowed tokens
    def allowed(self, table: TokenTable) -> torch.Tensor:
        if self.done:
            return table.mask([table.eos_id])
        if self.mode == "trie":
            return table.mask({t for _, node in self.candidates for t in node.children})
        if self.mode in ("value", "value_newline"):
            segment = self.shape.segments[self.segment]
            if self.mode == "value_newline":  # a continuation line (starts with a space) or the next field
                out = table.text_after[0] & table.starts_with_space & ~table.has_newline
                for _, node in self._entries(self.segment + 1):
                    out[list(node.children)] = True
                return out
            if self.chars >= segment.text_chars:
                return table.mask([table.newline_id]) if self.need == 0 else table.text_after[self.need].clone()
            out = table.text_after[self.need] & ~table.has_newline
            if self.need == 0 and not self.blank:
                out[table.newline_id] = True
            return out
        if self.mode == "codes":
            if self.codes >= self.shape.codes:
                return table.mask([table.eos_id])
            return table.valid_codes.clone()
        if self.mode == "text":
            if self.chars >= self.shape.text_chars:
                return table.mask([table.eos_id]) if self.need == 0 else table.text_after[self.need].clone()
            out = table.text_after[self.need].clone()
            if self.need == 0:
                out[table.eos_id] = True
            return out
        if self.mode == "stop":
            return table.mask([table.eos_id])
        raise AssertionError(self.mode)

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
        if self.mode == "value_newline":
            if table.starts_with_space[token_id] and not table.has_newline[token_id]:
                self.mode = "value"  # a continuation line of the same value
            else:
                self.mode, self.candidates = "trie", self._entries(self.segment + 1)
        if self.mode == "trie":
            moved = [(i, node.children[token_id]) for i, node in self.candidates if token_id in node.children]
            if not moved:
                raise ValueError(f"token {token_id} does not fit the planner's output shape")
            self.candidates = moved
            finished = [i for i, node in moved if node.complete and not node.children]
            if finished:
                self._segment_done(finished[0])
        elif self.mode == "value":
            if token_id == table.newline_id:
                self.mode = "value_newline"
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
        self.chars += len(text)
        self.blank = self.blank and not text.strip()
        self.need = int(table.need_after[self.need, token_id])

    def _segment_done(self, index):
        segment = self.shape.segments[index]
        if segment.text_chars:
            self.mode, self.segment, self.chars, self.need, self.blank = "value", index, 0, 0, True
            return
        if index + 1 < len(self.shape.segments):
            self.mode, self.candidates = "trie", self._entries(index + 1)
            return
        self.candidates = []
        self.mode = self.shape.after
        self.chars = self.need = 0
        if self.mode == "stop":
            self.done = True


class PlannerConstraint(LogitsProcessor):
    """Masks every token that would break the planner's output shape (one Shape per batch row).

    Works in `model.generate(logits_processor=[...])` and in the planner's own loop: each call
    reads the tokens appended to `input_ids` since the previous call and advances the rows.
    """

    def __init__(self, table: TokenTable, shapes: list[Shape]):
        self.table = table
        self.rows = [_Row(shape) for shape in shapes]
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

    def allowed(self) -> torch.Tensor:
        """`[rows, vocab]` bool mask of the tokens each row may write next."""
        return torch.stack([row.allowed(self.table) for row in self.rows])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.observe(input_ids)
        allowed = self.allowed().to(scores.device)[:, : scores.shape[-1]]
        return scores.masked_fill(~allowed, float("-inf"))

    def forced(self) -> list[list[int]]:
        return [row.forced(self.table) for row in self.rows]

    @property
    def done(self) -> bool:
        return all(row.done for row in self.rows)
