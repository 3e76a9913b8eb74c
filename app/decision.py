"""The runbook's decision matrix, as data: which finding puts the incident in which tier, and what
each tier's path is: IMMEDIATE ROLLBACK recommends a rollback type (with the runbook's risk and
downtime) and says what it would lose; FORWARD-FIX carries the fix to make (the statements that
repair each finding), never a rollback type; MONITOR AND ASSESS says what to watch; DATABASE
UNREACHABLE says what to check (a rollback cannot run while the database is down).

``RULES`` is the one table (docs/ASSESS.md prints it). ``decide`` only looks findings up in it:
the tier is the worst tier any finding reaches; the type follows from what the findings at the
rollback tier would need restored (schema objects only -> Type 1; table data of a few tables ->
Type 2 with those tables; data of most tables -> Type 3).

The repair (Type 4) instead of Type 2: when every table Type 2 would reload is a table whose
rows the migration damaged (row by row against the backup's dump: rows deleted, or changed
beyond what the app's traffic explains), that has a key to match rows by (a primary key, or a
unique key over NOT NULL columns), and that users wrote to after the migration. Those writes
are counted by app.checks.data_compare.later_writes: the rows whose updated_at/created_at is
later than the migration's time (the migration's own stamp left out), or, without such a
column, the rows inserted since the backup. The migration's time must be known
(target.migration_at, or Supabase's migrations table): without it, writes since the backup
cannot be put before or after the migration (writes before it are kept by a Type 2 from a
point in time before it), so Type 2 as before, with a note saying what to give. Type 2 would
replace the users' rows with the backup's; the repair puts back only what the migration
destroyed and keeps them. A damaged table without a key cannot be repaired (its rows cannot
be matched): Type 2, and the decision says why; a damaged table nobody wrote to after the
migration: Type 2 as before (it loses nothing users wrote after it). When only some tables
qualify, Type 2 of all of them (one type is recommended), and the notes name the tables the
repair could have kept the writes of. Type 1 first (a table or column gone) and Type 3 (most
tables damaged) are decided before, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any, Literal

from app.capabilities import IN_PLACE_BY_SCHEMA, Capability
from app.checks.model import CheckResult, Finding, Kind, Status
from app.exits import ASSESS_EXIT_CODES
from app.forward_fix import FixStep, fix_for, statements
from app.rollback.registry import Restores, TypeSpec, all_types, rollback_type

Scope = Literal["data", "schema", "none"]


class Tier(IntEnum):
    """Ordered by severity. INCONCLUSIVE sits above HEALTHY only: a finding at any other tier
    decides the tier even when some evidence is missing (the missing part is still named)."""

    HEALTHY = 0
    INCONCLUSIVE = 1
    MONITOR = 2
    FORWARD_FIX = 3
    IMMEDIATE_ROLLBACK = 4
    UNREACHABLE = 5   # the database is down: no check ran, and no rollback can run

    @property
    def label(self) -> str:
        return {0: "HEALTHY", 1: "INCONCLUSIVE", 2: "MONITOR AND ASSESS", 3: "FORWARD-FIX",
                4: "IMMEDIATE ROLLBACK", 5: "DATABASE UNREACHABLE"}[self.value]

    @property
    def exit_code(self) -> int:
        """0/10/20/30 as before; INCONCLUSIVE is 40 and DATABASE UNREACHABLE 50, codes of their
        own (not steps on the 10-20-30 scale: compare codes for equality): no script takes the
        first for HEALTHY, and none starts a rollback (30) or waits (10) on a database that is
        down."""
        return ASSESS_EXIT_CODES[self.label]


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
    Rule(Kind.DB_UNREACHABLE, Tier.UNREACHABLE, "Database unreachable: check the server, the "
         "network and the pooler; a rollback cannot run while it is down", "none"),
    Rule(Kind.INCOMPLETE, Tier.INCONCLUSIVE, "Evidence incomplete: some checks could not run",
         "none"),
)
RULE_BY_KIND = {r.kind: r for r in RULES}
assert set(RULE_BY_KIND) == set(Kind), "every finding kind needs a rule"

# Share of the backup's tables whose data must be restored above which Type 3 is recommended.
FULL_RESTORE_SHARE = 0.5


def known_types() -> tuple[TypeSpec, ...]:
    return all_types()   # the rollback types the matrix can recommend: every registered one


def restoring(what: Restores) -> TypeSpec:
    """The type that restores ``what`` (the lowest-numbered when several do)."""
    return next(t for t in known_types() if t.restores == what)


@dataclass(frozen=True)
class Reason:
    tier: Tier
    kind: Kind
    runbook: str
    check: str
    summary: str
    tables: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Missing:
    """A check that could not run (skipped, or failed to finish): what is missing and how to
    get it."""

    check: str
    why: str
    how: str


# How to get the evidence of a check that did not run, when its own words do not say.
HOW = {
    "auth": "run the login probe: `rollback-console validate`, or the console in live mode "
            "(assess never runs it: it makes the app record a sign-in)",
    "schema": "take or point to a backup set: `rollback-console backup`, or --backup ID",
    "data_integrity": "take or point to a backup set: `rollback-console backup`, or --backup ID",
    "app_endpoints": "add app.base_url to the config",
    "error_rate": "add app.base_url to the config",
}


def _how(check: str, summary: str) -> str:
    if "would write" in summary and check in HOW:
        return HOW[check]
    if "rollback-console backup" in summary or "--backup" in summary:
        return "take or point to a backup set: `rollback-console backup`, or --backup ID"
    if "privilege" in summary or "BYPASSRLS" in summary:
        return "connect as a role that has it (superuser, or one with BYPASSRLS and the grants)"
    if "timeout" in summary or "did not finish" in summary:
        return "raise the named timeout, or assess again when the server is less busy"
    if "no [app]" in summary:
        return "add app.base_url to the config"
    return HOW.get(check, "see the check's summary, then assess again")


@dataclass(frozen=True)
class RepairSources:
    """What a repair could run from on this target (the assessment fills it in): the [pitr]
    engine and the marks made on this database, the set compared with, the migration's time."""

    target: str
    pitr: str | None = None                       # the [pitr] engine; None: not configured
    marks: tuple[tuple[str, datetime], ...] = ()  # (label, time), oldest first
    backup: str | None = None
    migration_at: datetime | None = None


DAMAGE_KINDS = (Kind.DATA_LOSS, Kind.DATA_CORRUPTION)
REPAIR = "repair"   # the zero-loss repair's key (app/rollback/types/repair.py)


@dataclass
class Decision:
    tier: Tier
    reasons: list[Reason]                 # worst first
    recommended: TypeSpec | None
    tables: list[str]                     # Type 2's table list (all tables for Type 3)
    would_lose: dict[str, Any] = field(default_factory=dict)
    not_run: list[str] = field(default_factory=list)
    then_partial: list[str] = field(default_factory=list)   # Type 2 of these after Type 1
    missing: list[Missing] = field(default_factory=list)    # checks that could not run
    fix: list[FixStep] = field(default_factory=list)        # FORWARD-FIX: the fix to make
    # FORWARD-FIX: the type a rollback against the verdict (an override) would start from;
    # never recommended, never in the JSON's recommended_type
    override_type: TypeSpec | None = None
    # Type 3 as this role (app.capabilities): how it runs here, or why not and the way instead
    full_how: str = ""
    instead: str = ""
    # the repair (Type 4) when recommended: per table the users' rows it keeps, what it needs
    # and the command; notes: why the repair was not recommended where it was weighed
    repair: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return self.tier.exit_code

    @property
    def offers_watch(self) -> bool:
        """FORWARD-FIX and MONITOR AND ASSESS: watching the checklist is part of the path."""
        return self.tier in (Tier.FORWARD_FIX, Tier.MONITOR)

    @property
    def action(self) -> str:
        if self.tier is Tier.HEALTHY:
            return "No action: every check ran and passed."
        if self.tier is Tier.INCONCLUSIVE:
            return (f"Not a bill of health: {len(self.missing)} check(s) could not run, so the "
                    "evidence is incomplete. Get it and assess again: "
                    + "; ".join(f"{m.check}: {m.how}" for m in self.missing) + ".")
        if self.tier is Tier.UNREACHABLE:
            return ("The database does not answer: check the server, the network and the "
                    "pooler in front of it. A rollback cannot run while it is down (it needs "
                    "the database); assess again when it answers.")
        if self.tier is Tier.MONITOR:
            return ("Do not roll back: watch the findings below (the checklist again every few "
                    "minutes) and assess again." + self._missing_note())
        if self.tier is Tier.FORWARD_FIX:
            return ("Do not roll back: fix forward. The suggested fix below repairs the "
                    "findings (nothing was run: read it, then run or copy it), then watch."
                    + self._missing_note())
        if self.recommended is None:
            return (f"Roll back now: a complete restore is needed, but {self.instead}."
                    + self._missing_note())
        t = self.recommended
        what = f"Type {t.number} {t.title.lower()}"
        if t.takes_tables:
            what += " of " + ", ".join(self.tables)
        if self.then_partial:
            tables = ", ".join(self.then_partial)
            then = restoring("tables")
            what += (f" to bring back {tables} (empty), then Type {then.number} "
                     f"{then.title.lower()} of {tables} (the other tables keep their writes)")
        if self.full_how and t.restores == "database":
            what += f" ({self.full_how})"
        if self.repair:
            return (f"Roll back now: {what} (risk {t.risk}, downtime {t.downtime}). "
                    f"{self.repair['why']} It needs {self.repair['needs']} Run: "
                    f"`{self.repair['command']}`." + self._missing_note())
        notes = "".join(f" {n}" for n in self.notes)
        return (f"Roll back now: {what} (risk {t.risk}, downtime {t.downtime})."
                + notes + self._missing_note())

    def _missing_note(self) -> str:
        if not self.missing:
            return ""
        return (" Evidence missing (did not run): " + ", ".join(m.check for m in self.missing)
                + ".")

    def to_dict(self) -> dict[str, Any]:
        r = self.recommended
        return {
            "tier": self.tier.label, "exit_code": self.exit_code, "action": self.action,
            "recommended_type": str(r.key) if r else None, "tables": self.tables,
            "rollback": None if r is None else {"type": r.number, "title": r.title,
                                                "when": r.when, "risk": r.risk,
                                                "downtime": r.downtime},
            "reasons": [{"tier": x.tier.label, "kind": str(x.kind), "runbook": x.runbook,
                         "check": x.check, "summary": x.summary, "tables": list(x.tables),
                         "evidence": x.evidence} for x in self.reasons],
            "would_lose": self.would_lose, "not_run": self.not_run,
            "missing": [{"check": m.check, "why": m.why, "how": m.how} for m in self.missing],
            "then": ({"type": str(restoring("tables").key), "tables": self.then_partial}
                     if self.then_partial else None),
            "fix": statements(self.fix) if self.tier is Tier.FORWARD_FIX else None,
            "instead": self.instead or None,
            "repair": self.repair or None,
            "notes": self.notes,
        }


def _would_lose(kind: TypeSpec, tables: list[str], results: dict[str, CheckResult]
                ) -> dict[str, Any]:
    """Writes since the backup on the tables a data rollback reloads; for a schema rollback, the
    objects the migration added (and their contents)."""
    if kind.restores == "schema":
        schema = results.get("schema")
        ev = schema.evidence if schema else {}
        return {"data": kind.loses,
                "added_since_backup": {"tables": ev.get("tables_added", []),
                                       "columns": {t: c.get("added", [])
                                                   for t, c in ev.get("columns", {}).items()
                                                   if c.get("added")}}}
    writes = results.get("writes")
    per_table = writes.evidence.get("tables", {}) if writes else {}
    data = results.get("data_integrity")
    rows = data.evidence.get("tables", {}) if data else {}
    lost: dict[str, Any] = {}
    for t in tables:
        since = (rows.get(t) or {}).get("since_backup")
        if since:   # row by row against the backup: exact
            lost[t] = {"rows_written_since_backup": since["inserted"] + since["changed"],
                       "inserted": since["inserted"], "changed": since["changed"],
                       "deleted": since["deleted"], "counted": "row by row against the backup"}
        else:       # a hint: rows without updated_at/created_at are not counted
            written = per_table.get(t, {}).get("written_since_backup")
            lost[t] = {"rows_written_since_backup": written if isinstance(written, int)
                       else None,
                       "last_write": per_table.get(t, {}).get("last_write"),
                       "counted": "updated_at/created_at after the backup (a hint)"}
            if not isinstance(written, int):
                lost[t]["unknown"] = _uncounted(t, writes, written)
    since_time = writes.evidence.get("since") if writes else None
    return {"since": since_time, "tables": lost}


def _uncounted(table: str, writes: CheckResult | None, written: object) -> str:
    """Why the rows a rollback of ``table`` would lose could not be counted."""
    if writes is None or writes.status in (Status.SKIP, Status.ERROR):
        return "the writes check did not run" + (f" ({writes.summary})" if writes else "")
    if not writes.evidence.get("since"):
        return "no backup to count from"
    if written == "locked":
        return "another session's lock stopped the count (assess again)"
    if table not in (writes.evidence.get("tables") or {}):
        return "the table is not on the target now"
    return ("the set has no data dump of it and it has no updated_at/created_at column to "
            "count by (the rows are exported before the reload either way)")


def _to_reload(reason: Reason, damaged: set[str]) -> tuple[str, ...]:
    """The tables a data rollback must reload for one finding. Orphans whose parent table lost
    rows are the parent's to repair: reloading it brings the parents back, and the children's
    own rows (with their writes since the backup) stay. Orphans under a parent that lost
    nothing are the child's own bad rows: the child is reloaded, never the undamaged parent."""
    if reason.kind is Kind.FK_VIOLATION and len(reason.tables) == 2:
        child, parent = reason.tables
        return (parent,) if parent in damaged else (child,)
    return reason.tables


def _missing(results: list[CheckResult]) -> list[Missing]:
    return [Missing(r.check, r.summary, _how(r.check, r.summary)) for r in results
            if r.status in (Status.SKIP, Status.ERROR)]


def unreachable_results(checks: list[tuple[str, str]], why: str) -> list[CheckResult]:
    """The assessment of a database that does not answer: the connectivity check fails with a
    ``db_unreachable`` finding, every other (check, symptom) is named as not run."""
    out = []
    for name, symptom in checks:
        if name == "connectivity":
            out.append(CheckResult(name, Status.FAIL, f"database unreachable: {why}", symptom,
                                   {"reachable": False, "error": why},
                                   [Finding(Kind.DB_UNREACHABLE,
                                            f"database unreachable: {why}")]))
        else:
            out.append(CheckResult(name, Status.SKIP, "not run: the database is unreachable",
                                   symptom))
    return out


def decide(results: list[CheckResult], backup_tables: list[str] | None = None,
           full: Capability | None = None, sources: RepairSources | None = None) -> Decision:
    """Place the findings in the runbook's tiers and give the tier's path: a rollback type for
    IMMEDIATE ROLLBACK, the fix for FORWARD-FIX. HEALTHY only when every check ran: otherwise
    INCONCLUSIVE, naming what is missing, unless a finding reaches a tier above it. ``full``:
    Type 3 as the connected role (see ``_as_role``); ``sources``: what a repair could run
    from here (see ``RepairSources``)."""
    reasons = sorted(
        (Reason(RULE_BY_KIND[f.kind].tier, f.kind, RULE_BY_KIND[f.kind].runbook, r.check,
                f.summary, f.tables, f.evidence) for r in results for f in r.findings),
        key=lambda x: -x.tier)
    tier = reasons[0].tier if reasons else Tier.HEALTHY
    missing = _missing(results)
    not_run = [f"{r.check}: {r.summary}" for r in results
               if r.status in (Status.SKIP, Status.ERROR)]
    if tier is Tier.HEALTHY and missing:
        tier = Tier.INCONCLUSIVE
    if tier is Tier.UNREACHABLE:
        missing = [Missing(m.check, m.why, "assess again when the database answers")
                   for m in missing]
    if tier < Tier.FORWARD_FIX or tier is Tier.UNREACHABLE:
        return Decision(tier, reasons, None, [], {}, not_run, missing=missing)
    chosen = _as_role(_rollback(tier, reasons, results, backup_tables, not_run, missing,
                                sources), full)
    if tier is Tier.FORWARD_FIX:
        fix = fix_for((x.kind, x.summary, x.evidence) for x in reasons
                      if x.tier is Tier.FORWARD_FIX)
        return Decision(tier, reasons, None, [], {}, not_run, missing=missing, fix=fix,
                        override_type=chosen.recommended)
    return chosen


def _as_role(chosen: Decision, full: Capability | None) -> Decision:
    """A recommended Type 3 as this role runs it: in place by schema, or not (the way instead)."""
    if full is None or chosen.recommended is None or chosen.recommended.restores != "database":
        return chosen
    if not full.possible:
        chosen.instead = "Type 3 is impossible as this role: " + full.message()
        chosen.recommended = None
    elif full.how == IN_PLACE_BY_SCHEMA:
        chosen.full_how = "in place, schema by schema: no swap is possible as this role"
    return chosen


def _rollback(tier: Tier, reasons: list[Reason], results: list[CheckResult],
              backup_tables: list[str] | None, not_run: list[str],
              missing: list[Missing], sources: RepairSources | None = None) -> Decision:
    """The rollback the findings at the acting tiers would need."""
    acting = [x for x in reasons if x.tier >= Tier.FORWARD_FIX]
    damaged = {t for x in acting if x.kind in (Kind.DATA_LOSS, Kind.DATA_CORRUPTION)
               for t in x.tables}
    data_tables = sorted({t for x in acting for t in _to_reload(x, damaged)
                          if RULE_BY_KIND[x.kind].scope == "data"})
    by_name = {r.check: r for r in results}
    universe = backup_tables or []
    schema = by_name.get("schema")
    seen = schema.evidence if schema else {}
    gone = set(seen.get("tables_missing") or []) | {
        t for t, c in (seen.get("columns") or {}).items() if c.get("dropped")}
    type1_repairs = any(x.check == "schema" and any(w in str(x.evidence.get("change", ""))
                        for w in ("policy", "trigger", "grant")) for x in acting)
    if data_tables and universe and len(data_tables) > FULL_RESTORE_SHARE * len(universe):
        full = restoring("database")
        return Decision(tier, reasons, full, sorted(universe),
                        _would_lose(full, sorted(universe), by_name), not_run,
                        missing=missing)
    if data_tables and (gone & set(data_tables) or type1_repairs):
        # a table or column that no longer exists (Type 2 reloads rows into what exists), or
        # schema damage besides: Type 1 first, then Type 2 (not a complete restore)
        first = restoring("schema")
        added = _would_lose(first, [], by_name)["added_since_backup"]
        would_lose = {**_would_lose(restoring("tables"), data_tables, by_name),
                      "added_since_backup": added}
        return Decision(tier, reasons, first, [], would_lose, not_run,
                        then_partial=data_tables, missing=missing)
    kept, notes = _repairable(acting, data_tables)
    if data_tables and len(kept) == len(data_tables):
        repair = rollback_type(REPAIR)
        type2 = _would_lose(restoring("tables"), data_tables, by_name)
        return Decision(tier, reasons, repair, data_tables,
                        {"data": repair.loses,
                         "users_rows_after_the_migration_kept": {
                             t: k["rows"] for t, k in kept.items()},
                         "type_2_instead_would_lose": type2["tables"]},
                        not_run, missing=missing,
                        repair=_repair_facts(kept, data_tables, sources))
    kind, tables = (restoring("tables"), data_tables) if data_tables else \
        (restoring("schema"), [])
    return Decision(tier, reasons, kind, tables,
                    _would_lose(kind, tables, by_name), not_run, missing=missing,
                    notes=notes)


def _repairable(acting: list[Reason], data_tables: list[str]
                ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The tables the repair could put back while keeping users' writes after the migration
    ({table: rows written after it, how counted, the damage}), and notes on the tables it was
    weighed for and cannot take (the rule: the module's docstring)."""
    kept: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for t in data_tables:
        damage = next((x for x in acting if x.kind in DAMAGE_KINDS and t in x.tables
                       and "after_migration" in x.evidence), None)
        if damage is None:
            continue
        ev = damage.evidence
        later = ev["after_migration"]
        rows = later.get("rows")
        if rows is None and ev.get("keyed") and later.get("inserted_since_backup"):
            notes.append(f"Users wrote to {t} since the backup "
                         f"({later['inserted_since_backup']} rows inserted), but the "
                         "migration's time is unknown, so whether after it is not known: set "
                         "target.migration_at and assess again. If they did, the zero-loss "
                         f"repair (Type 4, `run --type repair --tables {t}`) keeps those rows "
                         "where Type 2 replaces them.")
            continue
        if not rows:
            continue   # nobody wrote to it after the migration: Type 2 loses none of that
        if not ev.get("keyed"):
            notes.append(f"The zero-loss repair cannot run on {t}: it has no primary key or "
                         "unique NOT NULL key to match its rows by, so Type 2 instead; it "
                         f"replaces the {rows} rows users wrote "
                         f"{later.get('basis', 'after the migration')} "
                         f"({later.get('counted')}; exported first).")
            continue
        kept[t] = {"rows": rows, "counted": later.get("counted"),
                   "deleted": ev.get("deleted", 0), "changed": ev.get("changed", 0),
                   "migration_at": later.get("migration_at"),
                   "basis": later.get("basis", "after the migration")}
    if kept and len(kept) < len(data_tables):
        others = [t for t in data_tables if t not in kept]
        notes.append(f"The zero-loss repair would keep users' writes after the migration on "
                     f"{', '.join(kept)}, but {', '.join(others)} need(s) Type 2: one type is "
                     "recommended, so Type 2 of all (or run `run --type repair --tables "
                     f"{','.join(kept)}` for those, then Type 2 of the others).")
    return kept, notes


def _repair_facts(kept: dict[str, dict[str, Any]], tables: list[str],
                  sources: RepairSources | None) -> dict[str, Any]:
    """Why the repair, what it needs (which of its two sources this operator has), and the
    command to run."""
    total = sum(int(k["rows"]) for k in kept.values())
    named = ", ".join(f"{t} ({k['rows']})" for t, k in kept.items())
    bases = {k["basis"] for k in kept.values()}
    when = "after the migration" if bases == {"after the migration"} else \
        "since the backup (inserted rows, counted row by row: no updated_at/created_at dates them)"
    why = (f"Type 2 would replace {total} rows users wrote {when} ({named}); the repair "
           "keeps them and puts back only the rows the migration deleted or changed.")
    target = sources.target if sources else "<target>"
    confirm = f"--confirm 'ROLLBACK {target}'"
    listed = ",".join(tables)
    # what the evidence shows (rows deleted; rows changed: columns blanked, the likeliest);
    # "common" is the operator's to add: users' own edits can set one value on many rows too
    classes = (["deleted"] if any(k["deleted"] for k in kept.values()) else []) + (
        ["nulled"] if any(k["changed"] for k in kept.values()) else [])
    damage = ",".join(classes or ["deleted", "nulled"])
    backup = f" --backup {sources.backup}" if sources and sources.backup else ""
    from_dump = (f"rollback-console run --type repair --tables {listed}{backup} "
                 f"--damage {damage} {confirm}")
    two_moments = ("a point in time before the migration and one right after it committed "
                   "(--at, --after: needs [pitr])")
    dump_way = ("or the backup set's dump with the classes of damage to put back (--damage "
                "deleted,nulled,common[:COLUMN]: from a dump the migration's writes cannot be "
                "told from users', so choose the classes; --dry-run shows the rows of each "
                "first)")
    if sources is None or sources.pitr is None:
        needs = (f"{two_moments}, {dump_way}. No [pitr] is configured here, so: the dump "
                 f"({sources.backup if sources and sources.backup else 'the newest set'}).")
        return {"why": why, "needs": needs, "command": from_dump, "source": "dump",
                "pitr": None, "marks": [], "tables": kept}
    known = next((k["migration_at"] for k in kept.values() if k.get("migration_at")), None)
    at = sources.migration_at or (datetime.fromisoformat(known) if known else None)
    before = [m for m in sources.marks if at is None or m[1] < at]
    after = [m for m in sources.marks if at is not None and m[1] > at]
    at_arg = before[-1][0] if before else "<before>"
    after_arg = after[0][0] if after else "<after>"
    command = (f"rollback-console run --type repair --tables {listed} --at {at_arg} "
               f"--after {after_arg} {confirm}")
    if sources.marks:
        have = (f"[pitr] is configured ({sources.pitr}) and {len(sources.marks)} mark(s) are "
                "on this database (" + ", ".join(label for label, _ in sources.marks) + ")"
                + ("" if before and after else
                   "; give a mark, time or LSN for the moment missing"))
    else:
        have = (f"[pitr] is configured ({sources.pitr}) but no mark is on this database: give "
                "times or LSNs (--at before the migration, --after right after it committed)")
    return {"why": why, "needs": f"{two_moments}, {dump_way}. {have}.", "command": command,
            "source": "pitr", "pitr": sources.pitr,
            "marks": [label for label, _ in sources.marks], "dump_command": from_dump,
            "tables": kept}
