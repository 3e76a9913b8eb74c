"""What every check gets: a read-only pool, an HTTP client, the baseline backup set and the facts
about the role we connected as (so a check can say "this role cannot run me" instead of lying)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app import catalog
from app.backups.manifest import Manifest
from app.backups.manifest import check_identity as manifest_identity_check
from app.checks.model import Skip
from app.config import AssessSettings, Config
from app.db import create_pool

APPLICATION_NAME = "rollback-console assess"
WOULD_WRITE = "not run: would write"   # how a check that can only be made by writing says so

_read_only_checks = False


def read_only_checks(on: bool = True) -> None:
    """Process-wide (--mode assess, the console in assess mode, the `assess` command): checks
    that can only be made by writing are not run; the login probe, which makes the app record
    the test user's sign-in, says "not run: would write" instead. `validate` in live mode
    leaves this off and runs it."""
    global _read_only_checks
    _read_only_checks = on


def checks_read_only() -> bool:
    return _read_only_checks
SCHEMA_DUMP = "schema_only_backup.sql"   # the runbook's name; written by `rollback-console backup`


@dataclass(frozen=True)
class Baseline:
    """The backup set the live target is compared with."""

    set_id: str
    directory: Path
    manifest: Manifest
    indexes: dict[str, str] | None = None   # index -> schema.table, from the schema dump

    @property
    def taken_at(self) -> datetime:
        return datetime.fromisoformat(self.manifest.state.captured_at)


_INDEX = re.compile(rf"^CREATE (?:UNIQUE )?INDEX (?:CONCURRENTLY )?({catalog.SQL_IDENT}) ON "
                    rf"(?:ONLY )?({catalog.SQL_IDENT})\.({catalog.SQL_IDENT}) ", re.MULTILINE)


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def dump_indexes(sql: str) -> dict[str, str]:
    """Indexes a pg_dump schema file creates: {schema.index: schema.table}."""
    out = {}
    for m in _INDEX.finditer(sql):
        schema = _unquote(m.group(2))
        out[f"{schema}.{_unquote(m.group(1))}"] = f"{schema}.{_unquote(m.group(3))}"
    return out


@dataclass(frozen=True)
class RowSet:
    """The set whose per-table data dumps the row-level comparison reads: the baseline's, or a
    hand-made set (the runbook's ``pg_dump --data-only`` files, no manifest)."""

    set_id: str
    directory: Path
    manifest: bool

    def files(self, tables: Collection[str]) -> dict[str, Path]:
        """{table: its data dump} by the runbook's file name (``table_<name>_backup.sql``), for
        the given tables, and for dump files no such table claims, the table of their first
        COPY block (a table gone since the backup)."""
        from app.backups.backupset import table_dump_name
        from app.rowdiff import dump_table

        out = {t: self.directory / table_dump_name(t) for t in tables}
        out = {t: p for t, p in out.items() if p.is_file()}
        claimed = set(out.values())
        for path in sorted(self.directory.glob("table_*_backup.sql")):
            if path not in claimed:
                table = dump_table(path)
                if table is not None and table not in out:
                    out[table] = path
        return out


def resolve_row_set(root: Path, backup_id: str | None,
                    baseline: Baseline | None) -> RowSet | None:
    """The baseline's set; else (no set with a manifest, or ``--backup`` of a hand-made one)
    the hand-made set asked for, or the newest one."""
    from app.backups.backupset import list_sets, resolve

    if baseline is not None:
        return RowSet(baseline.set_id, baseline.directory, True)
    if not store_available(root):
        return None
    if backup_id is not None:
        chosen = resolve(root, backup_id)
    else:
        sets = list_sets(root)
        if not sets:
            return None
        chosen = sets[0]
    return RowSet(chosen.id, chosen.path, chosen.manifest is not None)


def store_available(root: Path) -> bool:
    from app.backups.store import store_at

    return store_at(root).available()


def resolve_baseline(root: Path, backup_id: str | None) -> Baseline | None:
    """The set ``backup_id`` under ``root`` when it carries a manifest, else the newest set
    that has one; None when there is none (or ``backup_id`` is a hand-made set: its data dumps
    are still compared row by row, see ``resolve_row_set``). Discovery is
    app.backups.backupset's, as for rollbacks."""
    from app.backups.backupset import list_sets, resolve

    if backup_id is not None:
        chosen = resolve(root, backup_id)
        if chosen.manifest is None:
            return None
    else:
        with_manifest = [s for s in list_sets(root) if s.manifest is not None]
        if not with_manifest:
            return None
        chosen = max(with_manifest, key=lambda s: s.manifest.state.captured_at  # type: ignore[union-attr]
                     )
    assert chosen.manifest is not None
    dump = chosen.path / SCHEMA_DUMP
    indexes = dump_indexes(dump.read_text(errors="replace")) if dump.is_file() else None
    return Baseline(chosen.id, chosen.path, chosen.manifest, indexes)


def check_identity(baseline: Baseline, ident: catalog.DatabaseIdentity) -> None:
    """Comparing a database with another database's backup would give nonsense findings."""
    manifest_identity_check(baseline.set_id, baseline.manifest, ident)


@dataclass(frozen=True)
class RoleFacts:
    name: str
    superuser: bool
    bypass_rls: bool
    member_of: frozenset[str] = field(default_factory=frozenset)

    def can_become(self, role: str) -> bool:
        return self.superuser or role in self.member_of

    @property
    def sees_all_rows(self) -> bool:
        return self.superuser or self.bypass_rls


async def role_facts(conn: asyncpg.Connection) -> RoleFacts:
    row = await conn.fetchrow(
        "SELECT current_user AS name, r.rolsuper, r.rolbypassrls, ARRAY(SELECT b.rolname "
        "FROM pg_roles b WHERE pg_has_role(current_user, b.oid, 'MEMBER')) AS member_of "
        "FROM pg_roles r WHERE r.rolname = current_user")
    assert row is not None
    return RoleFacts(row["name"], row["rolsuper"], row["rolbypassrls"],
                     frozenset(row["member_of"]))


async def open_assess_pool(config: Config, size: int) -> asyncpg.Pool:
    """Sessions that are read-only at the database level (the server refuses any write in them)
    and that give up on a lock or a slow statement instead of hanging the assessment."""
    s = config.assess
    return await create_pool(config.target, min_size=1, max_size=size, server_settings={
        "default_transaction_read_only": "on",
        "lock_timeout": f"{s.lock_timeout_ms}ms",
        "statement_timeout": f"{s.statement_timeout_ms}ms",
        "idle_in_transaction_session_timeout": "60s",
        "application_name": APPLICATION_NAME,
    })


@dataclass
class CheckContext:
    config: Config
    pool: asyncpg.Pool
    role: RoleFacts
    baseline: Baseline | None = None
    http: httpx.AsyncClient | None = None
    read_only: bool = False   # assess mode: a check that would write is not run (WOULD_WRITE)
    rows_from: RowSet | None = None   # the set whose data dumps are compared row by row
    # table -> (shared?, rows written since the backup): see share_scans
    shared_writes: dict[str, asyncio.Future[tuple[bool, dict[str, Any] | None]]] = field(
        default_factory=dict)
    # table -> is its content the backup's (checksums equal)? see share_scans
    shared_unchanged: dict[str, asyncio.Future[bool]] = field(default_factory=dict)
    # when the bad migration ran and where that comes from (see ``migration_moment``)
    _migration: tuple[datetime | None, str] | None = None

    async def migration_moment(self, conn: asyncpg.Connection) -> tuple[datetime | None, str]:
        """When the bad migration ran (target.migration_at, else Supabase's migrations table
        when the set is older than its newest version), and where that comes from; read once
        per assessment, and only when asked (a damaged table's writes after it)."""
        if self._migration is None:
            from app.backups.backupset import migration_time

            cfg = self.config.target
            try:
                self._migration = await migration_time(
                    conn, cfg.migration_at, self.baseline.directory if self.baseline else None,
                    cfg.tools_dir)
            except (OSError, RuntimeError, ValueError, asyncpg.PostgresError) as exc:
                self._migration = (None, f"unknown ({type(exc).__name__}: {exc})")
        return self._migration

    def share_scans(self, checks: Collection[str]) -> None:
        """data_integrity reads every table once; what it learns is shared instead of read
        again (at the same time, on the same cores): with writes, the rows written since the
        backup; with foreign_keys, which tables still hold exactly the backup's rows (a key
        that was valid then, between two such tables, can have no orphans now)."""
        names = set(checks)
        if "data_integrity" not in names or self.baseline is None:
            return
        loop = asyncio.get_running_loop()
        tables = self.baseline.manifest.state.tables
        if "writes" in names:
            self.shared_writes = {t: loop.create_future() for t in tables}
        if "foreign_keys" in names:
            self.shared_unchanged = {t: loop.create_future() for t in tables}

    def offer_scan(self, table: str, written: dict[str, Any] | None, unchanged: bool) -> None:
        for future, value in ((self.shared_writes.get(table), (True, written)),
                              (self.shared_unchanged.get(table), unchanged)):
            if future is not None and not future.done():
                future.set_result(value)   # type: ignore[arg-type]

    def release_scans(self) -> None:
        """data_integrity is over: the tables it did not scan (a lock, RLS, an error, a
        timeout) are read by the checks themselves, so none waits for an answer that will not
        come."""
        for writes in self.shared_writes.values():
            if not writes.done():
                writes.set_result((False, None))
        for unchanged in self.shared_unchanged.values():
            if not unchanged.done():
                unchanged.set_result(False)

    async def writes_of(self, table: str) -> tuple[bool, dict[str, Any] | None]:
        future = self.shared_writes.get(table)
        return (False, None) if future is None else await future

    async def all_unchanged(self, tables: Collection[str], deadline: float) -> bool:
        """True when data_integrity found every one of ``tables`` equal to the backup; False
        when one is not, was not compared, or no answer came by ``deadline`` (loop time)."""
        futures = [self.shared_unchanged.get(t) for t in tables]
        if not futures or any(f is None for f in futures):
            return False
        try:
            async with asyncio.timeout_at(deadline):
                return all([await asyncio.shield(f) for f in futures if f is not None])
        except TimeoutError:
            return False

    @property
    def settings(self) -> AssessSettings:
        return self.config.assess

    def need_baseline(self) -> Baseline:
        if self.baseline is None:
            raise Skip(f"no backup set with a manifest.json under {self.config.target.backups_root}"
                       ": take one with `rollback-console backup`, or pass --backup ID")
        return self.baseline

    def critical_tables(self, foreign_keys: Collection[catalog.ForeignKey] = ()) -> set[str]:
        """Tables where no deleted row is tolerated: the configured critical tables and every
        table another table's foreign key references (in the backup, or now)."""
        out = {t if "." in t else f"public.{t}" for t in self.config.target.critical_tables}
        then = self.baseline.manifest.state.foreign_keys if self.baseline else []
        out |= {fk.referenced for fk in [*then, *foreign_keys]}
        return out

    def need_http(self) -> httpx.AsyncClient:
        if self.http is None or self.config.app is None:
            raise Skip("no [app] section in the config: add app.base_url to probe the app")
        return self.http


def rls_hidden(ctx: CheckContext, table: str, rls: dict[str, bool]) -> bool:
    """True when RLS would hide rows from us: counts and scans would be wrong, not just low."""
    return rls.get(table, False) and not ctx.role.sees_all_rows
