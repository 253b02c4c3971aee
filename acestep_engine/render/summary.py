"""What a render did, and its takes grouped by job.

`RenderSummary` lists every take the plan asks for with what became of it (rendered, skipped
because the store had it, failed with the reason, or not started when the render was stopped), the
lines that could not render, and the time; it is written as JSON beside the takes, in
`<store>/.renders/<name>.json`. `takes_by_job` groups a render's takes by job and seed, the rows
and columns of a grid (caption x seed).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import PlanError
from .plan import PlanProblem

RENDERS_FOLDER = ".renders"  # a dot folder: the take store does not list it
STATUSES = ("rendered", "skipped", "failed", "not started")


@dataclass(frozen=True)
class TakeOutcome:
    """One take a plan asks for: its key, job and seed, what became of it, and its take id when it exists."""

    key: str
    job: str
    seed: int
    status: str  # one of STATUSES
    take_id: str | None = None
    reason: str = ""  # why it failed
    process: int | None = None  # the process that rendered it (or failed it)
    seconds: float | None = None  # wall time of its batch, shared by the batch's takes


@dataclass
class RenderSummary:
    """A render's results. `jobs` describe each job (id, lines, label, caption, task, seeds)."""

    name: str
    plan: str
    store: str
    outcomes: list[TakeOutcome] = field(default_factory=list)
    problems: list[PlanProblem] = field(default_factory=list)
    jobs: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    processes: int = 1
    cancelled: bool = False
    started: str = ""
    path: Path | None = None

    def _with(self, status: str) -> list[TakeOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def rendered(self) -> list[TakeOutcome]:
        return self._with("rendered")

    @property
    def skipped(self) -> list[TakeOutcome]:
        """Takes the store had already (from an earlier or interrupted run): not rendered again."""
        return self._with("skipped")

    @property
    def failed(self) -> list[TakeOutcome]:
        return self._with("failed")

    @property
    def not_started(self) -> list[TakeOutcome]:
        """Takes left for a later run when this one was stopped."""
        return self._with("not started")

    @property
    def take_ids(self) -> list[str]:
        """The render's takes in the store (rendered now or before), in plan order."""
        return [o.take_id for o in self.outcomes if o.take_id]

    @property
    def takes_per_minute(self) -> float:
        return 60.0 * len(self.rendered) / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Every line was good and every take is in the store."""
        return not self.problems and all(o.status in ("rendered", "skipped") for o in self.outcomes)

    def counts(self) -> dict[str, int]:
        return {**{status: len(self._with(status)) for status in STATUSES}, "bad lines": len(self.problems)}

    def __str__(self) -> str:
        counts = self.counts()
        head = (f"{self.name}: {counts['rendered']} rendered, {counts['skipped']} skipped, {counts['failed']} failed"
                + (f", {counts['not started']} not started (stopped)" if self.cancelled or counts["not started"] else "")
                + f", {_plural(counts['bad lines'], 'bad line')} in {self.seconds:.1f} s"
                + (f" ({self.takes_per_minute:.1f} takes/min" + (f", {self.processes} processes)"
                                                                  if self.processes > 1 else ")")
                   if self.rendered else ""))
        lines = [head] + [f"  {p}" for p in self.problems]
        labels = {job["job"]: job for job in self.jobs}
        for outcome in self.failed:
            job = labels.get(outcome.job, {})
            lines.append(f"  line {job.get('line', '?')} ({job.get('label', outcome.job)}) seed {outcome.seed}: "
                         f"{outcome.reason}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"name": self.name, "plan": self.plan, "store": self.store, "started": self.started,
                "seconds": round(self.seconds, 3), "processes": self.processes, "cancelled": self.cancelled,
                "counts": self.counts(), "takes_per_minute": round(self.takes_per_minute, 3),
                "problems": [p.to_dict() for p in self.problems], "jobs": self.jobs,
                "takes": [asdict(o) for o in self.outcomes]}

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
        self.path = path
        return path

    @classmethod
    def load(cls, path) -> "RenderSummary":
        """Read a summary written by a render (`<store>/.renders/<name>.json`)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            summary = cls(name=data["name"], plan=data["plan"], store=data["store"],
                          outcomes=[TakeOutcome(**o) for o in data["takes"]],
                          problems=[PlanProblem(p["line"], p["field"], p["message"]) for p in data["problems"]],
                          jobs=data["jobs"], seconds=float(data["seconds"]), processes=int(data["processes"]),
                          cancelled=bool(data["cancelled"]), started=data.get("started", ""), path=path)
        except FileNotFoundError:
            raise PlanError([], str(path), f"no render summary at {path}") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PlanError([], str(path), f"{path} is not a render summary ({type(exc).__name__}: {exc})") from None
        return summary


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def summary_path(store, name: str) -> Path:
    """Where the render `name` writes its summary: `<store>/.renders/<name>.json`."""
    return Path(store.folder) / RENDERS_FOLDER / f"{name}.json"


def render_names(store) -> list[str]:
    """The names of the renders that wrote a summary into this store, sorted (what `takes_by_job`
    and `summary_path` take). Half-written summaries (dot files) are not renders yet."""
    folder = Path(store.folder) / RENDERS_FOLDER
    if not folder.is_dir():
        return []
    return sorted(path.stem for path in folder.glob("*.json") if not path.name.startswith("."))


# --------------------------------------------------------------------------------- takes by job

@dataclass
class JobTakes:
    """One job's takes, by seed: a row of a render's grid. `takes` are sidecar records (no audio),
    in seed order; `label` is the job's name or caption."""

    job: str
    label: str
    line: int | None
    caption: str
    task: str
    takes: list[dict]

    @property
    def seeds(self) -> list[int]:
        return [record["seed"] for record in self.takes]

    @property
    def take_ids(self) -> list[str]:
        return [record["id"] for record in self.takes]

    def by_seed(self) -> dict[int, dict]:
        return {record["seed"]: record for record in self.takes}


def takes_by_job(store, render=None) -> list[JobTakes]:
    """A render's takes grouped by job, each job's takes in seed order.

    `render`: a `RenderSummary`, or the name of a render of this store (its plan's file name without
    the suffix), whose jobs come in plan order, with takes rendered now or by an earlier run; None:
    every take of the store that a render made, grouped by the job each records."""
    records = {r["id"]: r for r in store.list()}
    if render is None:
        groups: dict[str, JobTakes] = {}
        for record in records.values():
            mark = (record.get("notes") or {}).get("render")
            if not isinstance(mark, dict) or not isinstance(mark.get("job"), str):
                continue
            if mark["job"] not in groups:
                groups[mark["job"]] = JobTakes(mark["job"], str(mark.get("label", "")), mark.get("line"),
                                               record["blueprint"].get("caption") or "",
                                               record["task"].get("name", ""), [])
            groups[mark["job"]].takes.append(record)
        out = sorted(groups.values(), key=lambda g: (g.line is None, g.line or 0, g.job))
    else:
        summary = render if isinstance(render, RenderSummary) else RenderSummary.load(summary_path(store, render))
        by_job: dict[str, list[dict]] = {}
        for outcome in summary.outcomes:
            if outcome.take_id in records:
                by_job.setdefault(outcome.job, []).append(records[outcome.take_id])
        out = [JobTakes(job["job"], job.get("label", ""), job.get("line"), job.get("caption", ""),
                        (job.get("task") or {}).get("name", ""), by_job.get(job["job"], []))
               for job in summary.jobs]
    for group in out:
        group.takes.sort(key=lambda record: record["seed"])
    return out
