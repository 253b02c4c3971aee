"""A render plan: a JSONL or CSV file, one job per line, checked line by line before anything loads.

    {"caption": "lo-fi piano, rain", "duration": 30, "count": 4, "name": "lofi"}
    {"blueprint": "songs/hook.json", "seeds": [1, 2, 3], "steps": 6}
    {"blueprint": "songs/hook.json", "task": "cover", "source": "demo.flac", "strength": 0.6, "seed": 9}
    {"blueprint": {"caption": "city pop", "bpm": 112}, "lora": "loras/citypop", "lora_scale": 0.8, "count": 2}

Every field sits at the top level of a line (a CSV file has one column per field):
- `blueprint`: a blueprint JSON file (relative to the plan's folder) or an inline object; the
  blueprint fields (`caption`, `lyrics`, `bpm`, ...) given beside it override it;
- `task`: text2music (default), cover, repaint, extend, extract, extract_all, lego or complete, with
  the task's own fields beside it (`source`, `strength`, `start`, `end`, `track`, ...); a source or
  reference is a take id of the store or an audio file;
- `seeds` (a list), `seed` (one take, or the first of `count`) or `count` (seeds derived from the
  line itself, so a rerun asks for the same ones); without any of them, one take;
- `variant` (a DiT folder or alias: turbo, base, sft, ...), `lora` (an adapter folder, a list of
  them, or `{"path", "scale"}` objects) with `lora_scale`, and the generation settings (`steps`,
  `shift`, `guidance`, `method`, `solver`, ...); `name` labels the job.

A bad line becomes a `PlanProblem` (line, field, message) and the other lines still render. JSONL
lines that are blank or start with `#` are skipped.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import inspect
import io
import json
import math
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..blueprint import Blueprint
from ..errors import AceStepError, BlueprintError, PlanError
from ..generation.settings import SEED_LIMIT, GenerationSettings
from ..generation.tasks import TASKS
from ..generation.tasks.base import DeferredSource
from ..models.variants import VARIANTS, resolve_variant, variant_for_task
from ..takes import TAKE_ID_PATTERN

BLUEPRINT_FIELDS = tuple(f.name for f in dataclasses.fields(Blueprint) if f.name != "planned")
SETTING_FIELDS = tuple(name for name in inspect.signature(GenerationSettings.build).parameters if name != "variant")
JOB_FIELDS = ("blueprint", "task", "seeds", "seed", "count", "variant", "lora", "lora_scale", "name")
SOURCE_FIELDS = ("source", "reference")
TASK_FIELDS = tuple(sorted({f.name for cls in TASKS.values() for f in dataclasses.fields(cls)}))
MAX_TAKES_PER_LINE = 1000
MAX_NAME_CHARS = 200
PLAN_SUFFIXES = (".jsonl", ".csv")
_TAKE_ID_RE = re.compile(TAKE_ID_PATTERN)
_COMMON = JOB_FIELDS + BLUEPRINT_FIELDS + SETTING_FIELDS
ALL_FIELDS = _COMMON + TASK_FIELDS
# CSV cells of these fields stay text as written; the others are read as JSON when they parse.
_TEXT_FIELDS = {"caption", "lyrics", "keyscale", "language", "timesignature", "name", "blueprint", "task", "source",
                "reference", "variant", "lora", "audio_codes", "mode", "track", "guidance_method", "method", "solver"}


@dataclass(frozen=True)
class TakeRef(DeferredSource):
    """A source given by take id: loaded from the store when its job renders."""

    take_id: str

    def __str__(self) -> str:
        return self.take_id


@dataclass(frozen=True)
class PlanProblem:
    """A line that will not render: its number (1-based; a job's position for plans given in Python),
    the field at fault ("json" for a line that is not JSON, "line" for the line as a whole) and why."""

    line: int
    field: str
    message: str
    where: str = "line"  # "line" in a file, "job" in a list given in Python

    def __str__(self) -> str:
        return f"{self.where} {self.line}: {self.message}"

    def to_dict(self) -> dict:
        return {"line": self.line, "field": self.field, "message": self.message}


@dataclass(frozen=True)
class RenderJob:
    """One checked line: render `blueprint` with `task` once per seed.

    `task` is a validated task object whose sources are audio file paths or `TakeRef`s; `variant` is
    the DiT folder that runs it (None: the engine's own); `loras` are (adapter folder, scale) pairs
    loaded for this job only; `settings` are the generation-setting overrides as written.
    """

    line: int
    blueprint: Blueprint
    task: object
    seeds: tuple[int, ...]
    variant: str | None = None
    loras: tuple[tuple[Path, float], ...] = ()
    settings: dict = field(default_factory=dict)
    name: str = ""

    @property
    def label(self) -> str:
        """What a person calls this job: its name, else the start of its caption, else its line."""
        if self.name:
            return self.name
        caption = self.blueprint.caption.strip()
        return (caption[:60] + "...") if len(caption) > 60 else caption or f"line {self.line}"

    def describe(self) -> dict:
        """JSON-friendly: what the line asks for (sources as take ids or paths)."""
        return {"line": self.line, "label": self.label, "task": json_friendly(self.task.to_dict()),
                "caption": self.blueprint.caption, "seeds": list(self.seeds), "variant": self.variant,
                "loras": [[str(p), s] for p, s in self.loras], "settings": dict(self.settings)}


@dataclass
class RenderPlan:
    """The checked jobs of a plan and the lines that will not render. `source` names the plan in
    messages (its path, or "jobs" for a list given in Python)."""

    jobs: list[RenderJob]
    problems: list[PlanProblem]
    source: str = "jobs"
    name: str = "render"

    @property
    def takes(self) -> int:
        """Takes the good lines ask for (a seed asked twice counts twice)."""
        return sum(len(job.seeds) for job in self.jobs)

    def check(self) -> "RenderPlan":
        """Raise `PlanError` listing every bad line (the `--strict` rule); returns the plan when all are good."""
        if self.problems:
            raise PlanError(self.problems, self.source)
        return self

    def __str__(self) -> str:
        bad = len(self.problems)
        lines = [f"{self.source}: {len(self.jobs)} job{'' if len(self.jobs) == 1 else 's'}, {self.takes} "
                 f"take{'' if self.takes == 1 else 's'}" + (f"; {bad} bad line{'' if bad == 1 else 's'}" if bad else "")]
        return "\n".join(lines + [f"  {p}" for p in self.problems])


# --------------------------------------------------------------------------------- reading files

def load_plan(path, store=None, variant: str = "acestep-v15-turbo", name: str | None = None) -> RenderPlan:
    """Read and check a `.jsonl` or `.csv` plan. `store` (a TakeStore) resolves sources given by take
    id; `variant` is the DiT that runs lines without one (their settings are checked against its
    preset). Paths in the plan are relative to its folder. A file that cannot be read at all raises
    `PlanError`; bad lines are returned in `plan.problems`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PLAN_SUFFIXES:
        raise PlanError([], str(path), f"a render plan must be a .jsonl or .csv file (got {path.name!r})")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise PlanError([], str(path), f"{path} is missing") from None
    except OSError as exc:
        raise PlanError([], str(path), f"{path} could not be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise PlanError([], str(path), f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    rows = _csv_rows(text, path) if suffix == ".csv" else _jsonl_rows(text)
    return _checked(rows, path.parent, store, variant, str(path), name or path.stem, "line")


def plan_from_records(records, store=None, variant: str = "acestep-v15-turbo", base_dir=".",
                      name: str = "render") -> RenderPlan:
    """A plan from dicts (the fields of a plan line) or `RenderJob`s given in Python; problems are
    numbered by position ("job 3"). Paths are relative to `base_dir`."""
    if isinstance(records, (str, bytes, dict)) or not hasattr(records, "__iter__"):
        raise PlanError([], "jobs", f"jobs must be a plan file or a list of jobs (got {type(records).__name__})")
    rows = []
    for number, record in enumerate(records, start=1):
        rows.append((number, record, None))
    return _checked(rows, Path(base_dir), store, variant, "jobs", name, "job")


def _jsonl_rows(text: str):
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            yield number, json.loads(stripped), None
        except json.JSONDecodeError as exc:
            yield number, None, PlanProblem(number, "json", f"is not valid JSON ({exc.msg} at column {exc.colno})")
        except RecursionError:
            yield number, None, PlanProblem(number, "json", "is nested too deeply to be a plan line")


def _csv_rows(text: str, path: Path):
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        return
    header = [name.strip() for name in reader.fieldnames]
    unknown = [name for name in header if name and name not in ALL_FIELDS]
    if unknown:
        raise PlanError([PlanProblem(1, unknown[0], "the header: " + _unknown_fields(unknown, set(ALL_FIELDS)))],
                        str(path))
    for row in reader:
        number = reader.line_num  # the line the row ends on (a quoted cell may span lines)
        if None in row:
            yield number, None, PlanProblem(number, "line", f"has {len(header) + len(row[None])} cells; the header "
                                                            f"names {len(header)}")
            continue
        record = {}
        for key, cell in zip(header, row.values()):
            cell = (cell or "").strip()
            if key and cell:
                record[key] = _csv_value(key, cell)
        if record:
            yield number, record, None


def _csv_value(key: str, cell: str):
    if key in _TEXT_FIELDS:
        return cell
    try:
        return json.loads(cell)
    except (json.JSONDecodeError, RecursionError):
        pass
    if key in ("seeds", "tracks") and re.fullmatch(r"[\w.+-]+([\s,;]+[\w.+-]+)*", cell):
        items = [item for item in re.split(r"[\s,;]+", cell) if item]
        return [int(item) if re.fullmatch(r"[+-]?\d+", item) else item for item in items]
    return cell


# --------------------------------------------------------------------------------- checking lines

class _LineError(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _checked(rows, base_dir: Path, store, variant: str, source: str, name: str, where: str) -> RenderPlan:
    jobs, problems = [], []
    for number, record, problem in rows:
        if problem is None:
            try:
                jobs += check_line(record, number, base_dir, store, variant)
            except _LineError as exc:
                problem = PlanProblem(number, exc.field, str(exc))
        if problem is not None:
            problems.append(dataclasses.replace(problem, where=where))
    return RenderPlan(jobs, problems, source, name)


def check_line(record, number: int, base_dir: Path, store=None, variant: str = "acestep-v15-turbo") -> list[RenderJob]:
    """The jobs of one plan line (extract_all gives one per track), or `_LineError` naming the field."""
    if isinstance(record, RenderJob):
        return [dataclasses.replace(record, line=number)]
    if not isinstance(record, dict):
        raise _LineError("line", f"must be an object of plan fields (got {type(record).__name__})")
    task_name = record.get("task", "text2music")
    if task_name not in TASKS:
        raise _LineError("task", f"task must be one of {', '.join(TASKS)} (got {task_name!r})")
    task_fields = {f.name for f in dataclasses.fields(TASKS[task_name])}
    allowed = set(JOB_FIELDS) | set(BLUEPRINT_FIELDS) | set(SETTING_FIELDS) | task_fields
    unknown = [key for key in record if key not in allowed]
    if unknown:
        raise _LineError(str(unknown[0]), _unknown_fields(unknown, allowed, task_name))
    blueprint = _blueprint(record, base_dir)
    settings = {key: record[key] for key in SETTING_FIELDS if key in record}
    loras = _loras(record.get("lora"), record.get("lora_scale"), base_dir)
    name = record.get("name", "")
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
        raise _LineError("name", f"name must be text of at most {MAX_NAME_CHARS} characters (got {name!r:.60})")
    params = {key: record[key] for key in task_fields if key in record}
    for key in SOURCE_FIELDS:
        if key in params and params[key] is not None:
            params[key] = _source(key, params[key], base_dir, store)
    for key in ("regions", "tracks"):
        if isinstance(params.get(key), list):
            params[key] = tuple(tuple(v) if isinstance(v, list) else v for v in params[key])
    job_variant = _variant(record.get("variant"))
    task = _task(task_name, params)
    known = job_variant or variant
    if known in VARIANTS and task.capability not in VARIANTS[known].tasks:
        if job_variant is not None:
            raise _LineError("variant", f"the task {task_name} needs the {variant_for_task(task.capability)} "
                                        f"checkpoint; {job_variant} can run: {', '.join(VARIANTS[job_variant].tasks)}")
        job_variant = known = variant_for_task(task.capability)
    if known in VARIANTS:
        try:
            GenerationSettings.build(VARIANTS[known], **settings)
        except AceStepError as exc:
            raise _LineError(_field_of(str(exc), SETTING_FIELDS), str(exc)) from None
    seeds = _seeds(record, _line_content(blueprint, task, settings, job_variant, loras))
    parts = task.parts() if task.name == "extract_all" else (task,)
    return [RenderJob(number, blueprint, part, seeds, job_variant, loras, settings, name) for part in parts]


def _unknown_fields(unknown: list, allowed: set, task_name: str | None = None) -> str:
    import difflib

    names = ", ".join(map(repr, unknown))
    verb = "is not a plan field" if len(unknown) == 1 else "are not plan fields"
    if task_name is not None and all(key in TASK_FIELDS for key in unknown):
        return f"{names} {verb} of the {task_name} task (its fields: {', '.join(sorted(allowed - set(_COMMON)))})"
    close = difflib.get_close_matches(str(unknown[0]), sorted(allowed), n=1)
    if close:
        return f"{names} {verb} (did you mean {close[0]!r}?)"
    return f"{names} {verb}; the fields are {', '.join(sorted(allowed))}"


def _blueprint(record: dict, base_dir: Path) -> Blueprint:
    given = record.get("blueprint")
    if isinstance(given, str):
        path = _path(base_dir, given)
        try:
            blueprint = Blueprint.load(path)
        except BlueprintError as exc:
            raise _LineError("blueprint", f"blueprint: {exc}") from None
    elif isinstance(given, dict):
        try:
            blueprint = Blueprint.from_dict(given)
        except BlueprintError as exc:
            raise _LineError("blueprint", f"blueprint: {exc}") from None
    elif given is None:
        blueprint = Blueprint()
    else:
        raise _LineError("blueprint", f"blueprint must be a blueprint JSON file or an object of blueprint fields "
                                      f"(got {type(given).__name__})")
    overrides = {key: record[key] for key in BLUEPRINT_FIELDS if key in record}
    if given is None and not overrides:
        raise _LineError("blueprint", "needs a blueprint: a blueprint file or object, or at least a caption")
    blueprint = blueprint.replace(**overrides)
    errors = blueprint.errors()
    if errors:
        first = next(iter(errors))
        raise _LineError(first, "; ".join(errors.values()))
    return blueprint.validate()


def _path(base_dir: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def _source(key: str, value, base_dir: Path, store):
    """A take id of the store (or `{"take": id}`), else an audio file; checked to exist."""
    if isinstance(value, dict) and set(value) == {"take"}:
        value = value["take"]
        if not isinstance(value, str) or not _TAKE_ID_RE.fullmatch(value):
            raise _LineError(key, f"{key}: {{\"take\": ...}} must name a take id (got {value!r:.60})")
        if store is not None and value not in store:
            raise _LineError(key, f"{key}: no take {value} in {store.folder}")
        return TakeRef(value)
    if not isinstance(value, str) or not value.strip():
        raise _LineError(key, f"{key} must be a take id or an audio file path (got {value!r:.60})")
    if store is not None and _TAKE_ID_RE.fullmatch(value) and value in store:
        return TakeRef(value)
    path = _path(base_dir, value)
    if path.is_file():
        return path
    if store is None and _TAKE_ID_RE.fullmatch(value):
        return TakeRef(value)  # checked against the store when the render opens it
    where = f"no take {value!r} in {store.folder} and " if store is not None and _TAKE_ID_RE.fullmatch(value) else ""
    raise _LineError(key, f"{key}: {where}no file {path}")


def _variant(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _LineError("variant", f"variant must be a DiT folder name such as acestep-v15-base or an alias "
                                    f"such as base (got {value!r:.60})")
    known = resolve_variant(value)
    if known.name in VARIANTS:
        return known.name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
        raise _LineError("variant", f"variant must be one of {', '.join(VARIANTS)} (or an alias such as base), or "
                                    f"the folder name of a fine-tune beside them (got {value!r:.60})")
    return value  # a fine-tune's folder: checked when the render opens the checkpoints


def _loras(value, scale, base_dir: Path) -> tuple[tuple[Path, float], ...]:
    from ..lora.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, check_scale

    if value is None:
        if scale is not None:
            raise _LineError("lora_scale", "lora_scale needs a lora (an adapter folder)")
        return ()
    items = value if isinstance(value, list) else [value]
    if scale is not None and not (len(items) == 1 and isinstance(items[0], str)):
        raise _LineError("lora_scale", "lora_scale goes with one lora path; give a list of "
                                       "{\"path\": ..., \"scale\": ...} objects for several")
    out = []
    for item in items:
        item_scale = 1.0 if scale is None else scale
        if isinstance(item, dict) and "path" in item and set(item) <= {"path", "scale"}:
            item, item_scale = item["path"], item.get("scale", 1.0)
        if not isinstance(item, str) or not item.strip():
            raise _LineError("lora", f"lora must be an adapter folder, a list of them or {{\"path\", \"scale\"}} "
                                     f"objects (got {item!r:.60})")
        try:
            item_scale = check_scale(item_scale)
        except AceStepError as exc:
            raise _LineError("lora_scale", f"lora_scale: {exc}") from None
        folder = _path(base_dir, item)
        missing = [name for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if not (folder / name).is_file()]
        if missing:
            raise _LineError("lora", f"lora: {folder} is not a LoRA adapter folder (it lacks {', '.join(missing)})")
        out.append((folder, item_scale))
    return tuple(out)


def _task(name: str, params: dict):
    try:
        return TASKS[name](**params).validate()
    except AceStepError as exc:
        raise _LineError(_field_of(str(exc), tuple(params) + ("source", "start", "end")), str(exc)) from None


def _field_of(message: str, fields) -> str:
    """The field a message starts with ("strength must be ..."), else "task"."""
    first = re.split(r"[\s:]", message, maxsplit=1)[0]
    return first if first in fields else "task"


def _seeds(record: dict, content: str) -> tuple[int, ...]:
    seeds, seed, count = record.get("seeds"), record.get("seed"), record.get("count")
    if seeds is not None and (seed is not None or count is not None):
        raise _LineError("seeds", "give seeds (a list), or seed and/or count, not both")
    if seeds is not None:
        values = seeds if isinstance(seeds, list) else [seeds]
        if not values or len(values) > MAX_TAKES_PER_LINE:
            raise _LineError("seeds", f"seeds must list 1 to {MAX_TAKES_PER_LINE} seeds (got {len(values)})")
        values = [_whole("seeds", v, 0, SEED_LIMIT - 1) for v in values]
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise _LineError("seeds", f"seeds must not repeat (got {repeated[0]} more than once)")
        return tuple(values)
    count = 1 if count is None else _whole("count", count, 1, MAX_TAKES_PER_LINE)
    if seed is None:  # derived from the line, so a rerun of the plan asks for the same seeds
        seed = int.from_bytes(hashlib.sha256(content.encode()).digest()[:4], "big")
    first = _whole("seed", seed, 0, SEED_LIMIT - count)
    return tuple(range(first, first + count))


def _whole(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or float(value) != int(value):
        kind = "whole numbers" if name == "seeds" else "a whole number"
        raise _LineError(name, f"{name} must be {kind} between {lo} and {hi} (got {value!r:.60})")
    if not lo <= int(value) <= hi:
        raise _LineError(name, f"{name} must be between {lo} and {hi} (got {value!r})")
    return int(value)


def _line_content(blueprint, task, settings, variant, loras) -> str:
    content = {"blueprint": blueprint.to_dict(), "task": json_friendly(task.to_dict()), "settings": settings,
               "variant": variant, "loras": [[str(p), s] for p, s in loras]}
    return json.dumps(content, sort_keys=True, default=str)


def json_friendly(value):
    """A task record with `TakeRef`s as `{"take": id}` and paths as text (JSON-friendly)."""
    if isinstance(value, TakeRef):
        return {"take": value.take_id}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: json_friendly(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_friendly(v) for v in value]
    return value
