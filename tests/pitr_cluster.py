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
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


class PitrDb:
    """One test's own copy of the demo database on an archiving cluster, and a console config
    naming it, without the app (the aside restore brings back the whole cluster, so tests in
    their own databases do not see each other's writes). Sync helpers for plain tests, async
    ones (``a``-prefixed) for tests inside an event loop (Pilot)."""

    def __init__(self, cluster: PitrCluster, folder: Path, prefix: str = "t") -> None:
        import uuid

        self.cluster = cluster
        self.name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        cluster.execute(f'CREATE DATABASE "{self.name}" TEMPLATE "{cluster.database}"',
                        "postgres")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copytree(cluster.config.parent / "secrets", folder / "secrets")
        text = cluster.config.read_text().replace(f'/{cluster.database}"', f'/{self.name}"')
        text = text[:text.index("\n[app]")] + text[text.index("\n[auth]"):]   # no app here
        (folder / "backups").mkdir()
        self.config = folder / "rollback.toml"
        self.config.write_text(text)
        self.home = folder / "home"

    @property
    def dsn(self) -> str:
        return self.cluster.server.dsn(self.name)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        from tests.helpers import cli

        return cli(self.config, self.home, *args)

    def use_pitr(self, pitr: str) -> None:
        """Another [pitr] table (a damaged copy of the archive, say)."""
        text = self.config.read_text()
        self.config.write_text(text[:text.index("\n[pitr]")] + pitr)

    async def aexecute(self, sql: str) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def execute(self, sql: str) -> None:
        asyncio.run(self.aexecute(sql))

    async def amedia(self) -> dict[int, tuple[Any, ...]]:
        """media's rows by id (the story's table)."""
        conn = await asyncpg.connect(self.dsn)
        try:
            return {r["id"]: tuple(r) for r in
                    await conn.fetch(f"SELECT {MEDIA_COLUMNS} FROM public.media")}
        finally:
            await conn.close()

    def media(self) -> dict[int, tuple[Any, ...]]:
        return asyncio.run(self.amedia())

    def contents(self) -> dict[str, str]:
        """Every user table's checksum."""
        from app.catalog import table_content, user_tables

        async def go() -> dict[str, str]:
            conn = await asyncpg.connect(self.dsn)
            try:
                return {t: (await table_content(conn, t)).checksum
                        for t in await user_tables(conn)}
            finally:
                await conn.close()
        return asyncio.run(go())


MEDIA_COLUMNS = "id, object_id, owner_id, url, mime_type, bytes, caption, created_at, updated_at"

# The repair's story (tests/test_repair.py, tests/test_repair_console.py): the migration deletes
# 5 % of media, NULLs the caption of 10 % and rewrites the mime type of 5 %; users then add
# rows, edit rows it damaged (ids 12, 22, ...: conflicts) and rows it did not touch.
REPAIR_MIGRATION = """
DELETE FROM public.media WHERE id % 20 = 1;
UPDATE public.media SET caption = NULL WHERE id % 10 = 2;
UPDATE public.media SET mime_type = 'application/octet-stream' WHERE id % 20 = 3;
"""
REPAIR_USERS = """
INSERT INTO public.media (object_id, owner_id, url, mime_type, bytes, caption)
SELECT object_id, owner_id, url || '?v=2', 'image/png', bytes + 1, 'uploaded after'
FROM public.media WHERE id % 50 = 7;
UPDATE public.media SET caption = 'edited by its owner' WHERE id % 100 IN (12, 22, 43);
UPDATE public.media SET caption = 'retitled' WHERE id % 10 = 5;
"""


def repair_expected(before: dict[int, Any], after: dict[int, Any], now: dict[int, Any],
                    take: bool = False) -> tuple[dict[int, Any], set[int], set[int]]:
    """What a repair must leave (conflicts kept as users left them, or ``take``n back), the
    conflicts, and the rows users wrote after the migration."""
    touched = {i for i in before.keys() | after.keys() if before.get(i) != after.get(i)}
    users = {i for i in now.keys() | after.keys() if now.get(i) != after.get(i)}
    conflicts = touched & users
    want = dict(now)
    for i in (touched - users) | (conflicts if take else set()):
        if i in before:
            want[i] = before[i]
        else:
            want.pop(i, None)
    return want, conflicts, users
