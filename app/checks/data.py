"""data_integrity: every table of the backup against the live one (row by row where the set
has its data dump, else by count and checksum), with the findings the decision maps."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg

from app import catalog
from app.backups.manifest import DatabaseState
from app.checks.context import CheckContext, rls_hidden
from app.checks.data_compare import IndexPending, Scan, by_checksum, by_rows
from app.checks.model import Finding, Kind, Skip, Status, worst
from app.checks.runner import LOCKED, Outcome, blocked_outcome


async def data_integrity(ctx: CheckContext) -> Outcome:
    try:
        return await _data_integrity(ctx)
    finally:
        ctx.release_scans()


async def _data_integrity(ctx: CheckContext) -> Outcome:
    base = ctx.baseline
    if base is None and ctx.rows_from is None:
        ctx.need_baseline()   # raises Skip: nothing to compare with
    state = base.manifest.state if base is not None else None
    per_table: dict[str, dict[str, Any]] = {}
    findings: list[Finding] = []
    hidden: list[str] = []
    blocked: list[str] = []
    notes: list[str] = []
    # building the backup's row indexes may take half the check's time, never more
    deadline = asyncio.get_running_loop().time() + ctx.settings.check_timeout_s / 2
    async with ctx.pool.acquire() as conn:
        present = set(await catalog.user_tables(conn))
        partitioned = await _partitioned(conn)
        dumps = await _dumps(ctx, conn, present | set(state.tables if state else ()))
        if state is None and not dumps:
            ctx.need_baseline()   # a set without a manifest and without data dumps
        tables: dict[str, catalog.TableContent | None] = (
            dict(state.tables) if state is not None else dict.fromkeys(dumps))
        cols_now = await catalog.columns(conn)
        rls_now = await catalog.rls_flags(conn)
        critical = ctx.critical_tables(await catalog.foreign_keys(conn, catalog.PLATFORM_SCHEMAS))
        for table, then in sorted(tables.items()):
            if table not in present:
                if state is None:   # no manifest, so no schema check to say it
                    findings.append(Finding(Kind.DATA_LOSS, f"table {table} is gone (its dump "
                                            f"{dumps[table].name} holds its rows)", (table,)))
                continue   # with a manifest, the schema check reports a missing table
            if rls_hidden(ctx, table, rls_now):
                hidden.append(table)
                continue
            try:
                scan = await _compare(ctx, conn, table, then, state, dumps.get(table),
                                      cols_now.get(table, []), (table in critical,
                                                                table in partitioned),
                                      deadline, notes)
                if scan is None:
                    continue
            except LOCKED:
                blocked.append(table)
                continue
            except IndexPending as pending:   # a hand-made set: nothing else to compare
                findings.append(Finding(Kind.INCOMPLETE, str(pending)))
                continue
            except (ValueError, OSError, sqlite3.Error) as exc:
                findings.append(Finding(Kind.INCOMPLETE, f"{table}: the backup's rows could not "
                                        f"be read ({type(exc).__name__}: {exc}); verify the set"
                                        " with `rollback-console backups --verify`"))
                continue
            per_table[table] = scan.info
            findings += scan.findings
            notes += scan.notes
    evidence = _evidence(ctx, state, bool(dumps), per_table, notes, critical)
    return await _finish(ctx, per_table, findings, notes, blocked, hidden, evidence)


async def _finish(ctx: CheckContext, per_table: dict[str, dict[str, Any]],
                  findings: list[Finding], notes: list[str], blocked: list[str],
                  hidden: list[str], evidence: dict[str, Any]) -> Outcome:
    """Name the tables RLS hid and the locks waited on, then the status and summary."""
    if hidden:
        evidence["not_checked_rls"] = hidden
        findings.append(Finding(Kind.INCOMPLETE, f"role {ctx.role.name} is subject to RLS on "
                                f"{len(hidden)} tables: counts not checked (grant it BYPASSRLS)"))
    if blocked:
        msg, holders = await blocked_outcome(ctx, "tables " + ", ".join(blocked))
        evidence["lock_holders"] = holders
        findings.append(Finding(Kind.CONTENTION, msg))
    if hidden and not per_table:
        raise Skip(f"role {ctx.role.name} does not bypass RLS, so it cannot count rows of "
                   f"{', '.join(hidden)}: connect as a role with BYPASSRLS (or the owner)",
                   privilege=True)
    return _summarize_data(per_table, findings, notes, blocked, evidence)


def _evidence(ctx: CheckContext, state: DatabaseState | None, dumps: bool,
              per_table: dict[str, dict[str, Any]], notes: list[str],
              critical: set[str]) -> dict[str, Any]:
    source = ctx.rows_from.set_id if ctx.rows_from else None
    return {
        "backup": ctx.baseline.set_id if ctx.baseline else source,
        "backup_taken_at": state.captured_at if state else None,
        "rows_compared_with": (f"{source}: per-table data dumps" if dumps else
                               "no per-table data dumps in the set: counts and checksums only"),
        "critical_tables": sorted(critical & set(per_table)),
        "tables": per_table, "notes": notes,
        "sql": "row by row (tables with a data dump): count and sum of md5(ROW(columns)) per "
               "bucket of md5(key), then the rows of differing buckets; otherwise count(*) and "
               "sum of md5(row) per table"}


async def _compare(ctx: CheckContext, conn: asyncpg.Connection, table: str,
                   then: catalog.TableContent | None, state: DatabaseState | None,
                   dump: Path | None, now_cols: list[tuple[str, str, bool]],
                   flags: tuple[bool, bool], deadline: float, notes: list[str]) -> Scan | None:
    """One table: row by row when the set has its dump (and its index is ready by
    ``deadline``), else by count and checksum against the manifest; None with neither.
    ``flags``: (critical, partitioned)."""
    critical, partitioned = flags
    base_cols = [tuple(c) for c in state.columns.get(table, [])] if state else []
    if dump is not None and ctx.rows_from is not None:
        try:
            return await by_rows(ctx, conn, table, dump, base_cols, now_cols, critical,
                                 deadline)
        except IndexPending as pending:
            if then is None:
                raise
            notes.append(str(pending))
    if then is None:
        return None
    return await by_checksum(ctx, conn, table, then, state.captured_at if state else None,
                             base_cols, now_cols, critical, partitioned)


async def _dumps(ctx: CheckContext, conn: asyncpg.Connection,
                 tables: set[str]) -> dict[str, Path]:
    """{table: the dump holding its COPY block}: its own file, else the file of a partitioned
    ancestor (a partitioned table's dump may hold one block per leaf). A partitioned table
    whose own file has only its leaves' blocks is compared leaf by leaf, not itself."""
    from app import rowdiff

    if ctx.rows_from is None:
        return {}
    files = await asyncio.to_thread(ctx.rows_from.files, tables)
    rows = await conn.fetch(
        "SELECT n.nspname || '.' || c.relname AS t, ARRAY(SELECT an.nspname || '.' || ac.relname "
        "FROM pg_partition_ancestors(c.oid) WITH ORDINALITY AS a(relid, ord) "
        "JOIN pg_class ac ON ac.oid = a.relid JOIN pg_namespace an ON an.oid = ac.relnamespace "
        "WHERE a.relid <> c.oid ORDER BY a.ord) AS up "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relispartition")
    ancestors = {r["t"]: list(r["up"]) for r in rows}
    out: dict[str, Path] = {}
    for table in sorted(tables | set(files)):
        for owner in [table, *ancestors.get(table, [])]:
            path = files.get(owner)
            if path is not None and await asyncio.to_thread(rowdiff.dump_columns, path,
                                                            table) is not None:
                out[table] = path
                break
    return out


async def _partitioned(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT n.nspname || '.' || c.relname AS t FROM pg_class c "
                            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'p'")
    return {r["t"] for r in rows}


def _summarize_data(per_table: dict[str, dict[str, Any]], findings: list[Finding],
                    notes: list[str], blocked: list[str], evidence: dict[str, Any]) -> Outcome:
    bad = [f for f in findings if f.kind in (Kind.DATA_LOSS, Kind.DATA_CORRUPTION)]
    statuses = [Status.FAIL if bad else Status.PASS]
    if blocked or any(f.kind is Kind.INCOMPLETE for f in findings):
        statuses.append(Status.ERROR)
    if notes or any(f.kind is Kind.UNEXPECTED_GROWTH for f in findings):
        statuses.append(Status.WARN)
    status = worst(statuses)
    if findings:
        summary = "; ".join(f.summary for f in findings[:2])
    else:
        changed = [t for t, i in per_table.items() if i["delta"] or not i["checksum_match"]]
        summary = (f"{len(per_table)} tables match the backup" if not changed else
                   f"{len(per_table)} tables within tolerance; {len(changed)} changed by normal "
                   "writes")
        if notes:
            summary += f"; {notes[0]}"
    return Outcome(status, summary, evidence, findings)
