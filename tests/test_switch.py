"""Type 3's switch on the real server: atomic renames, sessions stopped, idempotent on resume."""

from __future__ import annotations

import asyncpg
import pytest

from app.rollback.context import StepFailed
from app.rollback.switch import can_rename, database_exists, switch
from tests.conftest import DemoDb


async def test_switch_swaps_names_and_keeps_the_old_database(demo_db: DemoDb) -> None:
    admin = await asyncpg.connect(demo_db.server.dsn())
    restored, aside = f"{demo_db.name}_r", f"{demo_db.name}_aside"
    app_session = await demo_db.connect()
    try:
        await admin.execute(f'CREATE DATABASE "{restored}" TEMPLATE demo_template')
        r = await asyncpg.connect(demo_db.server.dsn(restored))
        await r.execute("CREATE TABLE marker (restored boolean)")
        await r.close()
        assert await can_rename(admin, demo_db.name) is None
        await switch(admin, demo_db.name, restored, aside)
        assert app_session.is_closed() or await _dead(app_session)
        now = await asyncpg.connect(demo_db.dsn)
        assert await now.fetchval("SELECT to_regclass('marker') IS NOT NULL")
        await now.close()
        assert await database_exists(admin, aside) and not await database_exists(admin, restored)
        await switch(admin, demo_db.name, restored, aside)  # resume after the fact: no-op
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{aside}" WITH (FORCE)')
        await admin.execute(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')
        await admin.close()


async def _dead(conn: asyncpg.Connection) -> bool:
    try:
        await conn.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError):
        return True
    return False


async def test_a_failed_rename_changes_no_names(demo_db: DemoDb) -> None:
    admin = await asyncpg.connect(demo_db.server.dsn())
    restored = f"{demo_db.name}_r"
    taken = "template1"  # the aside name is taken: the second rename can never happen
    try:
        await admin.execute(f'CREATE DATABASE "{restored}"')
        with pytest.raises(StepFailed, match="switch failed and was undone"):
            await switch(admin, demo_db.name, restored, taken)
        assert await database_exists(admin, demo_db.name) and \
            await database_exists(admin, restored)
        c = await asyncpg.connect(demo_db.dsn)  # connections allowed again
        await c.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')
        await admin.close()
