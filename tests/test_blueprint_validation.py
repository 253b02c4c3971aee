"""Blueprint validation, normalisation, JSON and the exact ACE-Step 1.5 prompt strings."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acestep_engine.blueprint import (KEYSCALES, LANGUAGES, TRACK_NAMES, Blueprint, complete_instruction,
                                      extract_instruction, lego_instruction)
from acestep_engine.errors import BlueprintError


def test_caption_prompt_is_byte_identical_to_upstream():
    bp = Blueprint(caption="dreamy synthwave", bpm=120, keyscale="A minor", timesignature=4, duration=95.6)
    assert bp.caption_prompt() == (
        "# Instruction\nFill the audio semantic mask based on the given conditions:\n\n"
        "# Caption\ndreamy synthwave\n\n"
        "# Metas\n- bpm: 120\n- timesignature: 4\n- keyscale: A minor\n- duration: 95 seconds\n"
        "<|endoftext|>\n")


def test_missing_metas_print_na():
    assert Blueprint(caption="x", duration=30).caption_prompt(
        "Repaint the mask area based on the given conditions:") == (
        "# Instruction\nRepaint the mask area based on the given conditions:\n\n# Caption\nx\n\n"
        "# Metas\n- bpm: N/A\n- timesignature: N/A\n- keyscale: N/A\n- duration: 30 seconds\n<|endoftext|>\n")


def test_lyric_prompt_and_instrumental():
    assert Blueprint(lyrics="[verse]\nhello", language="en").lyric_prompt() == \
        "# Languages\nen\n\n# Lyric\n[verse]\nhello<|endoftext|>"
    assert Blueprint(lyrics="[verse]\nhello", instrumental=True).lyric_prompt() == \
        "# Languages\nunknown\n\n# Lyric\n[Instrumental]<|endoftext|>"
    assert Blueprint(lyrics="  \n").effective_lyrics == "[Instrumental]"


def test_task_instructions():
    assert extract_instruction("backing_vocals") == "Extract the BACKING_VOCALS track from the audio:"
    assert lego_instruction("drums") == "Generate the DRUMS track based on the audio context:"
    assert complete_instruction(["drums", "bass"]) == "Complete the input track with DRUMS | BASS:"
    assert complete_instruction() == "Complete the input track:"
    assert len(TRACK_NAMES) == 12


def test_allowed_value_sets():
    assert len(LANGUAGES) == 51 and "unknown" in LANGUAGES and "yue" in LANGUAGES
    assert len(KEYSCALES) == 70 and {"C major", "F# minor", "Bb major", "E♭ minor"} <= set(KEYSCALES)


@pytest.mark.parametrize("field, value, expected", [
    ("bpm", 512, "bpm must be between 30 and 300 (got 512)"),
    ("bpm", 29, "bpm must be between 30 and 300 (got 29)"),
    ("bpm", "fast", "bpm must be a whole number between 30 and 300 (got 'fast')"),
    ("bpm", True, "bpm must be a whole number between 30 and 300 (got True)"),
    ("bpm", 120.5, "bpm must be a whole number between 30 and 300 (got 120.5)"),
    ("duration", 5.0, "duration must be between 10 and 600 seconds (got 5.0)"),
    ("duration", 601, "duration must be between 10 and 600 seconds (got 601)"),
    ("duration", float("nan"), "duration must be a number of seconds between 10 and 600 (got nan)"),
    ("keyscale", "H major", "keyscale must be one of the 70 names like 'C major', 'F# minor', 'Bb major' (got 'H major')"),
    ("timesignature", 5, "timesignature must be one of 2, 3, 4, 6 (got 5)"),
    ("language", "xx", "language must be one of ar, az"),
    ("caption", "x" * 512, "caption must be shorter than 512 characters (got 512)"),
    ("lyrics", "x" * 4096, "lyrics must be shorter than 4096 characters (got 4096)"),
    ("caption", 42, "caption must be text (got int)"),
    ("instrumental", "yes", "instrumental must be True or False (got 'yes')"),
])
def test_bad_values_name_field_range_and_value(field, value, expected):
    bp = Blueprint(**{field: value})
    with pytest.raises(BlueprintError) as err:
        bp.validate()
    assert str(err.value).startswith(expected) and err.value.field == field
    assert bp.errors()[field].startswith(expected)
    assert getattr(bp, field) is value  # nothing is lost: the invalid value stays for the user to fix


def test_errors_collects_every_field():
    errors = Blueprint(bpm=10, duration=1, language="klingon").errors()
    assert set(errors) == {"bpm", "duration", "language"}
    assert Blueprint().is_valid and not Blueprint(bpm=1).is_valid


@pytest.mark.parametrize("raw, clean", [
    (dict(keyscale="c# MINOR"), dict(keyscale="C# minor")),
    (dict(keyscale="bb maj"), dict(keyscale="Bb major")),
    (dict(keyscale="F♯ minor"), dict(keyscale="F♯ minor")),
    (dict(timesignature="4/4"), dict(timesignature=4)),
    (dict(timesignature="3"), dict(timesignature=3)),
    (dict(bpm="120"), dict(bpm=120)),
    (dict(bpm=90.0), dict(bpm=90)),
    (dict(duration=45), dict(duration=45.0)),
    (dict(language="EN"), dict(language="en")),
    (dict(keyscale="", bpm=""), dict(keyscale=None, bpm=None)),
])
def test_normalisation(raw, clean):
    out = Blueprint(**raw).validate()
    for key, value in clean.items():
        assert getattr(out, key) == value and type(getattr(out, key)) is type(value)


def test_validate_returns_a_copy():
    bp = Blueprint(bpm="120")
    assert bp.validate().bpm == 120 and bp.bpm == "120"


valid_blueprints = st.builds(
    Blueprint,
    caption=st.text(max_size=100), lyrics=st.text(max_size=200),
    bpm=st.none() | st.integers(30, 300), keyscale=st.none() | st.sampled_from(KEYSCALES),
    timesignature=st.none() | st.sampled_from([2, 3, 4, 6]),
    duration=st.floats(10, 600, allow_nan=False), language=st.sampled_from(LANGUAGES), instrumental=st.booleans())


@settings(max_examples=150, deadline=None)
@given(valid_blueprints)
def test_json_round_trip(bp):
    assert bp.validate() == bp
    assert Blueprint.from_json(bp.to_json()) == bp
    assert Blueprint.from_dict(bp.to_dict()) == bp


def test_unknown_json_key_is_an_error_not_silently_dropped():
    with pytest.raises(BlueprintError, match="tempo is not a blueprint field"):
        Blueprint.from_dict({"caption": "x", "tempo": 120})
    assert Blueprint.from_dict({"caption": "x", "version": 1}).caption == "x"
    with pytest.raises(BlueprintError, match="json is not valid JSON"):
        Blueprint.from_json("{nope")


def test_save_and_load(tmp_path):
    bp = Blueprint(caption="über", lyrics="[chorus]\nla", bpm=100)
    assert Blueprint.load(bp.save(tmp_path / "song.json")) == bp


def test_sections():
    bp = Blueprint(lyrics="intro words\n[verse]\nline one\nline two\n\n[chorus]\nhook")
    assert bp.sections() == [("", "intro words"), ("verse", "line one\nline two"), ("chorus", "hook")]
