"""The zero-loss repair (Type 4) against a Type 2 of the same table in the same situation: media
with 5 % of its rows damaged by a migration (1 % deleted, 2 % captions NULLed, 2 % mime types
rewritten) and users' writes after it (new rows; edits, some on damaged rows). Both from the
same two captured moments (the set before the migration, the set right after it), on the same
table state; reported: the time of each and the rows of users' writes each loses (0 vs N).

The sandbox's media is left as found: the Type 2 that runs last puts back the state before."""

from __future__ import annotations

import asyncio
import shutil
from functools import partial
from pathlib import Path

import asyncpg

from app import config as config_mod
from app.backups.backupset import BackupSet
from app.backups.create import create_set
from app.backups.tools import run_tool
from app.rollback import repair
from bench.common import Result, timed
from bench.partial import reload_media

TABLE = "public.media"
MIGRATION = """
DELETE FROM public.media WHERE id % 100 = 1;
UPDATE public.media SET caption = NULL WHERE id % 100 IN (2, 3);
UPDATE public.media SET mime_type = 'application/octet-stream' WHERE id % 100 IN (4, 5);
"""
USERS = """
INSERT INTO public.media (object_id, owner_id, url, mime_type, bytes, caption)
SELECT object_id, owner_id, url || '?after', 'image/png', bytes, 'uploaded after'
FROM public.media WHERE id % 2000 = 7;
UPDATE public.media SET caption = 'edited after' WHERE id % 2000 IN (2, 9);
"""
ROW = "md5(ROW(id, object_id, owner_id, url, mime_type, bytes, caption)::text)"


async def _rows(dsn: str) -> dict[int, str]:
    conn = await asyncpg.connect(dsn)
    try:
        return {r["id"]: r["h"] for r in await conn.fetch(f"SELECT id, {ROW} AS h FROM {TABLE}")}
    finally:
        await conn.close()


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _repair(dsn: str, before: BackupSet, after: BackupSet, folder: Path) -> float:
    """The repair as its step runs it: the moments loaded, the plan, the touched rows and
    the plan saved, one transaction with triggers off; seconds."""
    m = repair.Moments(before, after)
    conn = await asyncpg.connect(dsn)
    try:
        started = asyncio.get_running_loop().time()
        tp = await repair.classify(conn, await repair.shape(conn, TABLE, before, after), m)
        await repair.snapshot(conn, tp, m, folder)
        async with conn.transaction():
            await conn.execute("SET LOCAL lock_timeout = '5s'")
            await conn.execute("SET LOCAL session_replication_role = replica")
            await repair.apply(conn, tp, m)
            assert not await repair.orphans(conn, [TABLE])
        return asyncio.get_running_loop().time() - started
    finally:
        await conn.close()


def _lost(got: dict[int, str], now: dict[int, str], users: set[int]) -> int:
    return sum(1 for i in users if got.get(i) != now.get(i))


def run(config_path: Path, dsn: str, workdir: Path, runs: int) -> list[Result]:
    """One run per size (each run changes the table's state; ``runs`` repeats the pair)."""
    cfg = config_mod.load(config_path)
    workdir.mkdir(parents=True, exist_ok=True)
    ours: list[float] = []
    base: list[float] = []
    notes: list[str] = []
    for _ in range(max(1, runs)):
        before = asyncio.run(create_set(cfg, "bench-repair-before", only_tables=(TABLE,),
                                        full=False))
        try:
            asyncio.run(_execute(dsn, MIGRATION))
            after_rows = asyncio.run(_rows(dsn))
            after = asyncio.run(create_set(cfg, "bench-repair-after", only_tables=(TABLE,),
                                           full=False))
            asyncio.run(_execute(dsn, USERS))
            now = asyncio.run(_rows(dsn))
            users = {i for i in now.keys() | after_rows.keys()
                     if now.get(i) != after_rows.get(i)}
            live = workdir / "media-now.sql"
            asyncio.run(run_tool("pg_dump", ["--data-only", f"--table={TABLE}",
                                             f"--file={live}"], cfg.target, lambda _l: None))
            # the repair
            seconds = asyncio.run(_repair(dsn, before, after, workdir / "safety"))
            lost_repair = _lost(asyncio.run(_rows(dsn)), now, users)
            # the same situation again, then a Type 2 from the moment before
            asyncio.run(reload_media(dsn, live))
            seconds_t2 = timed(partial(asyncio.run, reload_media(dsn, before.table_path(TABLE))))
            lost_t2 = _lost(asyncio.run(_rows(dsn)), now, users)
        finally:
            for s in ("before", "after"):
                for path in cfg.target.backups_root.glob(f"*bench-repair-{s}*"):
                    shutil.rmtree(path, ignore_errors=True)
        ours.append(seconds)
        base.append(seconds_t2)
        notes = [f"user writes after the migration: {len(users):,} rows; lost by the repair: "
                 f"{lost_repair:,}; lost by the Type 2: {lost_t2:,}",
                 "damage: 1 % deleted, 2 % captions NULLed, 2 % mime types rewritten; both "
                 "times include loading the moments (the repair) or the dump (the Type 2)"]
    return [Result("Repair (Type 4) of media, 5 % damaged", ours,
                   base, "Type 2 reload of media from the same moment", None, notes,
                   runs=len(ours))]
