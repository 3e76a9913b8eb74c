"""What a check returns. Plain dataclasses so the TUI, the CLI's JSON and the decision matrix all
read the same thing."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"   # the check could not finish (timeout, lock, unexpected error)
    SKIP = "skip"     # not run: not configured, no baseline, or the role lacks a privilege

    @property
    def passed(self) -> bool:
        """The one way a status counts as passing (a skip is not a pass)."""
        return self is Status.PASS


class Kind(StrEnum):
    """A symptom, in the runbook's words where it has them. The decision table maps these."""

    DATA_CORRUPTION = "data_corruption"
    DATA_LOSS = "data_loss"
    AUTH_FAILURE = "auth_failure"
    CRITICAL_BROKEN = "critical_broken"
    FK_VIOLATION = "fk_violation"
    RLS_BLOCKING = "rls_blocking"
    RLS_EXPOSURE = "rls_exposure"
    PERFORMANCE = "performance"
    SCHEMA_DRIFT = "schema_drift"
    CONSTRAINT_DRIFT = "constraint_drift"
    ERROR_RATE = "error_rate"
    UNEXPECTED_GROWTH = "unexpected_growth"
    CONTENTION = "contention"
    APP_UNREACHABLE = "app_unreachable"
    DB_UNREACHABLE = "db_unreachable"   # the target database is down: no check ran
    INCOMPLETE = "incomplete"


@dataclass(frozen=True)
class Finding:
    """One symptom a check saw; ``tables`` are those a data rollback would have to reload."""

    kind: Kind
    summary: str
    tables: tuple[str, ...] = ()
    # what it rests on (row counts, sample keys, changed columns): the verdict carries it
    evidence: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class CheckResult:
    check: str
    status: Status
    summary: str
    symptom: str                              # the runbook symptom this check speaks to
    evidence: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "status": str(self.status), "summary": self.summary,
                "symptom": self.symptom, "evidence": self.evidence,
                "findings": [{"kind": str(f.kind), "summary": f.summary,
                              "tables": list(f.tables), "evidence": f.evidence}
                             for f in self.findings],
                "elapsed_ms": round(self.elapsed_ms, 1)}


class Skip(Exception):
    """Raised inside a check that cannot run; becomes a SKIP result naming why."""

    def __init__(self, reason: str, *, privilege: bool = False):
        super().__init__(reason)
        self.privilege = privilege


def worst(statuses: list[Status]) -> Status:
    order = [Status.PASS, Status.SKIP, Status.WARN, Status.ERROR, Status.FAIL]
    return max(statuses, key=order.index, default=Status.PASS)


@dataclass(frozen=True)
class Mark:
    """A status as the screen and the terminal show it: an icon and a word, so the colour is
    never the only carrier (under NO_COLOR both renderers, Textual's App and Rich's Console,
    drop the colour and the words still say everything)."""

    icon: str
    word: str
    style: str = ""   # a rich style: its colour is extra, never the meaning

    @property
    def text(self) -> str:
        return f"{self.icon} {self.word}"


# Every status the console shows, checks and steps alike: the one table the widgets and the
# CLI read. A check that could not run is "skip"; a step the operator skipped is "skipped".
MARKS: dict[str, Mark] = {
    "pending": Mark("·", "PENDING", "dim"),   # not started, or not answered yet
    "running": Mark("▶", "RUNNING", "bold"),
    "pass": Mark("✔", "PASS", "green"),
    "done": Mark("✔", "DONE", "green"),
    "warn": Mark("▲", "WARN", "yellow"),
    "fail": Mark("✖", "FAIL", "red"),
    "failed": Mark("✖", "FAILED", "red"),
    "error": Mark("✖", "ERROR", "red"),
    "skip": Mark("–", "SKIPPED", "dim"),
    "skipped": Mark("↷", "SKIPPED", "yellow"),
    "notrun": Mark("■", "NOT RUN", "dim"),
    "aborted": Mark("■", "ABORTED", "red"),
}


def mark(status: str) -> Mark:
    """The mark of ``status`` (a ``Status`` or a step's status word); an unknown one is
    shown as its own word, never as nothing."""
    return MARKS.get(str(status), Mark("?", str(status).upper()))
