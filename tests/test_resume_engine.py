"""Resume is the engine's (``app.rollback.resume.prepare_resume``), the same for the CLI and the
console, and it resumes the run the first gate approved: an in-place Type 3 goes on in place
(it used to come back as rename-and-switch, which the role cannot do), and a run that used a set
taken after the migration keeps that approval (and says so before the phrase is asked again).
Old journals (no recorded options) still resume as before."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app import config
from app.backups.source import RestoreSource, open_source
from app.faults import ENV as KILL_ENV
from app.journal import Journal, incidents_root, new_incident_id
from app.journal_entries import opened
from app.rollback import partial
from app.rollback.context import Outcome, RollbackType, expected_phrase
from app.rollback.resume import options_of
from app.rollback.runner import execute
from app.tui import RollbackConsoleApp
from screens.confirm import ConfirmScreen
from screens.gate import GateScreen
from screens.rollback import RollbackScreen
from tests.conftest import DemoApp, DemoDb
from tests.helpers import CONSOLE, make_full_set, matches_manifest, run_context
from tests.test_partial_rollback import checksums, make_set

FULL_PHRASE = "CONFIRM_FULL_RESTORE tea-school-sandbox"


def _console(config_path: Path, home: Path, *args: str,
             kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROLLBACK_CONSOLE_HOME": str(home)}
    env.pop(KILL_ENV, None)
    if kill_at is not None:
        env[KILL_ENV] = kill_at   # a real SIGKILL of the console at that step boundary
    return subprocess.run([*CONSOLE, "-c", str(config_path), *args], capture_output=True,
                          text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)


async def _role_that_may_not_rename(db: DemoDb) -> str:
    """A login role that owns what the superuser owns (a member of it) and may end the app's
    sessions, but has no CREATEDB: it may not rename the database, so a Type 3 can only
    restore in place (a managed platform's situation)."""
    role = f"inplace_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(db.server.dsn())
    try:
        owner = await admin.fetchval("SELECT current_user")
        await admin.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB PASSWORD "
                            f"'{db.server.password}'")
        await admin.execute(f'GRANT "{owner}" TO {role}; GRANT pg_signal_backend TO {role}')
        target = await asyncpg.connect(db.dsn)
        try:   # the platform's owners the dump sets (supabase_auth_admin): a member of them
            others = await target.fetch(
                "SELECT DISTINCT r.rolname FROM (SELECT relowner FROM pg_class UNION SELECT "
                "nspowner FROM pg_namespace UNION SELECT proowner FROM pg_proc) o(id) "
                "JOIN pg_roles r ON r.oid = o.id "
                "WHERE NOT r.rolsuper AND r.rolname NOT LIKE 'pg\\_%'")
        finally:
            await target.close()
        for (other,) in others:
            await admin.execute(f'GRANT "{other}" TO {role}')
    finally:
        await admin.close()
    return role


async def _drop_role(db: DemoDb, role: str) -> None:
    for dsn in (db.dsn, db.server.dsn()):
        conn = await asyncpg.connect(dsn)
        try:
            owner = await conn.fetchval("SELECT current_user")
            await conn.execute(f'REASSIGN OWNED BY {role} TO "{owner}"; DROP OWNED BY {role}')
        finally:
            await conn.close()
    admin = await asyncpg.connect(db.server.dsn())
    try:
        await admin.execute(f"DROP ROLE {role}")
    finally:
        await admin.close()


async def test_an_in_place_type3_killed_then_resumed_from_the_cli_resumes_in_place(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    backup = await make_full_set(demo_db, conn, console_config.parent / "backups")
    await conn.execute("UPDATE media SET caption = 'broken'")
    await conn.close()
    role = await _role_that_may_not_rename(demo_db)
    try:
        text = console_config.read_text()
        assert 'dsn = "postgresql://postgres@' in text
        console_config.write_text(text.replace("postgresql://postgres@", f"postgresql://{role}@"))
        home = tmp_path / "home"
        first = _console(console_config, home, "run", "--type", "full", "--allow-in-place",
                         "--confirm", FULL_PHRASE, kill_at="before:prerequisites")
        assert first.returncode == -signal.SIGKILL, first.stdout + first.stderr

        resumed = _console(console_config, home, "resume", "--confirm", FULL_PHRASE)
        said = resumed.stdout + resumed.stderr
        assert resumed.returncode == 0, said
        assert "restore IN PLACE" in said   # the approval is said again before it goes on
        journal = Journal(next((home / "incidents").glob("*/journal.jsonl")))
        after = journal.entries.index(journal.last("incident_resumed"))  # type: ignore[arg-type]
        started = [e.step for e in journal.entries[after:] if e.kind == "step_started"]
        assert "restore" in started and "safety_snapshot" in started, started
        assert "restore_new" not in started and "switch" not in started, started
        assert backup.manifest is not None
        assert await matches_manifest(demo_db.dsn, backup.manifest)
        admin = await asyncpg.connect(demo_db.server.dsn())
        try:
            assert await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname LIKE $1",
                                        demo_db.name + "\\_restored\\_%") == 0
        finally:
            await admin.close()
    finally:
        await _drop_role(demo_db, role)


async def _wait_for(app: RollbackConsoleApp, pilot: Any, screen_type: type) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60   # a bound for "did not hang", not a timing assertion
    while not isinstance(app.screen, screen_type):
        assert loop.time() < deadline, f"never reached {screen_type.__name__}: {app.screen}"
        await pilot.pause(0.05)


async def test_a_console_resume_keeps_the_use_of_a_set_taken_after_the_migration(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    backup = await make_set(demo_db, conn, console_config.parent / "backups", ("media",))
    await conn.execute("UPDATE media SET caption = 'broken'")
    migration = datetime.now(UTC) - timedelta(hours=1)   # the set is newer: after it
    token_file = console_config.parent / "secrets" / "app_admin_token"
    good_token = token_file.read_text()
    token_file.write_text("wrong\n")   # the maintenance switch fails: the run stops there
    ctx = run_context(console_config, RollbackType.PARTIAL, incidents_root() / new_incident_id(),
                      backup, tables=("public.media",), migration_at=migration,
                      allow_after_migration=True)
    assert await execute(partial.build(ctx.cfg, backup, ctx.options.tables), ctx) \
        is Outcome.NEEDS_OPERATOR
    token_file.write_text(good_token)

    app = RollbackConsoleApp(config.load(console_config), mode="live")
    async with app.run_test(size=(140, 45)) as pilot:
        await _wait_for(app, pilot, ConfirmScreen)
        await pilot.pause()
        assert "did not finish" in app.screen.question   # type: ignore[attr-defined]
        await pilot.click("#yes")
        await _wait_for(app, pilot, GateScreen)
        gate_text = " ".join(app.screen.blast_radius)   # type: ignore[attr-defined]
        assert "use the set although it was taken after the migration" in gate_text
        await pilot.press(*expected_phrase(RollbackType.PARTIAL, ctx.cfg.target.name), "enter")
        await _wait_for(app, pilot, RollbackScreen)
        screen = app.screen
        assert isinstance(screen, RollbackScreen)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while screen.outcome is None:
            assert loop.time() < deadline
            await pilot.pause(0.05)
        assert screen.outcome is Outcome.DONE
        assert screen.ctx.options.allow_after_migration
        assert screen.ctx.options.migration_at == migration
    assert backup.manifest is not None
    assert await checksums(conn, "public.media") == \
        [backup.manifest.state.tables["public.media"].checksum]


def test_an_old_journal_without_recorded_options_resumes_as_before(tmp_path: Path) -> None:
    """A version 1 journal (no options in incident_opened): in place when its prerequisites
    found so, and the set's age as accepted at the first gate."""
    journal = Journal.open(tmp_path / "incident")
    journal.append("incident_opened", target="t", type="full", backup="b1", tables=[],
                   steps=["prerequisites"], database={"name": "shop"})
    journal.append("step_finished", step="prerequisites", status="done",
                   result={"in_place": True, "maintenance": "off"})
    first = opened(journal)
    assert first is not None and first.version == 1 and first.allow_in_place is None
    options = options_of(journal, confirm="x")
    assert options.allow_in_place and options.allow_after_migration
    assert options.confirm == "x"


async def test_a_backup_set_is_a_restore_source_journaled_and_opened_again(
        demo_db: DemoDb, conn: asyncpg.Connection, tmp_path: Path) -> None:
    """What the gate, the plan, the journal and resume ask of a source, answered by a set:
    its tables and rows, a table's rows streamed, the whole-database dump (none here), a
    verification that notices an edited file, and the journal record a resume opens again."""
    root = tmp_path / "backups"
    backup = await make_set(demo_db, conn, root, ("media",))
    assert isinstance(backup, RestoreSource)
    media_rows = await conn.fetchval("SELECT count(*) FROM media")
    assert backup.tables()["public.media"] == media_rows
    streamed = b"".join([chunk async for chunk in backup.table_rows("media")])
    assert streamed.count(b"\n") == media_rows
    assert backup.database_dump() is None
    assert await backup.verify() == []

    again = open_source(backup.journal_record(), root)
    assert again.id == backup.id and again.taken_at is not None
    assert open_source({"id": backup.id}, root).id == backup.id   # a version 1 journal

    dump = backup.table_path("media")
    dump.write_bytes(dump.read_bytes().replace(b"\n", b"\n\n", 1))
    assert await backup.verify() == [f"{dump.name} does not match its manifest (sha256 "
                                      "differs)"]
