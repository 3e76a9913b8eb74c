"""Type 2's core: replace the contents of some tables with their backup, in ONE transaction.

The runbook does ``TRUNCATE ... CASCADE`` then ``psql < table_X_backup.sql``: every row then
pays for index maintenance and a foreign-key trigger check, and CASCADE silently empties the
tables that reference it. Here, inside one transaction with ``lock_timeout``:

1. lock the tables (a blocker is named, not waited on forever);
2. drop the foreign keys into and out of them and their secondary indexes (definitions kept);
3. ``TRUNCATE`` (no CASCADE: nothing else is emptied), then ``COPY ... FREEZE`` each table from
   the dump, streamed, with user triggers off so the rows come back exactly as backed up;
4. rebuild the indexes (one sort each instead of a row-by-row insert), re-add every foreign key,
   and the ones the backup recorded on these tables that were dropped since (one anti-join each:
   orphans fail the transaction and are reported), move sequences forward to cover the restored
   ids, ``ANALYZE``;
5. commit, or roll back entirely: the tables are either wholly before or wholly after.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from app.backups.copydata import CopyStream, Reader
from app.backups.manifest import inheritance_parents
from app.catalog import (
    ForeignKey,
    foreign_keys,
    one_row,
    qualified,
    quote_ident,
    quote_literal,
    split_name,
    user_tables,
)
from app.rollback.context import StepFailed

OpenDump = Callable[[str], AbstractAsyncContextManager[Reader]]
Progress = Callable[[str, int, int], None]   # table, bytes, rows


@dataclass
class ReloadResult:
    rows: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    indexes_rebuilt: int = 0
    foreign_keys_readded: int = 0
    foreign_keys_restored: int = 0
    seconds: float = 0.0


async def touching_foreign_keys(conn: asyncpg.Connection, tables: list[str]) -> list[ForeignKey]:
    """Foreign keys from or to any of ``tables`` (the ones a reload must drop and re-add). The
    copies PostgreSQL keeps of a partitioned table's keys (on its partitions, or towards a
    partitioned table's partitions) are not listed: dropping and adding the parent's key
    handles them, and they cannot be dropped on their own."""
    wanted = set(tables)
    clones = {(r["t"], r["conname"]) for r in await conn.fetch(
        "SELECT n.nspname || '.' || c.relname AS t, k.conname FROM pg_constraint k "
        "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE k.contype = 'f' AND k.conparentid <> 0")}
    return [fk for fk in await foreign_keys(conn)
            if (fk.table in wanted or fk.referenced in wanted)
            and (fk.table, fk.name) not in clones]


async def partitions(conn: asyncpg.Connection, table: str) -> list[str]:
    """Every partition of ``table`` at any depth (sub-partitioned ones and their leaves), as
    schema.name; [] for a table that is not partitioned."""
    rows = await conn.fetch(
        "SELECT n.nspname || '.' || c.relname AS t FROM pg_partition_tree($1::regclass) p "
        "JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE p.level > 0 ORDER BY p.level, 1", qualified(table))
    return [r["t"] for r in rows]


async def is_partitioned(conn: asyncpg.Connection, table: str) -> bool:
    return bool(await conn.fetchval(
        "SELECT relkind = 'p' FROM pg_class WHERE oid = $1::regclass", qualified(table)))


async def own_count(conn: asyncpg.Connection, table: str) -> int:
    """The rows a reload replaces: a plain table's own (``FROM ONLY``: not its inheritance
    children's), a partitioned table's all."""
    only = "" if await is_partitioned(conn, table) else "ONLY "
    return int((await one_row(conn, f"SELECT count(*) AS n FROM {only}{qualified(table)}"))["n"])


async def stored_size(conn: asyncpg.Connection, table: str) -> int:
    """Bytes on disk of a table with its indexes and TOAST; a partitioned table's are its
    partitions' (the parent itself holds nothing)."""
    return int(await conn.fetchval(
        "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) "
        "FROM pg_partition_tree($1::regclass)", qualified(table)) or 0)


async def dropped_foreign_keys(conn: asyncpg.Connection, tables: list[str],
                               recorded: list[ForeignKey]) -> list[ForeignKey]:
    """The backup's foreign keys from or to ``tables`` that the target no longer has (a migration
    dropped them), between tables that both still exist: the reload adds them back."""
    wanted = set(tables)
    live = {(fk.table, fk.name) for fk in await foreign_keys(conn)}
    existing = set(await user_tables(conn, ()))   # platform schemas too (auth.users)
    return [fk for fk in recorded
            if (fk.table in wanted or fk.referenced in wanted)
            and (fk.table, fk.name) not in live
            and fk.table in existing and fk.referenced in existing]


async def describe_blockers(conn: asyncpg.Connection, tables: list[str]) -> str:
    """Who holds locks on ``tables`` right now (pid, user, application, state, query)."""
    rows = await conn.fetch(
        "SELECT DISTINCT a.pid, a.usename, a.application_name, a.state, "
        "left(a.query, 120) AS query, a.xact_start FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.granted AND l.relation = ANY("
        "SELECT to_regclass(t)::oid FROM unnest($1::text[]) t) AND a.pid <> pg_backend_pid()",
        [qualified(t) for t in tables])
    if not rows:
        return "no session holds a lock on them now (the blocker has gone; retry)"
    return "; ".join(
        f"pid {r['pid']} ({r['usename']}, {r['application_name'] or 'no application name'}, "
        f"{r['state']}, transaction since {r['xact_start']:%H:%M:%S}): {r['query']!r}"
        for r in rows)


async def _secondary_indexes(conn: asyncpg.Connection, table: str) -> list[tuple[str, str]]:
    """The table's indexes that back no constraint, with the statement that recreates each. On
    a partitioned table these are partitioned indexes: dropping one drops its partitions'
    indexes, and ``pg_get_indexdef`` says ``ON ONLY`` (which would build an invalid index
    with none below it), so the recreating statement goes without ONLY and builds them all."""
    rows = await conn.fetch(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name, "
        "pg_get_indexdef(i.indexrelid) AS def, c.relkind = 'I' AS partitioned FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE i.indrelid = $1::regclass "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) "
        "ORDER BY 1", qualified(table))
    return [(r["name"], r["def"].replace(" ON ONLY ", " ON ", 1) if r["partitioned"]
             else r["def"]) for r in rows]


async def _truncates(conn: asyncpg.Connection, tables: list[str]) -> list[str]:
    """TRUNCATE, with ONLY for a table-inheritance parent: its children are tables of their
    own (their own dumps, their own rows), which a plain TRUNCATE would empty too while the
    parent's dump holds only its own rows. A partitioned table is TRUNCATEd whole (its
    partitions' rows are in its dump)."""
    parents = set(await inheritance_parents(conn, tables))
    whole = [t for t in tables if t not in parents]
    out = [f"TRUNCATE {', '.join(qualified(t) for t in whole)}"] if whole else []
    if parents:
        out.append(f"TRUNCATE ONLY {', '.join(qualified(t) for t in tables if t in parents)}")
    return out


async def _sequences(conn: asyncpg.Connection, table: str) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT a.attname, pg_get_serial_sequence($1, a.attname) AS seq FROM pg_attribute a "
        "WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped "
        "AND pg_get_serial_sequence($1, a.attname) IS NOT NULL", qualified(table))
    return [(r["attname"], r["seq"]) for r in rows]


async def dependent_matviews(conn: asyncpg.Connection, tables: list[str]) -> list[str]:
    """Populated materialized views computed from ``tables``: after the reload they would hold
    what the damaged rows gave, so they are refreshed in the same transaction."""
    rows = await conn.fetch(
        "SELECT DISTINCT quote_ident(n.nspname) || '.' || quote_ident(v.relname) AS mv "
        "FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
        "JOIN pg_class v ON v.oid = r.ev_class JOIN pg_namespace n ON n.oid = v.relnamespace "
        "WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass "
        "AND d.refobjid = ANY($1::regclass[]) AND v.relkind = 'm' AND v.relispopulated "
        "AND v.oid <> d.refobjid ORDER BY 1", [qualified(t) for t in tables])
    return [r["mv"] for r in rows]


def readd(fk: ForeignKey, valid_in_backup: Collection[tuple[str, str]]) -> str:
    """A key's definition to add back after the reload: NOT VALID only if the backup had it so.
    A Type 1 that re-created an empty parent added its children's keys NOT VALID; once the
    parent has its rows again, the key is checked (and the reload fails, nothing changed, if a
    child row still has no parent)."""
    if fk.definition.endswith(" NOT VALID") and (fk.table, fk.name) in valid_in_backup:
        return fk.definition.removesuffix(" NOT VALID")
    return fk.definition


async def reload_statements(conn: asyncpg.Connection, tables: list[str],
                            lock_timeout_s: float = 5.0,
                            restore_fks: list[ForeignKey] | None = None,
                            valid_in_backup: Collection[tuple[str, str]] = ()) -> list[str]:
    """Every statement ``reload_tables`` runs, in order, for --dry-run and the plan screen."""
    fks = await touching_foreign_keys(conn, tables)
    indexes = [ix for t in tables for ix in await _secondary_indexes(conn, t)]
    names = ", ".join(qualified(t) for t in tables)
    out = ["BEGIN", f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'",
           f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE"]
    out += [f"ALTER TABLE {qualified(fk.table)} DROP CONSTRAINT {quote_ident(fk.name)}"
            for fk in fks]
    out += [f"DROP INDEX {name}" for name, _ in indexes]
    out += await _truncates(conn, tables)
    for t in tables:
        parts = await partitions(conn, t)
        if await is_partitioned(conn, t):
            members = [t, *parts]
            out += [f"ALTER TABLE {qualified(m)} DISABLE TRIGGER USER" for m in members]
            out.append(f"COPY {qualified(t)} FROM STDIN  -- rows streamed from the dump, routed "
                       f"to its {len(parts)} partition(s) (COPY FREEZE cannot load a "
                       "partitioned table)")
            out += [f"ALTER TABLE {qualified(m)} ENABLE TRIGGER USER" for m in members]
            continue
        out += [f"ALTER TABLE {qualified(t)} DISABLE TRIGGER USER",
                f"COPY {qualified(t)} FROM STDIN (FREEZE)  -- rows streamed from the dump",
                f"ALTER TABLE {qualified(t)} ENABLE TRIGGER USER"]
    out += [definition for _, definition in indexes]
    out += [f"ALTER TABLE {qualified(fk.table)} ADD CONSTRAINT {quote_ident(fk.name)} "
            f"{readd(fk, valid_in_backup)}" for fk in [*fks, *(restore_fks or [])]]
    out += [f"REFRESH MATERIALIZED VIEW {mv}" for mv in await dependent_matviews(conn, tables)]
    for t in tables:
        out += [f"SELECT setval({quote_literal(seq)}, greatest((SELECT max({quote_ident(col)})"
                f" FROM {qualified(t)}), (SELECT last_value FROM {seq})), true)"
                for col, seq in await _sequences(conn, t)]
        out.append(f"ANALYZE {qualified(t)}")
    out.append("COMMIT")
    return out


async def reload_tables(conn: asyncpg.Connection, tables: list[str], open_dump: OpenDump,
                        progress: Progress | None = None, lock_timeout_s: float = 5.0,
                        blocker_conn: asyncpg.Connection | None = None,
                        restore_fks: list[ForeignKey] | None = None,
                        valid_in_backup: Collection[tuple[str, str]] = ()) -> ReloadResult:
    """Replace ``tables``' rows with the dump's, atomically, and add back ``restore_fks`` (keys
    the backup had that were dropped since). Raises ``StepFailed`` (nothing changed) when a
    lock is held elsewhere, the dump lacks a table, or keys would break."""
    result = ReloadResult()
    started = time.monotonic()
    report = progress or (lambda _t, _b, _r: None)
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
            await conn.execute("SET LOCAL statement_timeout = 0")
            await conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
            await _lock(conn, tables, lock_timeout_s, blocker_conn)

            fks = await touching_foreign_keys(conn, tables)
            for fk in fks:
                await conn.execute(f"ALTER TABLE {qualified(fk.table)} "
                                   f"DROP CONSTRAINT {quote_ident(fk.name)}")
            indexes = [ix for t in tables for ix in await _secondary_indexes(conn, t)]
            for name, _ in indexes:
                await conn.execute(f"DROP INDEX {name}")
            for statement in await _truncates(conn, tables):
                await conn.execute(statement)

            for table in tables:
                await _load(conn, table, open_dump, report, result)

            for _, definition in indexes:
                await conn.execute(definition)
            result.indexes_rebuilt = len(indexes)
            await _readd_keys(conn, [*fks, *(restore_fks or [])], valid_in_backup)
            result.foreign_keys_readded = len(fks)
            result.foreign_keys_restored = len(restore_fks or [])
            await _after_load(conn, tables)
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, ConnectionError) as exc:
        raise StepFailed(f"the connection was lost during the reload ({type(exc).__name__}); "
                         "the server rolled the transaction back: nothing was changed") from None
    result.seconds = time.monotonic() - started
    return result


async def _lock(conn: asyncpg.Connection, tables: list[str], lock_timeout_s: float,
                blocker_conn: asyncpg.Connection | None) -> None:
    """Every table locked at once, or ``StepFailed`` naming who holds a lock."""
    names = ", ".join(qualified(t) for t in tables)
    try:
        await conn.execute(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")
    except asyncpg.LockNotAvailableError:
        who = (await describe_blockers(blocker_conn, tables) if blocker_conn
               else "another session")
        raise StepFailed(
            f"could not lock {', '.join(tables)} within {lock_timeout_s:g}s: held by "
            f"{who}. Nothing was changed; end that session or wait, then retry") from None


async def _readd_keys(conn: asyncpg.Connection, fks: list[ForeignKey],
                      valid_in_backup: Collection[tuple[str, str]]) -> None:
    for fk in fks:
        try:
            await conn.execute(f"ALTER TABLE {qualified(fk.table)} ADD CONSTRAINT "
                               f"{quote_ident(fk.name)} {readd(fk, valid_in_backup)}")
        except asyncpg.ForeignKeyViolationError as exc:
            raise StepFailed(
                f"after the reload, {fk.table} has rows whose {', '.join(fk.columns)} "
                f"point at {fk.referenced} rows that the backup does not have "
                f"({exc.detail or exc}). Nothing was changed. Roll back {fk.table} too "
                f"(add it to the tables), or fix those rows first") from None


async def _after_load(conn: asyncpg.Connection, tables: list[str]) -> None:
    """Materialized views over the tables refreshed, sequences past the loaded keys, and fresh
    statistics."""
    for mv in await dependent_matviews(conn, tables):
        await conn.execute(f"REFRESH MATERIALIZED VIEW {mv}")
    for table in tables:
        for column, sequence in await _sequences(conn, table):
            await conn.execute(
                f"SELECT setval($1::regclass, greatest((SELECT max({quote_ident(column)})"
                f" FROM {qualified(table)}), (SELECT last_value FROM "
                f"{sequence})), true)", sequence)
        await conn.execute(f"ANALYZE {qualified(table)}")


async def _load(conn: asyncpg.Connection, table: str, open_dump: OpenDump, report: Progress,
                result: ReloadResult) -> None:
    """COPY every block of the table's dump that holds its rows: one block for a plain table;
    for a partitioned one, one per leaf, named after the root (``--load-via-partition-root``,
    as the console dumps) or after the leaf (``--table-and-children``). Every block goes into
    the table itself and PostgreSQL routes each row to its partition."""
    schema, name = split_name(table)
    partitioned = await is_partitioned(conn, table)
    members = [table, *await partitions(conn, table)]
    accepted = set(members)
    for member in members:
        await conn.execute(f"ALTER TABLE {qualified(member)} DISABLE TRIGGER USER")
    found = False
    async with open_dump(table) as reader:
        stream = CopyStream(reader)
        while (header := await stream.next_block()) is not None:
            if header.qualified not in accepted:
                await stream.skip()
                continue
            found = True
            done_rows, done_bytes = result.rows.get(table, 0), result.bytes.get(table, 0)
            result.rows[table], result.bytes[table] = done_rows, done_bytes
            stream.on_bytes = functools.partial(_progress, report, table, done_bytes, done_rows)
            rows = _counting(stream.rows(), result, table)
            await _unless_lost(conn, conn.copy_to_table(
                name, schema_name=schema, columns=header.columns, source=rows, format="text",
                freeze=not partitioned))
    if not found:
        raise StepFailed(f"the backup holds no data for {table}: nothing was changed; pick a "
                         "backup set that has this table")
    for member in members:
        await conn.execute(f"ALTER TABLE {qualified(member)} ENABLE TRIGGER USER")


async def _unless_lost(conn: asyncpg.Connection, copy: Coroutine[Any, Any, str]) -> str:
    """Await a COPY, but end it when the connection is lost: asyncpg (0.29-0.32) can wait
    forever for the socket to drain when the server ends the session while the console's writes
    are backed up (a stalled server, then pg_terminate_backend). ``ConnectionError`` then, which
    the reload turns into "nothing was changed" (the server rolled the transaction back)."""
    lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_lost(_conn: object) -> None:
        if not lost.done():
            lost.set_result(None)

    conn.add_termination_listener(on_lost)
    task: asyncio.Future[str] = asyncio.ensure_future(copy)
    try:
        either: list[asyncio.Future[Any]] = [task, lost]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise ConnectionError("the server ended the session during COPY")
    finally:
        conn.remove_termination_listener(on_lost)
        lost.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=5)   # a stuck write ends on cancel; never hang


def _progress(report: Progress, table: str, bytes_before: int, rows_before: int,
              sent: int, rows: int) -> None:
    """One table's progress over all its blocks (a partitioned table's dump has several)."""
    report(table, bytes_before + sent, rows_before + rows)


async def _counting(rows: AsyncIterator[bytes], result: ReloadResult,
                    table: str) -> AsyncIterator[bytes]:
    async for chunk in rows:
        result.rows[table] = result.rows.get(table, 0) + chunk.count(b"\n")
        result.bytes[table] = result.bytes.get(table, 0) + len(chunk)
        yield chunk
