"""Schema drift between the live target and a backup set's schema, and the DDL back (Type 1).

The backup's schema is restored into a scratch database on the target's server (so both are
rendered by the same server), both catalogs are read into models (``snapshot``), and
``diff.compare`` turns the difference into an ordered, annotated list of changes. ``measure``
adds what each change would destroy, counted on the target (read-only).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from app.catalog import PLATFORM_SCHEMAS, quote_ident
from app.config import Config
from app.db import connect
from app.errors import BadInput, ConsoleError
from app.schemadiff.diff import Change, Diff, compare
from app.schemadiff.snapshot import SchemaModel, from_json, read

if TYPE_CHECKING:
    from app.backups.backupset import BackupSet

MODEL_FILE = "schema_model.json"
_restored: dict[tuple[object, ...], SchemaModel] = {}   # backup models this process read
_versions: dict[str, int] = {}


async def _server_version(cfg: Config) -> int:
    """The server's version (models read on another version render differently)."""
    key = cfg.target.dsn.reveal()
    if key not in _versions:
        conn = await connect(cfg.target)
        try:
            _versions[key] = int(await conn.fetchval(
                "SELECT current_setting('server_version_num')::int"))
        finally:
            await conn.close()
    return _versions[key]

__all__ = ["Change", "Diff", "Drift", "backup_schema", "compare", "drift", "left_for_data",
           "measure", "read", "schema_source"]


def schema_source(backup_path: Path) -> Path:
    """The set's schema: the runbook's schema_only_backup.sql, else the custom full dump."""
    for name in ("schema_only_backup.sql", "full_database_backup.dump"):
        if (backup_path / name).is_file():
            return backup_path / name
    raise BadInput(f"backup {backup_path.name} holds no schema to compare with "
                   "(schema_only_backup.sql or full_database_backup.dump)")


@asynccontextmanager
async def scratch_database(cfg: Config, backup: BackupSet, on_line: Callable[[str], None],
                           keep: bool = False, source: Path | None = None,
                           prefix: str = "rollback_schema") -> AsyncIterator[str]:
    """A scratch database on the target's server holding the backup's schema (or ``source``,
    a plain schema dump), no rows; dropped on the way out unless ``keep``."""
    from app.backups.tools import restore_filtered, run_tool, server_major

    source = source or schema_source(backup.path)
    label = re.sub(r"[^a-z0-9]", "_", str(backup.id).lower())
    name = f"{prefix}_{label}"[:50] + f"_{secrets.token_hex(3)}"
    admin = await connect(cfg.target, database="postgres")
    try:
        try:
            await admin.execute(f"CREATE DATABASE {quote_ident(name)} TEMPLATE template0")
        except asyncpg.InsufficientPrivilegeError:
            raise BadInput(f"the role in the target's DSN cannot create databases: Type 1 "
                           f"restores {source.name} into a scratch database to compare "
                           "schemas; grant CREATEDB or use a role that has it") from None
        on_line(f"restoring {source.name} into scratch database {name}")
        try:
            if await server_major(cfg.target) < 17:
                await restore_filtered(source, cfg.target, on_line, database=name,
                                       schema_only=True)
            elif source.suffix == ".dump":
                await run_tool("pg_restore", ["--schema-only", "--exit-on-error", str(source)],
                               cfg.target, on_line, database=name)
            else:
                await run_tool("psql", ["--quiet", "--no-psqlrc", "--set=ON_ERROR_STOP=1",
                                        "--single-transaction", "--output=/dev/null",
                                        "--file", str(source)],
                               cfg.target, on_line, database=name)
        except ConsoleError as exc:
            await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
            raise BadInput(f"{source.name} of backup {backup.id} does not restore "
                           f"into a scratch database, so it cannot be compared: {exc}") from None
        yield name
    finally:
        try:
            if not keep:
                await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        finally:
            await admin.close()


async def backup_schema(cfg: Config, backup: BackupSet, exclude: tuple[str, ...],
                        on_line: Callable[[str], None] = lambda _l: None) -> SchemaModel:
    """The backup's schema as a model. A set made by the console keeps the model it read
    inside the backup's own snapshot (schema_model.json, hashed in the manifest); otherwise
    the schema file is restored into a scratch database, read, and the database dropped (once
    per process and file)."""
    from app.backups.backupset import check_file

    version = await _server_version(cfg)
    kept = backup.path / MODEL_FILE
    if kept.is_file():
        stat = kept.stat()
        key: tuple[object, ...] = (str(kept), stat.st_mtime_ns, stat.st_size, exclude, version)
        if key not in _restored and check_file(backup, kept) is True:
            model = from_json(kept.read_text(encoding="utf-8"), exclude, version)
            if model is not None:
                _restored[key] = model
        if key in _restored:
            on_line(f"backup schema: {MODEL_FILE} (read inside the backup's snapshot)")
            return _restored[key]
    source = schema_source(backup.path)
    stat = source.stat()
    key = (str(source), stat.st_mtime_ns, stat.st_size, exclude, version)
    if key not in _restored:
        async with scratch_database(cfg, backup, on_line) as name:
            scratch = await connect(cfg.target, database=name)
            try:
                _restored[key] = await read(scratch, exclude)
            finally:
                await scratch.close()
    return _restored[key]


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


async def rehearse(cfg: Config, backup: BackupSet, diff: Diff, workdir: Path,
                   on_line: Callable[[str], None] = lambda _l: None) -> list[str]:
    """Apply the plan to a scratch copy of the target's schema (pg_dump --schema-only of the
    target, no rows), in one transaction, and compare with the backup's schema: the problems
    found, none when the plan takes the copy to zero drift. The target is only read."""
    from app.backups.tools import run_tool

    exclude = cfg.target.platform_schemas
    want = await backup_schema(cfg, backup, exclude, on_line)
    copy = workdir / "target-schema.sql"
    await run_tool("pg_dump", ["--schema-only", f"--file={copy}"], cfg.target, on_line)
    problems: list[str] = []
    async with scratch_database(cfg, backup, on_line, source=copy,
                                prefix="rollback_rehearsal") as name:
        conn = await connect(cfg.target, database=name)
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL check_function_bodies = off")
                for change in diff.changes:
                    for statement in change.sql:
                        try:
                            await conn.execute(statement)
                        except asyncpg.PostgresError as exc:
                            raise _Stop(f"{change.kind} {change.object}: {statement}: "
                                        f"{exc}") from None
                left = compare(await read(conn, exclude), want)
                problems += [c.describe() for c in left.changes
                             if not left_for_data(c, diff)] + left.unsupported
        except _Stop as exc:
            problems.append(str(exc))
        finally:
            await conn.close()
    copy.unlink(missing_ok=True)
    return problems


def left_for_data(left: Change, plan: Diff) -> bool:
    """A difference still there after ``plan`` that the plan named as left for a data rollback:
    a key it added NOT VALID on a table whose parent is empty until Type 2 reloads it shows up
    again as "validate foreign key" on the same object."""
    return any(c.residual and c.object == left.object for c in plan.changes)


class _Stop(Exception):
    pass
