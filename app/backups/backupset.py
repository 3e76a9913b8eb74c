"""The backup set a rollback reads from, as the engine needs it: where it is, its manifest,
when it was taken. Sets follow the runbook's layout (backups/production_migration_YYYYMMDD/)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from app.backups.copydata import CopyStream, FileReader, count_file_rows
from app.backups.manifest import (
    Manifest,
    check_identity,
    inheritance_parents,
)
from app.backups.store import store_at
from app.backups.taken import MIGRATIONS_TABLE, recorded_migrations, taken_at
from app.backups.tools import tool_output
from app.catalog import identity, one_row, qualified, split_name
from app.errors import BadInput
from app.paths import file_part

if TYPE_CHECKING:
    from app.backups.source import RestoreSource

MODEL_FILE = "schema_model.json"   # the schema model read inside the backup's snapshot


def schema_source(backup_path: Path) -> Path:
    """The set's schema: the runbook's schema_only_backup.sql, else the custom full dump."""
    for name in ("schema_only_backup.sql", "full_database_backup.dump"):
        if (backup_path / name).is_file():
            return backup_path / name
    raise BadInput(f"backup {backup_path.name} holds no schema to compare with "
                   "(schema_only_backup.sql or full_database_backup.dump)")


FULL_DUMP_NAMES = ("full_database_backup.dump", "full_database_backup.custom",
                   "full_database_backup.sql")


@dataclass
class BackupSet:
    """A backup set folder: the ``RestoreSource`` (app.backups.source) every rollback type
    reads today. Only this class (and the tools that make and verify sets) knows the folder's
    layout."""

    id: str
    path: Path
    manifest: Manifest | None
    taken_at: datetime | None
    taken_note: str = ""   # where taken_at comes from, when not the set's own record

    kind = "backup_set"

    def tables(self) -> dict[str, int | None]:
        """The manifest's tables and rows, else the tables named by the dump files."""
        if self.manifest is not None:
            return {t: c.rows for t, c in self.manifest.state.tables.items()}
        out: dict[str, int | None] = {}
        for path in sorted(self.path.glob("table_*_backup.sql")):
            name = path.name[len("table_"):-len("_backup.sql")].replace("%2F", "/")
            schema, dot, table = name.partition(".")
            out[f"{schema}.{table}" if dot and table else f"public.{name}"] = None
        return out

    @property
    def point_in_time(self) -> dict[str, Any] | None:
        """The moment a set captured from an aside cluster holds (app.pitr.source), exact."""
        return self.manifest.point_in_time if self.manifest is not None else None

    def table_path(self, table: str) -> Path:
        return table_file(self.path, table)

    async def table_rows(self, table: str) -> AsyncIterator[bytes]:
        """The table's COPY rows from its dump file, in chunks (the file read in a thread)."""
        path = self.table_path(table)
        if not path.is_file():
            raise BadInput(f"backup {self.id} has no dump of {table} ({path.name})")
        reader = FileReader(path)
        try:
            stream = CopyStream(reader)
            wanted = ".".join(split_name(table))
            while (header := await stream.next_block()) is not None:
                async for data in stream.rows():
                    if header.qualified == wanted:
                        yield data
        finally:
            reader.close()

    def database_dump(self) -> Path | None:
        """The set's full dump: custom format when there is one (parallel restore), else SQL."""
        return next((self.path / n for n in FULL_DUMP_NAMES if (self.path / n).is_file()), None)

    async def verify(self) -> list[str]:
        """Each file the manifest lists, missing or not matching its sha256 (read in a thread);
        no manifest: nothing can be checked, and that is said."""
        import asyncio

        if self.manifest is None:
            return [f"backup {self.id} has no manifest: its files cannot be verified"]
        problems = []
        for name in sorted(self.manifest.files):
            path = self.path / name
            if not path.is_file():
                problems.append(f"{name} is missing")
            elif await asyncio.to_thread(check_file, self, path) is False:
                problems.append(f"{name} does not match its manifest (sha256 differs)")
        return problems

    def journal_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"kind": self.kind, "id": self.id, "path": str(self.path),
                  "taken_at": self.taken_at.isoformat() if self.taken_at else None,
                  "taken_note": self.taken_note}
        if self.point_in_time is not None:
            record["point_in_time"] = self.point_in_time   # the moment restored aside
        return record


def describe_taken(backup: RestoreSource) -> str:
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


def table_file(backup_path: Path, table: str) -> Path:
    """The runbook's name: table_<name>_backup.sql (public tables) or table_<schema>.<name>."""
    schema, name = split_name(table)
    plain = backup_path / table_dump_name(f"public.{name}")
    qualified_file = backup_path / table_dump_name(table)
    return plain if schema == "public" or not qualified_file.exists() else qualified_file


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


async def migration_time(conn: asyncpg.Connection, configured: datetime | None = None,
                         set_path: Path | None = None, tools_dir: Path | None = None,
                         ) -> tuple[datetime | None, str]:
    """When the bad migration ran, and where that comes from: the given time (option or
    target.migration_at), else the newest version in Supabase's migrations table (its
    versions are YYYYMMDDHHMMSS, UTC) when the set (its folder ``set_path``) is older than
    it: a set whose dump holds that version too was taken after every recorded migration,
    so the bad one (since the set) is not recorded there and the table cannot date it.
    (None, why or "") when unknown."""
    if configured is not None:
        return configured, "given"
    if await conn.fetchval("SELECT to_regclass($1)", MIGRATIONS_TABLE) is None:
        return None, ""
    version = await conn.fetchval(f"SELECT max(version) FROM {MIGRATIONS_TABLE} "
                                  "WHERE version ~ '^[0-9]{14}$'")
    if not version:
        return None, ""
    in_set = await recorded_migrations(set_path, tools_dir) if set_path is not None else None
    if in_set is not None and version in in_set:
        return None, (f"unknown: the newest version in {MIGRATIONS_TABLE} ({version}) is in "
                      "the set too, so the bad migration is not recorded there; give its "
                      "time with --migration-time or target.migration_at")
    return datetime.strptime(version, "%Y%m%d%H%M%S").replace(tzinfo=UTC), \
        f"{MIGRATIONS_TABLE} (version {version})"


def against_migration(backup: RestoreSource, at: datetime | None) -> str:
    """The set's age against the migration, in words ('' when the migration's time is
    unknown). Starts with AFTER for a set taken after it, UNKNOWN for a set whose own time is
    unknown: either may hold the broken state (``not_a_source``)."""
    if at is None:
        return ""
    if backup.taken_at is None:
        return ("UNKNOWN: when the set was taken is not known"
                + (f" ({backup.taken_note})" if backup.taken_note else "")
                + ", so it may hold the broken state")
    seconds = (at - backup.taken_at).total_seconds()
    exact = getattr(backup, "point_in_time", None) is not None   # its note is on its own line
    note = f" (its time is {backup.taken_note})" if backup.taken_note and not exact else ""
    if seconds < 0:
        return f"AFTER the migration by {span(-seconds)}{note}: it holds the broken state"
    return f"{span(seconds)} before the migration{note}"


def span(seconds: float) -> str:
    """A duration in the unit a reader takes in at once: 12 s, 4.5 min, 3.2 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def not_a_source(timing: str) -> bool:
    """``against_migration``'s words for a set that must not be a rollback source unless the
    operator says so (--allow-after-migration)."""
    return timing.startswith(("AFTER", "UNKNOWN"))


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


def open_set(path: Path) -> BackupSet:
    manifest_path = path / "manifest.json"
    try:
        manifest = Manifest.load(manifest_path) if manifest_path.is_file() else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"backup set {path.name!r}: manifest.json cannot be read "
                       f"({type(exc).__name__}: {exc}); verify it with `rollback-console "
                       "backups --verify` or move the set aside") from None
    taken, note = taken_at(path, manifest)
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
