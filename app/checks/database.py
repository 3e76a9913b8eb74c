"""Checks on the database server itself (connectivity) and the writes a data rollback would
lose. All read-only. (data_integrity lives in app.checks.data.)"""

from __future__ import annotations

from typing import Any

from app import catalog
from app.checks.context import CheckContext, rls_hidden
from app.checks.data import data_integrity
from app.checks.model import Finding, Kind, Status
from app.checks.runner import LOCKED, Outcome
from app.checks.table_scan import written_since

# data_integrity is app.checks.data's; app.checks imports it from here
__all__ = ["connectivity", "data_integrity", "writes"]


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
    locked = [t for t, i in per_table.items() if i.get("written_since_backup") == "locked"]
    if locked:   # a total that leaves tables out is not a pass: say which
        summary += f"; not counted (waited on a lock): {', '.join(locked)}"
    return Outcome(Status.WARN if locked else Status.PASS, summary,
                   {"since": since, "stats_since": reset, "tables": per_table, "sql": sql}, [])
