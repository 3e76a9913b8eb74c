"""Checks on the database itself: server facts, schema vs the backup, data vs the backup, and the
writes a data rollback would lose. All read-only."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from app import catalog
from app.checks.context import Baseline, CheckContext
from app.checks.model import Finding, Kind, Skip, Status, worst
from app.checks.runner import Outcome, blocked_outcome

Column = tuple[str, str, bool]
LOCKED = (asyncpg.LockNotAvailableError, asyncpg.QueryCanceledError)


async def connectivity(ctx: CheckContext) -> Outcome:
    sql = ("SELECT current_setting('server_version') AS version, current_database() AS database,"
           " current_user AS role, pg_is_in_recovery() AS in_recovery, "
           "current_setting('transaction_read_only') AS read_only, "
           "pg_postmaster_start_time()::text AS started_at")
    async with ctx.pool.acquire() as conn:
        row = await conn.fetchrow(sql)
    assert row is not None
    facts = dict(row)
    evidence = {**facts, "superuser": ctx.role.superuser, "bypass_rls": ctx.role.bypass_rls,
                "sql": sql}
    if facts["read_only"] != "on":
        return Outcome(Status.ERROR, "the assess session is NOT read-only: stop and report this",
                       evidence, [Finding(Kind.INCOMPLETE, "assess session not read-only")])
    summary = (f"PostgreSQL {facts['version']}, database {facts['database']}, role "
               f"{facts['role']}, read-only session")
    if facts["in_recovery"]:
        return Outcome(Status.WARN, summary + "; the server is a STANDBY (in recovery): a "
                       "rollback must target the primary", evidence, [])
    return Outcome(Status.PASS, summary, evidence, [])


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


async def table_grants(conn: asyncpg.Connection) -> dict[str, dict[str, list[str]]]:
    """``catalog.table_grants``'s shape, read from the ACLs themselves: information_schema only
    shows a role the grants it takes part in, so a read-only role would see privileges "lost"."""
    rows = await conn.fetch(
        "SELECT n.nspname || '.' || c.relname AS t, "
        "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS grantee, "
        "array_agg(DISTINCT a.privilege_type ORDER BY a.privilege_type) AS privs "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, "
        "aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a "
        "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT LIKE 'pg\\_%' "
        "AND n.nspname <> ALL($1::text[]) GROUP BY 1, 2", list(catalog.PLATFORM_SCHEMAS))
    out: dict[str, dict[str, list[str]]] = {}
    for r in rows:
        out.setdefault(r["t"], {})[r["grantee"]] = list(r["privs"])
    return out


async def schema(ctx: CheckContext) -> Outcome:
    base = ctx.need_baseline()
    state = base.manifest.state
    async with ctx.pool.acquire() as conn:
        tables = set(await catalog.user_tables(conn))
        cols = await catalog.columns(conn)
        grants = await table_grants(conn)
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


def rls_hidden(ctx: CheckContext, table: str, rls: dict[str, bool]) -> bool:
    """True when RLS would hide rows from us: counts and scans would be wrong, not just low."""
    return rls.get(table, False) and not ctx.role.sees_all_rows


async def _timestamp_column(conn: asyncpg.Connection, table: str) -> str | None:
    schema_name, name = catalog.split_name(table)
    return await conn.fetchval(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attname = ANY("
        "ARRAY['updated_at', 'created_at']) AND NOT attisdropped AND atttypid IN "
        "('timestamptz'::regtype, 'timestamp'::regtype) ORDER BY attname DESC LIMIT 1",
        catalog.qualified(f"{schema_name}.{name}"))


def _instant(since: str | None) -> datetime | None:
    """The backup's time as a parameter of type timestamptz: a text parameter cast in the query
    (``$1::text::timestamptz``) is parsed again for every row, 20% of a checksum scan. None
    (no backup) matches no row, as "after infinity" would."""
    return None if since is None else datetime.fromisoformat(since)


async def written_since(conn: asyncpg.Connection, table: str,
                        since: str | None) -> dict[str, Any] | None:
    """Rows whose updated_at (else created_at) is after ``since``, and the latest such time."""
    col = await _timestamp_column(conn, table)
    if col is None:
        return None
    q = catalog.quote_ident(col)
    row = await catalog.one_row(
        conn, f"SELECT count(*) FILTER (WHERE {q} > $1::timestamptz) AS n, "
              f"max({q})::text AS last FROM {catalog.qualified(table)}", _instant(since))
    return {"column": col, "rows": int(row["n"]), "last_write": row["last"]}


async def scan_table(conn: asyncpg.Connection, table: str, since: str | None,
                     cols: list[str] | None = None, hashed: bool = True,
                     ) -> tuple[int, str, dict[str, Any] | None]:
    """One pass over ``table``: (rows, the manifest's checksum, writes since ``since``).

    The checksum is over the whole row (``cols`` None: equal to ``catalog.table_content``'s), or
    over the backup's columns only, so an added column does not make every row look changed;
    "" when not ``hashed``. The writes are ``written_since``'s, None without a timestamp column.
    One scan instead of three: the table is read once, as plain ``count(*)`` + a hash would."""
    col = await _timestamp_column(conn, table)
    row_value = "t" if cols is None else \
        "ROW(" + ", ".join(f"t.{catalog.quote_ident(c)}" for c in cols) + ")"
    parts = ["count(*) AS n"]
    if hashed:
        parts.append(f"{catalog.ROW_CHECKSUM.format(row=row_value)} AS sum")
    args: list[datetime | None] = []
    if col is not None:
        q = f"t.{catalog.quote_ident(col)}"
        parts += [f"count(*) FILTER (WHERE {q} > $1::timestamptz) AS w",
                  f"max({q})::text AS last"]
        args.append(_instant(since))
    row = await catalog.one_row(
        conn, f"SELECT {', '.join(parts)} FROM {catalog.qualified(table)} AS t", *args)
    rows = int(row["n"])
    written = None if col is None else {"column": col, "rows": int(row["w"]),
                                        "last_write": row["last"]}
    return rows, f"{rows}:{row['sum']}" if hashed else "", written


async def data_integrity(ctx: CheckContext) -> Outcome:
    try:
        return await _data_integrity(ctx)
    finally:
        ctx.release_scans()


# A column an application keeps its rows' last write time in: a row that changed while this
# column did not was rewritten behind the app's back (a hint; the rows themselves are evidence).
TRACKING_COLUMNS = ("updated_at", "last_update", "last_updated", "modified_at", "last_modified",
                    "updated", "modified")


@dataclass
class _Scan:
    """What data_integrity learned about one table."""

    info: dict[str, Any]
    findings: list[Finding]
    notes: list[str]


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
            base_cols = [tuple(c) for c in state.columns.get(table, [])] if state else []
            now_cols = cols_now.get(table, [])
            try:
                scan = None
                if table in dumps and ctx.rows_from is not None:
                    try:
                        scan = await _by_rows(ctx, conn, table, dumps[table], base_cols,
                                              now_cols, table in critical, deadline)
                    except IndexPending as pending:
                        if then is None:
                            raise
                        notes.append(str(pending))
                if scan is None and then is not None:
                    scan = await _by_checksum(ctx, conn, table, then, state.captured_at
                                              if state else None, base_cols, now_cols,
                                              table in critical, table in partitioned)
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
    source = ctx.rows_from.set_id if ctx.rows_from else None
    evidence: dict[str, Any] = {
        "backup": base.set_id if base else source,
        "backup_taken_at": state.captured_at if state else None,
        "rows_compared_with": (f"{source}: per-table data dumps" if dumps else
                               "no per-table data dumps in the set: counts and checksums only"),
        "critical_tables": sorted(critical & set(per_table)),
        "tables": per_table, "notes": notes,
        "sql": "row by row (tables with a data dump): count and sum of md5(ROW(columns)) per "
               "bucket of md5(key), then the rows of differing buckets; otherwise count(*) and "
               "sum of md5(row) per table"}
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


def _tolerance(rows: int, pct: float) -> int:
    return max(1, math.ceil(rows * pct / 100))


def _deletions(table: str, deleted: int, rows: int, tol: int, critical: bool,
               sample: list[str], evidence: dict[str, Any],
               what: str = "deleted") -> Finding | None:
    """Deleted rows are data loss beyond the tolerance, and at any count in a critical table."""
    if not deleted or (deleted <= tol and not critical):
        return None
    why = ("a critical table (configured, or referenced by a foreign key): no deletion is "
           "tolerated" if critical and deleted <= tol else f"tolerance {tol}")
    keys = f"; e.g. keys {', '.join(sample[:3])}" if sample else ""
    return Finding(Kind.DATA_LOSS, f"{table}: {deleted} of {rows} rows {what} since the backup "
                   f"({why}){keys}", (table,), evidence)


class IndexPending(Exception):
    """The backup's row index of a table was not ready in time (see ``_by_rows``)."""


async def _by_rows(ctx: CheckContext, conn: asyncpg.Connection, table: str, dump: Path,
                   base_cols: list[tuple[Any, ...]], now_cols: list[tuple[str, str, bool]],
                   critical: bool, deadline: float) -> _Scan:
    """Row-level evidence from the set's data dump of ``table``."""
    from app import rowdiff

    assert ctx.rows_from is not None
    s = ctx.settings
    cols = await asyncio.to_thread(rowdiff.dump_columns, dump, table)
    if cols is None:
        raise ValueError(f"{dump.name} holds no rows of {table}")
    shape = await rowdiff.shape_for(conn, table, cols, now_cols,
                                    [(str(c[0]), str(c[1]), bool(c[2])) for c in base_cols])
    # the backup's row index: read from the cache, or built from the dump once (a large dump
    # takes a while: past the deadline the table is judged by count and checksum this time,
    # and the build goes on, so the next assessment has it)
    building = asyncio.ensure_future(asyncio.to_thread(
        rowdiff.index_for, ctx.rows_from.directory, dump, shape))
    try:
        async with asyncio.timeout_at(deadline):
            index = await asyncio.shield(building)
    except TimeoutError:
        raise IndexPending(f"{table}: the row index of {dump.name} is still being built; "
                           "compared by count and checksum this time, row by row on the "
                           "next assessment") from None
    diff = await rowdiff.compare(conn, ctx.rows_from.directory, dump, shape, cols, index)
    same_cols = bool(base_cols) and base_cols == [tuple(c) for c in now_cols]
    ctx.offer_scan(table, {"column": None, "rows": diff.changed + diff.inserted,
                           "last_write": None, "row_level": True},
                   unchanged=same_cols and diff.identical and not diff.columns_left_out)
    n = diff.backup_rows
    tol = _tolerance(n, s.row_tolerance_pct)
    rows_ev = diff.to_dict()
    info: dict[str, Any] = {
        "rows": diff.live_rows, "baseline_rows": n, "delta": diff.live_rows - n,
        "tolerance": tol, "critical": critical, "compared": "row by row",
        "checksum_match": diff.identical, "since_backup": rows_ev,
        "written_since_backup": diff.changed + diff.inserted, "last_write": None}
    evidence = {"table": table, **rows_ev}
    findings: list[Finding] = []
    notes: list[str] = []
    what = "deleted" if shape.key is not None else \
        "deleted or changed (no key to tell which)"
    lost = _deletions(table, diff.deleted, n, tol, critical, diff.sample_deleted, evidence, what)
    if lost is not None:
        findings.append(lost)
    elif diff.deleted:
        notes.append(f"{table}: {diff.deleted} rows deleted (within tolerance {tol})")
    if diff.changed:
        cols_text = ", ".join(f"{c} ({k})" for c, k in diff.changed_columns.items())
        tracked = next((c for c in TRACKING_COLUMNS if c in shape.columns), None)
        unrecorded = (diff.examined - diff.changed_columns.get(tracked, 0)) if tracked else 0
        pct = diff.changed * 100 / n if n else 100.0
        keys = f"; e.g. keys {', '.join(diff.sample_changed[:3])}"
        if unrecorded:
            findings.append(Finding(
                Kind.DATA_CORRUPTION, f"{table}: {diff.changed} rows changed since the backup, "
                f"{unrecorded} of the {diff.examined} examined without their {tracked} moving "
                f"(rewritten behind the app's back); columns changed: {cols_text}{keys}",
                (table,), evidence))
        elif pct >= s.mass_change_pct:
            findings.append(Finding(
                Kind.DATA_CORRUPTION, f"{table}: {diff.changed} of {n} rows ({pct:.0f}%) changed "
                f"since the backup (assess.mass_change_pct = {s.mass_change_pct:g}); columns "
                f"changed: {cols_text}{keys}", (table,), evidence))
        elif tracked is None and diff.changed > tol:
            # nothing records the app's writes here: beyond the row tolerance, changes are
            # not taken for traffic
            findings.append(Finding(
                Kind.DATA_CORRUPTION, f"{table}: {diff.changed} of {n} rows ({pct:.0f}%) changed "
                f"since the backup, beyond the tolerance ({tol}) of a table with no updated_at "
                f"to show they were the app's writes; columns changed: {cols_text}{keys}",
                (table,), evidence))
        else:
            notes.append(f"{table}: {diff.changed} rows changed ({pct:.1f}%, under "
                         "assess.mass_change_pct" + (f", recorded in {tracked}" if tracked
                                                     else f", within tolerance {tol}")
                         + f"), columns: {cols_text}")
    growth = diff.live_rows - n
    if growth > tol:
        findings.append(Finding(Kind.UNEXPECTED_GROWTH, f"{table} grew by {growth} rows since "
                                f"the backup (tolerance {tol}; {diff.inserted} inserted)",
                                (), evidence))
    if diff.columns_left_out:
        notes.append(f"{table}: columns not compared (dropped or retyped since the backup): "
                     + ", ".join(diff.columns_left_out))
    return _Scan(info, findings, notes)


async def _by_checksum(ctx: CheckContext, conn: asyncpg.Connection, table: str,
                       then: catalog.TableContent, since: str | None,
                       base_cols: list[tuple[Any, ...]], now_cols: list[tuple[str, str, bool]],
                       critical: bool, partitioned: bool) -> _Scan:
    """No data dump of ``table`` in the set: count and checksum against the manifest, and
    updated_at/created_at to tell writes from corruption (a hint, not row-level evidence)."""
    s = ctx.settings
    same_cols = base_cols == [tuple(c) for c in now_cols]
    comparable = same_cols or all(c in [tuple(n) for n in now_cols] for c in base_cols)
    rows, checksum, written = await scan_table(
        conn, table, since, None if same_cols else [str(c[0]) for c in base_cols],
        hashed=comparable)
    ctx.offer_scan(table, written, unchanged=same_cols and checksum == then.checksum)
    tol = _tolerance(then.rows, s.row_tolerance_pct)
    delta = rows - then.rows
    info: dict[str, Any] = {
        "rows": rows, "baseline_rows": then.rows, "delta": delta, "tolerance": tol,
        "critical": critical, "compared": "count and checksum (no data dump of it in the set)",
        "checksum_match": checksum == then.checksum if comparable else None,
        "written_since_backup": written["rows"] if written else None,
        "last_write": written["last_write"] if written else None}
    findings: list[Finding] = []
    notes: list[str] = []
    if partitioned:
        info["compared"] = "its partitions are compared, each on its own"
        return _Scan(info, findings, notes)
    evidence = {"table": table, "rows": rows, "baseline_rows": then.rows}
    lost = _deletions(table, -delta if delta < 0 else 0, then.rows, tol, critical, [], evidence)
    if lost is not None:
        findings.append(Finding(lost.kind, lost.summary.replace(" deleted since", " fewer since")
                                + " (by count: no data dump to compare rows)", lost.tables,
                                evidence))
    elif delta > tol:
        findings.append(Finding(Kind.UNEXPECTED_GROWTH, f"{table} grew by {delta} rows "
                                f"since the backup (tolerance {tol})"))
    if info["checksum_match"] is not False:
        if not comparable:
            notes.append(f"{table}: column types changed, content not comparable")
        return _Scan(info, findings, notes)
    if written is None:
        notes.append(f"{table}: content changed (no data dump in the set and no updated_at to "
                     "tell writes from corruption)")
    elif written["rows"] == 0 and delta == 0:
        findings.append(Finding(
            Kind.DATA_CORRUPTION, f"{table}: values changed but no row was written since "
            "the backup (updated_at unchanged): rewritten behind the app's back",
            (table,), evidence))
    elif (then.rows and written["rows"] * 100 / then.rows >= s.mass_change_pct
          and same_cols):
        pct = written["rows"] * 100 / then.rows
        findings.append(Finding(
            Kind.DATA_CORRUPTION, f"{table}: {written['rows']} of {then.rows} rows "
            f"({pct:.0f}%) rewritten since the backup with no schema change to explain "
            f"it (assess.mass_change_pct = {s.mass_change_pct:g})", (table,), evidence))
    return _Scan(info, findings, notes)


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


async def writes(ctx: CheckContext) -> Outcome:
    """What a data rollback would lose: writes per table since the backup."""
    since = ctx.baseline.manifest.state.captured_at if ctx.baseline else None
    sql = ("SELECT schemaname || '.' || relname AS t, n_tup_ins, n_tup_upd, n_tup_del, "
           "n_live_tup FROM pg_stat_user_tables")
    per_table: dict[str, dict[str, Any]] = {}
    async with ctx.pool.acquire() as conn:
        stats = {r["t"]: r for r in await conn.fetch(sql)}
        reset = await conn.fetchval("SELECT stats_reset::text FROM pg_stat_database "
                                    "WHERE datname = current_database()")
        rls = await catalog.rls_flags(conn)
        tables = (sorted(ctx.baseline.manifest.state.tables) if ctx.baseline
                  else await catalog.user_tables(conn))
        for t in tables:
            st = stats.get(t)
            counters = ("n_tup_ins", "n_tup_upd", "n_tup_del", "n_live_tup")
            info: dict[str, Any] = {k: int(st[k]) for k in counters} if st else {}
            if since and t in stats and not rls_hidden(ctx, t, rls):
                try:
                    shared, w = await ctx.writes_of(t)
                    if not shared:
                        w = await written_since(conn, t, since)
                except LOCKED:
                    w = None
                    info["written_since_backup"] = "locked"
                if w is not None:
                    info["written_since_backup"] = w["rows"]
                    info["last_write"] = w["last_write"]
            per_table[t] = info
    total = sum(i.get("written_since_backup", 0) for i in per_table.values()
                if isinstance(i.get("written_since_backup"), int))
    summary = (f"{total} rows written since the backup across {len(per_table)} tables "
               "(a data rollback of a table loses its share)" if since else
               "no backup to compare with: cumulative write counters only")
    return Outcome(Status.PASS, summary, {"since": since, "stats_since": reset,
                                          "tables": per_table, "sql": sql}, [])
