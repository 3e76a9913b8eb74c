"""Type 3 end to end on the sandbox: restore into a new database while the target stays online,
validate it, switch atomically, keep the old database aside; the in-place path; bad input."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import httpx
import pytest

from app.rollback import full
from app.rollback.context import Outcome, RollbackType
from app.rollback.runner import execute
from app.validation import run_validation
from tests.conftest import DemoApp, DemoDb
from tests.helpers import make_full_set, matches_manifest, run_context
from tests.test_partial_rollback import last_event


async def test_complete_restore_switches_and_keeps_the_old_database(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    backup = await make_full_set(demo_db, conn, console_config.parent / "backups")
    # widespread corruption: a table gone, values wrong everywhere
    await conn.execute("DROP TABLE chakai")
    await conn.execute("UPDATE objects SET name = 'x'; UPDATE accounts SET display_name = '?'")
    # what the database itself carries, which neither the dump nor a rename brings along
    db = f'"{demo_db.name}"'
    await conn.execute(
        f"ALTER DATABASE {db} SET statement_timeout = '5min';"
        f'ALTER DATABASE {db} SET search_path = "$user", public, "odd, name";'
        f"ALTER DATABASE {db} SET app.settings.jwt_secret = 'sekrit-jwt-value';"
        f"ALTER ROLE authenticated IN DATABASE {db} SET statement_timeout = '8s';"
        f"REVOKE ALL ON DATABASE {db} FROM PUBLIC;"
        f"GRANT CONNECT, TEMPORARY ON DATABASE {db} TO authenticator;"
        f"ALTER DATABASE {db} CONNECTION LIMIT 50; COMMENT ON DATABASE {db} IS 'tea school'")
    carried = ("SELECT d.datacl::text, d.datconnlimit, shobj_description(d.oid, 'pg_database'),"
               " array(SELECT coalesce(setrole::regrole::text, '-') || ':' || unnest(setconfig)"
               " FROM pg_db_role_setting WHERE setdatabase = d.oid ORDER BY 1)::text "
               "FROM pg_database d WHERE datname = $1")
    before = tuple(await conn.fetchrow(carried, demo_db.name))
    await conn.close()

    ctx = run_context(console_config, RollbackType.FULL, tmp_path / "incident", backup)
    outcome = await execute(full.build(ctx.cfg, backup), ctx)
    assert outcome is Outcome.DONE, ctx.journal.entries[-1].data
    admin = await asyncpg.connect(demo_db.server.dsn())
    try:
        assert tuple(await admin.fetchrow(carried, demo_db.name)) == before
    finally:
        await admin.close()
    assert "sekrit-jwt-value" not in ctx.journal.path.read_text()
    assert backup.manifest is not None
    assert await matches_manifest(demo_db.dsn, backup.manifest)
    assert len(ctx.full.deferred_foreign_keys or []) == 7  # added NOT VALID, validated after
    aside = ctx.full.aside_database
    admin = await asyncpg.connect(demo_db.server.dsn())
    try:
        assert await admin.fetchval("SELECT NOT datallowconn FROM pg_database WHERE datname=$1",
                                    aside)
        await admin.execute(f'ALTER DATABASE "{aside}" WITH ALLOW_CONNECTIONS true')
        old = await asyncpg.connect(demo_db.server.dsn(aside))
        assert await old.fetchval("SELECT to_regclass('chakai')") is None  # the broken one
        await old.close()
        await admin.execute(f'DROP DATABASE "{aside}" WITH (FORCE)')
    finally:
        await admin.close()
    assert httpx.get(f"{demo_app.url}/api/health").status_code == 200
    checklist = await run_validation(ctx.cfg, backup.id)  # the runbook's checklist afterwards
    assert checklist.passed, [(i.name, str(i.status), i.summary) for i in checklist.items]
    actions = [e.data["action"] for e in ctx.journal.of_kind("action_finished")]
    assert actions == ["maintenance_on", "restore_into_new_database", "switch_databases",
                       "maintenance_off"]


async def test_in_place_restore_with_a_safety_snapshot(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    backup = await make_full_set(demo_db, conn, tmp_path / "backups")
    await conn.execute("UPDATE media SET caption = 'broken'")
    await conn.close()
    ctx = run_context(console_config, RollbackType.FULL, tmp_path / "incident", backup,
                      allow_in_place=True)
    outcome = await execute(full.build(ctx.cfg, backup, in_place=True), ctx)
    assert outcome is Outcome.DONE, ctx.journal.entries[-1].data
    assert backup.manifest is not None
    assert await matches_manifest(demo_db.dsn, backup.manifest)
    snapshot = ctx.safety_snapshot
    assert snapshot is not None and snapshot.stat().st_size > 0


async def test_the_gate_needs_the_target_name(console_config: Path, demo_db: DemoDb,
                                              demo_app: DemoApp, conn: asyncpg.Connection,
                                              tmp_path: Path) -> None:
    backup = await make_full_set(demo_db, conn, tmp_path / "backups")
    ctx = run_context(console_config, RollbackType.FULL, tmp_path / "incident", backup,
                      confirm="CONFIRM_FULL_RESTORE")
    assert await execute(full.build(ctx.cfg, backup), ctx) is Outcome.REFUSED
    finished = last_event(ctx)
    assert finished.exit_code == 3
    assert "CONFIRM_FULL_RESTORE tea-school-sandbox" in finished.summary
    assert not ctx.journal.path.exists(), "a refused run opened an incident"


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
async def test_a_missing_or_corrupt_full_dump_changes_nothing(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, damage: str) -> None:
    backup = await make_full_set(demo_db, conn, tmp_path / "backups")
    dump = backup.path / "full_database_backup.dump"
    if damage == "missing":
        dump.unlink()
    else:
        dump.write_bytes(dump.read_bytes()[:1000])
    await conn.execute("UPDATE media SET caption = 'after'")
    ctx = run_context(console_config, RollbackType.FULL, tmp_path / "incident", backup)
    assert await execute(full.build(ctx.cfg, backup), ctx) is Outcome.BAD_INPUT, \
        ctx.journal.entries[-1].data
    error = ctx.journal.of_kind("step_finished")[-1].data["error"]
    assert ("has no full dump" in error) if damage == "missing" else \
        ("does not match its manifest" in error)
    assert await conn.fetchval("SELECT count(*) FROM media WHERE caption = 'after'") == 2000
