"""The 5 Hz LM planner on a tiny random Qwen3: prompts, constrained decoding, every planning mode."""

import threading

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acestep_engine import Blueprint, GenerationCancelled, Text2Music
from acestep_engine import lm_prompts as prompts
from acestep_engine.blueprint import KEYSCALES, LANGUAGES
from acestep_engine.constraints import PlannerConstraint, codes_shape
from acestep_engine.errors import CheckpointError, MissingCheckpointError, TaskError
from acestep_engine.planner import Planner
from acestep_engine.sources import parse_audio_codes

SYSTEM = "<|im_start|>system\n# Instruction\n{}\n\n<|im_end|>\n"


def codes_of(text):
    return parse_audio_codes(text, 10 ** 9)


# ---------------------------------------------------------------------------------- prompt strings
def test_phase_one_prompt_is_byte_identical(planner):
    text = prompts.render(planner.tokenizer, prompts.think_messages("city pop", "[verse]\nhello"), True)
    assert text == (SYSTEM.format("Generate audio semantic tokens based on the given conditions:")
                     + "<|im_start|>user\n# Caption\ncity pop\n\n# Lyric\n[verse]\nhello\n<|im_end|>\n"
                     + "<|im_start|>assistant\n")


def test_phase_two_prompts_carry_the_chain_of_thought_or_an_empty_one(planner):
    cot = prompts.cot_text({"bpm": 120, "caption": "city pop", "duration": 30, "keyscale": "C major",
                            "language": "en", "timesignature": 4})
    text = prompts.render(planner.tokenizer, prompts.codes_messages("city pop", "[Instrumental]", cot), False)
    assert text == (SYSTEM.format("Generate audio semantic tokens based on the given conditions:")
                    + "<|im_start|>user\n# Caption\ncity pop\n\n# Lyric\n[Instrumental]\n<|im_end|>\n"
                    + "<|im_start|>assistant\n<think>\nbpm: 120\ncaption: city pop\nduration: 30\n"
                    + "keyscale: C major\nlanguage: en\ntimesignature: 4\n</think>\n\n<|im_end|>\n")
    empty = prompts.render(planner.tokenizer, prompts.codes_messages("x", "y", prompts.cot_text({})), False)
    assert empty.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n<|im_end|>\n")


def test_inspire_format_and_understand_prompts(planner):
    def render(messages):
        return prompts.render(planner.tokenizer, messages, True)

    assert render(prompts.inspire_messages("rainy lo-fi", True)) == (
        SYSTEM.format("Expand the user's input into a more detailed and specific musical description:")
        + "<|im_start|>user\nrainy lo-fi\n\ninstrumental: true<|im_end|>\n<|im_start|>assistant\n")
    assert render(prompts.format_messages("pop", "la la")) == (
        SYSTEM.format("Format the user's input into a more detailed and specific musical description:")
        + "<|im_start|>user\n# Caption\npop\n\n# Lyric\nla la<|im_end|>\n<|im_start|>assistant\n")
    assert render(prompts.understand_messages("<|audio_code_1|><|audio_code_2|>")) == (
        SYSTEM.format("Understand the given musical conditions and describe the audio semantics accordingly:")
        + "<|im_start|>user\n<|audio_code_1|><|audio_code_2|><|im_end|>\n<|im_start|>assistant\n")


def test_template_free_rendering_matches_the_chat_template(planner):
    cot = prompts.cot_text({"bpm": 90, "caption": "x"})
    for messages, generation in [(prompts.think_messages("a", "b"), True),
                                 (prompts.codes_messages("a", "b", cot), False),
                                 (prompts.inspire_messages("q", False), True)]:
        assert prompts.render_chatml(messages, generation) == \
            planner.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def test_chain_of_thought_yaml_is_upstreams_and_parses_back():
    values = {"bpm": 120, "caption": "a dreamy lo-fi song with warm Rhodes chords, vinyl crackle and a soft female "
                                     "voice singing about the last train",
              "duration": 180, "keyscale": "C major", "language": "en", "timesignature": 4}
    dumped = prompts.cot_yaml(values)
    assert dumped == ("bpm: 120\ncaption: a dreamy lo-fi song with warm Rhodes chords, vinyl crackle and a soft "
                      "female\n  voice singing about the last train\nduration: 180\nkeyscale: C major\n"
                      "language: en\ntimesignature: 4\n")
    assert prompts.parse_cot(prompts.cot_text(values)) == values
    assert prompts.parse_cot("<think>\nbpm: 95\ngenres: jazz\ncaption: 'a: b'\n</think>\n\nla") == \
        {"bpm": 95, "genres": "jazz", "caption": "a: b"}
    assert prompts.split_lyrics("<think>\nbpm: 1\n</think>\n\n# Lyric\n[verse]\nhi<|im_end|>") == "[verse]\nhi"


# ---------------------------------------------------------------------------------- token table
def test_token_ids_come_from_the_tokenizer(planner):
    table, tok = planner.table, planner.tokenizer
    assert table.eos_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert table.think_id == tok.convert_tokens_to_ids("<think>")
    assert table.code_ids[0] == tok.convert_tokens_to_ids("<|audio_code_0|>")
    assert table.code_ids[65534] == tok.convert_tokens_to_ids("<|audio_code_65534|>")
    assert table.codebook_size == 64000  # the DiT's FSQ codebook, fewer than the LM's 65535 code tokens
    assert int(table.valid_codes.sum()) == 64000
    assert not table.valid_codes[table.code_ids[64000]]


# ---------------------------------------------------------------------------------- planning modes
@pytest.mark.parametrize("seed", [0, 1])
def test_inspire_writes_a_valid_blueprint_with_lyrics(planner, seed):
    bp = planner.inspire("a rainy-night lo-fi song about missing the last train", seed=seed)
    assert bp.validate() == bp
    assert bp.bpm is not None and bp.keyscale in KEYSCALES and bp.timesignature in (2, 3, 4, 6)
    assert bp.language in LANGUAGES and 10 <= bp.duration <= 600 and bp.caption.strip()
    assert "\ufffd" not in bp.caption + bp.lyrics
    assert not any(ch < " " and ch not in "\n\t" for ch in bp.caption + bp.lyrics)
    assert set(bp.planned) == {"caption", "lyrics", "bpm", "keyscale", "timesignature", "language", "duration"}


def test_inspire_injects_the_language_and_skips_lyrics_for_instrumentals(planner):
    bp = planner.inspire("ambient drones", instrumental=True, language="ja", seed=3)
    assert bp.language == "ja" and bp.instrumental and bp.lyrics == ""
    with pytest.raises(TaskError, match="query must be a non-empty"):
        planner.inspire("   ")
    with pytest.raises(Exception, match="language must be one of"):
        planner.inspire("x", language="klingon")


open_fields = st.fixed_dictionaries({}, optional={
    "caption": st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40)
    .filter(str.strip),
    "bpm": st.integers(30, 300),
    "keyscale": st.sampled_from(KEYSCALES),
    "timesignature": st.sampled_from((2, 3, 4, 6)),
    "language": st.sampled_from([code for code in LANGUAGES if code != "unknown"]),
    "duration": st.integers(10, 600).map(float),
})


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=open_fields, seed=st.integers(0, 2 ** 32))
def test_complete_fills_only_the_open_fields(planner, fields, seed):
    user = Blueprint(lyrics="[verse]\nla la", **fields)
    out = planner.complete(user, seed=seed)
    assert out.validate() == out
    for name, value in fields.items():
        assert getattr(out, name) == value, name
    assert out.lyrics == user.lyrics
    expected = {"caption", "bpm", "keyscale", "timesignature", "language"} - set(fields)
    assert set(out.planned) == expected
    assert out.bpm is not None and out.keyscale and out.timesignature and out.caption


def test_complete_plans_duration_on_request_and_rejects_unknown_fields(planner):
    out = planner.complete(Blueprint(caption="x", bpm=100, duration=42), fields=["duration"], seed=5)
    assert out.planned == ("duration",) and out.bpm == 100 and out.caption == "x"
    assert 10 <= out.duration <= 600 and out.duration == int(out.duration)
    with pytest.raises(TaskError, match="fields must be among caption, bpm"):
        planner.complete(Blueprint(), fields=["tempo"])


def test_complete_is_reproducible_per_seed_and_batches(planner):
    bp = Blueprint(lyrics="hi")
    assert planner.complete(bp, seed=11) == planner.complete(bp, seed=11)
    batch = planner.complete_batch([bp, Blueprint(bpm=77)], seeds=[11, 12])
    assert batch[0] == planner.complete(bp, seed=11)
    assert batch[1].bpm == 77


def test_format_keeps_the_users_metadata(planner):
    user = Blueprint(caption="pop song", lyrics="la la la", bpm=128, keyscale="A minor", timesignature=4,
                     duration=60, language="en")
    out = planner.format(user, seed=2)
    assert (out.bpm, out.keyscale, out.timesignature, out.duration, out.language) == (128, "A minor", 4, 60.0, "en")
    assert out.lyrics and out.validate() == out
    assert set(out.planned) == {"caption", "lyrics"}


# ---------------------------------------------------------------------------------- audio codes
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(duration=st.integers(10, 24), seed=st.integers(0, 2 ** 32), guidance=st.sampled_from([1.0, 2.0]))
def test_codes_are_exactly_five_per_second_and_in_the_codebook(planner, duration, seed, guidance):
    text = planner.codes(Blueprint(caption="x", duration=duration), seed=seed, guidance=guidance)
    values = codes_of(text)
    assert len(values) == duration * 5
    assert all(0 <= v < 64000 for v in values)
    assert text == "".join(f"<|audio_code_{v}|>" for v in values)


def test_codes_follow_the_seed_and_the_sampling_knobs(planner):
    bp = Blueprint(caption="x", bpm=100, duration=10)
    a = planner.codes(bp, seed=1)
    assert a == planner.codes(bp, seed=1)
    assert a != planner.codes(bp, seed=2)
    assert planner.codes(bp, seed=1, top_k=1) == planner.codes(bp, seed=9, top_k=1)  # greedy
    batch = planner.codes_batch(bp, 3, seeds=[1, 2, 3])
    assert batch[0] == a and len(set(batch)) == 3
    with pytest.raises(TaskError, match="temperature must be between"):
        planner.codes(bp, temperature=0)
    with pytest.raises(TaskError, match="batch_size must be between 1 and 8"):
        planner.codes_batch(bp, 9)


def test_the_negative_prompt_replaces_the_caption_of_the_unconditional_prompt(planner, monkeypatch):
    seen = {}
    run = planner._run

    def spy(texts, shapes, *args, unconditional=None, **kwargs):
        seen["cond"], seen["uncond"] = texts[0], unconditional
        return run(texts, shapes, *args, unconditional=unconditional, **kwargs)

    monkeypatch.setattr(planner, "_run", spy)
    planner.codes(Blueprint(caption="city pop", duration=10), seed=0, negative_prompt="harsh noise")
    assert "# Caption\ncity pop\n" in seen["cond"] and "bpm" not in seen["uncond"]
    assert "# Caption\nharsh noise\n" in seen["uncond"][0] and "<think>\n\n</think>" in seen["uncond"][0]
    planner.codes(Blueprint(caption="city pop", duration=10), seed=0, negative_prompt="NO USER INPUT")
    assert "# Caption\ncity pop\n" in seen["uncond"][0]
    planner.codes(Blueprint(caption="city pop", duration=10), seed=0, guidance=1.0)
    assert seen["uncond"] is None


def test_guidance_runs_cond_and_uncond_in_one_forward(planner, monkeypatch):
    batches = []
    forward = planner.model.model.forward

    def spy(*args, **kwargs):
        batches.append(kwargs["input_ids"].shape[0])
        return forward(*args, **kwargs)

    monkeypatch.setattr(planner.model.model, "forward", spy)
    planner.codes(Blueprint(caption="x", duration=10), seed=0, guidance=2.0)
    assert set(batches) == {2}
    batches.clear()
    planner.codes(Blueprint(caption="x", duration=10), seed=0, guidance=1.0)
    assert set(batches) == {1}


def test_forced_text_is_fed_in_one_forward(planner, monkeypatch):
    lengths = []
    forward = planner.model.forward

    def spy(*args, **kwargs):
        lengths.append(kwargs["input_ids"].shape[1])
        return forward(*args, **kwargs)

    monkeypatch.setattr(planner.model, "forward", spy)
    user = Blueprint(caption="a long caption the user wrote themselves", bpm=120, keyscale="C major",
                     timesignature=4, language="en", duration=30)
    out = planner.complete(user, seed=0)
    assert out.planned == ()
    # prompt, then the whole injected chain of thought at once (nothing is left to sample)
    assert len(lengths) <= 3


def test_the_code_phase_head_equals_the_full_lm_head(planner):
    ids = torch.tensor([planner.table.encode("<|im_start|>assistant\n<think>\n\n</think>\n\n<|im_end|>\n")])
    mask = torch.ones_like(ids)
    positions = torch.arange(ids.shape[1])[None]
    from transformers import DynamicCache

    fast = planner._next_logits(ids, mask, positions, DynamicCache(), codes_only=True)
    full = planner._next_logits(ids, mask, positions, DynamicCache(), codes_only=False)
    allowed = planner.table.valid_codes.clone()
    allowed[planner.table.eos_id] = True
    assert torch.allclose(fast[0, allowed], full[0, allowed], atol=1e-5)
    assert torch.isinf(fast[0, ~allowed]).all()


def test_the_constraint_works_inside_model_generate(planner):
    prompt = prompts.with_newline(prompts.render(planner.tokenizer, prompts.codes_messages(
        "x", "[Instrumental]", prompts.cot_text({"duration": 10})), False))
    ids = torch.tensor([planner.table.encode(prompt)])
    constraint = PlannerConstraint(planner.table, [codes_shape(50)])
    out = planner.model.generate(ids, attention_mask=torch.ones_like(ids), logits_processor=[constraint],
                                 max_new_tokens=60, do_sample=True, eos_token_id=planner.table.eos_id,
                                 pad_token_id=planner.table.eos_id)
    new = out[0, ids.shape[1]:].tolist()
    assert new[-1] == planner.table.eos_id and len(new) == 51
    assert all(planner.table.valid_codes[t] for t in new[:-1])


def test_progress_and_cancel(planner):
    reports = []
    planner.codes(Blueprint(caption="x", duration=10), seed=0, progress=reports.append)
    assert reports and reports[-1].stage == "codes" and reports[-1].step == reports[-1].steps == 51
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(GenerationCancelled):
        planner.codes(Blueprint(caption="x", duration=10), cancel=cancel)


def test_planned_codes_render_through_the_engine(planner, turbo):
    bp = Blueprint(caption="x", duration=10, bpm=100)
    codes = planner.codes(bp, seed=4)
    take, = turbo.generate(bp, Text2Music(audio_codes=codes), seeds=1)
    assert take.duration == pytest.approx(10.0, abs=0.05)
    assert take.task["audio_codes"] == codes


def test_understand_describes_audio_with_its_own_duration(planner, turbo):
    t = np.arange(int(10 * turbo.sample_rate)) / turbo.sample_rate
    tone = np.stack([np.sin(2 * np.pi * 220 * t)] * 2).astype(np.float32) * 0.3
    bp = planner.understand((tone, turbo.sample_rate), seed=0)
    assert bp.duration == 10.0 and bp.validate() == bp and bp.caption
    from_codes = planner.understand("<|audio_code_3|>" * 75, seed=0)
    assert from_codes.duration == 15.0


# ---------------------------------------------------------------------------------- loading
def test_loading_by_name_path_and_errors(tiny_dir, tmp_path, planner):
    by_path = Planner.from_pretrained(tiny_dir / "acestep-5Hz-lm-0.6B", device="cpu")
    assert by_path.name == "acestep-5Hz-lm-0.6B" and by_path.is_demo
    with pytest.raises(MissingCheckpointError, match="acestep download --lm acestep-5Hz-lm-4B"):
        Planner.from_pretrained("acestep-5Hz-lm-4B", checkpoints_dir=tmp_path)
    with pytest.raises(CheckpointError, match="planner must be a folder with config.json or one of"):
        Planner.from_pretrained("gpt-2")
    with pytest.raises(CheckpointError, match="is not a Qwen3 causal LM"):
        Planner.from_pretrained(tiny_dir / "vae")


def test_checkpoints_without_the_model_prefix_load_the_same_weights(tmp_path, planner):
    from acestep_engine.testing import write_lm

    write_lm(tmp_path / "lm", with_model_prefix=False)
    write_lm(tmp_path / "lm-ref")
    a = Planner.from_pretrained(tmp_path / "lm", device="cpu")
    b = Planner.from_pretrained(tmp_path / "lm-ref", device="cpu")
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(x, y), name
