"""What the 5 Hz LM may write, as data: the chain-of-thought segments and what follows `</think>`.

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
are injected unchanged. `row_state.RowState` walks a Shape token by token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..blueprint import BPM_RANGE, DURATION_RANGE, KEYSCALES, LANGUAGES, TIME_SIGNATURES
from .genres import Vocabulary
from .prompts import injected_line
from .token_table import TokenTable

MAX_CAPTION_CHARS = 500  # captions must stay under 512 characters
MAX_CAPTION_TOKENS = 512  # upstream's caption limit
MAX_GENRES_CHARS = 200
MAX_GENRES_TOKENS = 200
MAX_LYRICS_CHARS = 4000  # lyrics must stay under 4096 characters


class Trie:
    """Token-id sequences sharing prefixes; `complete` marks the node that ends a whole line."""

    def __init__(self):
        self.children: dict[int, Trie] = {}
        self.complete = False

    def depth(self) -> int:
        """Tokens on the longest line (iterative: an injected caption is one long chain)."""
        deepest, stack = 0, [(self, 0)]
        while stack:
            node, depth = stack.pop()
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in node.children.values())
        return deepest

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
    text_chars: int = 0  # > 0: a free-text value follows the trie, at most this many characters (newlines aside)
    text_tokens: int = 0  # ... and at most this many tokens, its closing newline included
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
    text_tokens: int | None = MAX_LYRICS_CHARS  # tokens of that text, EOS included (None: no cap)
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
         else Segment("caption", Trie.of([table.encode("caption:")]), text_chars=MAX_CAPTION_CHARS,
                      text_tokens=MAX_CAPTION_TOKENS, continues=True)),
        choice("duration", _number_lines("duration", DURATION_RANGE[0], duration_hi)),
    ]
    if genres:
        segments.append(Segment("genres", Trie.of([table.encode("genres:")]), text_chars=MAX_GENRES_CHARS,
                                text_tokens=MAX_GENRES_TOKENS, ends_when_likeliest=vocabulary is None,
                                vocabulary=vocabulary))
    segments += [
        choice("keyscale", [f"keyscale: {k}\n" for k in KEYSCALES]),
        choice("language", [f"language: {code}\n" for code in LANGUAGES], greedy=True),
        choice("timesignature", [f"timesignature: {n}\n" for n in TIME_SIGNATURES]),
        Segment("</think>", Trie.of([[table.end_think_id]])),
    ]
    segments = [segment for segment in segments if segment.name not in skip]
    unbounded = after == "text" and text_chars is None
    return Shape(segments, after=after, codes=codes, text_chars=text_chars, text_tokens=text_chars,
                 max_tokens=UPSTREAM_MAX_NEW_TOKENS if unbounded else None)


def codes_shape(count: int) -> Shape:
    """Exactly `count` audio codes, then EOS (the prompt already holds the chain of thought)."""
    return Shape([], after="codes", codes=count, start_codes=True)


def budget(shape: Shape) -> int:
    """The most tokens a row of `shape` can write (for progress and a runaway guard): every line at
    its longest, every free value at its token cap, then the codes or text and the end."""
    if shape.start_codes:
        return shape.codes + 1
    if shape.max_tokens is not None:
        return shape.max_tokens
    cot = sum(segment.trie.depth() + segment.text_tokens for segment in shape.segments)
    return cot + {"stop": 0, "codes": shape.codes + 1, "text": shape.text_tokens or 0}[shape.after]
