"""A FORWARD-FIX verdict's fix: the statements that repair each finding, as a suggestion the
operator runs or copies (nothing here runs them).

A schema finding carries the statement Type 1 would run to put the object back as the backup had
it (``evidence["sql"]``, from the catalog diff); as a forward fix it is made online-friendly: an
index is built ``CONCURRENTLY`` (writes go on while it builds), a foreign key or check is added
``NOT VALID`` and validated after (the validation takes a lock that lets writes go on). Where no
statement can be derived (a slow query, a change the diff cannot express), the step says what to
look at instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Finding kinds (app.checks.model.Kind values, compared as text: this module sits below the
# checks) a schema statement repairs; with a catalog diff every one of them has its statement.
SCHEMA_KINDS = ("schema_drift", "constraint_drift")
PERFORMANCE = "performance"
_ADD = re.compile(r'^(?P<table>.+?) ADD CONSTRAINT (?P<name>"(?:[^"]|"")+"|\S+) ', re.S)
_INDEX = re.compile(r"^CREATE (UNIQUE )?INDEX (?!CONCURRENTLY)")


@dataclass(frozen=True)
class FixStep:
    why: str                      # the finding it repairs, in words
    sql: tuple[str, ...] = ()     # the statements, without the closing semicolon
    look_at: str = ""             # what to look at when no statement can be derived

    def lines(self) -> list[str]:
        out = [f"-- {line}" for line in self.why.splitlines()]
        out += [s + ";" for s in self.sql]
        if self.look_at:
            out.append(f"-- look at: {self.look_at}")
        return out


def _online(change: str, sql: str) -> tuple[list[str], str]:
    """The statement(s) for one change as a forward fix, and a note on how they lock."""
    if change == "create index" and _INDEX.match(sql):
        return ([_INDEX.sub(lambda m: f"CREATE {m.group(1) or ''}INDEX CONCURRENTLY ", sql)],
                "CONCURRENTLY: writes go on while it builds; run it outside a transaction")
    found = _ADD.match(sql.removeprefix("ALTER TABLE "))
    if change in ("add foreign key", "add check") and found and not sql.endswith("NOT VALID"):
        table, name = found["table"], found["name"]
        return ([sql + " NOT VALID", f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}"],
                "NOT VALID first takes a short lock; VALIDATE then lets writes go on")
    if change.startswith(("drop ", "revoke")):
        return [sql], "it removes what the migration added: check nothing relies on it first"
    return [sql], ""


def _step(kind: str, summary: str, evidence: dict[str, Any],
          covered: bool) -> FixStep | None:
    sql = evidence.get("sql") or []
    if sql:
        change = str(evidence.get("change") or "")
        statements: list[str] = []
        notes: list[str] = []
        for statement in sql:
            done, note = _online(change, statement)
            statements += done
            notes += [note] if note and note not in notes else []
        why = summary.removeprefix("Type 1 would ")
        return FixStep(why + "".join(f"\n{n}" for n in notes), tuple(statements))
    if evidence.get("change") == "unsupported":
        return FixStep(summary, look_at="this change by hand: `rollback-console diff --sql` "
                       "shows the backup's definition")
    if kind in SCHEMA_KINDS and not covered:
        return FixStep(summary, look_at="`rollback-console diff --sql` (live mode) prints the "
                       "statement that puts it back as the backup had it")
    return None


def fix_for(findings: Iterable[tuple[str, str, dict[str, Any]]]) -> list[FixStep]:
    """One step per finding (kind, summary, evidence) that a fix can repair, in order; a
    finding the catalog diff also names (it has the statement) is not repeated."""
    findings = list(findings)
    covered = any(e.get("sql") for _k, _s, e in findings)
    steps: list[FixStep] = []
    for kind, summary, evidence in findings:
        step = _step(kind, summary, evidence, covered)
        if step is not None and step not in steps:
            steps.append(step)
    slow = [summary for kind, summary, _e in findings if kind == PERFORMANCE]
    if slow:   # one step for every slow query: after the statements above, if any
        steps.append(FixStep("; ".join(slow), look_at=(
            "assess again after the statements above; a query still slow: " if covered else
            "") + "its plan (EXPLAIN (ANALYZE, BUFFERS) on it) and the indexes of the tables it "
            "reads; `rollback-console diff` lists every schema change since the backup"))
    return steps


def statements(steps: Iterable[FixStep]) -> list[str]:
    """The fix as a list of SQL statements (each closed by a semicolon); a step with none is a
    ``-- look at: …`` comment, so the list pasted as a whole still runs."""
    out: list[str] = []
    for step in steps:
        out += [s + ";" for s in step.sql]
        if step.look_at:
            out.append(f"-- look at: {step.look_at} ({step.why})")
    return out


def script(steps: Iterable[FixStep], target: str) -> str:
    """The fix as one SQL file: what each statement repairs, then the statement."""
    out = [f"-- Suggested forward fix for {target} (rollback-console; nothing was run).",
           "-- Read each statement, then run it (psql -f this file) or copy it.", ""]
    for step in steps:
        out += [*step.lines(), ""]
    return "\n".join(out)
