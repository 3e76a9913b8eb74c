"""A plan: the ordered steps of one rollback type, from the runbook, each with its budget,
whether it destroys anything, what undoes it, and what it would run (for --dry-run)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from app.rollback.context import RunContext

StepAction = Callable[[RunContext], Awaitable[str]]


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    description: str
    budget_s: int
    action: StepAction
    destructive: bool = False
    point_of_no_return: bool = False
    undo: str = ""
    statements: tuple[str, ...] = ()   # SQL and commands it runs, shown by --dry-run


@dataclass
class Plan:
    kind: str              # the type's key (app.rollback.registry)
    target: str
    backup_id: str
    tables: tuple[str, ...]
    steps: list[Step] = field(default_factory=list)
    blast_radius: list[str] = field(default_factory=list)
    # Tables (SQL names) this plan brings back without their rows or dropped columns' values:
    # they are only in the backup, so a partial data rollback of them follows (phase 2 of 2).
    leaves_rows_in_backup: tuple[str, ...] = ()
    # Its last step keeps the app in maintenance for that phase instead of switching it off.
    holds_maintenance: bool = False

    @property
    def phases(self) -> int:
        """1, or 2 when a data rollback must follow this one for the incident to be over."""
        return 2 if self.leaves_rows_in_backup else 1

    @property
    def budget_s(self) -> int:
        return sum(s.budget_s for s in self.steps)

    def describe(self) -> dict[str, object]:
        return {"type": str(self.kind), "target": self.target, "backup": self.backup_id,
                "tables": list(self.tables), "budget_s": self.budget_s,
                "blast_radius": self.blast_radius, "phases": self.phases,
                "leaves_rows_in_backup": list(self.leaves_rows_in_backup),
                "holds_maintenance": self.holds_maintenance,
                "steps": [{"id": s.id, "title": s.title, "description": s.description,
                           "budget_s": s.budget_s, "destructive": s.destructive,
                           "point_of_no_return": s.point_of_no_return, "undo": s.undo,
                           "statements": list(s.statements)} for s in self.steps]}
