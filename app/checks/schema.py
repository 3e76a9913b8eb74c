"""The schema check: the live schema against the backup's, by the same catalog diff Type 1
plans from, so the check can never pass while a schema rollback would change something.

The manifest's comparison (tables, columns, grants, indexes: ``database.schema``) still says
what was lost (a dropped table or column is data loss); the catalog diff adds every other
object kind it knows (policies, views, triggers, enums, defaults, sequences, publications...)
and names each change. When the backup's schema model cannot be read here (a read-only session
cannot restore a schema dump into a scratch database), the check says the comparison was
incomplete instead of passing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from app import catalog
from app.checks.context import Baseline, CheckContext
from app.checks.model import Finding, Kind, Status, worst
from app.checks.runner import LOCKED, Outcome, blocked_outcome
from app.errors import ConsoleError

# Diff kinds that mean a constraint changed (data intact); every other kind is schema drift.
CONSTRAINT_KINDS = ("validate foreign key", "set not null", "drop not null")
# Kinds the manifest comparison already reports as data loss (a table or column to re-create).
LOSS_KINDS = ("create table", "add column")
Column = tuple[str, str, bool]


@dataclass
class ColumnDiff:
    dropped: list[str]
    added: list[str]
    retyped: list[str]
    renamed: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.dropped or self.added or self.retyped or self.renamed)


def diff_columns(before: list[Column], after: list[Column]) -> ColumnDiff:
    """A dropped column whose type reappears under a new name counts as a rename (no data lost)."""
    now = {c[0]: c for c in after}
    then = {c[0]: c for c in before}
    missing = [c for c in before if c[0] not in now]
    new = [c for c in after if c[0] not in then]
    renamed: list[str] = []
    for old in list(missing):
        match = next((n for n in new if n[1] == old[1]), None)
        if match is not None:
            renamed.append(f"{old[0]} -> {match[0]}")
            missing.remove(old)
            new.remove(match)
    retyped = [f"{name}: {then[name][1]} -> {now[name][1]}" for name in then
               if name in now and then[name][1] != now[name][1]]
    return ColumnDiff([c[0] for c in missing], [c[0] for c in new], retyped, renamed)


async def current_indexes(conn: asyncpg.Connection) -> dict[str, str]:
    rows = await conn.fetch("SELECT schemaname || '.' || indexname AS i, "
                            "schemaname || '.' || tablename AS t FROM pg_indexes "
                            "WHERE schemaname NOT LIKE 'pg\\_%' AND schemaname <> "
                            "'information_schema'")
    return {r["i"]: r["t"] for r in rows}


def dropped_indexes(baseline: Baseline, now: dict[str, str]) -> dict[str, str]:
    """Indexes in the backup's schema dump that are gone now: {index: table}."""
    if baseline.indexes is None:
        return {}
    return {i: t for i, t in baseline.indexes.items() if i not in now}


async def manifest_schema(ctx: CheckContext) -> Outcome:
    """Tables, columns, grants and indexes against the manifest: what was lost (a dropped table
    or column is data loss) and what drifted."""
    base = ctx.need_baseline()
    state = base.manifest.state
    async with ctx.pool.acquire() as conn:
        tables = set(await catalog.user_tables(conn))
        cols = await catalog.columns(conn)
        grants = await catalog.table_grants(conn)
        indexes = await current_indexes(conn)
    findings: list[Finding] = []
    missing = sorted(set(state.tables) - tables)
    added_tables = sorted(tables - set(state.tables))
    for t in missing:
        findings.append(Finding(Kind.DATA_LOSS, f"table {t} is gone (it had "
                                f"{state.tables[t].rows} rows at the backup)", (t,)))
    changes: dict[str, dict[str, list[str]]] = {}
    for t, before in state.columns.items():
        if t not in cols:
            continue
        d = diff_columns([tuple(c) for c in before], cols[t])  # type: ignore[misc]
        if not d.changed:
            continue
        changes[t] = {k: v for k, v in vars(d).items() if v}
        if d.dropped:
            findings.append(Finding(Kind.DATA_LOSS, f"{t}: column(s) {', '.join(d.dropped)} "
                                    "dropped, their values are gone", (t,)))
        if d.added or d.retyped or d.renamed:
            findings.append(Finding(Kind.SCHEMA_DRIFT, f"{t}: columns changed since the backup "
                                    f"({'; '.join(_describe(d))})"))
    if added_tables:
        findings.append(Finding(Kind.SCHEMA_DRIFT, f"tables added: {', '.join(added_tables)}"))
    lost_grants = {t: {role: sorted(set(p) - set(grants.get(t, {}).get(role, [])))
                       for role, p in by_role.items()}
                   for t, by_role in state.grants.items() if t in tables}
    lost_grants = {t: {r: p for r, p in g.items() if p} for t, g in lost_grants.items()}
    lost_grants = {t: g for t, g in lost_grants.items() if g}
    for t, g in lost_grants.items():
        findings.append(Finding(Kind.SCHEMA_DRIFT, f"{t}: privileges revoked since the backup: "
                                + ", ".join(f"{r} lost {'/'.join(p)}" for r, p in g.items())))
    gone = dropped_indexes(base, indexes)
    for i, t in sorted(gone.items()):
        findings.append(Finding(Kind.SCHEMA_DRIFT, f"index {i} on {t} dropped since the backup"))
    evidence: dict[str, Any] = {"backup": base.set_id, "tables_missing": missing,
                                "tables_added": added_tables, "columns": changes,
                                "grants_lost": lost_grants, "indexes_dropped": gone,
                                "indexes_compared": base.indexes is not None}
    if not findings:
        note = ("" if base.indexes is not None else
                " (no schema dump in the set: indexes not compared)")
        return Outcome(Status.PASS, f"schema matches backup {base.set_id}{note}", evidence, [])
    status = Status.FAIL if any(f.kind is Kind.DATA_LOSS for f in findings) else Status.WARN
    return Outcome(status, "; ".join(f.summary for f in findings[:3])
                   + (f" (+{len(findings) - 3} more)" if len(findings) > 3 else ""),
                   evidence, findings)


def _describe(d: ColumnDiff) -> list[str]:
    parts = []
    if d.added:
        parts.append("added " + ", ".join(d.added))
    if d.renamed:
        parts.append("renamed " + ", ".join(d.renamed))
    if d.retyped:
        parts.append("retyped " + ", ".join(d.retyped))
    return parts


async def schema(ctx: CheckContext) -> Outcome:
    manifest = await manifest_schema(ctx)   # raises Skip without a backup set
    try:
        changes, unsupported = await _catalog_diff(ctx)
    except LOCKED:
        msg, holders = await blocked_outcome(ctx, "the catalog of the schema")
        return Outcome(worst([manifest.status, Status.ERROR]), manifest.summary + "; " + msg,
                       {**manifest.evidence, "catalog_compared": False,
                        "lock_holders": holders},
                       [*manifest.findings, Finding(Kind.CONTENTION, msg)])
    except (ConsoleError, asyncpg.PostgresError, OSError) as exc:
        finding = Finding(Kind.INCOMPLETE, "schema compared by tables, columns, grants and "
                          "indexes only: the backup's full schema could not be read here "
                          f"({exc}); `rollback-console diff` in live mode compares everything")
        return Outcome(worst([manifest.status, Status.WARN]), manifest.summary + "; "
                       + finding.summary, {**manifest.evidence, "catalog_compared": False,
                                           "catalog_error": str(exc)},
                       [*manifest.findings, finding])
    loss = [f for f in manifest.findings if f.kind is Kind.DATA_LOSS]
    findings = list(loss)
    for kind, text, sql in changes:
        if kind in LOSS_KINDS and loss:
            continue   # said above, as the data it lost
        findings.append(Finding(Kind.CONSTRAINT_DRIFT if kind in CONSTRAINT_KINDS
                                else Kind.SCHEMA_DRIFT, f"Type 1 would {text}",
                                evidence={"change": kind, "sql": sql}))  # a forward fix
    findings += [Finding(Kind.SCHEMA_DRIFT, f"changed in a way Type 1 cannot undo: {u}",
                         evidence={"change": "unsupported"}) for u in unsupported]
    evidence: dict[str, Any] = {**manifest.evidence, "catalog_compared": True,
                                "changes": [text for _kind, text, _sql in changes],
                                "unsupported": unsupported}
    if not findings:
        return Outcome(Status.PASS, f"schema matches backup {manifest.evidence.get('backup')} "
                       "(every object kind Type 1 compares)", evidence, [])
    status = Status.FAIL if loss else Status.WARN
    shown = [f.summary for f in findings]
    summary = (f"{len(changes) + len(unsupported)} schema change(s) since the backup: "
               + "; ".join(shown[:4]) + (f" (+{len(shown) - 4} more)" if len(shown) > 4 else ""))
    return Outcome(status, summary, evidence, findings)


async def _catalog_diff(ctx: CheckContext) -> tuple[list[tuple[str, str, list[str]]],
                                                    list[str]]:
    """(kind, words, SQL) of each change Type 1 would make, and what it cannot undo."""
    from app.backups.backupset import open_set
    from app.schemadiff import compare
    from app.schemamodel import read
    from app.scratch import backup_schema

    base = ctx.need_baseline()
    exclude = ctx.config.target.platform_schemas
    want = await backup_schema(ctx.config, open_set(base.directory), exclude)
    async with ctx.pool.acquire() as conn:
        current = await read(conn, exclude)
    diff = compare(current, want)
    return ([(c.kind, f"{c.kind} {c.object}" + (f" ({c.note})" if c.note else ""),
              list(c.sql)) for c in diff.changes], list(diff.unsupported))
