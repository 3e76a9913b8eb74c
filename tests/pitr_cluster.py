"""A real archiving PostgreSQL for point-in-time tests (not a fixture; tests import it):
the demo database loaded, WAL archived by archive_command, one base backup taken, and a
rollback.toml with a ``[pitr]`` section for it.

    cluster = start_pitr_cluster(tmp_path_factory.mktemp("pitr"))
    ... writes ...; lsn = cluster.switch_wal()   # the WAL so far is in the archive
    cluster.stop()
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from app.sandbox.demo_data import DemoFacts, load_demo
from app.sandbox.manager import write_config, write_secrets
from app.sandbox.server import PgServer, chown_tree

DATABASE = "tea_school"
APP_URL = "http://127.0.0.1:9"      # no demo app: tests that need one start it themselves


@dataclass
class PitrCluster:
    """An archiving server and everything a ``[pitr] engine = "native"`` config names."""

    root: Path
    server: PgServer
    archive_dir: Path
    base_dir: Path
    config: Path              # rollback.toml (secrets in root/console/secrets)
    database: str
    facts: DemoFacts

    @property
    def dsn(self) -> str:
        return self.server.dsn(self.database)

    async def connect(self, database: str | None = None) -> asyncpg.Connection:
        return await asyncpg.connect(self.server.dsn(database or self.database))

    def sql(self, query: str, database: str | None = None) -> object:
        """One value from ``query`` (for tests outside an event loop)."""
        async def go() -> object:
            conn = await self.connect(database)
            try:
                return await conn.fetchval(query)
            finally:
                await conn.close()
        return asyncio.run(go())

    def execute(self, statements: str, database: str | None = None) -> None:
        """Run one or more statements (each commits on its own; for tests outside a loop)."""
        async def go() -> None:
            conn = await self.connect(database)
            try:
                await conn.execute(statements)
            finally:
                await conn.close()
        asyncio.run(go())

    def switch_wal(self, timeout: float = 30.0) -> str:
        """Close the current WAL segment and wait until the archive holds it; the LSN the
        switch ended at. What was committed before is then restorable."""
        async def go() -> str:
            conn = await self.connect("postgres")
            try:
                # a record first, so there is always a segment to close and archive
                await conn.execute("SELECT pg_logical_emit_message(false, 'pitr-test', '')")
                row = await conn.fetchrow("SELECT s::text AS lsn, pg_walfile_name(s) AS seg "
                                          "FROM pg_switch_wal() s")
                assert row is not None
                deadline = time.monotonic() + timeout
                # archive_command has finished with it (the file alone may be half copied)
                while (await conn.fetchval("SELECT last_archived_wal FROM pg_stat_archiver")
                       or "") < row["seg"]:
                    assert time.monotonic() < deadline, f"{row['seg']} was not archived"
                    await asyncio.sleep(0.05)
                return str(row["lsn"])
            finally:
                await conn.close()
        return asyncio.run(go())

    def base_backup(self) -> Path:
        """Another base backup (its own folder in base_dir)."""
        return self.server.base_backup(self.base_dir)

    def copy_archive(self, dest: Path) -> Path:
        """A copy of the archive the aside's server user can read (to damage safely)."""
        shutil.copytree(self.archive_dir, dest)
        chown_tree(dest, self.server.user)
        return dest

    def copy_base(self, dest: Path) -> Path:
        """A copy of the base-backup folder (to damage safely)."""
        shutil.copytree(self.base_dir, dest, symlinks=True)
        chown_tree(dest, self.server.user)
        return dest

    def stop(self) -> None:
        self.server.stop()


def start_pitr_cluster(root: Path, rows: int = 2000, seed: int = 42,
                       database: str = DATABASE) -> PitrCluster:
    """initdb with archiving into ``root/wal-archive``, start, load the demo database, take a
    base backup into ``root/base-backups`` and write ``root/console/rollback.toml``."""
    root.mkdir(parents=True, exist_ok=True)
    archive_dir, base_dir = root / "wal-archive", root / "base-backups"
    server = PgServer.create(root / "pgdata", archive_dir=archive_dir)
    server.start()
    try:
        facts = asyncio.run(_load(server, database, rows, seed))
        server.base_backup(base_dir)
        console = root / "console"
        console.mkdir(exist_ok=True)
        write_secrets(console, server.port, server.password, "no-app-token",
                      facts.test_user_password)
        (console / "backups").mkdir(exist_ok=True)
        config = write_config(console, server.port, database, APP_URL, facts,
                              pitr=(archive_dir, base_dir))
    except BaseException:
        server.stop()
        raise
    return PitrCluster(root, server, archive_dir, base_dir, config, database, facts)


async def _load(server: PgServer, database: str, rows: int, seed: int) -> DemoFacts:
    conn = await asyncpg.connect(server.dsn())
    try:
        await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(server.dsn(database))
    try:
        return await load_demo(conn, rows=rows, seed=seed)
    finally:
        await conn.close()
