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

import asyncpg

from app.catalog import PLATFORM_SCHEMAS, quote_ident
from app.config import Config
from app.db import connect
from app.errors import BadInput, ConsoleError
from app.rollback.backupset import BackupSet
from app.schemadiff.diff import Change, Diff, compare
from app.schemadiff.snapshot import SchemaModel, read

__all__ = ["Change", "Diff", "Drift", "backup_schema", "compare", "drift", "measure", "read",
           "schema_source"]


def schema_source(backup_path: Path) -> Path:
    """The set's schema: the runbook's schema_only_backup.sql, else the custom full dump."""
    for name in ("schema_only_backup.sql", "full_database_backup.dump"):
        if (backup_path / name).is_file():
            return backup_path / name
    raise BadInput(f"backup {backup_path.name} holds no schema to compare with "
                   "(schema_only_backup.sql or full_database_backup.dump)")


@asynccontextmanager
async def scratch_database(cfg: Config, backup: BackupSet, on_line: Callable[[str], None],
                           keep: bool = False) -> AsyncIterator[str]:
    """A scratch database on the target's server holding the backup's schema (no rows); dropped
    on the way out unless ``keep``."""
    from app.rollback.tools import restore_filtered, run_tool, server_major

    source = schema_source(backup.path)
    label = re.sub(r"[^a-z0-9]", "_", str(backup.id).lower())
    name = f"rollback_schema_{label}"[:50] + f"_{secrets.token_hex(3)}"
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
    """The backup's schema as a model (restored into a scratch database, read, dropped)."""
    async with scratch_database(cfg, backup, on_line) as name:
        conn = await connect(cfg.target, database=name)
        try:
            return await read(conn, exclude)
        finally:
            await conn.close()


async def measure(conn: asyncpg.Connection, diff: Diff) -> None:
    """Count on the target what each change destroys or trips over (read-only)."""
    for change in diff.changes:
        if not change.count_sql:
            continue
        try:
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
            said = change.count_says.format(n=n)
            if change.kind.startswith("drop"):
                change.destroys = said
            else:
                change.note = f"{change.note}; {said}" if change.note else said
        if change.fails_if_count and n:
            change.blocker = change.fails_if_count.format(n=n)


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
