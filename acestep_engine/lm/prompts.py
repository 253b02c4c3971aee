"""The 5 Hz LM's prompts and its chain-of-thought metadata block (reference 5.1-5.2).

Prompts are ChatML conversations rendered by the checkpoint's own chat template
(`tokenizer.apply_chat_template`, as upstream does); `render_chatml` renders the same text for a
tokenizer that ships without one. The chain of thought is YAML with sorted keys:

    <think>
    bpm: 120
    caption: a dreamy lo-fi song
    duration: 180
    keyscale: C major
    language: en
    timesignature: 4
    </think>

No torch here.
"""

from __future__ import annotations

import re

import yaml

from ..blueprint import Blueprint
from ..models.chat_template import END_THINK, THINK, render_chatml

GENERATE_INSTRUCTION = "Generate audio semantic tokens based on the given conditions:"
UNDERSTAND_INSTRUCTION = "Understand the given musical conditions and describe the audio semantics accordingly:"
INSPIRE_INSTRUCTION = "Expand the user's input into a more detailed and specific musical description:"
FORMAT_INSTRUCTION = "Format the user's input into a more detailed and specific musical description:"
NO_USER_INPUT = "NO USER INPUT"  # upstream's sentinel for "no negative prompt"

COT_FIELDS = ("bpm", "caption", "duration", "keyscale", "language", "timesignature")  # sorted, as yaml.dump does
# When the user sets all four, upstream skips phase 1 and its chain of thought holds only these.
USER_METAS = ("bpm", "duration", "keyscale", "timesignature")

def render(tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    """The prompt text through the tokenizer's chat template (or `render_chatml` without one)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return render_chatml(messages, add_generation_prompt)


def system(instruction: str) -> dict:
    return {"role": "system", "content": f"# Instruction\n{instruction}\n\n"}


def caption_lyrics(caption: str, lyrics: str) -> str:
    """User content of the generate flow (both phases)."""
    return f"# Caption\n{caption}\n\n# Lyric\n{lyrics}\n"


# ---------------------------------------------------------------------------------- conversations
def think_messages(caption: str, lyrics: str) -> list[dict]:
    """Phase 1 of the generate flow (the chain of thought); render with add_generation_prompt=True."""
    return [system(GENERATE_INSTRUCTION), {"role": "user", "content": caption_lyrics(caption, lyrics)}]


def codes_messages(caption: str, lyrics: str, cot: str) -> list[dict]:
    """Phase 2 (the audio codes): the chain of thought `cot` as the assistant's turn; render with
    add_generation_prompt=False and end the text with a newline."""
    return think_messages(caption, lyrics) + [{"role": "assistant", "content": cot}]


def inspire_messages(query: str, instrumental: bool) -> list[dict]:
    return [system(INSPIRE_INSTRUCTION),
            {"role": "user", "content": f"{query}\n\ninstrumental: {'true' if instrumental else 'false'}"}]


def format_messages(caption: str, lyrics: str) -> list[dict]:
    return [system(FORMAT_INSTRUCTION), {"role": "user", "content": f"# Caption\n{caption}\n\n# Lyric\n{lyrics}"}]


def understand_messages(codes: str) -> list[dict]:
    return [system(UNDERSTAND_INSTRUCTION), {"role": "user", "content": codes}]


def with_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


# ---------------------------------------------------------------------------------- chain of thought
def cot_values(blueprint: Blueprint) -> dict:
    """The chain-of-thought fields a (validated) blueprint sets; open ones are left out."""
    bp = blueprint.validate()
    values = {"bpm": bp.bpm, "caption": bp.caption or None, "duration": int(bp.duration), "keyscale": bp.keyscale,
              "language": None if bp.language == "unknown" else bp.language, "timesignature": bp.timesignature}
    return {k: v for k, v in values.items() if v is not None}


def has_all_metas(blueprint: Blueprint) -> bool:
    """True when bpm, keyscale, time signature and duration are set (upstream's `has_all_metas`,
    the case in which it skips phase 1). Duration always has a value in a Blueprint."""
    values = cot_values(blueprint)
    return all(k in values for k in USER_METAS)


def codes_cot_values(blueprint: Blueprint) -> dict:
    """The chain of thought of the code phase for a blueprint given as it is: when bpm, keyscale,
    time signature and duration are set, only those four (upstream skips phase 1 and writes that
    metadata alone, without caption or language); otherwise every set field (open ones left out).
    After a phase 1, `Planner.plan` uses the whole planned chain of thought instead, as upstream."""
    values = cot_values(blueprint)
    if has_all_metas(blueprint):
        return {k: values[k] for k in USER_METAS}
    return values


def lm_lyrics(blueprint: Blueprint) -> str:
    """The lyrics the generate flow shows the LM: `[Instrumental]` for an instrumental blueprint,
    otherwise the user's text as written (blank lyrics stay blank: `# Lyric\n\n`, as upstream)."""
    return "[Instrumental]" if blueprint.instrumental else (blueprint.lyrics or "")


def cot_yaml(values: dict) -> str:
    """YAML of the chain-of-thought fields exactly as upstream dumps them (sorted keys, unicode kept)."""
    return yaml.dump(values, allow_unicode=True, sort_keys=True) if values else ""


def cot_text(values: dict) -> str:
    """`<think>\\n{yaml}</think>`: the assistant content of phase 2 (empty values: `<think>\\n\\n</think>`)."""
    dumped = cot_yaml(values)
    return f"{THINK}\n{dumped}{END_THINK}" if dumped else f"{THINK}\n\n{END_THINK}"


def field_line(name: str, value) -> str:
    """One field as `yaml.dump` writes it (the form of the code phase's thinking block and of
    upstream's scoring targets): `name: value` plus continuation lines, ending in a newline."""
    return yaml.dump({name: value}, allow_unicode=True, sort_keys=True)


def injected_line(name: str, value) -> str:
    """One user field as upstream's constrained decoder injects it: `name: value` and a newline, the
    value as written (not YAML-quoted: `language: no`). A caption (injected only when `complete`
    keeps the user's caption, which upstream never injects) is written as the LM writes captions,
    by `field_line` (YAML, wrapped)."""
    if name == "caption":
        return field_line(name, value)
    return f"{name}: {value}\n"


_KEY_LINE = re.compile(r"^([A-Za-z_]+):\s?(.*)$")


def parse_cot(text: str) -> dict:
    """The fields of a chain of thought (text between `<think>` and `</think>`, or the whole text).

    Key lines are `key: value`; lines that start with whitespace continue the previous value and
    are joined with single spaces. Values are YAML-unquoted; bpm, duration and timesignature
    become ints where they are whole numbers. Unknown keys (such as genres) are kept as text.
    """
    if END_THINK in text:
        text = text.split(END_THINK)[0]
    if THINK in text:
        text = text.split(THINK, 1)[1]
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _KEY_LINE.match(line)
        if match and not line[0].isspace():
            key = match.group(1)
            fields[key] = match.group(2).strip()
        elif key is not None:
            fields[key] = f"{fields[key]} {line.strip()}".strip()
    parsed: dict = {}
    for key, raw in fields.items():
        value = _unquote(raw)
        if key in ("bpm", "duration", "timesignature"):
            number = re.fullmatch(r"\s*(\d+)(?:\.0*)?(?:\s*/\s*\d+)?\s*", str(value))
            value = int(number.group(1)) if number else value
        parsed[key] = value
    return parsed


def _unquote(raw: str):
    if raw[:1] in ("'", '"'):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError:
            return raw.strip("'\"")
    return raw


def split_lyrics(answer: str) -> str:
    """Lyrics written after `</think>`: a leading `# Lyric` header is dropped (as upstream)."""
    text = answer.split(END_THINK)[-1] if END_THINK in answer else answer
    text = text.replace("<|im_end|>", "").strip("\n")
    text = re.sub(r"^\s*#\s*Lyrics?\s*\n", "", text)
    return text.strip()
