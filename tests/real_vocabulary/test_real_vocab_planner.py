"""The planner end to end in every mode, lyric timestamps and the quality score, on Qwen3's vocabulary,
with English, Chinese, Japanese and emoji text (the tiny LM has random weights: what is checked is
that everything runs, parses and round-trips, not what it says)."""

import pytest

from acestep_engine import Blueprint, Text2Music
from acestep_engine.blueprint import KEYSCALES, LANGUAGES
from acestep_engine.generation import parse_audio_codes
from acestep_engine.lm import lyric_timestamps, prompts, quality_score

pytestmark = pytest.mark.real_vocabulary

TEXTS = ["温柔的中文流行情歌，钢琴与弦乐", "夜の街を走る、君の声が聞こえる", "Sunshine 🌞 on my face 💃🏽 (skin tone) 👨‍👩‍👧",
         "Crème brûlée, naïve café — «ça va?»", "한국어 가사도 좋아요"]


def valid(bp: Blueprint) -> Blueprint:
    assert bp.validate() == bp
    assert bp.keyscale in KEYSCALES and bp.language in LANGUAGES and bp.timesignature in (2, 3, 4, 6)
    assert "\ufffd" not in bp.caption + bp.lyrics
    assert not any(ch < " " and ch not in "\n\t" for ch in bp.caption + bp.lyrics)
    return bp


@pytest.mark.parametrize("text", TEXTS)
def test_cjk_and_emoji_round_trip_through_the_lm_tokenizer(real_planner, text):
    table = real_planner.table
    ids = table.encode(text)
    assert table.tokenizer.decode(ids) == text
    # the characters the table counts are the text's characters, however the tokens split them
    assert sum(int(table.length[i]) for i in ids) == len(text)


@pytest.mark.parametrize("text", TEXTS)
def test_user_fields_in_any_script_come_back_unchanged(real_planner, text):
    user = Blueprint(caption=text, lyrics=f"[verse]\n{text}", bpm=96, language="zh")
    out = valid(real_planner.complete(user, seed=2))
    assert (out.caption, out.lyrics, out.bpm, out.language) == (text, user.lyrics, 96, "zh")
    assert set(out.planned) == {"keyscale", "timesignature"}


def test_every_planner_mode_on_the_real_vocabulary(real_planner, real_engine):
    idea = valid(real_planner.inspire("一首关于大海的歌 🌊", seed=0, max_text_chars=200))
    assert idea.caption.strip() and len(idea.lyrics) <= 200
    free = valid(real_planner.complete(Blueprint(lyrics="[verse]\n夜の街を走る"), seed=1))
    assert free.caption.strip() and len(free.caption) < 512
    formatted = valid(real_planner.format(Blueprint(caption="city pop 🌃", lyrics="[verse]\nla la", bpm=112,
                                                    language="ja"), seed=2, max_text_chars=200))
    assert formatted.bpm == 112 and formatted.language == "ja" and formatted.lyrics
    codes = real_planner.codes(Blueprint(caption="x", duration=10), seed=3)
    assert len(parse_audio_codes(codes, 64000)) == 50
    planned, plan_codes = real_planner.plan(Blueprint(caption="lo-fi 🎹", lyrics="la", duration=10), seed=4,
                                            guidance=1.0)
    valid(planned)
    assert len(parse_audio_codes(plan_codes, 64000)) == 50 and planned.caption == "lo-fi 🎹"
    take, = real_engine.generate(planned, Text2Music(audio_codes=plan_codes), seeds=1)
    understood = valid(real_planner.understand(take, seed=5, max_text_chars=100))
    assert understood.duration == 10.0
    score = quality_score(real_planner, take)
    assert 0.0 <= score.score <= 1.0 and score.codes == 50 and score.caption is not None


def test_lyric_timestamps_time_every_line_in_any_script(real_engine):
    lines = ["夜色温柔 你在身边", "夜の街を走る", "Sunshine 🌞 on my face", "我们一起走过春夏秋冬 🎶"]
    lyrics = "[主歌]\n" + "\n".join(lines[:2]) + "\n\n[chorus]\n" + "\n".join(lines[2:])
    take, = real_engine.generate(Blueprint(caption="pop", lyrics=lyrics, language="zh", duration=12), seeds=4)
    stamps = lyric_timestamps(real_engine, take)
    assert [line.text for line in stamps.lines] == lines
    assert [[w.text for w in line.words] for line in stamps.lines] == [line.split() for line in lines]
    starts = [line.start for line in stamps.lines]
    assert starts == sorted(starts) and 0 <= starts[0] and stamps.lines[-1].end <= take.duration + 1e-6
    assert 0.0 <= stamps.score <= 1.0 and stamps.lrc.count("\n") == len(lines)


def test_the_chain_of_thought_round_trips_in_any_script(real_planner):
    for text in TEXTS:
        values = {"bpm": 90, "caption": text + " " + text, "duration": 120, "keyscale": "A minor", "language": "ja",
                  "timesignature": 3}
        cot = prompts.cot_text(values)
        assert real_planner.tokenizer.decode(real_planner.table.encode(cot)) == cot
        assert prompts.parse_cot(cot) == values
