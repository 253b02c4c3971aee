"""What every token of the 5 Hz LM's tokenizer is: special, audio code, newline, text, and its UTF-8 shape.

Built once per planner from the tokenizer itself (no id is hard-coded), for the constraint that
keeps the planner's output well formed (`constraints`): byte-level BPE tokens (Qwen's) are read as
the bytes they stand for, so a token that splits a character is known to need its continuation.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import torch

from .prompts import END_THINK, THINK

CODE_TOKEN = re.compile(r"^<\|audio_code_(\d+)\|>$")
DEFAULT_CODEBOOK_SIZE = 64000  # FSQ levels 8*8*8*5*5*5; the LM has 65535 code tokens, the rest never valid


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
BYTES_NEEDED = torch.tensor([need for need, _, _ in _UTF8_STATES])  # per state: continuation bytes still to come
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

    Per token id (tensors `[vocab]`): `length`, the characters it writes (UTF-8 lead bytes: a token
    that finishes another token's character adds none); `width`, the same without newlines;
    `ends_line`, its text ends in its only newline (".\n", the canonical end of a YAML value);
    `blank`, its text is whitespace only. `vocab_size` is the model's (its logits may be wider than
    the tokenizer). Built once per planner.
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
        # Every added token but the codes is markup (<|im_start|>, <tool_call>, ...), never text.
        reserved |= {token_id for text, token_id in added.items() if not CODE_TOKEN.match(text)}

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
        self.ends_line = torch.zeros(size, dtype=torch.bool)
        self.blank = torch.tensor([not text.strip() for text in self.text], dtype=torch.bool)
        lengths, newlines = [0] * size, [0] * size
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
            self.ends_line[token_id] = data.endswith(b"\n") and data.count(b"\n") == 1
            lengths[token_id] = sum(not 0x80 <= byte <= 0xBF for byte in data)
            newlines[token_id] = data.count(b"\n")
        self.length = torch.tensor(lengths, dtype=torch.int32)
        self.width = self.length - torch.tensor(newlines, dtype=torch.int32)
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
        """Text tokens made of whole characters and no newline, as (id, text), indexed by their first
        character and (for tokens that start with whitespace) their first other one."""
        if getattr(self, "_whole_char_index", None) is None:
            index: dict[str, list[tuple[int, str]]] = {}
            ok = self.text_after[0] & (self.need_after[0] == 0) & ~self.has_newline
            for token_id in ok.nonzero().squeeze(1).tolist():
                text = self.text[token_id]
                if not text:
                    continue
                index.setdefault(text[0], []).append((token_id, text))
                stripped = text.lstrip()
                if stripped and stripped[0] != text[0]:
                    index.setdefault(stripped[0], []).append((token_id, text))
            self._whole_char_index = index
        return self._whole_char_index
