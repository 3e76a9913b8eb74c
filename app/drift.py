"""Schema drift between the live target and a backup set, measured on the target: the diff
(``app.schemadiff``) annotated with what each change would destroy, counted read-only."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from app.backups.backupset import BackupSet
from app.catalog import PLATFORM_SCHEMAS, quote_ident
from app.config import Config
from app.db import connect
from app.schemadiff import Change, Diff, compare
from app.schemamodel import read
from app.scratch import backup_schema


async def measure(conn: asyncpg.Connection, diff: Diff, annotate: bool = True) -> None:
    """Count on the target what each change destroys or trips over (read-only). Without
    ``annotate`` only what decides the statements or blocks the plan is counted (the apply
    re-checks those; the words were shown at the gate)."""
    for change in diff.changes:
        if not change.count_sql or not (annotate or change.if_rows_sql
                                        or change.fails_if_count):
            continue
        about = ""
        try:
            estimate = await _estimate(conn, change) if change.count_table else None
            if estimate is not None:
                n, about = estimate, "about "
            else:
                n = int(await conn.fetchval(change.count_sql))
        except asyncpg.PostgresError as exc:
            change.note += f" (could not count: {exc})"
            continue
        if change.if_rows_sql:
            if n:
                change.sql = change.if_rows_sql
            else:
                change.residual = ""
        if change.count_says:
            said = about + change.count_says.format(n=n) + (" (estimated from statistics "
                                                            "or a 1% sample)" if about else "")
            if change.kind.startswith("drop"):
                change.destroys = said
            else:
                change.note = f"{change.note}; {said}" if change.note else said
        if change.fails_if_count and n:
            change.blocker = change.fails_if_count.format(n=n)
    for change in diff.changes:
        if change.kind == "add foreign key" and not change.if_rows_sql:
            await _orphans(conn, change)


_ADD_FK = re.compile(r"ALTER TABLE (?P<table>.+?) ADD CONSTRAINT \S+ FOREIGN KEY "
                     r"\((?P<cols>[^)]*)\) REFERENCES (?P<ref>[^(]+)\((?P<refcols>[^)]*)\)")


async def _orphans(conn: asyncpg.Connection, change: Change) -> None:
    """A foreign key the plan adds back over rows whose parent is gone (the migration deleted
    it): the ADD would fail on them. Counted read-only; with orphans the key is added NOT
    VALID (it guards new writes at once) and the parent's rows are left for a data rollback
    (Type 2 of the parent, phase 2), which validates it."""
    m = _ADD_FK.match(change.sql[0]) if change.sql else None
    if m is None or change.sql[0].endswith("NOT VALID"):
        return
    cols = [c.strip() for c in m.group("cols").split(",")]
    refcols = [c.strip() for c in m.group("refcols").split(",")]
    table, ref = m.group("table"), m.group("ref").strip()
    match = " AND ".join(f"p.{r} = c.{c}" for c, r in zip(cols, refcols, strict=False))
    filled = " AND ".join(f"c.{c} IS NOT NULL" for c in cols)
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS "
                               "NOT NULL", table, ref):
        return   # a table the plan creates first: no rows to orphan
    n = int(await conn.fetchval(f"SELECT count(*) FROM {table} c WHERE {filled} AND NOT "
                                f"EXISTS (SELECT 1 FROM {ref} p WHERE {match})"))
    if not n:
        return
    parent = ref if "." in ref else f"public.{ref}"
    change.sql = (change.sql[0] + " NOT VALID", *change.sql[1:])
    change.residual = (f"{n:,} rows of {table} have no parent in {ref}: added NOT VALID; "
                       f"reloading {ref} (Type 2, phase 2) brings the parents back and "
                       "validates it")
    change.data_tables = (*change.data_tables, parent)


ESTIMATE_ABOVE_ROWS = 200_000        # larger tables are not scanned to annotate a plan
ESTIMATE_ABOVE_BYTES = 8 * 1024 ** 2  # ... nor, without statistics, tables this large


async def _estimate(conn: asyncpg.Connection, change: Change) -> int | None:
    """For a large table, an estimate instead of a scan: the planner's row count (times the
    column's non-null share when a column's values are counted), or a 1% page sample where
    there are no statistics yet (a table rewritten or a column added since the last ANALYZE);
    None when the table is small enough to count."""
    row = await conn.fetchrow(
        "SELECT c.reltuples::bigint AS n, pg_relation_size(c.oid) AS bytes, (SELECT "
        "s.null_frac FROM pg_stats s WHERE s.schemaname = n.nspname AND s.tablename = "
        "c.relname AND s.attname = $2) AS nulls FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
        change.count_table, change.count_column or None)
    if row is None:
        return None
    known = row["n"] >= 0
    if (known and row["n"] < ESTIMATE_ABOVE_ROWS) or (not known
                                                      and row["bytes"] < ESTIMATE_ABOVE_BYTES):
        return None
    column = quote_ident(change.count_column) if change.count_column else None
    if known and (column is None or row["nulls"] is not None):
        return int(row["n"] * (1 - (row["nulls"] or 0)))
    sampled = await conn.fetchrow(
        f"SELECT count(*) AS n, count({column or '*'}) AS filled, "
        "count(DISTINCT (ctid::text::point)[0]) AS pages "
        f"FROM {change.count_table} TABLESAMPLE SYSTEM (1)")
    rows = row["n"] if known else int(
        sampled["n"] / max(sampled["pages"], 1) * (row["bytes"] / 8192))
    share = sampled["filled"] / sampled["n"] if sampled["n"] else 0.0
    return int(rows * share)


@dataclass
class Drift:
    backup_id: str
    diff: Diff
    target_objects: int
    backup_objects: int


async def drift(cfg: Config, backup: BackupSet, exclude: tuple[str, ...] = PLATFORM_SCHEMAS,
                on_line: Callable[[str], None] = lambda _l: None) -> Drift:
    """Read-only: what differs between the target's schema and the backup's, measured."""
    want = await backup_schema(cfg, backup, exclude, on_line)
    conn = await connect(cfg.target, server_settings={
        "default_transaction_read_only": "on", "statement_timeout": "60s",
        "lock_timeout": "2s", "application_name": "rollback-console diff"})
    try:
        cur = await read(conn, exclude)
        diff = compare(cur, want)
        await measure(conn, diff)
    finally:
        await conn.close()
    return Drift(str(backup.id), diff, cur.object_count(),
                 want.object_count())

