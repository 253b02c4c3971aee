"""The 5 Hz LM planner on a tiny random Qwen3: prompts, constrained decoding, every planning mode."""

import threading

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from acestep_engine import Blueprint, GenerationCancelled, Text2Music
from acestep_engine.blueprint import KEYSCALES, LANGUAGES
from acestep_engine.errors import CheckpointError, MissingCheckpointError, TaskError
from acestep_engine.generation import parse_audio_codes
from acestep_engine.lm import prompts
from acestep_engine.lm.constraints import PlannerConstraint
from acestep_engine.lm.genres import Vocabulary, load_genres_vocab
from acestep_engine.lm.planner import Planner, code_count
from acestep_engine.lm.row_state import RowState
from acestep_engine.lm.sampling import SamplingOptions, draw_row
from acestep_engine.lm.shapes import codes_shape, cot_shape

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


def test_format_keeps_the_users_metadata(planner, monkeypatch):
    user = Blueprint(caption="pop song", lyrics="la la la", bpm=128, keyscale="A minor", timesignature=4,
                     duration=60, language="en")
    runs = spy_runs(planner, monkeypatch)
    out = planner.format(user, seed=2)
    assert (out.bpm, out.keyscale, out.timesignature, out.duration, out.language) == (128, "A minor", 4, 60.0, "en")
    keys = [line.split(":")[0] for line in cot_lines(runs[-1]["out"][0]) if not line.startswith(" ")]
    assert keys == ["bpm", "caption", "duration", "genres", "keyscale", "timesignature"]  # upstream's skip_language
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
    with pytest.raises(TaskError, match=r"temperature must be a number above 0 up to 5 \(got 0\)"):
        planner.codes(bp, temperature=0)
    with pytest.raises(TaskError, match=r"batch_size must be a whole number from 1 to 8 \(got 9\)"):
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

    fast = planner.decoder.next_logits(ids, mask, positions, DynamicCache(), codes_only=True)
    full = planner.decoder.next_logits(ids, mask, positions, DynamicCache(), codes_only=False)
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
    from acestep_engine.models import write_lm

    write_lm(tmp_path / "lm", with_model_prefix=False)
    write_lm(tmp_path / "lm-ref")
    a = Planner.from_pretrained(tmp_path / "lm", device="cpu")
    b = Planner.from_pretrained(tmp_path / "lm-ref", device="cpu")
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(x, y), name


# ---------------------------------------------------------------------------------- upstream's decoding rules
# Literals below are written from upstream's llm_inference.py / constrained_logits_processor.py behaviour.
def spy_runs(planner, monkeypatch):
    """Record (prompt texts, shapes, sampling options, decoded answers) of every LM run."""
    runs = []
    run = planner._run

    def spy(texts, shapes, seeds, progress, cancel, stage, sampling, *args, **kwargs):
        out = run(texts, shapes, seeds, progress, cancel, stage, sampling, *args, **kwargs)
        top_p = kwargs.get("top_p", 0.9)
        runs.append({"texts": texts, "shapes": shapes, "options": SamplingOptions.of(sampling, top_p=top_p),
                     "out": out, "unconditional": kwargs.get("unconditional")})
        return out

    monkeypatch.setattr(planner, "_run", spy)
    return runs


def cot_lines(text):
    return text.split("<think>")[-1].split("</think>")[0].strip("\n").split("\n")


def test_code_count_is_int_of_duration_times_five():
    assert [code_count(d) for d in (60.5, 10.0, 10.2, 10.5, 10.99, 599.9, 600.0)] == [302, 50, 51, 52, 54, 2999, 3000]


def test_fractional_durations_get_upstreams_code_count(planner):
    assert len(codes_of(planner.codes(Blueprint(caption="x", duration=10.5), seed=0, guidance=1.0))) == 52
    assert len(codes_of(planner.codes(Blueprint(caption="x", duration=12.9), seed=0, guidance=1.0))) == 64


def test_injected_values_are_written_as_upstream_injects_them(planner, monkeypatch):
    assert prompts.injected_line("language", "no") == "language: no\n"
    assert prompts.injected_line("keyscale", "F# minor") == "keyscale: F# minor\n"
    assert prompts.injected_line("bpm", 120) == "bpm: 120\n"
    runs = spy_runs(planner, monkeypatch)
    out = planner.complete(Blueprint(lyrics="hei", language="no", bpm=96), seed=0)
    assert out.language == "no" and out.bpm == 96
    lines = cot_lines(runs[-1]["out"][0])
    assert "language: no" in lines and "bpm: 96" in lines
    # the code phase's thinking block is yaml.dump'ed, as upstream's _format_metadata_as_cot
    assert prompts.cot_text({"language": "no"}) == "<think>\nlanguage: 'no'\n</think>"


def test_genres_line_is_forced_and_free_without_a_vocabulary(planner, monkeypatch):
    runs = spy_runs(planner, monkeypatch)
    planner.inspire("sea shanty", instrumental=True, seed=1)
    keys = [line.split(":")[0] for line in cot_lines(runs[-1]["out"][0]) if not line.startswith(" ")]
    assert keys == ["bpm", "caption", "duration", "genres", "keyscale", "language", "timesignature"]
    genres = prompts.parse_cot(runs[-1]["out"][0])["genres"]
    assert genres.strip() and len(genres) <= 200


def test_genres_line_is_one_entry_of_a_given_vocabulary(planner, monkeypatch, tmp_path):
    vocab_file = tmp_path / "genres_vocab.txt"
    vocab_file.write_text("# genres\nLo-Fi Hip Hop\njazz\ncity pop\njazz fusion\n\n", encoding="utf-8")
    vocab = load_genres_vocab(vocab_file)
    assert vocab.entries == ["Lo-Fi Hip Hop", "city pop", "jazz", "jazz fusion"]
    monkeypatch.setattr(planner, "genres_vocab", vocab)
    runs = spy_runs(planner, monkeypatch)
    seen = set()
    for seed in range(4):
        planner.inspire("night drive", instrumental=True, seed=seed)
        value = prompts.parse_cot(runs[-1]["out"][0])["genres"]
        assert value.strip() in vocab.entries, value  # spelled as the vocabulary spells it
        seen.add(value.strip())
    planner.understand("<|audio_code_3|>" * 50, seed=0)
    assert prompts.parse_cot(runs[-1]["out"][0])["genres"].strip() in vocab.entries
    assert len(seen) >= 2  # the LM chooses among the entries


def test_genres_vocabulary_comes_from_the_option_or_the_environment(monkeypatch, tmp_path):
    path = tmp_path / "g.txt"
    path.write_text("ambient\n", encoding="utf-8")
    monkeypatch.delenv("ACESTEP_GENRES_VOCAB", raising=False)
    assert load_genres_vocab(None) is None
    monkeypatch.setenv("ACESTEP_GENRES_VOCAB", str(path))
    assert load_genres_vocab(None).entries == ["ambient"]
    assert load_genres_vocab(["Rock", "rock", " pop ", "pop"]).entries == ["Rock", "pop", "rock"]
    assert "ROCK" in load_genres_vocab(["Rock"])
    with pytest.raises(TaskError, match="genres vocabulary file .*missing.txt does not exist"):
        load_genres_vocab(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(TaskError, match="has no entries"):
        load_genres_vocab(tmp_path / "empty.txt")
    with pytest.raises(TaskError, match="genres_vocab must be a file path, a list of genres or None"):
        load_genres_vocab(42)


def test_vocabulary_allows_only_prefixes_of_entries(planner):
    table = planner.table
    vocab = Vocabulary(["jazz", "jazz fusion", "pop", "K-Pop"])
    allowed = {table.text[i] for i in vocab.allowed(table, "").nonzero().squeeze(1).tolist()}
    assert {"j", "p", "K", " "} <= allowed and not allowed & {"x", "\n", "J", "P", "k"}  # one leading space may come first
    assert " " not in {table.text[i] for i in vocab.allowed(table, " ").nonzero().squeeze(1).tolist()}
    assert {table.text[i] for i in vocab.allowed(table, " jaz").nonzero().squeeze(1).tolist()} == {"z"}
    assert {table.text[i] for i in vocab.allowed(table, "K-").nonzero().squeeze(1).tolist()} == {"P"}  # as spelled
    after_jazz = {table.text[i] for i in vocab.allowed(table, "jazz").nonzero().squeeze(1).tolist()}
    assert after_jazz == {" ", "\n"}  # " fusion" may follow, or the line ends on a whole entry
    assert not vocab.allowed(table, "ja").numpy()[table.newline_id]


def drive_to(row, table, until):
    """Feed the forced tokens of `row` until `until(row)` holds; returns the tokens fed."""
    fed = []
    while not until(row):
        run = row.forced(table)
        assert run, "the row needs a real choice before the condition holds"
        for token in run:
            row.advance(token, table)
            fed.append(token)
            if until(row):
                break
    return fed


def test_language_first_token_is_the_argmax_of_the_language_choices(planner):
    table = planner.table
    fixed = {"bpm": 90, "caption": "x", "duration": 30, "keyscale": "C major", "timesignature": 4}
    row = RowState(cot_shape(table, fixed))
    drive_to(row, table, lambda r: r.mode == "trie" and len(r.candidates[0][1].children) > 1)
    assert row.shape.segments[row.candidates[0][0]].name == "language"
    choices = sorted(row.candidates[0][1].children)
    scores = torch.full((table.vocab_size,), -5.0)
    scores[table.encode("Q")[0]] = 9.0  # the best token overall is not a language's
    scores[table.encode("j")[0]] = 3.0
    scores[table.encode("e")[0]] = 2.9
    allowed = row.allowed(table, scores).nonzero().squeeze(1).tolist()
    assert allowed == table.encode("j") and table.encode("j")[0] in choices
    assert sorted(row.allowed(table, None).nonzero().squeeze(1).tolist()) == choices  # no scores: all choices


def test_language_is_chosen_greedily_in_complete(planner):
    bp = Blueprint(caption="x", lyrics="la", bpm=90, keyscale="C major", timesignature=4, duration=30)
    first = {planner.complete(bp, seed=seed).language[0] for seed in range(5)}
    assert len(first) == 1  # everything before the language is fixed, so its first token is too


def test_caption_continues_after_a_newline_only_when_the_likeliest_token_starts_with_a_space(planner):
    table = planner.table
    row = RowState(cot_shape(table, {"bpm": 90}))
    drive_to(row, table, lambda r: r.mode == "value")
    for token in table.encode("soft piano\n"):
        row.advance(token, table)
    assert row.mode == "value_newline"
    space, d = table.encode(" ")[0], table.encode("d")[0]
    scores = torch.zeros(table.vocab_size)
    scores[space] = 5.0
    allowed = row.allowed(table, scores)
    assert allowed[space] and not allowed[d]
    scores[table.encode("Z")[0]] = 9.0  # neither a continuation nor the next field: the caption ends
    allowed = row.allowed(table, scores)
    assert allowed.nonzero().squeeze(1).tolist() == [d]


def test_free_genres_end_when_the_newline_is_likeliest(planner):
    table = planner.table
    row = RowState(cot_shape(table, {"bpm": 90, "caption": "x", "duration": 30}, genres=True))
    drive_to(row, table, lambda r: r.mode == "value")
    assert row.shape.segments[row.segment].name == "genres"
    scores = torch.zeros(table.vocab_size)
    scores[table.newline_id] = 9.0
    assert not row.allowed(table, scores)[table.newline_id]  # a blank value cannot end
    row.advance(table.encode("j")[0], table)
    assert row.allowed(table, scores).nonzero().squeeze(1).tolist() == [table.newline_id]
    scores[table.encode("a")[0]] = 10.0
    allowed = row.allowed(table, scores)
    assert allowed[table.encode("a")[0]] and allowed[table.newline_id]  # otherwise sampled as free text


def test_all_four_user_metas_skip_phase_one_and_fill_the_thinking_block(planner, monkeypatch):
    user = Blueprint(caption="city pop", lyrics="", bpm=120, keyscale="C major", timesignature=4, duration=30,
                     language="en")
    assert prompts.codes_cot_values(user) == {"bpm": 120, "duration": 30, "keyscale": "C major", "timesignature": 4}
    runs = spy_runs(planner, monkeypatch)
    planned, codes = planner.plan(user, seed=0, guidance=1.0)
    assert planned == user and len(codes_of(codes)) == 150
    assert [run["shapes"][0].start_codes for run in runs] == [True]  # no phase 1
    assert runs[0]["texts"][0].endswith(
        "<|im_start|>user\n# Caption\ncity pop\n\n# Lyric\n\n<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nbpm: 120\nduration: 30\nkeyscale: C major\ntimesignature: 4\n"
        "</think>\n\n<|im_end|>\n")
    # one of the four open: phase 1 runs and the thinking block holds all six fields
    runs.clear()
    planned, _ = planner.plan(user.replace(bpm=None), seed=0, guidance=1.0)
    assert [run["shapes"][0].start_codes for run in runs] == [False, True]
    assert cot_lines(runs[1]["texts"][0]) == prompts.cot_yaml(prompts.cot_values(planned)).strip("\n").split("\n")
    assert "caption: city pop" in cot_lines(runs[1]["texts"][0]) and "language: en" in cot_lines(runs[1]["texts"][0])
    # the planned blueprint given to codes() has all four set: as upstream given those fields, four only
    planner.codes(planned, seed=0, guidance=1.0)
    assert cot_lines(runs[-1]["texts"][0]) == [f"bpm: {planned.bpm}", "duration: 30", f"keyscale: {planned.keyscale}",
                                               f"timesignature: {planned.timesignature}"]


def test_blank_lyrics_are_sent_blank_and_instrumental_as_the_tag(planner, monkeypatch):
    runs = spy_runs(planner, monkeypatch)
    planner.complete(Blueprint(caption="x", lyrics=""), seed=0)
    assert "# Caption\nx\n\n# Lyric\n\n<|im_end|>" in runs[-1]["texts"][0]
    planner.complete(Blueprint(caption="x", lyrics="la la", instrumental=True), seed=0)
    assert "# Caption\nx\n\n# Lyric\n[Instrumental]\n<|im_end|>" in runs[-1]["texts"][0]
    planner.codes(Blueprint(caption="x", lyrics="  "), seed=0, guidance=2.0)
    assert "# Lyric\n  \n<|im_end|>" in runs[-1]["texts"][0] and "# Lyric\n  \n<|im_end|>" in runs[-1]["unconditional"][0]


def test_sampling_defaults_are_upstreams(planner, monkeypatch):
    runs = spy_runs(planner, monkeypatch)
    planner.inspire("x", instrumental=True, seed=0)
    planner.format(Blueprint(caption="x", instrumental=True), seed=0)
    planner.understand("<|audio_code_1|>" * 50, seed=0)
    planner.complete(Blueprint(caption="x"), seed=0)
    planner.codes(Blueprint(caption="x"), seed=0)
    assert [(r["options"].top_p, r["options"].temperature, r["options"].top_k) for r in runs] == \
        [(None, 0.85, None)] * 3 + [(0.9, 0.85, None)] * 2
    assert runs[-1]["options"].guidance == 2.0
    planner.inspire("x", instrumental=True, seed=0, top_p=0.5)
    assert runs[-1]["options"].top_p == 0.5


def test_temperature_is_applied_before_top_p():
    # softmax([2, 1, 0] / 2) = [0.51, 0.31, 0.19]: top_p 0.6 keeps two tokens (temperature last would keep one)
    scores = torch.tensor([2.0, 1.0, 0.0])
    options = SamplingOptions(temperature=2.0, top_p=0.6)
    drawn = {int(draw_row(scores, torch.Generator().manual_seed(s), options)) for s in range(200)}
    assert drawn == {0, 1}


@pytest.mark.parametrize("scale", [0.01, 1.0, 8.0])
@pytest.mark.parametrize("top_k", [None, 1, 30])
def test_the_nucleus_from_a_partial_sort_is_the_sorted_one(scale, top_k):
    # Top-k then top-p keep the tokens whose mass before them is under top_p; found from a few
    # dozen best (a peaked row) or a mass histogram (a flat one), never by sorting every token.
    from acestep_engine.lm.sampling import nucleus

    g = torch.Generator().manual_seed(int(scale * 100) + (top_k or 0))
    for n, top_p in [(3, 0.5), (500, 0.9), (20000, 0.9), (20000, 0.99)]:
        scores = torch.randn(n, generator=g, dtype=torch.float64) * scale
        masked = scores.clone()
        if top_k:
            masked[scores < torch.topk(scores, min(top_k, n)).values[-1]] = float("-inf")
        ordered, order = torch.sort(masked, descending=True)
        probs = ordered.softmax(-1)
        want = order[(probs.cumsum(-1) - probs) < top_p]
        values, got = nucleus(scores.float(), top_k, top_p)
        assert set(got.tolist()) == set(want.tolist()) and torch.equal(values, scores.float()[got])


def _masked_draw(scores, generator, options):
    """The draw as a mask over the whole row makes it: top-k, then top-p by a full sort."""
    scores = scores / options.temperature
    if options.top_k:
        scores = scores.masked_fill(scores < torch.topk(scores, min(options.top_k, scores.numel())).values[-1],
                                    float("-inf"))
    if options.top_p is not None and options.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=True)
        probs = ordered.softmax(-1)
        drop = probs.cumsum(-1) - probs >= options.top_p
        scores = scores.masked_fill(drop.scatter(0, order, drop), float("-inf"))
    return int(torch.multinomial(scores.softmax(-1), 1, generator=generator)[0])


@pytest.mark.parametrize("scale", [0.05, 3.0])
@pytest.mark.parametrize("top_k", [None, 40])
def test_the_same_seed_draws_the_same_token_as_a_mask_over_the_row(scale, top_k):
    # The partial sort and the histogram change what the draw costs, never which token a seed gives.
    g = torch.Generator().manual_seed(7)
    options = SamplingOptions(temperature=0.85, top_k=top_k, top_p=0.9)
    for n in (50, 30000):
        scores = torch.randn(n, generator=g) * scale
        for seed in range(40):
            got = int(draw_row(scores, torch.Generator().manual_seed(seed), options, dense=True))
            assert got == _masked_draw(scores, torch.Generator().manual_seed(seed), options), (n, seed)


def test_text_after_think_is_capped_unless_asked_not_to(planner, monkeypatch):
    out = planner.inspire("a long ballad", seed=0, max_text_chars=40)
    assert len(out.lyrics) <= 40
    runs = spy_runs(planner, monkeypatch)
    planner.inspire("a long ballad", seed=0, max_text_chars=None)
    shape = runs[-1]["shapes"][0]
    assert shape.text_chars is None and shape.max_tokens == 4096
    with pytest.raises(TaskError, match=r"max_text_chars must be a whole number from 1 to 4000, or None \(got 0\)"):
        planner.inspire("x", max_text_chars=0)


def test_keep_caption_false_lets_the_lm_write_the_caption(planner, monkeypatch):
    user = Blueprint(caption="my own words", lyrics="la", bpm=100)
    kept = planner.complete(user, seed=0)
    assert kept.caption == "my own words" and "caption" not in kept.planned
    runs = spy_runs(planner, monkeypatch)
    rewritten = planner.complete(user, seed=0, keep_caption=False)
    assert "caption" in rewritten.planned and rewritten.bpm == 100
    assert all(s.name != "caption" or s.text_chars for s in runs[-1]["shapes"][0].segments)  # free, not injected
    # in plan(), the user prompt keeps the user's caption while the thinking block holds the LM's
    runs.clear()
    planned, _ = planner.plan(user, seed=0, keep_caption=False, guidance=1.0)
    assert "# Caption\nmy own words\n" in runs[-1]["texts"][0]
    assert prompts.cot_text(prompts.cot_values(planned)) in runs[-1]["texts"][0]
    assert "caption" in planned.planned


def lines_in(trie):
    return int(trie.complete) + sum(lines_in(child) for child in trie.children.values())


def test_understand_true_duration_flag(planner, monkeypatch):
    runs = spy_runs(planner, monkeypatch)
    assert planner.understand("<|audio_code_3|>" * 75, seed=0).duration == 15.0
    assert lines_in(runs[-1]["shapes"][0].segments[3].trie) == 1  # "duration: 15" injected
    lm = planner.understand("<|audio_code_3|>" * 75, seed=0, true_duration=False)
    assert lines_in(runs[-1]["shapes"][0].segments[3].trie) == 591  # the LM writes one of 10..600
    assert 10 <= lm.duration <= 600


# ---------------------------------------------------------------------------------- input checks
@pytest.mark.parametrize("call, message", [
    (lambda p: p.inspire("x", seed=-1), r"seed must be from 0 to 2\*\*63 - 1 \(got -1\)"),
    (lambda p: p.inspire("x", seed=2 ** 63), r"seed must be from 0 to 2\*\*63 - 1 \(got 9223372036854775808\)"),
    (lambda p: p.codes_batch(Blueprint(), 2, seeds=2 ** 63 - 1), r"seeds must be from 0 to 2\*\*63 - 1 \(seed \+ 1"),
    (lambda p: p.codes_batch(Blueprint(), 2, seeds=[1.7, 2]), r"seeds must be whole numbers"),
    (lambda p: p.codes(Blueprint(), seed="7"), r"seed must be a whole number .* \(got '7' of type str\)"),
    (lambda p: p.codes(Blueprint(), temperature="hot"), r"temperature must be a number above 0 up to 5 \(got 'hot'"),
    (lambda p: p.codes(Blueprint(), guidance=float("nan")), r"guidance must be a number from 1 to 15 \(got nan\)"),
    (lambda p: p.codes(Blueprint(), top_k=1.5), r"top_k must be a whole number from 0 to 1000000, or None"),
    (lambda p: p.codes(Blueprint(), top_p=True), r"top_p must be a number above 0 up to 1, or None"),
    (lambda p: p.codes(Blueprint(), tempreature=1.0), r"unknown sampling option 'tempreature'"),
    (lambda p: p.codes(Blueprint(), negative_prompt=5), r"negative_prompt must be text or None \(got int\)"),
    (lambda p: p.codes(Blueprint(), progress="yes"), r"progress must be a callable"),
    (lambda p: p.codes(Blueprint(), cancel="yes"), r"cancel must be a threading.Event"),
    (lambda p: p.codes("not a blueprint"), r"blueprint must be a Blueprint \(got str\)"),
    (lambda p: p.complete(Blueprint(), fields=5), r"fields must be a list of field names"),
    (lambda p: p.complete_batch(Blueprint()), r"blueprints must be a list of 1 to 8 Blueprints"),
    (lambda p: p.complete(Blueprint(), keep_caption="no"), r"keep_caption must be True or False \(got 'no'\)"),
    (lambda p: p.inspire("x", instrumental="yes"), r"instrumental must be True or False \(got 'yes'\)"),
    (lambda p: p.inspire("x", language=5), r"language must be a language code"),
    (lambda p: p.inspire("x" * 5000), r"query must be shorter than 2048 characters \(got 5000\)"),
    (lambda p: p.understand("<|audio_code_1|>" * 3001), r"audio must be at most 600 s: 3000 codes \(got 3001"),
    (lambda p: p.understand("x", true_duration=1), r"true_duration must be True or False"),
])
def test_bad_planner_input_is_named(planner, call, message):
    with pytest.raises(TaskError, match=message):
        call(planner)


def test_a_huge_negative_prompt_is_refused_before_tokenizing(planner, monkeypatch):
    def boom(text):
        raise AssertionError("tokenized")

    monkeypatch.setattr(planner.table, "encode", boom)
    with pytest.raises(TaskError, match=r"negative_prompt must be shorter than 512 characters \(got 100000\)"):
        planner.codes(Blueprint(caption="x"), negative_prompt="n" * 100_000)
    with pytest.raises(TaskError, match=r"audio as a code string must be at most 200000 characters"):
        planner.understand("<|audio_code_1|>" + "x" * 300_000)


def test_the_default_dtype_is_autos(planner):
    from acestep_engine.lm.planner import default_lm_dtype
    from acestep_engine.runtime import auto_dtype

    assert default_lm_dtype(torch.device("cpu")) == auto_dtype("cpu")
    assert planner.model.dtype == auto_dtype("cpu")


def test_the_code_step_draws_as_the_general_step_and_the_growing_cache_as_the_plain_one(planner, monkeypatch):
    from transformers import DynamicCache

    import acestep_engine.lm.decoding as decoding_module
    from acestep_engine.lm.growing_cache import growing_layer_class

    bp = Blueprint(caption="x", bpm=100, duration=10)
    fast = planner.codes_batch(bp, 2, seeds=[5, 6])
    monkeypatch.setattr(planner.decoder, "code_head", lambda: None)  # the general step: full vocabulary, constraint
    assert planner.codes_batch(bp, 2, seeds=[5, 6]) == fast
    monkeypatch.setattr(decoding_module, "growing_cache", DynamicCache)
    assert planner.codes_batch(bp, 2, seeds=[5, 6]) == fast
    layer = growing_layer_class(__import__("transformers").cache_utils.DynamicLayer)()
    for n in (300, 1, 1, 500):
        k = torch.randn(2, 8, n, 16)
        keys, values = layer.update(k, k + 1)
    assert keys.shape == (2, 8, 802, 16) and torch.equal(keys[:, :, -500:], k) and torch.equal(values, keys + 1)


def test_an_offloading_planner_parks_its_lm_between_calls_and_plans_the_same(tiny_dir, planner):
    from acestep_engine.lm import Planner
    from acestep_engine.runtime import parking

    lean = Planner.from_pretrained("acestep-5Hz-lm-0.6B", checkpoints_dir=tiny_dir, device="cpu", offload=True)
    bp = Blueprint(caption="x", duration=10)
    first = lean.codes(bp, seed=4)
    assert not lean.resident and parking.is_parked(lean.model)
    assert sum(p.numel() for p in lean.model.parameters()) == 0
    assert lean.codes(bp, seed=4) == first == planner.codes(bp, seed=4)
    assert planner.resident  # offload="auto" with a roomy plan keeps it


def test_auto_offload_follows_the_engines_memory_plan(tiny_dir):
    from acestep_engine import Engine
    from acestep_engine.generation import memory
    from acestep_engine.lm import Planner

    engine = Engine.from_pretrained(tiny_dir, device="cpu", dtype="fp32")
    lm = Planner.from_pretrained("acestep-5Hz-lm-0.6B", checkpoints_dir=tiny_dir, device="cpu", engine=engine)
    assert engine.planner is lm and lm.offload == "auto"
    bp = Blueprint(caption="x", duration=10)
    plans = {p.tier: p for p in memory.plan_tiers(engine.models, "cpu", engine.frames_for(10), 1, False, 1, lm=lm)}
    assert plans["all on device"].stages["denoise"] - plans["encoders and LM offloaded"].stages["denoise"] \
        >= memory.module_bytes(lm.model)  # the plan counts the LM, resident or not
    engine.memory_budget = plans["encoders and LM offloaded"].estimate
    engine.generate(bp, seeds=1)
    assert engine.last_memory_plan.tier == "encoders and LM offloaded" and not lm.resident  # parked at once
    lm.codes(bp, seed=1)
    assert lm.offloading and not lm.resident  # and again after each call
    engine.memory_budget = None
    engine.generate(bp, seeds=1)
    lm.codes(bp, seed=1)
    assert not lm.offloading and lm.resident


def test_a_bad_offload_option_is_named(tiny_dir):
    from acestep_engine.lm import Planner

    with pytest.raises(TaskError, match="offload must be True, False or 'auto'"):
        Planner.from_pretrained("acestep-5Hz-lm-0.6B", checkpoints_dir=tiny_dir, device="cpu", offload="yes")
