"""Every planner and DiT prompt gives exactly upstream's text and token ids under Qwen3's tokenizer.

golden_prompts.json was written once by make_golden.py, which runs upstream ACE-Step 1.5's own prompt
builders (f30aee4) on these cases; here our code renders the same cases and tokenizes them as the
planner and the engine do."""

import json
from pathlib import Path

import pytest

from acestep_engine import Blueprint
from acestep_engine.blueprint import (COVER_INSTRUCTION, REPAINT_INSTRUCTION, TEXT2MUSIC_INSTRUCTION,
                                      complete_instruction, extract_instruction, lego_instruction)
from acestep_engine.lm import prompts

pytestmark = pytest.mark.real_vocabulary

GOLDEN = json.loads((Path(__file__).parent / "golden_prompts.json").read_text(encoding="utf-8"))
CASES = GOLDEN["cases"]
INSTRUCTIONS = {"text2music": lambda a: TEXT2MUSIC_INSTRUCTION, "repaint": lambda a: REPAINT_INSTRUCTION,
                "cover": lambda a: COVER_INSTRUCTION, "extract": lambda a: extract_instruction(a["track_name"]),
                "extract_default": lambda a: extract_instruction(), "lego": lambda a: lego_instruction(a["track_name"]),
                "lego_default": lambda a: lego_instruction(),
                "complete": lambda a: complete_instruction(a["complete_track_classes"]),
                "complete_default": lambda a: complete_instruction()}


def test_the_golden_file_was_made_with_this_tokenizer(qwen3_tokenizer):
    import hashlib

    assert GOLDEN["tokenizer_json_sha256"] == hashlib.sha256((qwen3_tokenizer / "tokenizer.json").read_bytes()).hexdigest()
    kinds = {case["kind"] for case in CASES.values()}
    assert kinds == {"lm", "dit_caption", "dit_lyrics"} and len(CASES) >= 100


def our_lm_prompt(planner, name, inputs):
    render = lambda messages, generation: prompts.render(planner.tokenizer, messages, generation)  # noqa: E731
    kind = name.split("/")[0]
    if kind == "think":
        return render(prompts.think_messages(inputs["caption"], inputs["lyrics"]), True)
    if kind in ("codes", "codes_unconditional"):
        return prompts.with_newline(render(prompts.codes_messages(inputs["caption"], inputs["lyrics"],
                                                                  prompts.cot_text(inputs["cot"])), False))
    if kind == "format":
        return render(prompts.format_messages(inputs["caption"], inputs["lyrics"]), True)
    if kind == "inspire":
        return render(prompts.inspire_messages(inputs["query"], inputs["instrumental"]), True)
    if kind == "understand":
        return render(prompts.understand_messages(inputs["codes"]), True)
    raise AssertionError(name)


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c["kind"] == "lm"))
def test_planner_prompts_match_upstream(real_planner, name):
    case = CASES[name]
    text = our_lm_prompt(real_planner, name, case["inputs"])
    assert text == case["text"]
    assert real_planner.table.encode(text) == case["ids"]


def blueprint_of(inputs) -> Blueprint:
    return Blueprint(caption=inputs.get("caption", ""), lyrics=inputs.get("lyrics", ""),
                     language=inputs.get("language", "unknown"), bpm=inputs.get("bpm"),
                     keyscale=inputs.get("keyscale"), timesignature=inputs.get("timesignature"),
                     duration=inputs.get("duration") or 60)


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c["kind"] != "lm"))
def test_dit_prompts_match_upstream(real_engine, name):
    from acestep_engine.generation.conditioning import CAPTION_MAX_TOKENS, LYRIC_MAX_TOKENS, _tokenize

    case = CASES[name]
    inputs = case["inputs"]
    if case["kind"] == "dit_caption":
        text = blueprint_of(inputs).caption_prompt(INSTRUCTIONS[inputs["task"]](inputs))
        limit = CAPTION_MAX_TOKENS
    else:
        text = blueprint_of(inputs).lyric_prompt()
        limit = LYRIC_MAX_TOKENS
    assert text == case["text"]
    ids, mask = _tokenize(real_engine.models.text_tokenizer, [text], limit, "cpu")
    assert ids[0].tolist() == case["ids"] and bool(mask.all())
