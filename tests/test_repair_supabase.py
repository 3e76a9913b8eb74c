"""The repair as Supabase's non-superuser `postgres` (tests/supabase.py's platform shape): it
cannot turn triggers off, so the plan says they fire, the table's updated_at trigger rewrites
that column on the rows it reverts, and validation compares every other column row by row. The
platform's own tables, roles and event triggers are untouched."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.supabase import (
    Console,
    SupabaseCluster,
    migrated_now,
    open_console,
    platform_state,
    run_as_postgres,
    start_cluster,
    supabase_database,
    take_backup,
)

COLS = "id, object_id, owner_id, url, mime_type, bytes, caption"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SupabaseCluster]:
    c = start_cluster(tmp_path_factory.mktemp("supabase-repair") / "pgdata")
    yield c
    c.server.stop()


@pytest.fixture
def console(cluster: SupabaseCluster, tmp_path: Path) -> Iterator[Console]:
    for db in supabase_database(cluster):
        yield from open_console(db, tmp_path, with_app=False)


def _media(console: Console) -> dict[int, tuple[object, ...]]:
    async def go() -> dict[int, tuple[object, ...]]:
        conn = await asyncpg.connect(console.db.dsn)
        try:
            return {r["id"]: tuple(r) for r in
                    await conn.fetch(f"SELECT {COLS} FROM public.media")}
        finally:
            await conn.close()
    return asyncio.run(go())


def test_repair_from_a_dump_as_supabase_postgres(console: Console) -> None:
    take_backup(console)
    before = _media(console)
    platform = asyncio.run(platform_state(console.db.admin_dsn))
    run_as_postgres(console, "DELETE FROM public.media WHERE id % 20 = 1; "
                             "UPDATE public.media SET caption = NULL WHERE id % 10 = 2; "
                             "UPDATE public.media SET caption = 'mine' WHERE id % 10 = 5")
    now = _media(console)
    code, out = console.run("run", "--type", "repair", "--tables", "media", "--damage",
                            "deleted,nulled", "--migration-time", migrated_now(), "--dry-run")
    assert code == 0, out
    assert "triggers: fire" in out
    code, out = console.run("run", "--type", "repair", "--tables", "media", "--damage",
                            "deleted,nulled", "--migration-time", migrated_now(),
                            "--confirm", "ROLLBACK tea-school-sandbox")
    assert code == 0, out
    got = _media(console)
    assert {i: r for i, r in got.items() if i % 10 != 5} == \
        {i: r for i, r in before.items() if i % 10 != 5}
    assert all(got[i] == now[i] for i in now if i % 10 == 5)      # the users' edits kept
    code, out = console.run("validate", "--json")
    data = next(i for i in json.JSONDecoder().raw_decode(out[out.index("{"):])[0]["items"]
                if i["item"] == "Data Integrity")
    assert data["status"] == "pass", data
    assert asyncio.run(platform_state(console.db.admin_dsn)) == platform
