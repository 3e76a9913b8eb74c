"""Type 2 on the largest table: our one-transaction reload against the runbook's way
(``TRUNCATE ... CASCADE`` then ``psql < table_X_backup.sql``), on the same backup file."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from app.backups.copydata import FileReader, Reader
from app.catalog import table_content
from app.rollback.reload import reload_tables
from app.sandbox.server import bin_dir
from bench.common import Result, psql, timed

TABLE = "public.media"


async def _checksum(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return (await table_content(conn, TABLE)).checksum
    finally:
        await conn.close()


async def _invalid_constraints(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM pg_constraint WHERE NOT "
                                       "convalidated"))
    finally:
        await conn.close()


async def reload_media(dsn: str, dump: Path) -> None:
    """Our Type 2 reload of media from ``dump`` (one transaction)."""
    @asynccontextmanager
    async def open_dump(_table: str) -> AsyncIterator[Reader]:
        reader = FileReader(dump)
        try:
            yield reader
        finally:
            reader.close()

    conn = await asyncpg.connect(dsn)
    try:
        await reload_tables(conn, [TABLE], open_dump)
    finally:
        await conn.close()


def run(dsn: str, workdir: Path, runs: int) -> Result:
    dump = workdir / "table_media_backup.sql"
    subprocess.run([str(bin_dir() / "pg_dump"), "--data-only", f"--table={TABLE}",
                    f"--file={dump}", dsn], check=True)
    expected = asyncio.run(_checksum(dsn))
    ours: list[float] = []
    baseline: list[float] = []

    def corrupt() -> None:
        psql(dsn, "-c", "UPDATE public.media SET caption = 'corrupted' WHERE id % 10 = 0")

    def runbook_way() -> None:
        psql(dsn, "-c", "TRUNCATE TABLE public.media CASCADE;")
        psql(dsn, "-f", str(dump))

    for i in range(runs):
        order = [("baseline", runbook_way), ("ours", lambda: asyncio.run(reload_media(dsn, dump)))]
        if i % 2:
            order.reverse()
        for name, fn in order:
            corrupt()
            seconds = timed(fn)
            assert asyncio.run(_checksum(dsn)) == expected, f"{name} did not restore the rows"
            assert asyncio.run(_invalid_constraints(dsn)) == 0, f"{name} left invalid keys"
            (ours if name == "ours" else baseline).append(seconds)
            print(f"  partial restore run {i + 1} {name}: {seconds:.2f}s", flush=True)
    return Result("Type 2 partial restore of the largest table (media)", ours, baseline,
                  "TRUNCATE … CASCADE + psql < table_media_backup.sql", 0.35,
                  ["both end with the same content checksum as the backup and every "
                   "constraint valid (checked after every run)"])
