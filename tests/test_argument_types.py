"""Every public door refuses a value of the wrong type with the project's own error, naming the argument:
never a TypeError, ValueError, AttributeError, KeyError or OSError from deep inside.

The corpus: each door below is called with each hostile value (None, booleans, text, an enormous digit
string, text with a lone surrogate, bytes, lists, mappings, huge and NaN floats, negative and enormous
integers, arbitrary objects, a path to a file where a folder belongs, an empty text, an array). A value
the door accepts (listed with the door) may still fail for another reason, but only with the project's
own error; any other value is refused with an AceStepError whose message names the argument. Task
fields are refused by `validate()`, before any work; `test_generate_refuses_bad_task_fields` runs a
sample of them through `Engine.generate` as well. The doors run in a scratch folder, so relative paths
such as "x" land there.
"""

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from acestep_engine import (Blueprint, Complete, Cover, Engine, Extend, Extract, ExtractAll, GenerationSettings, Lego,
                            Regions, Repaint, TakeStore, Text2Music)
from acestep_engine import takes as takes_wing
from acestep_engine.errors import AceStepError
from hostile import make_take

BAD = {"None": None, "True": True, "text": "x", "digits": "9" * 5000, "surrogate": "a\udc80b", "bytes": b"ab",
       "list": [1, 2], "mapping": {"a": 1}, "huge float": 1e308, "nan": float("nan"), "-1": -1, "10**100": 10 ** 100,
       "object": object(), "tuple": (1, 2), "a file": Path(__file__), "empty text": "", "array": np.zeros(3)}

BP = Blueprint(caption="argument corpus", duration=10)


class Doors:
    """What the doors need: an engine, a store holding one take, a scratch folder."""

    def __init__(self, engine, folder: Path):
        self.engine = engine
        self.folder = folder
        self.store = TakeStore(folder / "store")
        self.take = make_take(rate=engine.sample_rate, seconds=10.0)
        self.store.save(self.take)

    def task(self, cls, field, value):
        """The task with `field` set to `value` (and workable values elsewhere)."""
        given = {"source": self.take} if "source" in {f.name for f in dataclasses.fields(cls)} else {}
        if cls is Repaint and field != "regions":
            given.update(start=1.0, end=2.0)
        if cls is Extend:
            given.update(right=2.0)
        given[field] = value
        return cls(**given)


def _doors():
    """(label, name the message must hold, call(doors, value), accepted value names)."""
    out = []
    for field in dataclasses.fields(Blueprint):
        accepted = {"caption": {"None", "text", "empty text"}, "lyrics": {"None", "text", "empty text"},
                    "bpm": {"None", "empty text"}, "keyscale": {"None", "empty text"}, "timesignature": {"None",
                                                                                                          "empty text"},
                    "language": {"None", "empty text"}, "instrumental": {"True"}, "planned": {"None"}}
        out.append((f"Blueprint.{field.name}", field.name, lambda d, v, f=field.name: Blueprint(**{f: v}).validate(),
                    accepted.get(field.name, set())))
    out += [("Blueprint.from_json", "json", lambda d, v: Blueprint.from_json(v), set()),
            ("Blueprint.from_dict", "", lambda d, v: Blueprint.from_dict(v), set()),
            ("Blueprint.load", ("file", "json"), lambda d, v: Blueprint.load(v), set())]
    for field in dataclasses.fields(GenerationSettings):
        if field.name in ("schedule", "turbo", "custom_schedule"):  # derived, not settings one passes
            continue
        accepted = {"None"} | ({"True"} if field.name == "normalize" else set())
        if field.name == "guidance_method":
            accepted |= {"empty text"}
        if field.name == "normalization_db":
            accepted |= {"-1"}
        out.append((f"settings.{field.name}", field.name, lambda d, v, f=field.name: d.engine.settings(**{f: v}),
                    accepted))
    out += [
        ("generate(blueprint)", "blueprint", lambda d, v: d.engine.generate(v, steps=1), set()),
        ("generate(task)", "task", lambda d, v: d.engine.generate(BP, task=v, steps=1), {"None"}),
        ("generate(batch_size)", "batch_size", lambda d, v: d.engine.generate(BP, batch_size=v, steps=1), set()),
        ("generate(seeds)", "seed", lambda d, v: d.engine.generate(BP, seeds=v, steps=1), {"None"}),
        ("generate(progress)", "progress", lambda d, v: d.engine.generate(BP, progress=v, steps=1, seeds=1),
         {"None", "True"}),
        ("generate(cancel)", "cancel", lambda d, v: d.engine.generate(BP, cancel=v, steps=1, seeds=1), {"None"}),
        ("generate(settings)", "settings", lambda d, v: d.engine.generate(BP, settings=v, seeds=1), {"None"}),
        ("plan_memory(batch_size)", "batch_size", lambda d, v: d.engine.plan_memory(BP, batch_size=v), set()),
        ("plan_memory(memory_budget)", "memory_budget", lambda d, v: d.engine.plan_memory(BP, memory_budget=v),
         {"None", "huge float", "10**100"}),
        ("plan_memory(blueprint)", "blueprint", lambda d, v: d.engine.plan_memory(v), set()),
        ("load_lora", "path", lambda d, v: d.engine.load_lora(v), set()),
        ("set_lora_scale", "scale", lambda d, v: d.engine.set_lora_scale(v), {"-1"}),
        ("unload_lora", "name", lambda d, v: d.engine.unload_lora(v), {"None"}),
        ("with_variant", "dit", lambda d, v: d.engine.with_variant(v), {"text"}),
        ("frames_for", "seconds", lambda d, v: d.engine.frames_for(v), set()),
        ("can", "task", lambda d, v: d.engine.can(v), {"text", "digits", "surrogate", "empty text"}),
        ("Engine.from_pretrained(checkpoints_dir)", "checkpoints_dir",
         lambda d, v: Engine.from_pretrained(v, device="cpu"), {"None", "text", "surrogate", "empty text"}),
        ("Engine.from_pretrained(dit)", "dit",
         lambda d, v: Engine.from_pretrained(d.engine.models.paths["checkpoints"], dit=v, device="cpu"), {"text"}),
        ("Engine.from_pretrained(device)", "device",
         lambda d, v: Engine.from_pretrained(d.engine.models.paths["checkpoints"], device=v), {"None"}),
        ("Engine.from_pretrained(dtype)", "dtype",
         lambda d, v: Engine.from_pretrained(d.engine.models.paths["checkpoints"], device="cpu", dtype=v), {"None"}),
        ("Engine.from_pretrained(memory_budget)", "memory_budget",
         lambda d, v: Engine.from_pretrained(d.folder / "absent", device="cpu", memory_budget=v), {"None", "10**100"}),
        ("Engine.from_pretrained(allow_download)", "allow_download",
         lambda d, v: Engine.from_pretrained(d.folder / "absent", device="cpu", allow_download=v), {"True"}),
        ("Engine.demo(variant)", "variant", lambda d, v: Engine.demo(device="cpu", variant=v), set()),
        ("Regions", "spans", lambda d, v: Regions(v), set()),
        ("Regions.of", "regions", lambda d, v: Regions.of(v), {"list", "tuple"}),
    ]
    for cls in (Text2Music, Cover, Repaint, Extend, Extract, ExtractAll, Lego, Complete):
        for field in dataclasses.fields(cls):
            if field.name == "source" or cls in (Extract, ExtractAll, Lego, Complete) and field.name in (
                    "reference", "audio_codes"):
                continue
            accepted = {"None"} if field.name in ("reference", "audio_codes", "context") else set()
            if field.name == "reference":
                accepted |= {"a file"}  # an existing file: whether it is audio is found when it is read
            if field.name == "audio_codes":
                accepted |= {"text", "digits", "surrogate", "empty text", "list", "tuple"}  # read when planned
            if cls is Repaint and field.name in ("start", "end"):
                accepted = {"-1"} if field.name == "start" else {"huge float", "10**100"}  # outpainting
            if cls is Lego and field.name in ("start", "end"):
                accepted = {"None"}
            if cls is Repaint and field.name == "regions":
                accepted = {"list", "tuple"}  # one (start, end) pair
            if cls in (Repaint, Extend) and field.name in ("caption", "lyrics"):  # a section edit's new text
                accepted = {"None", "text", "empty text"}
            if cls in (Cover, Repaint, Extend) and field.name == "strength":
                accepted = {"True"} if cls is not Cover else set()
            out.append((f"{cls.__name__}.{field.name}", "track" if field.name == "tracks" else field.name,
                        lambda d, v, c=cls, f=field.name: d.task(c, f, v).validate(), accepted))
    store_doors = [
        ("TakeStore(folder)", "folder", lambda d, v: TakeStore(v), {"text", "surrogate"}),
        ("TakeStore(audio_format)", "audio_format", lambda d, v: TakeStore(d.folder / "s2", audio_format=v), set()),
        ("save(take)", "take", lambda d, v: d.store.save(v), set()),
        ("save(format)", "format", lambda d, v: d.store.save(d.take, format=v), {"None", "empty text"}),
        ("rename(name)", "name", lambda d, v: d.store.rename(d.take.id, v), {"text", "empty text"}),
        ("update_notes", "notes.k", lambda d, v: d.store.update_notes(d.take.id, k=v),
         {"None", "True", "text", "digits", "list", "mapping", "huge float", "-1", "10**100", "tuple", "empty text",
          "array"}),
        ("load", "take", lambda d, v: d.store.load(v), set()),
        ("record", "take", lambda d, v: d.store.record(v), set()),
        ("delete", "take", lambda d, v: d.store.delete(v), set()),
        ("undelete", "take", lambda d, v: d.store.undelete(v), set()),
        ("lineage", "take", lambda d, v: d.store.lineage(v), {"text"}),
        ("children", "take", lambda d, v: d.store.children(v), {"text"}),
        ("list(task)", "task", lambda d, v: d.store.list(task=v), {"None", "text", "digits", "surrogate",
                                                                    "empty text"}),
        ("list(search)", "search", lambda d, v: d.store.list(search=v), {"None", "text", "digits", "surrogate",
                                                                          "empty text"}),
        ("list(parent_id)", "parent_id", lambda d, v: d.store.list(parent_id=v),
         {"None", "text", "digits", "surrogate", "empty text"}),
        ("export(take_id)", "take", lambda d, v: d.store.export(v, d.folder / "e.wav"), set()),
        ("export(path)", ("path", "format"), lambda d, v: d.store.export(d.take.id, v), set()),
        ("export(format)", "format", lambda d, v: d.store.export(d.take.id, d.folder / "e.wav", format=v), {"None"}),
        ("export(bit_depth)", "bit_depth", lambda d, v: d.store.export(d.take.id, d.folder / "e.wav", bit_depth=v),
         {"None"}),
        ("export(extras)", "extras", lambda d, v: d.store.export(d.take.id, d.folder / "e2.wav", extras=v), {"True"}),
        ("export_takes(take_ids)", "take", lambda d, v: takes_wing.export_takes(d.store, v, d.folder / "x"),
         set()),
        ("export_takes(dest)", "dest", lambda d, v: takes_wing.export_takes(d.store, [d.take.id], v),
         {"text", "surrogate"}),
        ("export_takes(format)", "format",
         lambda d, v: takes_wing.export_takes(d.store, [d.take.id], d.folder / "y", format=v), set()),
        ("export_batch", "take", lambda d, v: takes_wing.export_batch(d.store, v, d.folder / "z"), set()),
        ("export_lineage", "take", lambda d, v: takes_wing.export_lineage(d.store, v, d.folder / "w"), set()),
        ("read_audio", "path", lambda d, v: takes_wing.read_audio(v), set()),
        ("wav_bytes(audio)", "audio", lambda d, v: takes_wing.wav_bytes(v, 8000), {"list", "tuple", "array"}),
        ("wav_bytes(sample_rate)", "sample_rate", lambda d, v: takes_wing.wav_bytes(np.zeros((1, 10)), v), set()),
        ("measure_take", "take", lambda d, v: takes_wing.measure_take(d.store, v), set()),
        ("check_take_id", "take", lambda d, v: takes_wing.check_take_id(v), {"text"}),
    ]
    return out + store_doors


DOORS = _doors()
CASES = [(label, value) for label, *_ in DOORS for value in BAD]


def _names(message: str, name, value) -> bool:
    """Whether `message` names the argument: one of its names, or the path the caller gave."""
    names = name if isinstance(name, tuple) else (name,)
    if any(n.lower() in message.lower() for n in names):
        return True
    return isinstance(value, Path) and str(value) in message


@pytest.fixture(scope="module")
def doors(turbo, tmp_path_factory):
    folder = tmp_path_factory.mktemp("doors")
    here = os.getcwd()
    os.chdir(folder)  # "x" and other relative paths land in the scratch folder
    try:
        yield Doors(turbo, folder)
    finally:
        os.chdir(here)


@pytest.mark.parametrize("label, value", CASES, ids=[f"{label}-{value}" for label, value in CASES])
def test_a_wrong_value_at_a_public_door_is_named(doors, label, value):
    _, name, call, accepted = next(door for door in DOORS if door[0] == label)
    try:
        call(doors, BAD[value])
    except AceStepError as exc:
        message = str(exc)
        message.encode("utf-8")  # printable
        assert len(message) < 2000, f"{label}: a message of {len(message)} characters"
        if value not in accepted:
            assert _names(message, name, BAD[value]), f"{label} does not name {name!r}: {message}"
    else:
        assert value in accepted, f"{label} accepted {value}"


@pytest.mark.parametrize("cls, field, value", [
    (Text2Music, "reference", 5), (Text2Music, "audio_codes", {"a": 1}), (Cover, "reference", b"x.wav"),
    (Cover, "strength", "9" * 5000), (Cover, "audio_codes", [True]), (Repaint, "mode", np.zeros(3)),
    (Repaint, "regions", "0-1"), (Extend, "right", float("nan")), (Extract, "track", ["drums"]),
    (ExtractAll, "tracks", "drums"), (Lego, "track", None), (Complete, "tracks", 5),
])
def test_generate_refuses_bad_task_fields(doors, cls, field, value):
    with pytest.raises(AceStepError, match=field):
        doors.engine.generate(BP, task=doors.task(cls, field, value), steps=1, seeds=1)


def test_a_folder_another_process_creates_during_the_check_is_accepted(tmp_path, monkeypatch):
    """Two render processes given the same new --out: the folder may appear between two looks at it. The
    check looks once, so it sees either "missing" or "a folder", never "exists but is not a folder"."""
    from acestep_engine.arguments import path_argument

    folder = tmp_path / "takes"
    real_stat = Path.stat

    def stat_then_the_other_process_creates_it(self, *args, **kwargs):
        try:
            return real_stat(self, *args, **kwargs)
        finally:
            if self == folder and not os.path.isdir(folder):
                os.mkdir(folder)

    monkeypatch.setattr(Path, "stat", stat_then_the_other_process_creates_it)
    assert path_argument(str(folder), "out", AceStepError, kind="folder") == folder
    assert folder.is_dir()
    assert path_argument(str(folder), "out", AceStepError, kind="folder") == folder
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(AceStepError, match="out .*a-file is not a folder"):
        path_argument(str(tmp_path / "a-file"), "out", AceStepError, kind="folder")
