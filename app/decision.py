"""The runbook's decision matrix, as data: which finding puts the incident in which tier, and which
rollback type (with the runbook's risk and downtime) would repair it, and what it would lose.

``RULES`` is the one table (docs/ASSESS.md prints it). ``decide`` only looks findings up in it:
the tier is the worst tier any finding reaches; the type follows from what the findings at the
rollback tiers would need restored (schema objects only -> Type 1; table data of a few tables ->
Type 2 with those tables; data of most tables -> Type 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal

from app.checks.model import CheckResult, Kind, Status

Scope = Literal["data", "schema", "none"]


class Tier(IntEnum):
    HEALTHY = 0
    MONITOR = 1
    FORWARD_FIX = 2
    IMMEDIATE_ROLLBACK = 3

    @property
    def label(self) -> str:
        return {0: "HEALTHY", 1: "MONITOR AND ASSESS", 2: "FORWARD-FIX",
                3: "IMMEDIATE ROLLBACK"}[self.value]

    @property
    def exit_code(self) -> int:
        return {0: 0, 1: 10, 2: 20, 3: 30}[self.value]


@dataclass(frozen=True)
class Rule:
    kind: Kind
    tier: Tier
    runbook: str        # the runbook's words for the symptom
    scope: Scope        # what a rollback must restore to repair it


RULES: tuple[Rule, ...] = (
    Rule(Kind.DATA_CORRUPTION, Tier.IMMEDIATE_ROLLBACK, "Data corruption detected", "data"),
    Rule(Kind.DATA_LOSS, Tier.IMMEDIATE_ROLLBACK, "Data corruption detected (rows or columns "
         "lost)", "data"),
    Rule(Kind.AUTH_FAILURE, Tier.IMMEDIATE_ROLLBACK, "Authentication system failure", "schema"),
    Rule(Kind.CRITICAL_BROKEN, Tier.IMMEDIATE_ROLLBACK,
         "Critical application functionality broken", "schema"),
    Rule(Kind.FK_VIOLATION, Tier.IMMEDIATE_ROLLBACK,
         "Foreign key constraint violations preventing normal operation", "data"),
    Rule(Kind.RLS_BLOCKING, Tier.IMMEDIATE_ROLLBACK,
         "RLS policies blocking legitimate user access", "schema"),
    Rule(Kind.RLS_EXPOSURE, Tier.IMMEDIATE_ROLLBACK,
         "RLS policies not protecting private rows (access control broken)", "schema"),
    Rule(Kind.PERFORMANCE, Tier.FORWARD_FIX, "Minor performance degradation", "schema"),
    Rule(Kind.SCHEMA_DRIFT, Tier.FORWARD_FIX,
         "Non-critical feature issues / cosmetic problems (schema changed, checks pass)",
         "schema"),
    Rule(Kind.CONSTRAINT_DRIFT, Tier.FORWARD_FIX,
         "Single table/feature affected (constraint changed, data intact)", "schema"),
    Rule(Kind.ERROR_RATE, Tier.MONITOR, "Elevated error rates but service functional", "none"),
    Rule(Kind.UNEXPECTED_GROWTH, Tier.MONITOR,
         "User complaints but no data integrity issues (more rows than expected)", "none"),
    Rule(Kind.CONTENTION, Tier.MONITOR, "Performance issues that might resolve (locks, long "
         "transactions)", "none"),
    Rule(Kind.APP_UNREACHABLE, Tier.MONITOR, "Application unreachable: a database rollback "
         "would not bring it back; check the app and app.base_url", "none"),
    Rule(Kind.INCOMPLETE, Tier.MONITOR, "Evidence incomplete: some checks could not run",
         "none"),
)
RULE_BY_KIND = {r.kind: r for r in RULES}
assert set(RULE_BY_KIND) == set(Kind), "every finding kind needs a rule"

# Share of the backup's tables whose data must be restored above which Type 3 is recommended.
FULL_RESTORE_SHARE = 0.5


@dataclass(frozen=True)
class RollbackType:
    key: str            # schema | partial | full (the runbook script's argument)
    number: int
    title: str
    when: str
    risk: str
    downtime: str


ROLLBACK_TYPES = {
    "schema": RollbackType("schema", 1, "Schema-only rollback",
                           "Schema changes causing issues, data remains intact", "Low",
                           "30-60 minutes"),
    "partial": RollbackType("partial", 2, "Partial data rollback",
                            "Specific table data corrupted", "Medium", "1-2 hours"),
    "full": RollbackType("full", 3, "Complete database restore",
                         "Complete system failure, widespread corruption", "High", "2-4 hours"),
}


@dataclass(frozen=True)
class Reason:
    tier: Tier
    kind: Kind
    runbook: str
    check: str
    summary: str
    tables: tuple[str, ...] = ()


@dataclass
class Decision:
    tier: Tier
    reasons: list[Reason]                 # worst first
    recommended: RollbackType | None
    tables: list[str]                     # Type 2's table list (all tables for Type 3)
    would_lose: dict[str, Any] = field(default_factory=dict)
    not_run: list[str] = field(default_factory=list)
    then_partial: list[str] = field(default_factory=list)   # Type 2 of these after Type 1

    @property
    def exit_code(self) -> int:
        return self.tier.exit_code

    @property
    def action(self) -> str:
        if self.tier is Tier.HEALTHY and self.not_run:
            return (f"No action: every check that ran passed; {len(self.not_run)} did not run "
                    "(listed as not run), so this is not a complete bill of health.")
        if self.tier is Tier.HEALTHY:
            return "No action: every check passed."
        if self.tier is Tier.MONITOR:
            return "Do not roll back yet: watch the findings below and assess again."
        assert self.recommended is not None
        t = self.recommended
        what = f"Type {t.number} {t.title.lower()}"
        if t.key == "partial":
            what += " of " + ", ".join(self.tables)
        if self.then_partial:
            tables = ", ".join(self.then_partial)
            what += (f" to bring back {tables} (empty), then Type 2 partial data rollback of "
                     f"{tables} (the other tables keep their writes)")
        if self.tier is Tier.FORWARD_FIX:
            return f"Forward-fix preferred; if you must roll back: {what}."
        return f"Roll back now: {what} (risk {t.risk}, downtime {t.downtime})."

    def to_dict(self) -> dict[str, Any]:
        r = self.recommended
        return {
            "tier": self.tier.label, "exit_code": self.exit_code, "action": self.action,
            "recommended_type": r.key if r else None, "tables": self.tables,
            "rollback": None if r is None else {"type": r.number, "title": r.title,
                                                "when": r.when, "risk": r.risk,
                                                "downtime": r.downtime},
            "reasons": [{"tier": x.tier.label, "kind": str(x.kind), "runbook": x.runbook,
                         "check": x.check, "summary": x.summary, "tables": list(x.tables)}
                        for x in self.reasons],
            "would_lose": self.would_lose, "not_run": self.not_run,
            "then": ({"type": "partial", "tables": self.then_partial} if self.then_partial
                     else None),
        }


def _would_lose(kind: str, tables: list[str], results: dict[str, CheckResult]) -> dict[str, Any]:
    """Writes since the backup on the tables a data rollback reloads; for a schema rollback, the
    objects the migration added (and their contents)."""
    if kind == "schema":
        schema = results.get("schema")
        ev = schema.evidence if schema else {}
        return {"data": "none: table data stays as it is",
                "added_since_backup": {"tables": ev.get("tables_added", []),
                                       "columns": {t: c.get("added", [])
                                                   for t, c in ev.get("columns", {}).items()
                                                   if c.get("added")}}}
    writes = results.get("writes")
    per_table = writes.evidence.get("tables", {}) if writes else {}
    lost = {t: {"rows_written_since_backup": per_table.get(t, {}).get("written_since_backup"),
                "last_write": per_table.get(t, {}).get("last_write")} for t in tables}
    since = writes.evidence.get("since") if writes else None
    return {"since": since, "tables": lost}


def _to_reload(reason: Reason, damaged: set[str]) -> tuple[str, ...]:
    """The tables a data rollback must reload for one finding. Orphans whose parent table lost
    rows are the parent's to repair: reloading it brings the parents back, and the children's
    own rows (with their writes since the backup) stay."""
    if reason.kind is Kind.FK_VIOLATION and len(reason.tables) == 2 \
            and reason.tables[1] in damaged:
        return reason.tables[1:]
    return reason.tables


def decide(results: list[CheckResult], backup_tables: list[str] | None = None) -> Decision:
    """Place the findings in the runbook's tiers and recommend a rollback type."""
    reasons = sorted(
        (Reason(RULE_BY_KIND[f.kind].tier, f.kind, RULE_BY_KIND[f.kind].runbook, r.check,
                f.summary, f.tables) for r in results for f in r.findings),
        key=lambda x: -x.tier)
    tier = reasons[0].tier if reasons else Tier.HEALTHY
    not_run = [f"{r.check}: {r.summary}" for r in results if r.status is Status.SKIP]
    if tier < Tier.FORWARD_FIX:
        return Decision(tier, reasons, None, [], {}, not_run)
    acting = [x for x in reasons if x.tier >= Tier.FORWARD_FIX]
    damaged = {t for x in acting if x.kind in (Kind.DATA_LOSS, Kind.DATA_CORRUPTION)
               for t in x.tables}
    data_tables = sorted({t for x in acting for t in _to_reload(x, damaged)
                          if RULE_BY_KIND[x.kind].scope == "data"})
    by_name = {r.check: r for r in results}
    universe = backup_tables or []
    schema = by_name.get("schema")
    missing = set(schema.evidence.get("tables_missing") or []) if schema else set()
    if data_tables and universe and len(data_tables) > FULL_RESTORE_SHARE * len(universe):
        return Decision(tier, reasons, ROLLBACK_TYPES["full"], sorted(universe),
                        _would_lose("full", sorted(universe), by_name), not_run)
    if missing & set(data_tables):
        # a table that no longer exists: Type 2 reloads rows into existing tables, so Type 1
        # brings it back (empty) first; a complete restore would also throw away every other
        # table's writes since the backup
        added = _would_lose("schema", [], by_name)["added_since_backup"]
        would_lose = {**_would_lose("partial", data_tables, by_name),
                      "added_since_backup": added}
        return Decision(tier, reasons, ROLLBACK_TYPES["schema"], [], would_lose, not_run,
                        then_partial=data_tables)
    key, tables = ("partial", data_tables) if data_tables else ("schema", [])
    return Decision(tier, reasons, ROLLBACK_TYPES[key], tables,
                    _would_lose(key, tables, by_name), not_run)

