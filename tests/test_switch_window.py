"""Type 3's switch window: between refusing connections to the target and renaming, a console
that dies (kill -9) left production refusing every connection. The next resume reopens it
first (``reopen_interrupted_switch``), and the switch itself never leaves it closed on a
failure it sees (a role that may not end a superuser's session)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from app import config
from app.catalog import table_content
from app.rollback.context import StepFailed
from app.rollback.full import reopen_interrupted_switch
from app.rollback.switch import stop_sessions
from tests.conftest import DemoApp, DemoDb
from tests.helpers import CONSOLE, cli, make_full_set


async def _state(dsn: str, tables: list[str]) -> dict[str, tuple[int, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        return {t: ((c := await table_content(conn, t)).rows, c.checksum) for t in tables}
    finally:
        await conn.close()


async def _allows(admin: asyncpg.Connection, name: str) -> bool | None:
    value = await admin.fetchval("SELECT datallowconn FROM pg_database WHERE datname = $1", name)
    return None if value is None else bool(value)


# (a "poll" variant, the test killing the console the moment it saw ALLOW_CONNECTIONS false,
# raced the switch: the window is a few milliseconds since the switch checks its rights first,
# and it failed in CI when the poll missed it; the kill point dies exactly there, every time)
async def test_a_console_killed_while_the_target_refuses_connections_is_reopened(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    backup = await make_full_set(demo_db, conn, console_config.parent / "backups")
    assert backup.manifest is not None
    tables = sorted(backup.manifest.state.tables)
    expected = {t: (e.rows, e.checksum) for t, e in backup.manifest.state.tables.items()}
    await conn.execute("UPDATE objects SET name = 'x'; UPDATE accounts SET display_name = '?'")
    await conn.close()
    before = await _state(demo_db.dsn, tables)
    assert before != expected

    env = {**os.environ, "ROLLBACK_CONSOLE_HOME": str(tmp_path)}
    # dies right after ALTER DATABASE … ALLOW_CONNECTIONS false
    env["ROLLBACK_CONSOLE_KILL_AT"] = "switch:connections_refused"
    admin = await asyncpg.connect(demo_db.server.dsn())
    held = await demo_db.connect()   # a session on the target: the switch must end it
    output = (tmp_path / "run.out").open("w")
    proc = subprocess.Popen(
        [*CONSOLE, "-c", str(console_config), "run", "--type", "full",
         "--confirm", "CONFIRM_FULL_RESTORE tea-school-sandbox", "--json"],
        stdout=output, stderr=subprocess.STDOUT, text=True, env=env,
        stdin=subprocess.DEVNULL)
    try:
        proc.wait(timeout=300)
        assert proc.returncode == -signal.SIGKILL, (tmp_path / "run.out").read_text()
        await held.close()

        # what a crash in the window leaves: production refuses every connection
        locked_out = await _allows(admin, demo_db.name) is False
        assert locked_out
        if locked_out:
            with pytest.raises(asyncpg.PostgresError, match="not currently accepting connections"):
                await (await asyncpg.connect(demo_db.dsn)).close()
            told = cli(console_config, tmp_path, "validate")   # what the operator is told
            assert told.returncode == 2 and "rollback-console resume" in told.stderr, \
                told.stdout + told.stderr

        message = await reopen_interrupted_switch(config.load(console_config))
        if locked_out:
            assert message is not None and demo_db.name in message
            assert "allowed again" in message
        assert await _allows(admin, demo_db.name) is True
        now = await _state(demo_db.dsn, tables)   # it accepts connections: the app works again
        assert now in (before, expected), "the target is neither the old database nor the backup"
        assert await reopen_interrupted_switch(config.load(console_config)) is None  # idempotent

        # after the stop the operator may take the app out of maintenance (the run is dead, it
        # holds no lock); the resume puts it back before the switch, and out again at the end
        off = cli(console_config, tmp_path, "maintenance", "off")
        assert off.returncode == 0, off.stdout + off.stderr
        resumed = cli(console_config, tmp_path, "resume", "--json", "--confirm",
                      "CONFIRM_FULL_RESTORE tea-school-sandbox")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert await _state(demo_db.dsn, tables) == expected
        actions = [e["data"] for e in map(json.loads, next(
            tmp_path.glob("incidents/*/journal.jsonl")).read_text().splitlines())
            if e["kind"] == "action_started"]
        order = [(a["action"], a.get("again", False)) for a in actions]
        by_hand = order.index(("maintenance_off", False))   # the operator's
        assert order[by_hand + 1:by_hand + 3] == [("maintenance_on", True),
                                                  ("switch_databases", False)]
        assert order[-1] == ("maintenance_off", False)   # the resumed run's recovery
        assert httpx.get(f"{demo_app.url}/api/health").status_code == 200
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        output.close()
        for name in await admin.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE $1 || '\\_%'", demo_db.name):
            await admin.execute(f'DROP DATABASE "{name["datname"]}" WITH (FORCE)')
        await admin.close()


async def test_a_role_that_may_not_end_a_superusers_session_leaves_connections_allowed(
        demo_db: DemoDb) -> None:
    """The database's owner (not a superuser) switches; a superuser's session is on it, and
    only a superuser may end that: the switch stops (StepFailed, nothing switched) and the
    target accepts connections again, instead of refusing them for good."""
    admin = await asyncpg.connect(demo_db.server.dsn())
    role, password = f"owner_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    superuser = await admin.fetchval("SELECT current_user")
    await admin.execute(f"CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{password}'")
    await admin.execute(f'ALTER DATABASE "{demo_db.name}" OWNER TO {role}')
    watching = await demo_db.connect()   # a superuser's session on the target
    owner = await asyncpg.connect(demo_db.server.dsn("postgres", role, password))
    try:
        with pytest.raises(StepFailed) as info:
            await stop_sessions(owner, demo_db.name)
        message = str(info.value)
        assert "may not end every session" in message
        assert "nothing was switched and connections were never refused" in message
        assert await _allows(admin, demo_db.name) is True
        app = await asyncpg.connect(demo_db.dsn)   # a new session gets in
        assert await app.fetchval("SELECT 1") == 1
        await app.close()
        assert await watching.fetchval("SELECT 1") == 1   # and the superuser's was not ended
    finally:
        await owner.close()
        await watching.close()
        await admin.execute(f'ALTER DATABASE "{demo_db.name}" OWNER TO "{superuser}"')
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()

