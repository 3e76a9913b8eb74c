"""The write load (app/sandbox/load.py) against the real demo app and PostgreSQL: what it
records is exactly what the database holds for the rows it touched, also when the app refuses
some writes (maintenance mode, a deleted row)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest

from app.sandbox.load import WriteLoad
from tests.conftest import DemoApp, DemoDb

COLUMNS = ("object_id", "url", "mime_type", "bytes", "caption")


async def own_media(conn: asyncpg.Connection, db: DemoDb, n: int) -> list[int]:
    rows = await conn.fetch("SELECT id FROM media WHERE owner_id = $1 ORDER BY id LIMIT $2",
                            db.facts.test_user_id, n)
    assert len(rows) == n
    return [r["id"] for r in rows]


async def assert_record_matches(load: WriteLoad, conn: asyncpg.Connection, db: DemoDb) -> None:
    rows = {r["id"]: r for r in await conn.fetch(
        "SELECT id, owner_id, object_id, url, mime_type, bytes, caption FROM media "
        "WHERE id = ANY($1::bigint[])", sorted(load.touched()))}
    for media_id, values in load.inserted.items():
        row = rows[media_id]
        assert {c: row[c] for c in COLUMNS} == values
        assert str(row["owner_id"]) == db.facts.test_user_id
    for media_id, values in load.updated.items():
        assert {c: rows[media_id][c] for c in values} == values
    # Nothing it wrote went unrecorded: its rows in the table are exactly the ones it recorded.
    written = await conn.fetchval("SELECT count(*) FROM media WHERE url LIKE $1",
                                  f"https://cdn.example.test/{load.tag}/%")
    assert written == len(load.inserted)


async def test_a_fixed_number_of_writes_is_recorded_exactly(
        demo_app: DemoApp, demo_db: DemoDb, conn: asyncpg.Connection) -> None:
    targets = await own_media(conn, demo_db, 5)
    before: dict[int, Any] = {r["id"]: r["caption"] for r in await conn.fetch(
        "SELECT id, caption FROM media WHERE id = ANY($1::bigint[])", targets)}
    load = WriteLoad(demo_app.url, update_ids=targets, update_share=0.5, seed=7)
    await load.run(40)
    assert load.ops == 40 and load.errors == 0 and not load.uncertain
    assert len(load.inserted) + sum(w.kind == "update" for w in load.history) == 40
    assert load.inserted and load.updated and set(load.updated) <= set(targets)
    await assert_record_matches(load, conn, demo_db)
    for media_id in set(targets) - set(load.updated):  # rows it did not choose are untouched
        assert await conn.fetchval("SELECT caption FROM media WHERE id = $1",
                                   media_id) == before[media_id]
    # The same seed makes the same choices.
    again = WriteLoad(demo_app.url, update_ids=targets, update_share=0.5, seed=7, tag="again")
    await again.run(40)
    assert [w.kind for w in again.history] == [w.kind for w in load.history]
    assert set(again.updated) == set(load.updated)


async def test_without_update_ids_it_updates_its_own_rows(
        demo_app: DemoApp, demo_db: DemoDb, conn: asyncpg.Connection) -> None:
    load = WriteLoad(demo_app.url, email=demo_db.facts.test_user_email,
                     password=demo_db.facts.test_user_password, update_share=0.6, seed=3)
    await load.run(30)
    assert load.errors == 0 and load.updated and set(load.updated) <= set(load.inserted)
    await assert_record_matches(load, conn, demo_db)


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition (never a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "the condition was not reached"
        await asyncio.sleep(0.02)


async def test_steady_load_through_maintenance_and_a_deleted_row(
        demo_app: DemoApp, demo_db: DemoDb, conn: asyncpg.Connection) -> None:
    targets = await own_media(conn, demo_db, 6)
    await conn.execute("DELETE FROM media WHERE id = $1", targets[0])  # "the migration" did
    admin = {"Authorization": f"Bearer {demo_app.admin_token}"}
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=demo_app.url, headers=admin) as client, \
            WriteLoad(demo_app.url, update_ids=targets, update_share=0.5, rate=40,
                      seed=11) as load:
        started = loop.time()
        await until(lambda: len(load.inserted) >= 5 and any(w.status == 404
                                                            for w in load.history))
        assert (await client.post("/admin/maintenance-mode")).status_code == 200
        during = load.ops
        await until(lambda: load.failures["503"] >= 5)
        assert (await client.delete("/admin/maintenance-mode")).status_code == 200
        after = load.ops
        await until(lambda: sum(w.ok for w in load.history[after:]) >= 5)
        load.stop()
        await load.wait_stopped()
        elapsed = loop.time() - started
        assert not load.running
        stopped_at = load.ops
        await asyncio.sleep(0.2)
        assert load.ops == stopped_at  # stopped means stopped
    assert load.ops <= 40 * elapsed + 2  # paced: never faster than its rate
    # (the writes in flight as it was switched on and off may have gone either way)
    assert all(w.status == 503 for w in load.history[during + 1:after - 1])
    assert targets[0] not in load.updated
    assert load.errors == sum(load.failures.values()) == sum(not w.ok for w in load.history)
    assert set(load.failures) <= {"503", "404"} and not load.uncertain
    gone = [w.status for w in load.history if w.id == targets[0]]
    assert 404 in gone and set(gone) <= {404, 503}
    await assert_record_matches(load, conn, demo_db)
    assert await conn.fetchval("SELECT count(*) FROM media WHERE id = $1", targets[0]) == 0


async def test_bad_arguments_are_refused(demo_app: DemoApp) -> None:
    with pytest.raises(ValueError):
        WriteLoad(demo_app.url, update_share=1.5)
    with pytest.raises(ValueError):
        WriteLoad(demo_app.url, email="someone@example.test")
    with pytest.raises(httpx.HTTPStatusError):
        await WriteLoad(demo_app.url, token="a.b.c").run(1)
