"""The backup set a rollback reads from, as the engine needs it: where it is, its manifest,
when it was taken. Sets follow the runbook's layout (backups/production_migration_YYYYMMDD/)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg

from app.backups.copydata import count_file_rows
from app.backups.manifest import (
    DatabaseState,
    FileEntry,
    Manifest,
    capture_state,
    check_identity,
    inheritance_parents,
    new_manifest,
)
from app.backups.store import store_at
from app.backups.tools import private_dir, run_tool, tool_output, write_private
from app.catalog import identity, one_row, qualified, split_name, user_tables
from app.config import Config
from app.db import connect
from app.errors import BadInput, ConsoleError
from app.paths import file_part
from app.schemadiff import MODEL_FILE
from app.schemadiff.snapshot import read as read_schema
from app.schemadiff.snapshot import to_json as model_to_json

_COMPLETED = re.compile(r"^[ \t]*Backup completed(?:[ \t]+(?:at|on))?:?[ \t]*"
                        r"(?P<text>.*?)[ \t\r]*$", re.MULTILINE | re.IGNORECASE)
_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)"
                  r"\s*(Z|UTC|[+-]\d{2}:?\d{2})?$")
# what the runbook's `$(date)` writes in the C locale: "Tue Dec  1 21:01:13 UTC 2026" (the
# day padded with a space), also with a numeric zone ("+0100") or none
_DATE = re.compile(r"^(?:[A-Za-z]{3},?\s+)?(?P<mon>[A-Za-z]{3})\s+(?P<day>\d{1,2})\s+"
                   r"(?P<time>\d{1,2}:\d{2}:\d{2})\s+(?:(?P<zone>[A-Za-z]{1,6}|[+-]\d{2}:?\d{2})"
                   r"\s+)?(?P<year>\d{4})$")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_UTC_NAMES = ("UTC", "GMT", "Z", "UT")


@dataclass
class BackupSet:
    id: str
    path: Path
    manifest: Manifest | None
    taken_at: datetime | None
    taken_note: str = ""   # where taken_at comes from, when not the set's own record


def describe_taken(backup: BackupSet) -> str:
    """``2026-12-01 21:01 UTC``, with where the time comes from when it is a guess
    (``(from file times: backup_info.txt has no time)``), or ``unknown``."""
    if backup.taken_at is None:
        return "unknown" + (f" ({backup.taken_note})" if backup.taken_note else "")
    when = backup.taken_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return when + (f" ({backup.taken_note})" if backup.taken_note else "")


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
    """The set's age against the migration, in words ('' when the migration's time is
    unknown). Starts with AFTER for a set taken after it, UNKNOWN for a set whose own time is
    unknown: either may hold the broken state (``not_a_source``)."""
    if at is None:
        return ""
    if backup.taken_at is None:
        return ("UNKNOWN: when the set was taken is not known"
                + (f" ({backup.taken_note})" if backup.taken_note else "")
                + ", so it may hold the broken state")
    hours = (at - backup.taken_at).total_seconds() / 3600
    note = f" (its time is {backup.taken_note})" if backup.taken_note else ""
    if hours < 0:
        return f"AFTER the migration by {-hours:.1f} h{note}: it holds the broken state"
    return f"{hours:.1f} h before the migration{note}"


def not_a_source(timing: str) -> bool:
    """``against_migration``'s words for a set that must not be a rollback source unless the
    operator says so (--allow-after-migration)."""
    return timing.startswith(("AFTER", "UNKNOWN"))


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


def table_dump_args(table: str, partitioned: bool,
                    partitions: list[str] | None = None) -> list[str]:
    """pg_dump's selection of one table's rows. A partitioned table holds no rows itself:
    ``--table`` alone dumps none of them, so its leaves are dumped with it
    (``--table-and-children``, pg_dump 16+; for an older pg_dump, ``partitions`` names each
    one), each block loading via the root (``--load-via-partition-root``), so the file holds
    every row under the table's name."""
    if partitioned and partitions is not None:
        return [f"--table={qualified(table)}", *(f"--table={qualified(p)}" for p in partitions),
                "--load-via-partition-root"]
    if partitioned:
        return [f"--table-and-children={qualified(table)}", "--load-via-partition-root"]
    return [f"--table={qualified(table)}"]


async def dumps_children(tools_dir: Path | None) -> bool:
    """Whether the pg_dump in use knows ``--table-and-children`` (16 and later)."""
    text = await tool_output("pg_dump", ["--version"], tools_dir)
    m = re.search(r"(\d+)(?:\.\d+)?", text.split(")")[-1])
    return m is not None and int(m.group(1)) >= 16


async def table_selection(conn: asyncpg.Connection, table: str, children: bool) -> list[str]:
    """``table_dump_args`` for a table on the connected database; ``children``: pg_dump knows
    ``--table-and-children`` (else a partitioned table's partitions are named one by one)."""
    partitioned = bool(await conn.fetchval(
        "SELECT relkind = 'p' FROM pg_class WHERE oid = $1::regclass", qualified(table)))
    named = None
    if partitioned and not children:
        named = sorted(await table_members(conn, table) - {table})
    return table_dump_args(table, partitioned, named)


async def file_rows(path: Path, members: set[str]) -> tuple[int | None, dict[str, int]]:
    """The rows a table's dump holds: the data lines of its COPY blocks that name the table or
    one of its partitions (``members``), None when the file has no block for any of them; and
    the rows of blocks naming anything else ({name: rows}), which a reload leaves out."""
    counts = await count_file_rows(path)
    found = [n for name, n in counts.items() if name in members]
    others = {name: n for name, n in counts.items() if name not in members}
    return (sum(found) if found else None), others


def _no_rows_hint(partitioned: bool) -> str:
    return (" (it is partitioned: `pg_dump --table` of a partitioned table dumps none of its "
            "partitions' rows; dump it with --table-and-children=<table> "
            "--load-via-partition-root, or take a set with `rollback-console backup`)"
            if partitioned else "")


def rows_problem(name: str, table: str, held: int | None, expected: int | None,
                 partitioned: bool, now: int | None = None,
                 others: dict[str, int] | None = None) -> str | None:
    """What is wrong with the dump file ``name`` as ``table``'s rows, or None: it holds
    ``held`` rows of it (None: no block at all); ``expected`` is the manifest's count, taken in
    the dump's snapshot; without one, no rows while the table has ``now`` rows is wrong too.
    ``others``: rows in blocks of tables that are neither the table nor its partitions now (a
    partition dropped or detached since the backup): a reload would leave them out."""
    if others:
        listed = ", ".join(f"{n:,} of {t}" for t, n in sorted(others.items()))
        return (f"{name} holds rows ({listed}) of tables that are not {table} or one of its "
                "partitions on the target (dropped or detached since the backup?): a reload "
                "would leave them out")
    if held is None:
        said = (f", the manifest says {expected:,}" if expected is not None else
                f", and the table has {now:,} rows now" if now else "")
        return f"{name} holds no rows of {table}{said}" + _no_rows_hint(partitioned)
    if expected is not None and held != expected:
        return (f"{name} holds {held:,} rows of {table}, the manifest says {expected:,}"
                + (_no_rows_hint(partitioned) if held == 0 else ""))
    if expected is None and held == 0 and now:
        return (f"{name} holds 0 rows of {table}, which has {now:,} rows now, and the set "
                "has no manifest to say it was empty then" + _no_rows_hint(partitioned))
    return None


async def table_members(conn: asyncpg.Connection, table: str) -> set[str]:
    """The table and, when it is partitioned, every partition below it (schema.name)."""
    rows = await conn.fetch(
        "SELECT n.nspname || '.' || c.relname AS t FROM pg_partition_tree($1::regclass) p "
        "JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace",
        qualified(table))
    return {r["t"] for r in rows} | {table}


@dataclass
class FileCheck:
    """A table file's rows against what it should hold."""

    held: int | None         # rows of the table in the file (None: no block of it)
    expected: int | None     # what the manifest recorded for the file (None: nothing to say)
    problem: str | None


def file_expected_rows(manifest: Manifest | None, table: str, inherited: bool) -> int | None:
    """The rows the manifest says a table's dump holds: its count, or for a table with
    inheritance children (whose count includes theirs) its own rows, when recorded."""
    if manifest is None or table not in manifest.state.tables:
        return None
    if inherited:
        own = manifest.state.own_content.get(table)
        return own.rows if own is not None else None
    return manifest.state.tables[table].rows


async def check_table_file(manifest: Manifest | None, table: str, path: Path,
                           conn: asyncpg.Connection) -> FileCheck:
    """``rows_problem`` of a set's dump of a table that is on the connected target (which
    says the table's partitions, its inheritance children and, for a set without a manifest,
    how many rows it has now)."""
    members = await table_members(conn, table)
    partitioned = len(members) > 1 or bool(await conn.fetchval(
        "SELECT relkind = 'p' FROM pg_class WHERE oid = $1::regclass", qualified(table)))
    inherited = bool(await inheritance_parents(conn, [table]))
    expected = file_expected_rows(manifest, table, inherited)
    try:
        held, others = await file_rows(path, members)
    except ValueError as exc:   # a cut file: "the dump ends inside a COPY block"
        return FileCheck(None, expected, f"{path.name}: {exc}; use another set")
    now = None
    if expected is None and not held:   # a dump holds a table's own rows (COPY, not SELECT)
        now = int((await one_row(conn, f"SELECT count(*) AS n FROM "
                                       f"{'' if partitioned else 'ONLY '}{qualified(table)}"
                                 ))["n"])
    return FileCheck(held, expected,
                     rows_problem(path.name, table, held, expected, partitioned, now, others))


async def dump_problem(backup: BackupSet, table: str, path: Path,
                       conn: asyncpg.Connection) -> str | None:
    """What is wrong with ``path`` as the set's dump of ``table`` (see ``rows_problem``)."""
    return (await check_table_file(backup.manifest, table, path, conn)).problem


def _zone(text: str | None) -> timezone | None:
    """UTC for no zone, UTC/GMT/Z, or a numeric offset; None for a zone name that is not
    unique worldwide (CST, IST, ...): the console does not guess."""
    if not text or text.upper() in _UTC_NAMES:
        return UTC
    m = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", text)
    if m is None:
        return None
    minutes = int(m.group(2)) * 60 + int(m.group(3))
    return timezone(timedelta(minutes=-minutes if m.group(1) == "-" else minutes))


def parse_completed(text: str) -> datetime | str:
    """The time of a ``Backup completed:`` line: ISO (``2026-11-24 02:00:00``, UTC unless it
    says otherwise) or what the runbook's ``$(date)`` writes (``Tue Dec  1 21:01:13 UTC
    2026``). Returns why not, when it cannot be read."""
    text = " ".join(text.split())
    if not text:
        return "its 'Backup completed' line has no time"
    iso, date = _ISO.match(text), _DATE.match(text)
    try:
        if iso is not None:
            zone_text = iso.group(3)
            stamp = datetime.fromisoformat(f"{iso.group(1)}T{iso.group(2)}")
        elif date is not None and date.group("mon").lower() in _MONTHS:
            zone_text = date.group("zone")
            hour, minute, second = (int(x) for x in date.group("time").split(":"))
            stamp = datetime(int(date.group("year")),
                             _MONTHS.index(date.group("mon").lower()) + 1,
                             int(date.group("day")), hour, minute, second)
        else:
            return f"its 'Backup completed' line is not a time the console reads ({text!r})"
    except ValueError:
        return f"its 'Backup completed' line is not a valid time ({text!r})"
    zone = _zone(zone_text)
    if zone is None:
        return (f"its time {text!r} is in zone {zone_text}, which names no single offset "
                "(write it with `date -u`)")
    return stamp.replace(tzinfo=zone).astimezone(UTC)


def _taken_at(path: Path, manifest: Manifest | None) -> tuple[datetime | None, str]:
    """When the set was taken and, when that is not the set's own record, where the time comes
    from: the manifest, else backup_info.txt's 'Backup completed' line, else the newest dump
    file's modification time (a copied file is newer than its dump, never older: the guess
    errs towards 'after the migration', which is refused)."""
    if manifest is not None:
        return datetime.fromisoformat(manifest.state.captured_at), ""
    info = path / "backup_info.txt"
    why = "no backup_info.txt"
    if info.is_file():
        lines = _COMPLETED.findall(info.read_text(errors="replace"))
        if not lines:
            why = "backup_info.txt has no time"
        else:
            parsed = parse_completed(lines[-1])
            if isinstance(parsed, datetime):
                return parsed, ""
            why = f"backup_info.txt: {parsed}"
    dumps = [p for p in path.iterdir() if p.is_file() and p.suffix in (".sql", ".dump")] \
        if path.is_dir() else []
    if not dumps:
        return None, f"{why}, and no dump files to date it by"
    newest = max(p.stat().st_mtime for p in dumps)
    return datetime.fromtimestamp(newest, UTC), f"from file times: {why}"


def open_set(path: Path) -> BackupSet:
    manifest_path = path / "manifest.json"
    try:
        manifest = Manifest.load(manifest_path) if manifest_path.is_file() else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"backup set {path.name!r}: manifest.json cannot be read "
                       f"({type(exc).__name__}: {exc}); verify it with `rollback-console "
                       "backups --verify` or move the set aside") from None
    taken, note = _taken_at(path, manifest)
    return BackupSet(path.name, path, manifest, taken, note)


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
