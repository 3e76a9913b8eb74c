"""Scratch databases on the target's server: a backup's schema restored into one (no rows) and
read as a model, and a schema plan rehearsed on a scratch copy of the target's schema. Both sides
are rendered by the same server, so a comparison sees migrations, not server versions.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from app.backups.backupset import MODEL_FILE, BackupSet, check_file, schema_source
from app.backups.tools import restore_filtered, run_tool, server_major
from app.catalog import quote_ident
from app.config import Config
from app.db import connect
from app.errors import BadInput, ConsoleError
from app.schemadiff import Diff, compare, left_for_data
from app.schemamodel import SchemaModel, from_json, read

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


@asynccontextmanager
async def scratch_database(cfg: Config, backup: BackupSet, on_line: Callable[[str], None],
                           keep: bool = False, source: Path | None = None,
                           prefix: str = "rollback_schema") -> AsyncIterator[str]:
    """A scratch database on the target's server holding the backup's schema (or ``source``,
    a plain schema dump), no rows; dropped on the way out unless ``keep``."""

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


async def rehearse(cfg: Config, backup: BackupSet, diff: Diff, workdir: Path,
                   on_line: Callable[[str], None] = lambda _l: None) -> list[str]:
    """Apply the plan to a scratch copy of the target's schema (pg_dump --schema-only of the
    target, no rows), in one transaction, and compare with the backup's schema: the problems
    found, none when the plan takes the copy to zero drift. The target is only read."""

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



class _Stop(Exception):
    pass
