"""Type 2's reload on the real server: exact content back, keys valid, all or nothing when a
lock is held, keys would break, the dump lacks the table, or the connection dies mid-load."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from app.backups.copydata import FileReader, Reader
from app.catalog import table_content
from app.rollback.context import StepFailed
from app.rollback.reload import reload_tables
from app.sandbox.server import bin_dir
from tests.conftest import DemoDb


def dump_table(db: DemoDb, table: str, path: Path) -> Path:
    """The runbook's way of making table_<name>_backup.sql."""
    subprocess.run([str(bin_dir() / "pg_dump"), "--data-only", "-t", f"public.{table}",
                    "-f", str(path), db.dsn], check=True, capture_output=True)
    return path


def opener(files: dict[str, Path], wrap=None):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def open_dump(table: str) -> AsyncIterator[Reader]:
        reader = FileReader(files[table])
        try:
            yield wrap(reader) if wrap else reader
        finally:
            reader.close()
    return open_dump


async def state(conn: asyncpg.Connection, *tables: str) -> list[str]:
    return [(await table_content(conn, f"public.{t}")).checksum for t in tables]


async def structure(conn: asyncpg.Connection) -> tuple[int, int, int]:
    indexes = await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'")
    fks = await conn.fetchval("SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
                              "AND convalidated")
    triggers = await conn.fetchval("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal "
                                   "AND tgenabled = 'O'")
    return indexes, fks, triggers


async def test_reload_brings_back_exactly_the_backup(demo_db: DemoDb, conn: asyncpg.Connection,
                                                     tmp_path: Path) -> None:
    files = {t: dump_table(demo_db, t, tmp_path / f"table_{t}_backup.sql")
             for t in ("objects", "media")}
    backup = await state(conn, "objects", "media")
    shape = await structure(conn)
    # the bad migration: corrupted values, lost rows, new rows
    await conn.execute("UPDATE media SET caption = upper(caption), bytes = bytes + 1")
    await conn.execute("DELETE FROM media WHERE id % 10 = 0")
    await conn.execute("UPDATE objects SET era = 'unknown' WHERE id % 3 = 0")
    seq_before = await conn.fetchval("SELECT nextval('media_id_seq')")
    assert await state(conn, "objects", "media") != backup

    seen: list[tuple[str, int, int]] = []
    result = await reload_tables(conn, ["public.objects", "public.media"],
                                 opener({"public.objects": files["objects"],
                                         "public.media": files["media"]}),
                                 progress=lambda t, b, r: seen.append((t, b, r)))
    assert await state(conn, "objects", "media") == backup
    assert await structure(conn) == shape
    assert result.rows["public.media"] == 2000 and result.foreign_keys_readded == 3
    assert seen and seen[-1][0] == "public.media"
    assert await conn.fetchval("SELECT nextval('media_id_seq')") > seq_before  # never backwards


async def test_orphans_fail_the_whole_reload(demo_db: DemoDb, conn: asyncpg.Connection,
                                             tmp_path: Path) -> None:
    files = {"public.objects": dump_table(demo_db, "objects", tmp_path / "o.sql")}
    owner = await conn.fetchval("SELECT owner_id FROM objects LIMIT 1")
    new_id = await conn.fetchval("INSERT INTO objects (owner_id, name, kind) "
                                 "VALUES ($1, 'new', 'chawan') RETURNING id", owner)
    await conn.execute("INSERT INTO media (object_id, owner_id, url, mime_type, bytes) "
                       "VALUES ($1, $2, 'u', 'image/png', 5)", new_id, owner)
    before = await state(conn, "objects", "media")
    shape = await structure(conn)
    with pytest.raises(StepFailed, match=r"public.media has rows whose object_id point at "
                                         r"public.objects rows that the backup does not have"):
        await reload_tables(conn, ["public.objects"], opener(files))
    assert await state(conn, "objects", "media") == before
    assert await structure(conn) == shape


async def test_a_held_lock_names_the_blocker_and_changes_nothing(
        demo_db: DemoDb, conn: asyncpg.Connection, tmp_path: Path) -> None:
    files = {"public.media": dump_table(demo_db, "media", tmp_path / "m.sql")}
    await conn.execute("UPDATE media SET caption = 'x'")
    before = await state(conn, "media")
    holder = await asyncpg.connect(demo_db.dsn, server_settings={"application_name": "migrator"})
    watcher = await demo_db.connect()
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("LOCK TABLE media IN ACCESS SHARE MODE")
        with pytest.raises(StepFailed) as info:
            await reload_tables(conn, ["public.media"], opener(files), lock_timeout_s=0.5,
                                blocker_conn=watcher)
        await tx.rollback()
    finally:
        await holder.close()
        await watcher.close()
    message = str(info.value)
    assert "could not lock public.media within 0.5s" in message
    assert "migrator" in message and "Nothing was changed" in message
    assert await state(conn, "media") == before


async def test_a_table_missing_from_the_dump_changes_nothing(
        demo_db: DemoDb, conn: asyncpg.Connection, tmp_path: Path) -> None:
    files = {"public.media": dump_table(demo_db, "objects", tmp_path / "wrong.sql")}
    await conn.execute("UPDATE media SET caption = 'x'")
    before = await state(conn, "media")
    with pytest.raises(StepFailed, match=r"holds no data for public\.media"):
        await reload_tables(conn, ["public.media"], opener(files))
    assert await state(conn, "media") == before


async def test_connection_terminated_mid_load_changes_nothing(
        demo_db: DemoDb, conn: asyncpg.Connection, tmp_path: Path) -> None:
    files = {"public.media": dump_table(demo_db, "media", tmp_path / "m.sql")}
    loader = await demo_db.connect()
    await conn.execute("UPDATE media SET caption = 'after the migration'")
    before = await state(conn, "media")

    class KillsTheLoader:
        """A real fault: the server terminates the loading session once COPY has begun."""

        def __init__(self, inner: Reader):
            self.inner, self.calls = inner, 0

        async def read(self, n: int) -> bytes:
            self.calls += 1
            if self.calls == 2:
                await conn.execute("SELECT pg_terminate_backend($1)", loader.get_server_pid())
                await asyncio.sleep(0.2)
            return await self.inner.read(min(n, 4096))

    try:
        with pytest.raises(StepFailed, match="connection was lost"):
            await reload_tables(loader, ["public.media"], opener(files, KillsTheLoader))
    finally:
        await loader.close()
    assert await state(conn, "media") == before
