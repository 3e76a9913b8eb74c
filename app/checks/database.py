"""Checks on the database itself: server facts, schema vs the backup, data vs the backup, and the
writes a data rollback would lose. All read-only."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
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


async def _data_integrity(ctx: CheckContext) -> Outcome:
    base = ctx.need_baseline()
    state = base.manifest.state
    s = ctx.settings
    per_table: dict[str, dict[str, Any]] = {}
    findings: list[Finding] = []
    hidden: list[str] = []
    blocked: list[str] = []
    notes: list[str] = []
    async with ctx.pool.acquire() as conn:
        present = set(await catalog.user_tables(conn))
        cols_now = await catalog.columns(conn)
        rls_now = await catalog.rls_flags(conn)
        for table, then in sorted(state.tables.items()):
            if table not in present:
                continue   # the schema check reports a missing table
            if rls_hidden(ctx, table, rls_now):
                hidden.append(table)
                continue
            try:
                base_cols = [tuple(c) for c in state.columns.get(table, [])]
                now_cols = cols_now.get(table, [])
                same_cols = base_cols == [tuple(c) for c in now_cols]
                comparable = same_cols or all(c in [tuple(n) for n in now_cols]
                                              for c in base_cols)
                rows, checksum, written = await scan_table(
                    conn, table, state.captured_at,
                    None if same_cols else [str(c[0]) for c in base_cols], hashed=comparable)
                ctx.offer_scan(table, written,
                               unchanged=same_cols and checksum == then.checksum)
            except LOCKED:
                blocked.append(table)
                continue
            tol = max(1, math.ceil(then.rows * s.row_tolerance_pct / 100))
            delta = rows - then.rows
            info: dict[str, Any] = {
                "rows": rows, "baseline_rows": then.rows, "delta": delta, "tolerance": tol,
                "checksum_match": checksum == then.checksum if comparable else None,
                "written_since_backup": written["rows"] if written else None,
                "last_write": written["last_write"] if written else None}
            per_table[table] = info
            if delta < -tol:
                findings.append(Finding(Kind.DATA_LOSS, f"{table} lost {-delta} of {then.rows} "
                                        f"rows since the backup (tolerance {tol})", (table,)))
            elif delta > tol:
                findings.append(Finding(Kind.UNEXPECTED_GROWTH, f"{table} grew by {delta} rows "
                                        f"since the backup (tolerance {tol})"))
            if info["checksum_match"] is not False:
                if not comparable:
                    notes.append(f"{table}: column types changed, content not comparable")
                continue
            if written is None:
                notes.append(f"{table}: content changed (no updated_at to tell writes from "
                             "corruption)")
            elif written["rows"] == 0 and delta == 0:
                findings.append(Finding(
                    Kind.DATA_CORRUPTION, f"{table}: values changed but no row was written since "
                    "the backup (updated_at unchanged): rewritten behind the app's back",
                    (table,)))
            elif (then.rows and written["rows"] * 100 / then.rows >= s.mass_change_pct
                  and same_cols):
                pct = written["rows"] * 100 / then.rows
                findings.append(Finding(
                    Kind.DATA_CORRUPTION, f"{table}: {written['rows']} of {then.rows} rows "
                    f"({pct:.0f}%) rewritten since the backup with no schema change to explain "
                    f"it (assess.mass_change_pct = {s.mass_change_pct:g})", (table,)))
    evidence: dict[str, Any] = {"backup": base.set_id, "backup_taken_at": state.captured_at,
                                "tables": per_table, "notes": notes,
                                "sql": "count(*) and sum of md5(row) per table; "
                                       "count(*) FILTER (WHERE updated_at > backup time)"}
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
