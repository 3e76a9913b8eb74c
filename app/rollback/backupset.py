"""The backup set a rollback reads from, as the engine needs it: where it is, its manifest,
when it was taken. Sets follow the runbook's layout (backups/production_migration_YYYYMMDD/)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from app.catalog import identity, qualified, split_name, user_tables
from app.config import Config
from app.db import connect
from app.errors import BadInput, ConsoleError
from app.manifest import (
    DatabaseState,
    FileEntry,
    Manifest,
    capture_state,
    check_identity,
    new_manifest,
)
from app.rollback.store import store_at
from app.rollback.tools import private_dir, run_tool, write_private
from app.schemadiff import MODEL_FILE
from app.schemadiff.snapshot import read as read_schema
from app.schemadiff.snapshot import to_json as model_to_json

_COMPLETED = re.compile(r"Backup completed[^0-9]*(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?)")


@dataclass
class BackupSet:
    id: str
    path: Path
    manifest: Manifest | None
    taken_at: datetime | None


def file_part(name: str) -> str:
    """A table or schema name as part of a file name: ``/``, the one character a name may hold
    that a file name cannot, is written ``%2F``."""
    return name.replace("/", "%2F")


def table_dump_name(table: str) -> str:
    """The runbook's table_<name>_backup.sql (public tables), table_<schema>.<name>_backup.sql
    (the others)."""
    schema, name = split_name(table)
    return f"table_{file_part(name)}_backup.sql" if schema == "public" else \
        f"table_{file_part(schema)}.{file_part(name)}_backup.sql"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(backup: BackupSet, path: Path) -> bool | None:
    """True/False: the file's sha256 matches/differs from the manifest; None: nothing to check."""
    entry = backup.manifest.files.get(path.name) if backup.manifest is not None else None
    if entry is None:
        return None
    return sha256_file(path) == entry.sha256


async def check_target(backup: BackupSet, conn: asyncpg.Connection) -> None:
    """Refuse a set taken from another database (compared by name and system identifier)."""
    if backup.manifest is not None:
        check_identity(backup.id, backup.manifest, await identity(conn))


MIGRATIONS_TABLE = "supabase_migrations.schema_migrations"


async def migration_time(conn: asyncpg.Connection, configured: datetime | None = None
                         ) -> tuple[datetime | None, str]:
    """When the bad migration ran, and where that comes from: the given time (option or
    target.migration_at), else the newest version in Supabase's migrations table (its
    versions are YYYYMMDDHHMMSS, UTC); (None, "") when unknown."""
    if configured is not None:
        return configured, "given"
    if await conn.fetchval("SELECT to_regclass($1)", MIGRATIONS_TABLE) is None:
        return None, ""
    version = await conn.fetchval(f"SELECT max(version) FROM {MIGRATIONS_TABLE} "
                                  "WHERE version ~ '^[0-9]{14}$'")
    if not version:
        return None, ""
    return datetime.strptime(version, "%Y%m%d%H%M%S").replace(tzinfo=UTC), \
        f"{MIGRATIONS_TABLE} (version {version})"


def against_migration(backup: BackupSet, at: datetime | None) -> str:
    """The set's age against the migration, in words ('' when either time is unknown)."""
    if at is None or backup.taken_at is None:
        return ""
    hours = (at - backup.taken_at).total_seconds() / 3600
    if hours < 0:
        return f"AFTER the migration by {-hours:.1f} h: it holds the broken state"
    return f"{hours:.1f} h before the migration"


async def _dump_all(cfg: Config, work: Path, on_line: Callable[[str], None],
                    only_tables: tuple[str, ...]) -> tuple[list[str], DatabaseState, str,
                                                           list[tuple[str, list[str]]]]:
    conn = await connect(cfg.target)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            tables = await user_tables(conn)
            if only_tables:
                unknown = sorted(set(only_tables) - set(tables))
                if unknown:
                    raise BadInput(f"no such table(s) on the target: {', '.join(unknown)}")
                tables = [t for t in tables if t in only_tables]
            dumps = [("schema_only_backup.sql", ["--schema-only"])]
            dumps += [(table_dump_name(t), ["--data-only", f"--table={qualified(t)}"])
                      for t in tables]
            dumps += [("full_database_backup.dump", ["--format=custom"]),
                      ("full_database_backup.sql", [])]
            for filename, args in dumps:
                on_line(f"pg_dump {filename}")
                await run_tool("pg_dump", [*args, f"--snapshot={snapshot}",
                                           f"--file={work / filename}"], cfg.target, on_line)
            state = await capture_state(conn, tables, cfg.target.critical_queries)
            model = await read_schema(conn, cfg.target.platform_schemas)
            version = int(await conn.fetchval("SELECT current_setting('server_version_num')"))
            write_private(work / MODEL_FILE,
                          model_to_json(model, cfg.target.platform_schemas, version))
            dumps.append((MODEL_FILE, []))
    finally:
        await conn.close()
    return tables, state, str(snapshot), dumps


def _taken_at(path: Path, manifest: Manifest | None) -> datetime | None:
    if manifest is not None:
        return datetime.fromisoformat(manifest.state.captured_at)
    info = path / "backup_info.txt"
    if info.is_file():
        m = _COMPLETED.search(info.read_text(errors="replace"))
        if m:
            stamp = datetime.fromisoformat(m.group(1).replace(" ", "T"))
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return None


def open_set(path: Path) -> BackupSet:
    manifest_path = path / "manifest.json"
    try:
        manifest = Manifest.load(manifest_path) if manifest_path.is_file() else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"backup set {path.name!r}: manifest.json cannot be read "
                       f"({type(exc).__name__}: {exc}); verify it with `rollback-console "
                       "backups --verify` or move the set aside") from None
    return BackupSet(path.name, path, manifest, _taken_at(path, manifest))


def list_sets(root: Path) -> list[BackupSet]:
    """Every set under ``root``, newest first (sets being written are skipped)."""
    store = store_at(root)
    return [open_set(store.folder(n)) for n in reversed(store.names())]


def resolve(root: Path, backup_id: str | None) -> BackupSet:
    """The set named ``backup_id`` under ``root``, or the newest one."""
    store = store_at(root)
    if not store.available():
        raise BadInput(f"the backups root {store.where} does not exist: set "
                       "target.backups_root")
    names = store.names()
    if backup_id is None:
        if not names:
            raise BadInput(f"no backup sets under {store.where}: make one with "
                           "`rollback-console backup`, or pass --backup")
        return open_set(store.folder(names[-1]))
    for name in names:
        if name == backup_id or name.endswith(backup_id):
            return open_set(store.folder(name))
    known = ", ".join(names[-5:]) or "none"
    raise BadInput(f"no backup set {backup_id!r} under {store.where} (newest: {known})")


async def create_set(cfg: Config, label: str = "",
                     on_line: Callable[[str], None] = lambda _line: None,
                     only_tables: tuple[str, ...] = ()) -> BackupSet:
    """Take a backup set in the runbook's layout, every part from ONE snapshot, with a manifest.

    Written into a hidden folder and renamed when complete, so a half-written set is never
    listed; a failure removes it. The set's folder is 0700 and its files 0600: they hold every
    row. ``only_tables`` limits the per-table dumps (the schema and
    full dumps always cover the whole database)."""
    root = cfg.target.backups_root
    store = store_at(root)
    now = datetime.now(UTC)
    name = f"production_migration_{now:%Y%m%d}" + (f"_{label}" if label else "")
    if name in store.names():
        name += f"_{now:%H%M%S}"
    if not root.exists():
        private_dir(root)
    work = private_dir(store.staging(name))   # dumps hold every row: the owner's eyes only
    try:
        tables, state, snapshot, dumps = await _dump_all(cfg, work, on_line, only_tables)
    except BaseException as exc:
        store.discard(work)
        text = str(exc)
        if "permission denied" in text:
            raise BadInput(f"the target's role may not read everything a backup needs ({text}); "
                           "connect as a role that can (superuser, or pg_read_all_data plus "
                           "the schema owner's rights)") from None
        if "No space left" in text:
            raise ConsoleError(f"no space left at {root} while writing the set; nothing was "
                               "kept: free space or point target.backups_root elsewhere") \
                from None
        raise
    manifest = new_manifest(label or name, state, snapshot)
    for filename, _ in dumps:
        path = work / filename
        manifest.files[filename] = FileEntry(sha256_file(path), path.stat().st_size)
    write_private(work / "manifest.json", manifest.to_json())
    write_private(work / "backup_info.txt",
        f"Database: {state.identity.name}\nServer: PostgreSQL {state.identity.server_version}\n"
        f"Tables: {', '.join(tables)}\nBackup completed: {state.captured_at}\n")
    return open_set(store.publish(work, name))
