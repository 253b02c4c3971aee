"""Blueprint: allowed values, validation messages, normalisation, JSON, and the exact ACE-Step 1.5 prompts.

Expected prompt strings are written out by hand from the reference (section 4.6), not built with the
code under test.
"""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acestep_engine.blueprint import (BPM_RANGE, COVER_INSTRUCTION, DURATION_RANGE, KEYSCALES, LANGUAGES,
                                      MAX_CAPTION_CHARS, MAX_LYRICS_CHARS, REPAINT_INSTRUCTION, STRUCTURE_TAGS,
                                      TEXT2MUSIC_INSTRUCTION, TIME_SIGNATURES, TRACK_NAMES, Blueprint,
                                      complete_instruction, extract_instruction, lego_instruction)
from acestep_engine.errors import BlueprintError

# ---------------------------------------------------------------------------------- allowed values


def test_languages_are_the_51_codes_of_the_reference():
    reference = ("ar az bg bn ca cs da de el en es fa fi fr he hi hr ht hu id is it ja ko la lt ms ne nl no pa pl "
                 "pt ro ru sa sk sr sv sw ta te th tl tr uk ur vi yue zh unknown")
    assert LANGUAGES == tuple(reference.split())
    assert len(LANGUAGES) == 51 and "unknown" in LANGUAGES


def test_keyscales_are_the_70_names_of_the_reference():
    assert len(KEYSCALES) == len(set(KEYSCALES)) == 70
    assert {"C major", "F# minor", "Bb major", "E♭ minor", "G♯ major", "A minor"} <= set(KEYSCALES)
    for name in KEYSCALES:
        note, mode = name.split(" ")
        assert note[0] in "ABCDEFG" and note[1:] in ("", "#", "b", "♯", "♭") and mode in ("major", "minor")


def test_other_ranges():
    assert TIME_SIGNATURES == (2, 3, 4, 6)
    assert BPM_RANGE == (30, 300) and DURATION_RANGE == (10.0, 600.0)
    assert MAX_CAPTION_CHARS == 512 and MAX_LYRICS_CHARS == 4096
    assert {"verse", "chorus", "bridge", "intro", "outro", "pre-chorus", "hook", "instrumental"} <= set(STRUCTURE_TAGS)


# ---------------------------------------------------------------------------------- prompts


def test_caption_prompt_is_byte_identical_to_upstream():
    bp = Blueprint(caption="dreamy synthwave, analog pads", bpm=120, keyscale="A minor", timesignature=4,
                   duration=95.6)
    assert bp.caption_prompt() == (
        "# Instruction\nFill the audio semantic mask based on the given conditions:\n\n"
        "# Caption\ndreamy synthwave, analog pads\n\n"
        "# Metas\n- bpm: 120\n- timesignature: 4\n- keyscale: A minor\n- duration: 95 seconds\n"
        "<|endoftext|>\n")


def test_open_metas_print_na_and_default_duration_is_30_seconds():
    assert Blueprint(caption="x").caption_prompt(REPAINT_INSTRUCTION) == (
        "# Instruction\nRepaint the mask area based on the given conditions:\n\n# Caption\nx\n\n"
        "# Metas\n- bpm: N/A\n- timesignature: N/A\n- keyscale: N/A\n- duration: 30 seconds\n<|endoftext|>\n")


def test_caption_prompt_shows_normalised_values():
    bp = Blueprint(caption="", bpm="90", keyscale="c# MINOR", timesignature="6/8", duration=10)
    assert bp.caption_prompt(COVER_INSTRUCTION) == (
        "# Instruction\nGenerate audio semantic tokens based on the given conditions:\n\n# Caption\n\n\n"
        "# Metas\n- bpm: 90\n- timesignature: 6\n- keyscale: C# minor\n- duration: 10 seconds\n<|endoftext|>\n")


def test_prompts_refuse_invalid_blueprints():
    with pytest.raises(BlueprintError, match=r"^bpm must be between 30 and 300 \(got 999\)"):
        Blueprint(bpm=999).caption_prompt()
    with pytest.raises(BlueprintError, match=r"^language must be one of"):
        Blueprint(language="xx").lyric_prompt()


def test_lyric_prompt_is_byte_identical_to_upstream():
    assert Blueprint(lyrics="[verse]\nhello\nworld", language="en").lyric_prompt() == \
        "# Languages\nen\n\n# Lyric\n[verse]\nhello\nworld<|endoftext|>"
    assert Blueprint(lyrics="[chorus]\nla", language="ZH").lyric_prompt() == \
        "# Languages\nzh\n\n# Lyric\n[chorus]\nla<|endoftext|>"


@pytest.mark.parametrize("lyrics, instrumental", [("[verse]\nhello", True), ("", False), ("  \n\t", False)])
def test_instrumental_or_blank_lyrics_become_the_instrumental_tag(lyrics, instrumental):
    bp = Blueprint(lyrics=lyrics, instrumental=instrumental)
    assert bp.effective_lyrics == "[Instrumental]"
    assert bp.lyric_prompt() == "# Languages\nunknown\n\n# Lyric\n[Instrumental]<|endoftext|>"
    assert bp.lyrics == lyrics  # the user's lyrics are kept for when instrumental is switched off


def test_task_instructions():
    assert TEXT2MUSIC_INSTRUCTION == "Fill the audio semantic mask based on the given conditions:"
    assert REPAINT_INSTRUCTION == "Repaint the mask area based on the given conditions:"
    assert COVER_INSTRUCTION == "Generate audio semantic tokens based on the given conditions:"
    assert extract_instruction("backing_vocals") == "Extract the BACKING_VOCALS track from the audio:"
    assert extract_instruction() == "Extract the track from the audio:"
    assert lego_instruction("drums") == "Generate the DRUMS track based on the audio context:"
    assert lego_instruction() == "Generate the track based on the audio context:"
    assert complete_instruction(["drums", "bass"]) == "Complete the input track with DRUMS | BASS:"
    assert complete_instruction(["guitar"]) == "Complete the input track with GUITAR:"
    assert complete_instruction() == "Complete the input track:"
    assert TRACK_NAMES == ("woodwinds", "brass", "fx", "synth", "strings", "percussion", "keyboard", "guitar", "bass",
                           "drums", "backing_vocals", "vocals")


# ---------------------------------------------------------------------------------- validation

KEY_MESSAGE = "keyscale must be one of the 70 names like 'C major', 'F# minor', 'Bb major'"
LANGUAGE_MESSAGE = "language must be one of " + ", ".join(LANGUAGES)


@pytest.mark.parametrize("field, value, expected", [
    ("bpm", 512, "bpm must be between 30 and 300 (got 512)"),
    ("bpm", 29, "bpm must be between 30 and 300 (got 29)"),
    ("bpm", 301, "bpm must be between 30 and 300 (got 301)"),
    ("bpm", "301", "bpm must be between 30 and 300 (got 301)"),
    ("bpm", "fast", "bpm must be a whole number between 30 and 300 (got 'fast')"),
    ("bpm", "120.5", "bpm must be a whole number between 30 and 300 (got '120.5')"),
    ("bpm", "²", "bpm must be a whole number between 30 and 300 (got '²')"),
    ("bpm", True, "bpm must be a whole number between 30 and 300 (got True)"),
    ("bpm", 120.5, "bpm must be a whole number between 30 and 300 (got 120.5)"),
    ("bpm", float("nan"), "bpm must be a whole number between 30 and 300 (got nan)"),
    ("bpm", [120], "bpm must be a whole number between 30 and 300 (got [120])"),
    ("duration", 5.0, "duration must be between 10 and 600 seconds (got 5.0)"),
    ("duration", 601, "duration must be between 10 and 600 seconds (got 601)"),
    ("duration", -1.0, "duration must be between 10 and 600 seconds (got -1.0)"),
    ("duration", float("nan"), "duration must be a number of seconds between 10 and 600 (got nan)"),
    ("duration", float("inf"), "duration must be a number of seconds between 10 and 600 (got inf)"),
    ("duration", "30", "duration must be a number of seconds between 10 and 600 (got '30')"),
    ("duration", None, "duration must be a number of seconds between 10 and 600 (got None)"),
    ("duration", True, "duration must be a number of seconds between 10 and 600 (got True)"),
    ("keyscale", "H major", KEY_MESSAGE + " (got 'H major')"),
    ("keyscale", "C", KEY_MESSAGE + " (got 'C')"),
    ("keyscale", "C dorian", KEY_MESSAGE + " (got 'C dorian')"),
    ("keyscale", "C## major", KEY_MESSAGE + " (got 'C## major')"),
    ("keyscale", 5, KEY_MESSAGE + " (got 5)"),
    ("timesignature", 5, "timesignature must be one of 2, 3, 4, 6 (got 5)"),
    ("timesignature", "5/4", "timesignature must be one of 2, 3, 4, 6 (got '5/4')"),
    ("timesignature", "waltz", "timesignature must be one of 2, 3, 4, 6 (got 'waltz')"),
    ("timesignature", 4.5, "timesignature must be one of 2, 3, 4, 6 (got 4.5)"),
    ("timesignature", True, "timesignature must be one of 2, 3, 4, 6 (got True)"),
    ("language", "xx", LANGUAGE_MESSAGE + " (got 'xx')"),
    ("language", "english", LANGUAGE_MESSAGE + " (got 'english')"),
    ("language", 5, LANGUAGE_MESSAGE + " (got 5)"),
    ("caption", "x" * 512, "caption must be shorter than 512 characters (got 512)"),
    ("caption", "x" * 700, "caption must be shorter than 512 characters (got 700)"),
    ("caption", 42, "caption must be text (got int)"),
    ("lyrics", "x" * 4096, "lyrics must be shorter than 4096 characters (got 4096)"),
    ("lyrics", ["la"], "lyrics must be text (got list)"),
    ("instrumental", "yes", "instrumental must be True or False (got 'yes')"),
    ("instrumental", 1, "instrumental must be True or False (got 1)"),
])
def test_bad_values_name_field_range_and_value(field, value, expected):
    bp = Blueprint(**{field: value})  # building never raises: an editor may hold this while the user types
    with pytest.raises(BlueprintError) as err:
        bp.validate()
    assert str(err.value) == expected and err.value.field == field
    assert isinstance(err.value, ValueError)
    assert bp.errors() == {field: expected} and not bp.is_valid
    assert getattr(bp, field) is value  # nothing is lost: the invalid value stays for the user to fix


@pytest.mark.parametrize("changes", [
    dict(bpm=30), dict(bpm=300), dict(duration=10), dict(duration=600.0), dict(caption="x" * 511),
    dict(lyrics="x" * 4095), dict(timesignature=2), dict(timesignature=6), dict(keyscale="G♭ major"),
    dict(language="yue"), dict(bpm=None, keyscale=None, timesignature=None),
])
def test_boundaries_are_valid(changes):
    bp = Blueprint(**changes)
    assert bp.is_valid and bp.errors() == {} and bp.validate() == bp


def test_errors_collects_every_field_at_once():
    bp = Blueprint(caption=1, bpm=10, keyscale="Q minor", timesignature=7, duration=1, language="klingon",
                   instrumental="no")
    errors = bp.errors()
    assert set(errors) == {"caption", "bpm", "keyscale", "timesignature", "duration", "language", "instrumental"}
    assert errors["bpm"] == "bpm must be between 30 and 300 (got 10)"
    assert errors["duration"] == "duration must be between 10 and 600 seconds (got 1)"
    assert errors["timesignature"] == "timesignature must be one of 2, 3, 4, 6 (got 7)"
    with pytest.raises(BlueprintError) as err:  # validate reports the first field in field order
        bp.validate()
    assert err.value.field == "caption"
    assert Blueprint().is_valid and Blueprint().errors() == {}


# ---------------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("raw, clean", [
    (dict(keyscale="c# MINOR"), dict(keyscale="C# minor")),
    (dict(keyscale="  bb maj "), dict(keyscale="Bb major")),
    (dict(keyscale="EB MIN"), dict(keyscale="Eb minor")),
    (dict(keyscale="F♯ minor"), dict(keyscale="F♯ minor")),
    (dict(keyscale="d♭ Major"), dict(keyscale="D♭ major")),
    (dict(timesignature="4/4"), dict(timesignature=4)),
    (dict(timesignature=" 3 / 4 "), dict(timesignature=3)),
    (dict(timesignature="6"), dict(timesignature=6)),
    (dict(timesignature=2.0), dict(timesignature=2)),
    (dict(bpm="120"), dict(bpm=120)),
    (dict(bpm=" 95 "), dict(bpm=95)),
    (dict(bpm=90.0), dict(bpm=90)),
    (dict(duration=45), dict(duration=45.0)),
    (dict(language=" EN "), dict(language="en")),
    (dict(language=""), dict(language="unknown")),
    (dict(caption=None, lyrics=None), dict(caption="", lyrics="")),
    (dict(keyscale="", bpm="", timesignature=""), dict(keyscale=None, bpm=None, timesignature=None)),
])
def test_normalisation(raw, clean):
    out = Blueprint(**raw).validate()
    for key, value in clean.items():
        assert getattr(out, key) == value and type(getattr(out, key)) is type(value)


def test_validate_returns_a_new_blueprint_and_leaves_self_alone():
    bp = Blueprint(bpm="120", keyscale="a minor", timesignature="4/4", duration=20)
    out = bp.validate()
    assert out is not bp
    assert out == Blueprint(bpm=120, keyscale="A minor", timesignature=4, duration=20.0)
    assert (bp.bpm, bp.keyscale, bp.timesignature, bp.duration) == ("120", "a minor", "4/4", 20)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(KEYSCALES), data=st.data())
def test_any_casing_of_a_key_name_normalises_back(name, data):
    mangled = "".join(c.upper() if data.draw(st.booleans()) else c.lower() for c in name)
    assert Blueprint(keyscale=mangled).validate().keyscale == name


# ---------------------------------------------------------------------------------- serialisation

valid_blueprints = st.builds(
    Blueprint,
    caption=st.text(max_size=80), lyrics=st.text(max_size=160),
    bpm=st.none() | st.integers(30, 300), keyscale=st.none() | st.sampled_from(KEYSCALES),
    timesignature=st.none() | st.sampled_from(TIME_SIGNATURES),
    duration=st.floats(10, 600, allow_nan=False), language=st.sampled_from(LANGUAGES), instrumental=st.booleans())


@settings(max_examples=100, deadline=None)
@given(valid_blueprints)
def test_json_round_trip_is_exact(bp):
    assert bp.validate() == bp
    assert Blueprint.from_json(bp.to_json()) == bp
    assert Blueprint.from_json(bp.to_json(indent=None)) == bp
    assert Blueprint.from_dict(bp.to_dict()) == bp


def test_to_dict_lists_every_field_in_order():
    assert list(Blueprint().to_dict()) == ["caption", "lyrics", "bpm", "keyscale", "timesignature", "duration",
                                           "language", "instrumental", "planned"]
    assert json.loads(Blueprint(bpm=100).to_json())["bpm"] == 100


def test_invalid_blueprints_round_trip_too():
    # a half-edited blueprint can be saved as a draft and come back as it was
    draft = Blueprint(bpm="12", keyscale="c#", duration=3)
    assert Blueprint.from_json(draft.to_json()) == draft


def test_unknown_key_is_an_error_not_silently_dropped():
    with pytest.raises(BlueprintError, match=r"^tempo is not a blueprint field \(fields: caption, lyrics, bpm"):
        Blueprint.from_dict({"caption": "x", "tempo": 120})
    assert Blueprint.from_dict({"caption": "x", "version": 1}) == Blueprint(caption="x")
    assert Blueprint.from_dict({}) == Blueprint()


@pytest.mark.parametrize("text, message", [
    ("{nope", "json is not valid JSON"),
    ("[1, 2]", "json must be an object of blueprint fields (got list)"),
])
def test_bad_json(text, message):
    with pytest.raises(BlueprintError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        Blueprint.from_json(text)


def test_from_dict_needs_a_mapping():
    with pytest.raises(BlueprintError, match="^blueprint must be a mapping"):
        Blueprint.from_dict([("caption", "x")])


def test_save_and_load(tmp_path):
    bp = Blueprint(caption="über lo-fi, 夜", lyrics="[chorus]\nla", bpm=100, keyscale="B♭ minor", duration=12.5)
    path = bp.save(tmp_path / "song.json")
    assert path == tmp_path / "song.json"
    assert "über" in path.read_text(encoding="utf-8")
    assert Blueprint.load(path) == bp
    assert Blueprint.load(str(path)) == bp


def test_replace_makes_a_copy():
    bp = Blueprint(caption="a")
    other = bp.replace(bpm=140, caption="b")
    assert (other.caption, other.bpm) == ("b", 140) and (bp.caption, bp.bpm) == ("a", None)


# ---------------------------------------------------------------------------------- lyric structure


def test_sections():
    bp = Blueprint(lyrics="intro words\n[verse]\nline one\nline two\n\n[chorus]\nhook\n")
    assert bp.sections() == [("", "intro words"), ("verse", "line one\nline two"), ("chorus", "hook")]


def test_sections_keep_empty_tags_and_tag_text_as_written():
    bp = Blueprint(lyrics="[Intro]\n\n  [Verse 1]  \nhi [there]\n[Instrumental]")
    assert bp.sections() == [("Intro", ""), ("Verse 1", "hi [there]"), ("Instrumental", "")]
    assert Blueprint().sections() == [] and Blueprint(lyrics="\n\n").sections() == []


def test_unusual_section_tags_hint_at_typos():
    bp = Blueprint(lyrics="[Verse 2]\na\n[Chorus - anthemic]\nb\n[guitar solo]\n[chrous]\nc\n[Pre-Chorus]\n[chrous]")
    assert bp.unusual_section_tags() == ["chrous"]
    assert bp.is_valid  # a hint only, never an error

