"""Is a backup set usable? Hashes against the manifest, every dump parses, it belongs to this
target; and, with a rehearsal, it really restores: into a scratch database on the same server,
compared table by table with the manifest, then dropped."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg

from app.backups.backupset import (
    BackupSet,
    FileCheck,
    against_migration,
    check_table_file,
    describe_taken,
    file_expected_rows,
    file_rows,
    migration_time,
    not_a_source,
    rows_problem,
    sha256_file,
    table_dump_name,
)
from app.backups.manifest import Manifest, check_identity, partition_contents
from app.backups.tools import restore_filtered, run_tool, server_major, tool_output
from app.capabilities import read_facts, restore_reasons
from app.catalog import TableContent, identity, qualified, quote_ident, table_content
from app.config import Config
from app.db import connect
from app.errors import BadInput, ConsoleError

_DUMPED_BY = re.compile(r"-- Dumped by pg_dump version (\d+)")


@dataclass
class Verification:
    set_id: str
    ok: bool = True
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    not_verifiable: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)

    def to_dict(self) -> dict[str, object]:
        return {"set": self.set_id, "ok": self.ok, "checked": self.checked,
                "problems": self.problems, "not_verifiable": self.not_verifiable}


async def content_as_recorded(conn: asyncpg.Connection, table: str,
                              manifest: Manifest | None) -> TableContent:
    """``table_content`` read by the columns the manifest recorded, in the backup's order: the
    same rows give the same checksum wherever a column now sits (Type 1 re-adds a dropped
    column at the end). A recorded column that is gone gives the whole row's figure (which
    then differs: the table is not as backed up)."""
    recorded = manifest.state.columns.get(table) if manifest is not None else None
    if not recorded:
        return await table_content(conn, table)
    try:
        return await table_content(conn, table, [c[0] for c in recorded])
    except asyncpg.UndefinedColumnError:
        return await table_content(conn, table)


def _sql_dump_problem(path: Path) -> str | None:
    """A plain pg_dump file starts with its header and ends with 'dump complete'."""
    with path.open("rb") as f:
        head = f.read(4096).decode(errors="replace")
        f.seek(max(0, path.stat().st_size - 4096))
        tail = f.read().decode(errors="replace")
    if "PostgreSQL database dump" not in head:
        return f"{path.name} is not a pg_dump SQL file (no header)"
    if "PostgreSQL database dump complete" not in tail:
        return f"{path.name} is truncated (no 'dump complete' line at the end)"
    return None


async def verify(cfg: Config, backup: BackupSet,
                 on_line: Callable[[str], None] = lambda _l: None,
                 migration_at: datetime | None = None) -> Verification:
    """Read-only checks of a set; never raises for a bad file: the result lists problems."""
    v = Verification(backup.id)
    await _against_migration(cfg, backup, migration_at, v)
    files = sorted(p for p in backup.path.iterdir() if p.is_file()
                   and p.suffix in (".sql", ".dump"))
    if not files:
        v.fail(f"set {backup.id} holds no dump files (.sql or .dump): it is empty")
        return v
    manifest = backup.manifest
    if manifest is None:
        v.not_verifiable.append("no manifest.json: file hashes, the row counts the tables had "
                                "and checksums cannot be checked; identity is unknown (sets made "
                                "by `rollback-console backup` carry one)")
    else:
        for name, entry in manifest.files.items():
            path = backup.path / name
            if not path.is_file():
                v.fail(f"{name} is listed in the manifest but missing")
            elif sha256_file(path) != entry.sha256:
                v.fail(f"{name}: sha256 differs from the manifest (corrupt or edited)")
            else:
                v.checked.append(f"{name}: sha256 matches the manifest")
    for path in files:
        on_line(f"parsing {path.name}")
        if path.suffix == ".dump":
            try:
                await tool_output("pg_restore", ["--list", str(path)], cfg.target.tools_dir)
                v.checked.append(f"{path.name}: pg_restore --list reads it")
            except ConsoleError as exc:
                v.fail(f"{path.name} cannot be read by pg_restore: {exc}")
        else:
            problem = await asyncio.to_thread(_sql_dump_problem, path)
            if problem:
                v.fail(problem)
            else:
                v.checked.append(f"{path.name}: complete pg_dump SQL")
    await _skew(cfg, files, v)
    if manifest is not None:
        conn = await connect(cfg.target)
        try:
            check_identity(backup.id, manifest, await identity(conn))
            v.checked.append(f"taken from this target ({manifest.state.identity.name}, system "
                             f"id {manifest.state.identity.system_identifier})")
        except BadInput as exc:
            v.fail(str(exc))
        finally:
            await conn.close()
    await _table_rows(cfg, backup, v, on_line)
    return v


def _table_files(backup: BackupSet) -> dict[str, Path]:
    """{table: its dump file} for the set's table_<name>_backup.sql files: the manifest's
    tables that have one, else read from the file names (public unless named schema.table)."""
    if backup.manifest is not None:
        found = {t: backup.path / table_dump_name(t) for t in backup.manifest.state.tables}
        return {t: p for t, p in found.items() if p.is_file()}
    out = {}
    for path in sorted(backup.path.glob("table_*_backup.sql")):
        name = path.name[len("table_"):-len("_backup.sql")].replace("%2F", "/")
        schema, dot, table = name.partition(".")
        out[f"{schema}.{table}" if dot and table else f"public.{name}"] = path
    return out


async def _table_rows(cfg: Config, backup: BackupSet, v: Verification,
                      on_line: Callable[[str], None]) -> None:
    """Each table file holds its table's rows: as many as the manifest recorded (in the same
    snapshot), or, without a manifest, some rows for a table that has rows. A `pg_dump --table`
    of a partitioned table holds none of them, and nothing else would say so before a reload."""
    tables = _table_files(backup)
    if not tables:
        return
    manifest = backup.manifest
    conn = await connect(cfg.target)
    try:
        for table, path in tables.items():
            on_line(f"counting the rows in {path.name}")
            if await conn.fetchval("SELECT to_regclass($1)", qualified(table)) is not None:
                check = await check_table_file(manifest, table, path, conn)
            elif manifest is not None:   # dropped since: the manifest alone says the count
                expected = file_expected_rows(manifest, table,
                                              table in manifest.state.own_content)
                try:
                    held, others = await file_rows(path, {table})
                except ValueError as exc:   # the file is cut
                    v.fail(f"{path.name}: {exc}")
                    continue
                check = FileCheck(held, expected, rows_problem(path.name, table, held, expected,
                                                               False, others=others))
            else:
                v.not_verifiable.append(f"{path.name}: {table} is not on the target, and the set "
                                        "has no manifest: the rows it holds are not checked")
                continue
            if check.problem:
                v.fail(check.problem)
            elif check.expected is not None:
                v.checked.append(f"{path.name}: {check.held:,} rows of {table}, as the manifest "
                                 "says")
            else:
                v.checked.append(f"{path.name}: {check.held or 0:,} rows of {table} (no count "
                                 "recorded to compare with)")
    finally:
        await conn.close()


async def _against_migration(cfg: Config, backup: BackupSet, given: datetime | None,
                             v: Verification) -> None:
    """A set taken after the migration holds the broken state: not a rollback source."""
    conn = await connect(cfg.target)
    try:
        at, source = await migration_time(conn, given or cfg.target.migration_at,
                                          backup.path, cfg.target.tools_dir)
    finally:
        await conn.close()
    timing = against_migration(backup, at)
    v.checked.append(f"taken at: {describe_taken(backup)}")
    if timing.startswith("UNKNOWN"):
        v.fail(f"{timing} ({source}): not a rollback source unless --allow-after-migration")
    elif not_a_source(timing):
        v.fail(f"taken {timing} ({source}): not a rollback source")
    elif timing:
        v.checked.append(f"taken {timing} ({source})")
    else:
        v.not_verifiable.append("the migration's time is " + (source or
                                "unknown (give --migration-time or target.migration_at)")
                                + ": the set's age against it is not checked")


async def _skew(cfg: Config, files: list[Path], v: Verification) -> None:
    """pg_dump 17+ writes lines (`SET transaction_timeout`, `\\restrict`) an older server or psql
    rejects: say so before anyone relies on the set."""
    conn = await connect(cfg.target)
    try:
        server = int(await conn.fetchval("SELECT current_setting('server_version_num')::int"))
    finally:
        await conn.close()
    for path in files:
        if path.suffix != ".sql":
            continue
        with path.open("rb") as f:
            head = f.read(4096).decode(errors="replace")
        m = _DUMPED_BY.search(head)
        if m and int(m.group(1)) >= 17 and server < 170000:
            v.not_verifiable.append(
                f"{path.name} was written by pg_dump {m.group(1)}, the server is PostgreSQL "
                f"{server // 10000}: its `SET transaction_timeout` line fails there with "
                "`psql < file`; the console's restores filter it out")


async def _cannot_restore_whole(cfg: Config) -> str:
    """Why this role cannot restore the target's whole dump ('' when it can)."""
    conn = await connect(cfg.target)
    try:
        return "; ".join(restore_reasons(await read_facts(conn)))
    finally:
        await conn.close()


async def rehearse(cfg: Config, backup: BackupSet, keep: bool = False,
                   on_line: Callable[[str], None] = lambda _l: None) -> Verification:
    """Restore the full dump into a scratch database and compare with the manifest."""
    v = Verification(backup.id)
    dump = next((backup.path / n for n in ("full_database_backup.dump",
                                           "full_database_backup.sql")
                 if (backup.path / n).is_file()), None)
    if dump is None:
        v.fail("no full dump (full_database_backup.dump or .sql) to rehearse with")
        return v
    why_not = await _cannot_restore_whole(cfg)
    if why_not:
        v.not_verifiable.append(f"{dump.name} cannot be rehearsed here: {why_not}. "
                                "A complete restore (Type 3) is refused here for the same "
                                "reason; rehearse as a superuser, or rely on the platform's "
                                "own backups for a complete restore")
        return v
    scratch = f"rollback_rehearsal_{re.sub(r'[^a-z0-9]', '_', backup.id.lower())}"[:50] \
        + f"_{secrets.token_hex(3)}"
    admin = await connect(cfg.target, database="postgres")
    try:
        await admin.execute(f"CREATE DATABASE {quote_ident(scratch)} TEMPLATE template0")
        v.checked.append(f"scratch database {scratch} created")
        try:
            if await server_major(cfg.target) < 17:
                await restore_filtered(dump, cfg.target, on_line, database=scratch)
                v.not_verifiable.append("the server is older than PostgreSQL 17: restored "
                                        "through the console's filter for SET "
                                        "transaction_timeout (psql < the file would stop)")
            elif dump.suffix == ".dump":
                await run_tool("pg_restore", ["--exit-on-error", "--jobs=2", str(dump)],
                               cfg.target, on_line, database=scratch)
            else:
                await run_tool("psql", ["--quiet", "--set=ON_ERROR_STOP=1", "--file",
                                        str(dump)], cfg.target, on_line, database=scratch)
            v.checked.append(f"{dump.name} restored into {scratch}")
            await _compare(cfg, backup, scratch, v)
        except ConsoleError as exc:
            v.fail(f"{dump.name} did not restore: {exc}")
        finally:
            if keep:
                v.checked.append(f"{scratch} kept (--keep): drop it when done")
            else:
                await admin.execute(f"DROP DATABASE {quote_ident(scratch)} WITH (FORCE)")
    finally:
        await admin.close()
    return v


async def _compare(cfg: Config, backup: BackupSet, scratch: str, v: Verification) -> None:
    if backup.manifest is None:
        v.not_verifiable.append("no manifest: the restored tables cannot be compared")
        return
    conn = await connect(cfg.target, database=scratch)
    try:
        for table, expected in backup.manifest.state.tables.items():
            try:
                got = await content_as_recorded(conn, table, backup.manifest)
            except asyncpg.UndefinedTableError:
                v.fail(f"{table} is missing after the restore")
                continue
            if (got.rows, got.checksum) == (expected.rows, expected.checksum):
                v.checked.append(f"{table}: {got.rows:,} rows, checksum equal to the manifest")
                recorded = backup.manifest.state.partitions.get(table)
                if recorded:
                    leaves = await partition_contents(conn, table)
                    differ = [leaf for leaf in sorted(set(leaves) | set(recorded))
                              if getattr(leaves.get(leaf), "checksum", None)
                              != getattr(recorded.get(leaf), "checksum", None)]
                    if differ:
                        v.fail(f"{table}: partition(s) {', '.join(differ)} differ from the "
                               "manifest after the restore")
                    else:
                        v.checked.append(f"{table}: each of its {len(leaves)} partitions equal "
                                         "to the manifest")
            else:
                same = "equal" if got.checksum == expected.checksum else "differs"
                v.fail(f"{table}: {got.rows:,} rows restored, the manifest says "
                       f"{expected.rows:,}; checksum {same}")
    finally:
        await conn.close()
