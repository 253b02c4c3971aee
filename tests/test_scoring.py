"""Quality score (PMI through the 5 Hz LM) and lyric timestamps (DiT cross-attention + DTW) on tiny checkpoints."""

import math

import numpy as np
import pytest
import torch

from acestep_engine import Blueprint, TakeStore, TaskError
from acestep_engine.lm.lyric_timestamps import (LyricTimestamps, alignment_layers, capture_cross_attention,
                                                cross_attention_weights, lyric_timestamps, parse_lrc,
                                                save_lyric_timestamps)
from acestep_engine.lm.quality_score import (QualityScore, combine, field_target, lyrics_target, pmi_to_score,
                                             quality_score, save_quality_score, take_codes, understand_prompt)

LYRICS = "[verse]\nwalking home in the rain\nneon signs on the train\n\n[chorus]\nla la la\nsing it again"
SUNG = ["walking home in the rain", "neon signs on the train", "la la la", "sing it again"]


@pytest.fixture(scope="module")
def song(turbo):
    bp = Blueprint(caption="lo-fi city pop", lyrics=LYRICS, bpm=92, keyscale="A minor", language="en", duration=10)
    return turbo.generate(bp, seeds=7)[0]


@pytest.fixture(scope="module")
def instrumental(turbo):
    return turbo.generate(Blueprint(caption="ambient pads", instrumental=True, duration=10), seeds=3)[0]


def direct_log_prob(planner, prompt, target):
    """One plain forward over prompt + target, as upstream computes it."""
    prompt_ids = planner.table.encode(prompt)
    ids = planner.table.encode(prompt + target)
    with torch.no_grad():
        logits = planner.model(input_ids=torch.tensor([ids])).logits[0].float()
    targets = torch.tensor(ids[len(prompt_ids):])
    picked = torch.log_softmax(logits[len(prompt_ids) - 1:-1], -1)[torch.arange(len(targets)), targets]
    return float(picked.mean()), logits[len(prompt_ids) - 1:-1], targets


def test_quality_score_is_the_pmi_formula(planner, turbo, song):
    score = quality_score(planner, song)
    assert 0.0 <= score.score <= 1.0
    codes = take_codes(turbo, song)
    assert score.codes == len(codes.split("><")) == 5 * int(song.duration)
    given, without = understand_prompt(planner, codes), understand_prompt(planner, "NO USER INPUT")
    parts = {}
    for name, target in (("caption", field_target("caption", "lo-fi city pop")), ("lyrics", lyrics_target(LYRICS))):
        conditional, _, _ = direct_log_prob(planner, given, target)
        unconditional, _, _ = direct_log_prob(planner, without, target)
        assert score.log_probs[name] == pytest.approx((conditional, unconditional), abs=1e-4)
        parts[name] = 1 / (1 + math.exp(-(conditional - unconditional) / 0.1))
    assert score.caption == pytest.approx(parts["caption"], abs=1e-3)
    assert score.lyrics == pytest.approx(parts["lyrics"], abs=1e-3)
    # Metadata: rank-weighted top-10 recall of each field's tokens given the codes.
    _, logits, targets = direct_log_prob(planner, given, field_target("bpm", 92))
    top = torch.topk(logits, 10).indices.tolist()
    recall = np.mean([1 - top[i].index(t) / 10 if t in top[i] else 0.0 for i, t in enumerate(targets.tolist())])
    assert score.fields["bpm"] == pytest.approx(recall, abs=1e-6)
    assert set(score.fields) == {"bpm", "duration", "keyscale", "language"}
    metadata = sum(score.fields.values()) / len(score.fields)
    assert score.score == pytest.approx(0.5 * parts["caption"] + 0.3 * parts["lyrics"] + 0.2 * metadata, abs=1e-3)
    assert QualityScore.from_dict(score.to_dict()) == score


def test_score_formula_pieces():
    assert pmi_to_score(0.0) == 0.5 and pmi_to_score(0.2) == pytest.approx(1 / (1 + math.exp(-2)))
    assert pmi_to_score(-1000.0) == 0.0
    score, used = combine({"caption": 1.0, "lyrics": None, "metadata": 0.0})
    assert used == pytest.approx({"caption": 0.5 / 0.7, "metadata": 0.2 / 0.7})
    assert score == pytest.approx(0.5 / 0.7)
    with pytest.raises(TaskError, match="nothing to score"):
        combine({"caption": None, "lyrics": None, "metadata": None})


def test_instrumental_score_drops_the_lyrics_part_and_timestamps_refuse(planner, turbo, instrumental, tmp_path):
    score = quality_score(planner, instrumental)
    assert score.lyrics is None and "lyrics" not in score.weights and 0 <= score.score <= 1
    with pytest.raises(TaskError, match="instrumental"):
        lyric_timestamps(turbo, instrumental)


def test_missing_models_are_named(planner, turbo, song):
    with pytest.raises(TaskError, match="needs the 5 Hz LM planner"):
        quality_score(None, song)
    detached = type(planner).__new__(type(planner))
    detached.__dict__.update(planner.__dict__, engine=None)
    with pytest.raises(TaskError, match="needs an engine"):
        quality_score(detached, song)
    with pytest.raises(TaskError, match="needs the engine"):
        lyric_timestamps(None, song)


def test_lyric_timestamps_one_per_line_monotone_within_the_take(turbo, song):
    stamps = lyric_timestamps(turbo, song)
    assert [line.text for line in stamps.lines] == SUNG
    starts = stamps.line_times
    assert starts == sorted(starts)
    assert all(0.0 <= line.start <= line.end <= song.duration for line in stamps.lines)
    for line in stamps.lines:
        assert [w.text for w in line.words] == line.text.split()
        assert line.words[0].start == line.start and all(w.start >= line.start for w in line.words)
    assert parse_lrc(stamps.lrc) == [(pytest.approx(line.start, abs=0.006), line.text) for line in stamps.lines]
    assert 0.0 <= stamps.score <= 1.0
    assert stamps.score == pytest.approx(stamps.coverage ** 2 * stamps.monotonicity ** 2 * stamps.confidence,
                                         abs=1e-4)
    # The tiny DiT has 2 layers of 2 heads: upstream's layers 2-6 are clamped, and that is said.
    assert stamps.layers == {1: [1]} and "2 layers x 2 heads" in stamps.note
    assert LyricTimestamps.from_dict(stamps.to_dict()) == stamps
    assert lyric_timestamps(turbo, song) == stamps  # seeded: the same take gives the same times


def test_timestamps_from_audio_when_the_latents_are_not_stored(turbo, song, tmp_path):
    store = TakeStore(tmp_path)
    song_copy = type(song)(**{**song.__dict__, "latents": None})
    store.save(song_copy)
    stamps = lyric_timestamps(turbo, store.load(song.id))  # the VAE encodes the audio instead
    assert len(stamps.lines) == len(SUNG) and stamps.line_times == sorted(stamps.line_times)
    save_lyric_timestamps(store, song.id, stamps)
    notes = store.record(song.id)["notes"]
    assert notes["lrc"] == stamps.lrc and notes["lyric_timestamps"]["score"] == stamps.score
    path = store.export(song.id, tmp_path / "out" / "song.wav")
    assert parse_lrc(path.with_suffix(".lrc").read_text())[0][1] == SUNG[0]


def test_saved_quality_score(planner, song, tmp_path):
    store = TakeStore(tmp_path)
    store.save(song)
    score = quality_score(planner, store.load(song.id))
    save_quality_score(store, song.id, score)
    assert QualityScore.from_dict(store.record(song.id)["notes"]["quality_score"]) == score


def test_hooks_read_the_attention_the_layer_uses(turbo):
    """The weights computed from the module's projections reproduce its own output (weights @ V -> to_out)."""
    attn = turbo.models.transformer.layers[0].cross_attn
    torch.manual_seed(0)
    hidden = torch.randn(1, 6, attn.to_q.in_features)
    states = torch.randn(1, 9, attn.to_k.in_features)
    weights = cross_attention_weights(attn, hidden, states)  # [1, heads, 6, 9]
    assert weights.shape == (1, attn.heads, 6, 9)
    assert torch.allclose(weights.sum(-1), torch.ones(1, attn.heads, 6), atol=1e-5)
    value = attn.to_v(states).unflatten(-1, (attn.kv_heads, attn.head_dim))
    value = value[:, :, [h // (attn.heads // attn.kv_heads) for h in range(attn.heads)]]
    mixed = torch.einsum("bhqk,bkhd->bqhd", weights, value).flatten(2)
    with torch.no_grad():
        assert torch.allclose(attn.to_out[0](mixed), attn(hidden, encoder_hidden_states=states), atol=1e-5)


def test_capture_stops_early_and_leaves_no_hooks(turbo, song):
    transformer = turbo.models.transformer
    frames = song.latents.shape[0]
    x = torch.from_numpy(song.latents)[None]
    t = torch.full((1,), 0.125)
    context = torch.cat([turbo.silence(frames), torch.ones(frames, turbo.latent_channels)], -1)[None]
    from acestep_engine.generation import encode_conditions

    states = encode_conditions(turbo.models, [song.blueprint.caption_prompt()], [song.blueprint.lyric_prompt()]).states
    reached = []
    handle = transformer.layers[1].register_forward_hook(lambda *a: reached.append(1))
    try:
        captured = capture_cross_attention(transformer, {0: [1]}, hidden_states=x, timestep=t, timestep_r=t,
                                           encoder_hidden_states=states, context_latents=context)
    finally:
        handle.remove()
    assert not reached  # stopped after layer 0
    assert captured[0].shape == (1, 1, math.ceil(frames / 2), states.shape[1])
    assert not any(layer.cross_attn._forward_hooks for layer in transformer.layers)
    assert not any(layer._forward_hooks for layer in transformer.layers)


def test_alignment_layers_config(turbo):
    assert alignment_layers(turbo, {"0": [0, 1]}) == ({0: [0, 1]}, "")
    with pytest.raises(TaskError, match="layers must map"):
        alignment_layers(turbo, {0: []})


def test_parse_lrc_reads_common_variants():
    text = "[ar:someone]\n[length: 03:20]\n[00:01.5]one\n[01:02.25][00:03.00]two\nnot a line\n"
    assert parse_lrc(text) == [(1.5, "one"), (3.0, "two"), (62.25, "two")]


def test_prompt_cache_gives_the_numbers_of_one_forward(planner):
    from acestep_engine.lm.quality_score import _full_logits, _PromptScorer

    prompt = understand_prompt(planner, "<|audio_code_1|><|audio_code_20|><|audio_code_300|>")
    scorer = _PromptScorer(planner, prompt)
    for target in (lyrics_target("one\ntwo"), field_target("bpm", 120), lyrics_target("one\ntwo")):
        logits, ids = scorer.target_logits(target)  # the cache is cropped back to the prompt each time
        full = planner.table.encode(prompt + target)
        assert ids.tolist() == full[len(scorer.prompt_ids):]
        assert torch.allclose(logits, _full_logits(planner, full, len(scorer.prompt_ids)), atol=1e-4)
