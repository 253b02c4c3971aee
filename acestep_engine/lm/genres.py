"""The genres vocabulary: the values the `genres:` line of inspire, format and understand may take.

Upstream ships `acestep/genres_vocab.txt` (MIT, one genre per line); pass it as
`Planner.from_pretrained(..., genres_vocab=path)` or name it in ACESTEP_GENRES_VOCAB.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import TaskError
from .token_table import TokenTable

ENV_GENRES_VOCAB = "ACESTEP_GENRES_VOCAB"  # path of a genres vocabulary (upstream's genres_vocab.txt)
GENRES_VOCAB_URL = "https://github.com/ace-step/ACE-Step-1.5/blob/main/acestep/genres_vocab.txt"


class Vocabulary:
    """The values a free-text field may take (upstream's `genres_vocab.txt`): one entry per line,
    blank lines and lines starting with `#` skipped. The LM writes an entry exactly as the
    vocabulary spells it (upstream lowercases both sides, so "K-Pop" could come out "k-poP");
    `value in vocabulary` ignores case.

    A value is written token by token; a token may follow when the value so far plus its text
    (leading whitespace of the value ignored) still begins some entry, and the line may end when
    the value is a whole entry. Upstream's check also refuses a first token that starts with a
    space (leaving `genres:pop`); ours lets `genres: pop` through (one leading space). Should no
    token of the tokenizer continue the value, the line may end there, as upstream forces it to.
    """

    def __init__(self, entries, source: str = "vocabulary"):
        cleaned = sorted({str(e).strip() for e in entries} - {""})
        self.entries = [e for e in cleaned if not e.startswith("#")]
        self._folded = {e.lower() for e in self.entries}
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
        return str(value).strip().lower() in self._folded

    def allowed(self, table: TokenTable, value: str) -> torch.Tensor:
        """`[vocab]` mask of the tokens that may follow `value` (the text written so far), plus the
        newline when `value` is a whole entry."""
        prefix = value.lstrip()
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


def load_genres_vocab(source) -> Vocabulary | None:
    """A genres vocabulary from a file path, a list of genres, a Vocabulary, or None (then the
    ACESTEP_GENRES_VOCAB environment variable, if set). Upstream's file: GENRES_VOCAB_URL."""
    if source is None:
        source = os.environ.get(ENV_GENRES_VOCAB) or None
        if source is None:
            return None
    if isinstance(source, Vocabulary):
        return source
    try:
        if isinstance(source, (str, Path)):
            return Vocabulary.from_file(source)
        if isinstance(source, (list, tuple, set, frozenset)) and all(isinstance(e, str) for e in source):
            return Vocabulary(source, source="genres_vocab list")
    except (OSError, ValueError) as exc:
        raise TaskError(f"genres_vocab: {exc}") from None
    raise TaskError(f"genres_vocab must be a file path, a list of genres or None (got {type(source).__name__})")
