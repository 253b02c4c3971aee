"""Constrained decoding for the 5 Hz LM, as a transformers `LogitsProcessor` (reference 5.3-5.4).

The planner's output has a fixed shape, so every token is checked against it while it is chosen:

    <think>                                   forced
    bpm: 120                                  a number in 30-300, or the user's value, forced
    caption: a dreamy lo-fi song              free text; after a newline the likeliest token decides
      with warm keys                          whether a continuation line (starts with a space) follows
    duration: 180                             10-600 (or the user's value)
    genres: lo-fi, jazz                       inspire / format / understand only: one entry of a
                                              genres vocabulary when one is given, else free text
    keyscale: C major                         one of the 70 names
    language: en                              one of the 51 codes; its first token is the likeliest
    timesignature: 4                          2, 3, 4 or 6
    </think>                                  forced
    then: stop | exactly N audio codes and EOS | free text (lyrics) until EOS

Choice fields are tries over the tokenizer's own tokenizations of every allowed line, so numbers
stay in range and keys and languages are spelled exactly; user values are one-line tries, so they
are injected unchanged. Free text never contains special tokens, audio codes or broken UTF-8.
Token ids are always looked up from the tokenizer. Even a randomly initialised model therefore
writes a valid blueprint. The three decisions upstream takes by argmax rather than by sampling
(the language's first token, whether a caption continues after a newline, ending a free-text
genres value) read the row's logits, which `PlannerConstraint.__call__` passes in.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from transformers import LogitsProcessor

from ..blueprint import BPM_RANGE, DURATION_RANGE, KEYSCALES, LANGUAGES, TIME_SIGNATURES
from .prompts import END_THINK, THINK, injected_line

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

    def whole_char_tokens(self) -> dict[str, list[tuple[int, str]]]:
        """Text tokens made of whole characters and no newline, as (id, lower-case text), indexed by
        their first character and (for tokens that start with whitespace) their first other one."""
        if getattr(self, "_whole_char_index", None) is None:
            index: dict[str, list[tuple[int, str]]] = {}
            ok = self.text_after[0] & (self.need_after[0] == 0) & ~self.has_newline
            for token_id in ok.nonzero().squeeze(1).tolist():
                text = self.text[token_id].lower()
                if not text:
                    continue
                index.setdefault(text[0], []).append((token_id, text))
                stripped = text.lstrip()
                if stripped and stripped[0] != text[0]:
                    index.setdefault(stripped[0], []).append((token_id, text))
            self._whole_char_index = index
        return self._whole_char_index


# ---------------------------------------------------------------------------------- vocabulary
class Vocabulary:
    """The values a free-text field may take (upstream's `genres_vocab.txt`): one entry per line,
    blank lines and lines starting with `#` skipped, compared case-insensitively.

    A value is written token by token; a token may follow when the value so far plus its text
    (leading whitespace of the value ignored) still begins some entry, and the line may end when
    the value is a whole entry. Upstream's check also refuses a first token that starts with a
    space (leaving `genres:pop`); ours lets `genres: pop` through (one leading space). Should no
    token of the tokenizer continue the value, the line may end there, as upstream forces it to.
    """

    def __init__(self, entries, source: str = "vocabulary"):
        cleaned = sorted({str(e).strip().lower() for e in entries} - {""})
        self.entries = [e for e in cleaned if not e.startswith("#")]
        self.source = source
        if not self.entries:
            raise ValueError(f"{source} has no entries (one value per line)")
        self.trie: dict = {}
        for entry in self.entries:
            node = self.trie
            for ch in entry:
                node = node.setdefault(ch, {})
            node[""] = {}  # end mark: "" is never a character of an entry
        self._masks: dict[tuple[int, str], torch.Tensor] = {}

    @classmethod
    def from_file(cls, path) -> "Vocabulary":
        from pathlib import Path

        path = Path(path).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FileNotFoundError(f"genres vocabulary file {path} does not exist") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"genres vocabulary file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") \
                from None
        return cls(text.splitlines(), source=f"genres vocabulary file {path}")

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} entries from {self.source})"

    def node(self, prefix: str):
        node = self.trie
        for ch in prefix:
            node = node.get(ch)
            if node is None:
                return None
        return node

    def __contains__(self, value: str) -> bool:
        node = self.node(str(value).strip().lower())
        return node is not None and "" in node

    def allowed(self, table: TokenTable, value: str) -> torch.Tensor:
        """`[vocab]` mask of the tokens that may follow `value` (the text written so far), plus the
        newline when `value` is a whole entry."""
        prefix = value.lstrip().lower()
        key = (id(table), prefix, value == "")
        cached = self._masks.get(key)
        if cached is not None:
            return cached.clone()
        node = self.node(prefix)
        out = torch.zeros(table.vocab_size, dtype=torch.bool)
        if node is not None:
            index = table.whole_char_tokens()
            for ch in node:
                for token_id, text in index.get(ch, ()):
                    if not prefix:
                        text = text.lstrip()
                    walk = node if text else None
                    for c in text:
                        walk = walk.get(c)
                        if walk is None:
                            break
                    if walk is not None:
                        out[token_id] = True
            space = table.encode(" ")
            if value == "" and len(space) == 1:
                out[space[0]] = True
            if "" in node and prefix:
                out[table.newline_id] = True
        if prefix and not out.any():
            out[table.newline_id] = True
        if len(self._masks) < 4096:
            self._masks[key] = out
        return out.clone()


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
    text field, its `key:` prefix, after which up to `text_chars` characters of text follow.

    `greedy`: the first token where the line's choices part is the likeliest one (upstream's
    language). `continues`: after a newline the value may go on with a line that starts with a
    space, when the likeliest next token starts with one (upstream's caption). `ends_when_likeliest`:
    a non-blank value ends as soon as the newline is the likeliest token (upstream's genres without
    a vocabulary). `vocabulary`: the value must be one of its entries.
    """

    name: str
    trie: Trie
    text_chars: int = 0  # > 0: a free-text value follows the trie
    optional: bool = False
    greedy: bool = False
    continues: bool = False
    ends_when_likeliest: bool = False
    vocabulary: Vocabulary | None = None


@dataclass
class Shape:
    """What the LM may write: the chain-of-thought segments, then what follows `</think>`.

    `after`: "stop" (generation ends at `</think>`), "codes" (exactly `codes` audio codes then EOS),
    or "text" (free text with newlines, e.g. lyrics, until EOS). `start_codes` skips the chain of
    thought (the codes phase, whose prompt already holds it). `text_chars` caps the text after
    `</think>` (None: no cap, as upstream; `max_tokens` then bounds the whole answer).
    """

    segments: list[Segment] = field(default_factory=list)
    after: str = "stop"
    codes: int = 0
    text_chars: int | None = MAX_LYRICS_CHARS
    start_codes: bool = False
    max_tokens: int | None = None


def _number_lines(name, lo, hi):
    return [f"{name}: {n}\n" for n in range(int(lo), int(hi) + 1)]


UPSTREAM_MAX_NEW_TOKENS = 4096  # upstream's answer length limit where nothing else bounds it


def cot_shape(table: TokenTable, fixed: dict | None = None, genres: bool = False, max_duration: float = 600,
              after: str = "stop", codes: int = 0, vocabulary: Vocabulary | None = None,
              text_chars: int | None = MAX_LYRICS_CHARS, skip: tuple = ()) -> Shape:
    """The chain-of-thought shape: fields in upstream order, `fixed` values injected as written.

    `fixed` maps field names (bpm, caption, duration, keyscale, language, timesignature) to the
    user's values; each becomes a forced line. `genres` adds the genres line (forced, as upstream
    does in inspire, format and understand), its value one entry of `vocabulary` when given.
    `text_chars` caps the text after `</think>` when `after="text"` (None: no cap). `skip` names
    fields left out altogether (upstream's `skip_language` when format is given a language).
    """
    fixed = dict(fixed or {})

    def lines_trie(lines):
        return Trie.of(table.encode(line) for line in lines)

    def choice(name, lines, greedy=False):
        if name in fixed:
            return Segment(name, lines_trie([injected_line(name, fixed[name])]))
        return Segment(name, lines_trie(lines), greedy=greedy)

    duration_hi = min(DURATION_RANGE[1], max_duration)
    segments = [
        Segment("<think>", Trie.of([[table.think_id] + table.encode("\n")])),
        choice("bpm", _number_lines("bpm", *BPM_RANGE)),
        (Segment("caption", lines_trie([injected_line("caption", fixed["caption"])])) if "caption" in fixed
         else Segment("caption", Trie.of([table.encode("caption:")]), text_chars=MAX_CAPTION_CHARS, continues=True)),
        choice("duration", _number_lines("duration", DURATION_RANGE[0], duration_hi)),
    ]
    if genres:
        segments.append(Segment("genres", Trie.of([table.encode("genres:")]), text_chars=MAX_GENRES_CHARS,
                                ends_when_likeliest=vocabulary is None, vocabulary=vocabulary))
    segments += [
        choice("keyscale", [f"keyscale: {k}\n" for k in KEYSCALES]),
        choice("language", [f"language: {code}\n" for code in LANGUAGES], greedy=True),
        choice("timesignature", [f"timesignature: {n}\n" for n in TIME_SIGNATURES]),
        Segment("</think>", Trie.of([[table.end_think_id]])),
    ]
    segments = [segment for segment in segments if segment.name not in skip]
    unbounded = after == "text" and text_chars is None
    return Shape(segments, after=after, codes=codes, text_chars=text_chars,
                 max_tokens=UPSTREAM_MAX_NEW_TOKENS if unbounded else None)


def codes_shape(count: int) -> Shape:
    """Exactly `count` audio codes, then EOS (the prompt already holds the chain of thought)."""
    return Shape([], after="codes", codes=count, start_codes=True)


# ---------------------------------------------------------------------------------- per-row state
def _likeliest(scores, ids=None) -> int | None:
    """The id of the highest score (among `ids` when given); None without scores."""
    if scores is None:
        return None
    if ids is None:
        return int(torch.argmax(scores))
    ids = list(ids)
    return ids[int(torch.argmax(scores[torch.tensor(ids, device=scores.device)]))]


class _Row:
    """Where one sequence stands in its Shape."""

    def __init__(self, shape: Shape):
        self.shape = shape
        self.done = False
        self.need = 0  # UTF-8 decoding state of the text (0: it ends on a whole character)
        self.chars = 0
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
            out = torch.zeros(table.vocab_size, dtype=torch.bool)
            top = _likeliest(scores)
            if top is None or table.text[top][:1] in (" ", "\t", ""):
                out |= table.text_after[0] & table.starts_with_space & ~table.has_newline
            if top is None or not table.text[top][:1] in (" ", "\t", ""):
                out[list(following)] = True
            return out
        if self.mode == "value":
            segment = self.shape.segments[self.segment]
            if segment.vocabulary is not None:
                return segment.vocabulary.allowed(table, self.value)
            if self.chars >= segment.text_chars:
                return table.mask([table.newline_id]) if self.need == 0 else table.text_after[self.need].clone()
            if (segment.ends_when_likeliest and not self.blank and self.need == 0
                    and _likeliest(scores) == table.newline_id):
                return table.mask([table.newline_id])
            out = table.text_after[self.need] & ~table.has_newline
            if self.need == 0 and not self.blank:
                out[table.newline_id] = True
            return out
        if self.mode == "codes":
            if self.codes >= self.shape.codes:
                return table.mask([table.eos_id])
            return table.valid_codes.clone()
        if self.mode == "text":
            if self.shape.text_chars is not None and self.chars >= self.shape.text_chars:
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
            if token_id == table.newline_id:
                if self.shape.segments[self.segment].continues:
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
        self.chars += len(text)
        self.value += text
        self.blank = self.blank and not text.strip()
        self.need = int(table.need_after[self.need, token_id])

    def _segment_done(self, index):
        segment = self.shape.segments[index]
        if segment.text_chars:
            self.mode, self.segment, self.chars, self.need, self.blank, self.value = "value", index, 0, 0, True, ""
            return
        if index + 1 < len(self.shape.segments):
            self.mode, self.candidates = "trie", self._entries(index + 1)
            return
        self.candidates = []
        self.mode = self.shape.after
        self.chars = self.need = 0
        self.value = ""
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
