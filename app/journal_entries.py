"""Typed journal entries: one dataclass per kind that resume and the report read, and ONE reader
(``typed``) that turns a verified journal line into it. A kind nobody types stays readable as
``Raw``. Entries written before the ``version`` field (version 1) read the same; where an old
journal lacks a field, the dataclass says what was assumed then.

``decision`` was written in three shapes (``choice`` + ``reason``; ``choice="override"`` +
``against``; ``decision=...`` + ``backup``): it is one ``Decision`` now, and the old third shape
reads as one (its ``decision`` text becomes the choice).

Writers keep calling ``Journal.append(kind, **data)``; the chain and the seal do not change. The
dataclasses that the engine writes also give the fields (``fields()``) so writer and reader agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from app.journal import Entry, Journal

VERSION = 2   # 1: entries before typed entries (no ``version`` field)


def _version(data: dict[str, Any]) -> int:
    value = data.get("version", 1)
    return value if isinstance(value, int) else 1


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()


def _opt_bool(value: Any) -> bool | None:
    return bool(value) if value is not None else None


@dataclass(frozen=True)
class Raw:
    """An entry of a kind nobody types (assessment, notified, validation, ...)."""

    kind: str
    at: str
    data: dict[str, Any]


@dataclass(frozen=True)
class IncidentOpened:
    """The run as approved at the gate: everything that shapes its plan, so a resume builds
    the same plan. ``allow_in_place``/``allow_after_migration`` are None in journals written
    before they were recorded (version 1)."""

    type: str
    target: str
    backup: str                       # the source's id (what the report and the lookups show)
    at: str = ""
    source: dict[str, Any] = field(default_factory=dict)   # RestoreSource.journal_record()
    tables: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()
    database: dict[str, Any] = field(default_factory=dict)
    keep_maintenance: bool = False
    follows: str | None = None
    leaves_rows_in_backup: tuple[str, ...] = ()
    allow_in_place: bool | None = None
    allow_after_migration: bool | None = None
    migration_at: str | None = None
    # a repair's options (app/rollback/repair.py)
    after: str = ""
    damage: tuple[str, ...] = ()
    conflicts: str = "keep"
    fire_triggers: bool = False
    version: int = VERSION

    @classmethod
    def read(cls, entry: Entry) -> IncidentOpened:
        d = entry.data
        source, database = d.get("source"), d.get("database")
        return cls(type=str(d.get("type")), target=str(d.get("target")),
                   backup=str(d.get("backup")), at=entry.at,
                   source=source if isinstance(source, dict) else {},
                   tables=_strs(d.get("tables")), steps=_strs(d.get("steps")),
                   database=database if isinstance(database, dict) else {},
                   keep_maintenance=bool(d.get("keep_maintenance")),
                   follows=d.get("follows"),
                   leaves_rows_in_backup=_strs(d.get("leaves_rows_in_backup")),
                   allow_in_place=_opt_bool(d.get("allow_in_place")),
                   allow_after_migration=_opt_bool(d.get("allow_after_migration")),
                   migration_at=d.get("migration_at"),
                   after=str(d.get("after") or ""), damage=_strs(d.get("damage")),
                   conflicts=str(d.get("conflicts") or "keep"),
                   fire_triggers=bool(d.get("fire_triggers")),
                   version=_version(d))

    def fields(self) -> dict[str, Any]:
        """What ``Journal.append("incident_opened", ...)`` writes (``at`` is the entry's)."""
        out = asdict(self)
        out.pop("at")
        return out


@dataclass(frozen=True)
class Decision:
    """The operator's decision: a verdict accepted, an override against it, a set used
    although taken after the migration. One shape."""

    choice: str
    reason: str = ""
    at: str = ""
    against: str | None = None       # the verdict overridden
    backup: str | None = None        # the set the decision is about
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = VERSION

    @classmethod
    def read(cls, entry: Entry) -> Decision:
        d = dict(entry.data)
        choice = d.pop("choice", None)
        if choice is None:   # version 1's third shape: decision="use a set taken after ..."
            choice = d.pop("decision", "")
        return cls(choice=str(choice), reason=str(d.pop("reason", "") or ""), at=entry.at,
                   against=d.pop("against", None), backup=d.pop("backup", None),
                   version=_version(d), extra={k: v for k, v in d.items() if k != "version"})

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"choice": self.choice, "reason": self.reason,
                               "version": self.version, **self.extra}
        if self.against is not None:
            out["against"] = self.against
        if self.backup is not None:
            out["backup"] = self.backup
        return out


@dataclass(frozen=True)
class Gate:
    ok: bool
    expected: str
    at: str = ""

    @classmethod
    def read(cls, entry: Entry) -> Gate:
        return cls(bool(entry.data.get("ok")), str(entry.data.get("expected", "")), entry.at)


@dataclass(frozen=True)
class StepStarted:
    step: str
    destructive: bool = False
    at: str = ""

    @classmethod
    def read(cls, entry: Entry) -> StepStarted:
        return cls(str(entry.data.get("step")), bool(entry.data.get("destructive")), entry.at)


@dataclass(frozen=True)
class StepFinished:
    """A step's end: ``status`` done, skipped, failed or aborted (a failed one is the runbook's
    step_failed: ``error`` and the run's ``outcome`` say why)."""

    step: str
    status: str
    at: str = ""
    summary: str = ""
    result: dict[str, Any] = field(default_factory=dict)   # what the step found or made
    error: str = ""
    outcome: str = ""
    reason: str = ""                                       # a skip's reason
    elapsed_s: float | None = None

    @property
    def done(self) -> bool:
        return self.status in ("done", "skipped")

    @classmethod
    def read(cls, entry: Entry) -> StepFinished:
        d = entry.data
        result = d.get("result")
        return cls(str(d.get("step")), str(d.get("status", "")), entry.at,
                   str(d.get("summary") or ""), result if isinstance(result, dict) else {},
                   str(d.get("error") or ""), str(d.get("outcome") or ""),
                   str(d.get("reason") or ""), d.get("elapsed_s"))


@dataclass(frozen=True)
class Maintenance:
    """The app's maintenance switch as a step or the operator left it: ``maintenance_verified``
    (on, checked), ``maintenance_held`` (kept on for phase 2)."""

    kind: str
    on: bool
    at: str = ""
    step: str | None = None
    tables: tuple[str, ...] = ()

    @classmethod
    def read(cls, entry: Entry) -> Maintenance:
        d = entry.data
        return cls(entry.kind, bool(d.get("on")), entry.at, d.get("step"),
                   _strs(d.get("tables")))


@dataclass(frozen=True)
class IncidentEnded:
    """``incident_closed`` (done, failed, refused, abandoned) or ``incident_paused`` (stopped,
    needs the operator)."""

    kind: str
    outcome: str
    at: str = ""
    exit_code: int | None = None
    summary: str = ""
    reason: str = ""

    @property
    def closed(self) -> bool:
        return self.kind == "incident_closed"

    @classmethod
    def read(cls, entry: Entry) -> IncidentEnded:
        d = entry.data
        code = d.get("exit_code")
        return cls(entry.kind, str(d.get("outcome", "")), entry.at,
                   code if isinstance(code, int) else None, str(d.get("summary") or ""),
                   str(d.get("reason") or ""))


@dataclass(frozen=True)
class IncidentResumed:
    resumed_from: str | None
    confirmed: bool
    at: str = ""

    @classmethod
    def read(cls, entry: Entry) -> IncidentResumed:
        return cls(entry.data.get("resumed_from"), bool(entry.data.get("confirmed")), entry.at)


Typed = (IncidentOpened | Decision | Gate | StepStarted | StepFinished | Maintenance
         | IncidentEnded | IncidentResumed | Raw)

_READERS: dict[str, Any] = {
    "incident_opened": IncidentOpened.read, "decision": Decision.read, "gate": Gate.read,
    "step_started": StepStarted.read, "step_finished": StepFinished.read,
    "maintenance_verified": Maintenance.read, "maintenance_held": Maintenance.read,
    "incident_closed": IncidentEnded.read, "incident_paused": IncidentEnded.read,
    "incident_resumed": IncidentResumed.read,
}


def typed(entry: Entry) -> Typed:
    """The one reader: a journal entry as its dataclass, or ``Raw`` for other kinds."""
    reader = _READERS.get(entry.kind)
    if reader is None:
        return Raw(entry.kind, entry.at, entry.data)
    result: Typed = reader(entry)
    return result


def opened(journal: Journal) -> IncidentOpened | None:
    """The incident's opening, typed (None: no rollback was opened in this journal)."""
    entry = journal.last("incident_opened")
    return IncidentOpened.read(entry) if entry is not None else None


def decision(journal: Journal) -> Decision | None:
    entry = journal.last("decision")
    return Decision.read(entry) if entry is not None else None


def record_decision(journal: Journal, choice: str, reason: str, **details: Any) -> Entry:
    """Journal a decision in its one shape (``against``, ``backup`` and the rest as given)."""
    against, backup = details.pop("against", None), details.pop("backup", None)
    return journal.append("decision", **Decision(choice, reason, against=against, backup=backup,
                                                 extra=details).fields())
