"""The planner's constraint on Qwen3's vocabulary: tokens up to 128 characters, 1,781 that end a line
(".\\n"), byte fragments of CJK and emoji. Adversarial logits must never break the output: every plan
finishes within its budget and parses into a valid blueprint."""

import re

import pytest
import torch

from acestep_engine import Blueprint
from acestep_engine.blueprint import MAX_CAPTION_CHARS as BLUEPRINT_CAPTION_LIMIT
from acestep_engine.lm import Vocabulary, prompts
from acestep_engine.lm.row_state import RowState
from acestep_engine.lm.shapes import MAX_CAPTION_CHARS, budget, cot_shape

pytestmark = pytest.mark.real_vocabulary


def adversary(table, kind: str, seed: int = 0):
    """A function of the call count giving `[vocab]` logits that push the LM where it hurts."""
    g = torch.Generator().manual_seed(seed)
    size = table.vocab_size
    bias = torch.zeros(size)
    if kind == "space":  # YAML's continuation indent after every line: the caption never ends by itself
        bias += 30.0 * table.starts_with_space.float()
    elif kind == "long":  # the longest one-line tokens first: a caption overruns its cap in one token
        bias += 2.0 * torch.tensor([float(len(text)) for text in table.text]) * ~table.has_newline
    elif kind == "newline":
        bias += 30.0 * table.has_newline.float()
    elif kind == "eos":
        bias[table.eos_id] = 60.0
    elif kind == "fragments":  # tokens that split a character, and the ones that finish it
        split = table.text_after[0] & (table.need_after[0] != 0)
        bias += 30.0 * (split | table.text_after[1:].any(0) & ~table.text_after[0]).float()
    elif kind != "random":
        raise AssertionError(kind)

    def logits(rows):
        return bias + 4.0 * torch.randn(rows, size, generator=g)

    return logits


@pytest.fixture
def lm_under(real_planner):
    """`lm_under(kind)`: the planner's LM head answers with the adversary's logits until the test ends."""
    handles = []

    def install(kind, seed=0):
        logits = adversary(real_planner.table, kind, seed)

        def hook(module, args, output):
            return logits(output.shape[0]).reshape(output.shape[0], 1, -1).expand(-1, output.shape[1], -1) \
                .to(output.dtype)[..., : output.shape[-1]]

        handles.append(real_planner.model.lm_head.register_forward_hook(hook))

    yield install
    for handle in handles:
        handle.remove()


@pytest.fixture
def answers(real_planner, monkeypatch):
    """The LM's raw answers (decoded text per row) of every planner run in the test, in order."""
    out = []
    run = real_planner._run

    def spy(*args, **kwargs):
        written = run(*args, **kwargs)
        out.append(written)
        return written

    monkeypatch.setattr(real_planner, "_run", spy)
    return out


def raw_caption(answer: str) -> str:
    """The caption value as the LM wrote it (continuation lines, indents and all)."""
    return answer.split("caption:", 1)[1].split("\nduration:", 1)[0]


def finished_within_budget(reports):
    """The decode's last progress line: `think: N tokens, ...` with N no more than its budget."""
    last = [r for r in reports if r.stage == "think"][-1]
    produced = int(re.match(r"think: (\d+) tokens", last.message).group(1))
    return produced <= last.steps


def check(bp: Blueprint):
    assert bp.validate() == bp
    assert len(bp.caption) <= MAX_CAPTION_CHARS < BLUEPRINT_CAPTION_LIMIT
    assert "\ufffd" not in bp.caption + bp.lyrics


# ---------------------------------------------------------------------------------- the two caption defects
def test_a_caption_of_long_tokens_stops_at_its_cap(real_planner, lm_under, answers):
    # One real token adds up to 128 characters: checked only before each token, captions of 512-608
    # characters came out and complete() raised "caption must be shorter than 512 characters".
    lm_under("long")
    reports = []
    bp = real_planner.complete(Blueprint(lyrics="la la"), seed=0, progress=reports.append)
    check(bp)
    written = raw_caption(answers[-1][0]).replace("\n", "")
    assert MAX_CAPTION_CHARS - 128 < len(written) <= MAX_CAPTION_CHARS  # long tokens, up to the cap, no further
    assert finished_within_budget(reports)


def test_a_caption_that_always_wants_a_continuation_line_still_ends(real_planner, lm_under):
    # The likeliest token after every newline starts with a space (YAML's indent): at the cap only a
    # newline was allowed, the continuation went on past it, forever ("did not finish within 914 tokens").
    lm_under("space")
    reports = []
    bp = real_planner.complete(Blueprint(lyrics="la la"), seed=1, progress=reports.append)
    check(bp)
    assert finished_within_budget(reports)


# ---------------------------------------------------------------------------------- fuzzing
@pytest.mark.parametrize("kind", ["random", "space", "long", "newline", "eos", "fragments"])
@pytest.mark.parametrize("mode", ["complete", "inspire", "understand"])
def test_adversarial_logits_always_finish_and_parse(real_planner, lm_under, kind, mode):
    lm_under(kind, seed=7)
    reports = []
    if mode == "complete":
        bp = real_planner.complete(Blueprint(lyrics="[verse]\n夜色温柔 🌙"), seed=3, progress=reports.append)
    elif mode == "inspire":
        bp = real_planner.inspire("a song about the sea", seed=3, max_text_chars=120, progress=reports.append)
        assert len(bp.lyrics) <= 120
    else:
        bp = real_planner.understand("<|audio_code_5|>" * 50, seed=3, max_text_chars=120, progress=reports.append)
    check(bp)
    assert finished_within_budget(reports)


# ---------------------------------------------------------------------------------- the canonical tokenization
CAPTIONS = [
    "A dreamy lo-fi song.",
    "An emotional orchestral ballad that opens with a lonely solo piano, builds through warm strings and soft "
    "brass into a soaring final chorus. The choir enters at the end.",
    "温柔的中文流行情歌，钢琴与弦乐，女声。副歌部分加入鼓和贝斯，情绪逐渐推向高潮。",
    "Happy summer pop 🌞🎸 with handclaps, bright synths and a catchy chorus!",
]


@pytest.mark.parametrize("caption", CAPTIONS)
def test_upstreams_own_tokenization_of_a_chain_of_thought_is_allowed(real_planner, caption):
    # The LM was trained on yaml.dump'ed chains of thought; their tokens end lines with ".\n" and
    # continue wrapped captions with an indent. Every token of them must stay allowed.
    table = real_planner.table
    values = {"bpm": 120, "caption": caption, "duration": 180, "genres": "pop, ballad", "keyscale": "C major",
              "language": "en", "timesignature": 4}
    text = prompts.cot_text(values)
    ids = table.encode(text)
    row = RowState(cot_shape(table, {}, genres=True))
    ends = 0
    for position, token in enumerate(ids):
        assert row.allowed(table)[token], f"{table.text[token]!r} after {table.tokenizer.decode(ids[:position])!r}"
        ends += table.text[token].endswith("\n") and table.text[token].strip() != ""
        row.advance(token, table)
    assert row.done and prompts.parse_cot(text)["caption"] == caption
    if caption.endswith((".", "!", "。")):
        assert ends >= 1  # "...\n" as one token: the form the old constraint refused


def test_the_token_table_knows_real_tokens(real_planner):
    table = real_planner.table
    period_newline = table.encode(".\n")
    assert len(period_newline) == 1 and table.ends_line[period_newline[0]]
    assert int(table.length[period_newline[0]]) == 2 and int(table.width[period_newline[0]]) == 1
    assert 1000 < int(table.ends_line.sum()) <= int(table.has_newline.sum())
    assert int(table.length.max()) >= 100  # one token can write a hundred characters
    chinese = table.encode("温")
    assert all(int(table.length[t]) <= 1 for t in chinese) and sum(int(table.length[t]) for t in chinese) == 1
    tool_call = table.tokenizer.convert_tokens_to_ids("<tool_call>")
    assert not table.text_after[:, tool_call].any()  # markup, never text


@pytest.mark.parametrize("seed", range(4))
def test_genres_come_out_as_the_vocabulary_spells_them(real_planner, seed):
    # Matched case-insensitively, a value could come out "k-poP". Walk the vocabulary's masks with
    # random choices among the allowed tokens: the value ends as an entry, spelled as the entry is.
    table = real_planner.table
    vocab = Vocabulary(["K-Pop", "Lo-Fi Hip Hop", "city pop", "J-Rock", "Neo-Soul"])
    g = torch.Generator().manual_seed(seed)
    value = ""
    for _ in range(60):
        allowed = vocab.allowed(table, value).nonzero().squeeze(1)
        token = int(allowed[torch.randint(len(allowed), (1,), generator=g)])
        if token == table.newline_id:
            break
        value += table.text[token]
    assert value.strip() in vocab.entries, value


def test_budgets_bound_every_shape(real_planner):
    table = real_planner.table
    shape = cot_shape(table, {}, genres=True, after="text", text_chars=300)
    caption, genres = shape.segments[2], shape.segments[4]
    assert (caption.text_tokens, genres.text_tokens) == (512, 200)
    assert budget(shape) == sum(s.trie.depth() for s in shape.segments) + 512 + 200 + 300
