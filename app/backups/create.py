"""Taking a backup set: every dump from ONE exported snapshot, the row counts checked against
the dump files, the schema model and a manifest written, the row indexes built, and the folder
published only when whole."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.backups.backupset import (
    MODEL_FILE,
    BackupSet,
    dumps_children,
    file_rows,
    open_set,
    rows_problem,
    sha256_file,
    table_dump_args,
    table_dump_name,
)
from app.backups.manifest import DatabaseState, FileEntry, capture_state, new_manifest
from app.backups.store import store_at
from app.backups.tools import private_dir, run_tool, write_private
from app.catalog import user_tables
from app.config import Config
from app.db import connect
from app.errors import BadInput, ConsoleError
from app.schemamodel import read as read_schema
from app.schemamodel import to_json as model_to_json


async def create_set(cfg: Config, label: str = "",
                     on_line: Callable[[str], None] = lambda _line: None,
                     only_tables: tuple[str, ...] = (), full: bool = True,
                     point_in_time: dict[str, Any] | None = None) -> BackupSet:
    """Take a backup set in the runbook's layout, every part from ONE snapshot, with a manifest.

    Written into a hidden folder and renamed when complete, so a half-written set is never
    listed; a failure removes it. The set's folder is 0700 and its files 0600: they hold every
    row. ``only_tables`` limits the per-table dumps (the schema dump always covers the whole
    database); ``full`` False leaves out the whole-database dumps (a set only a Type 1 or 2
    reads). ``point_in_time``: the set is captured from a cluster restored aside to that
    moment (app.pitr.source), recorded in the manifest."""
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
        tables, state, snapshot, dumps = await _dump_all(cfg, work, on_line, only_tables, full)
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
    if point_in_time is not None and point_in_time.get("at"):
        state.captured_at = str(point_in_time["at"])
    manifest = new_manifest(label or name, state, snapshot)
    manifest.point_in_time = point_in_time
    for filename, _ in dumps:
        path = work / filename
        manifest.files[filename] = FileEntry(sha256_file(path), path.stat().st_size)
    write_private(work / "manifest.json", manifest.to_json())
    write_private(work / "backup_info.txt",
        f"Database: {state.identity.name}\nServer: PostgreSQL {state.identity.server_version}\n"
        f"Tables: {', '.join(tables)}\nBackup completed: {state.captured_at}\n")
    await _index_rows(cfg, work, tables, on_line)
    return open_set(store.publish(work, name))


async def _index_rows(cfg: Config, work: Path, tables: list[str],
                      on_line: Callable[[str], None]) -> None:
    """The row indexes the first assessment compares with, built now rather than at 3 a.m.;
    a set without them is still whole (assess builds what is missing), so a failure here is a
    warning, not a lost backup."""
    from app import rowdiff

    on_line("indexing the tables' rows for row-level evidence")
    conn = await connect(cfg.target)
    try:
        await rowdiff.prebuild(conn, work, {t: work / table_dump_name(t) for t in tables
                                            if (work / table_dump_name(t)).is_file()})
    except Exception as exc:   # any failure: the set is whole without its indexes
        on_line(f"warning: row indexes not built now ({type(exc).__name__}: {exc}); the "
                "first assessment builds them")
    finally:
        await conn.close()


async def _dump_all(cfg: Config, work: Path, on_line: Callable[[str], None],
                    only_tables: tuple[str, ...], full: bool = True,
                    ) -> tuple[list[str], DatabaseState, str, list[tuple[str, list[str]]]]:
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
            partitioned = {r["t"]: r["members"] for r in await conn.fetch(
                "SELECT n.nspname || '.' || c.relname AS t, ARRAY(SELECT pn.nspname || '.' || "
                "pc.relname FROM pg_partition_tree(c.oid) p JOIN pg_class pc ON pc.oid = p.relid "
                "JOIN pg_namespace pn ON pn.oid = pc.relnamespace) AS members FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'p'")}
            children = await dumps_children(cfg.target.tools_dir)
            dumps = [("schema_only_backup.sql", ["--schema-only"])]
            dumps += [(table_dump_name(t), [
                "--data-only", *table_dump_args(
                    t, t in partitioned, None if children else
                    sorted(set(partitioned.get(t, [])) - {t}))]) for t in tables]
            if full:
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
            for table in tables:   # every row in its file, or no set at all
                on_line(f"counting the rows in {table_dump_name(table)}")
                members = set(partitioned.get(table, [table])) | {table}
                try:
                    held, others = await file_rows(work / table_dump_name(table), members)
                except ValueError as exc:   # pg_dump wrote a cut file (a full disk, say)
                    raise ConsoleError(f"the backup is not kept: {table_dump_name(table)}: "
                                       f"{exc}") from None
                problem = rows_problem(table_dump_name(table), table, held,
                                       (state.own_content.get(table)
                                        or state.tables[table]).rows,
                                       table in partitioned, others=others)
                if problem:
                    raise ConsoleError(f"the backup is not kept: {problem}. The dump does not "
                                       "hold the rows the snapshot had; report this")
    finally:
        await conn.close()
    return tables, state, str(snapshot), dumps
