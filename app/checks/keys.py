"""Foreign keys vs the backup, NOT VALID constraints, and an orphan scan (anti-join) per key:
the runbook's "foreign key constraint violations"."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from app import catalog
from app.checks.context import CheckContext, rls_hidden
from app.checks.model import Finding, Kind, Skip, Status
from app.checks.runner import LOCKED, Outcome, blocked_outcome


def orphan_sql(fk: catalog.ForeignKey, sample: int = 5) -> str:
    """Rows of the referencing table whose key has no match (MATCH SIMPLE: NULLs are fine)."""
    q = catalog.quote_ident
    cols = ", ".join(f"c.{q(c)}::text AS {q(c)}" for c in fk.columns)
    not_null = " AND ".join(f"c.{q(c)} IS NOT NULL" for c in fk.columns)
    match = " AND ".join(f"p.{q(r)} = c.{q(c)}" for c, r in zip(fk.columns, fk.referenced_columns,
                                                                 strict=True))
    return (f"SELECT count(*) OVER () AS orphans, {cols} FROM {catalog.qualified(fk.table)} AS c "
            f"WHERE {not_null} AND NOT EXISTS (SELECT 1 FROM {catalog.qualified(fk.referenced)} "
            f"AS p WHERE {match}) LIMIT {sample}")


async def _columns_exist(conn: asyncpg.Connection, fk: catalog.ForeignKey) -> bool:
    cols = await catalog.columns(conn, ())
    have_child = {c[0] for c in cols.get(fk.table, [])}
    have_parent = {c[0] for c in cols.get(fk.referenced, [])}
    return set(fk.columns) <= have_child and set(fk.referenced_columns) <= have_parent


async def _scan_keys(ctx: CheckContext, conn: asyncpg.Connection,
                     to_scan: list[tuple[catalog.ForeignKey, str]],
                     unchanged_keys: list[catalog.ForeignKey], rls: dict[str, bool],
                     deadline: float, scanned: dict[str, dict[str, Any]],
                     findings: list[Finding], hidden: list[str], blocked: list[str]) -> None:
    """The orphan anti-join of each key (``to_scan``: key and its state), into ``scanned``;
    a key unchanged between two unchanged tables is asked of data_integrity instead."""
    for fk, state in to_scan:
        key = f"{fk.table}.{fk.name}"
        if fk in unchanged_keys and await ctx.all_unchanged((fk.table, fk.referenced),
                                                            deadline):
            scanned[key] = {"state": state, "orphans": 0, "references": fk.referenced,
                            "not_scanned": "both tables hold exactly the backup's rows "
                                           "(checksums), where this key was valid"}
            continue
        if rls_hidden(ctx, fk.table, rls) or rls_hidden(ctx, fk.referenced, rls):
            hidden.append(key)
            continue
        if state.startswith("dropped") and not await _columns_exist(conn, fk):
            scanned[key] = {"state": state, "orphans": None,
                            "note": "its columns are gone too: not scannable"}
            continue
        sql = orphan_sql(fk)
        try:
            rows = await conn.fetch(sql)
        except LOCKED:
            blocked.append(key)
            continue
        n = int(rows[0]["orphans"]) if rows else 0
        scanned[key] = {"state": state, "orphans": n, "references": fk.referenced,
                        "sample": [{k: v for k, v in dict(r).items() if k != "orphans"}
                                   for r in rows], "sql": sql}
        if n:
            findings.append(Finding(
                Kind.FK_VIOLATION, f"{n} rows of {fk.table} reference missing rows of "
                f"{fk.referenced} ({fk.name}, {state})", (fk.table, fk.referenced),
                {"key": key, **scanned[key]}))


async def foreign_keys(ctx: CheckContext) -> Outcome:
    findings: list[Finding] = []
    scanned: dict[str, dict[str, Any]] = {}
    hidden: list[str] = []
    blocked: list[str] = []
    async with ctx.pool.acquire() as conn:
        now = await catalog.foreign_keys(conn, catalog.PLATFORM_SCHEMAS)
        rls = await catalog.rls_flags(conn, ())
        by_key = {(fk.table, fk.name): fk for fk in now}
        then = ctx.baseline.manifest.state.foreign_keys if ctx.baseline else []
        missing = [fk for fk in then if (fk.table, fk.name) not in by_key]
        unvalidated = [fk for fk in now if not fk.validated]
        valid_then = {(fk.table, fk.name, fk.definition) for fk in then if fk.validated}
        # a key valid in the backup, still valid and the same, between two tables that hold
        # exactly the backup's rows, can have no orphans: asked of data_integrity's scan, and
        # scanned last, only when the answer is no (or does not come in time)
        unchanged_keys = [fk for fk in now
                          if fk.validated and (fk.table, fk.name, fk.definition) in valid_then]
        to_scan = [(fk, "dropped since the backup") for fk in missing] + \
                  [(fk, "NOT VALID" if not fk.validated else "present") for fk in now
                   if fk not in unchanged_keys] + [(fk, "present") for fk in unchanged_keys]
        deadline = asyncio.get_running_loop().time() + ctx.settings.check_timeout_s / 2
        await _scan_keys(ctx, conn, to_scan, unchanged_keys, rls, deadline, scanned, findings,
                         hidden, blocked)
    for fk in missing:
        if not scanned.get(f"{fk.table}.{fk.name}", {}).get("orphans"):
            findings.append(Finding(Kind.CONSTRAINT_DRIFT, f"foreign key {fk.name} on {fk.table} "
                                    "dropped since the backup (no orphans yet)"))
    for fk in unvalidated:
        if not scanned.get(f"{fk.table}.{fk.name}", {}).get("orphans"):
            findings.append(Finding(Kind.CONSTRAINT_DRIFT, f"foreign key {fk.name} on {fk.table} "
                                    "is NOT VALID (no orphans: VALIDATE CONSTRAINT would pass)"))
    evidence: dict[str, Any] = {"present": len(now), "in_backup": len(then),
                                "missing": [f"{fk.table}.{fk.name}" for fk in missing],
                                "not_valid": [f"{fk.table}.{fk.name}" for fk in unvalidated],
                                "scans": scanned}
    if hidden:
        evidence["not_scanned_rls"] = hidden
        if not scanned:
            raise Skip(f"role {ctx.role.name} does not bypass RLS, so an orphan scan would see "
                       "no rows: connect as a role with BYPASSRLS (or the owner)", privilege=True)
        findings.append(Finding(Kind.INCOMPLETE, f"{len(hidden)} keys not scanned: role "
                                f"{ctx.role.name} is subject to RLS"))
    if blocked:
        msg, holders = await blocked_outcome(ctx, "orphan scan of " + ", ".join(blocked))
        evidence["lock_holders"] = holders
        findings.append(Finding(Kind.CONTENTION, msg))
    if any(f.kind is Kind.FK_VIOLATION for f in findings):
        status = Status.FAIL
    elif blocked or hidden:
        status = Status.ERROR
    elif findings:
        status = Status.WARN
    else:
        status = Status.PASS
    summary = ("; ".join(f.summary for f in findings[:2]) if findings else
               f"{len(now)} foreign keys present and valid, no orphans")
    return Outcome(status, summary, evidence, findings)
