"""Starting the console with an unfinished incident offers to resume it and lands on the right
step: finished steps are shown done and not redone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from app import config
from app.journal import Journal, incidents_root, new_incident_id
from app.rollback import partial
from app.rollback.context import Outcome, RollbackType, expected_phrase
from app.rollback.runner import execute
from app.tui import RollbackConsoleApp
from screens.confirm import ConfirmScreen
from screens.gate import GateScreen
from screens.rollback import RollbackScreen
from tests.conftest import DemoApp, DemoDb
from tests.helpers import run_context
from tests.test_partial_rollback import checksums, make_set


async def test_unfinished_incident_is_offered_and_resumed(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    backup = await make_set(demo_db, conn, console_config.parent / "backups", ("media",))
    await conn.execute("UPDATE media SET caption = 'broken'")
    token_file = console_config.parent / "secrets" / "app_admin_token"
    good_token = token_file.read_text()
    token_file.write_text("wrong\n")  # the maintenance switch fails: the run stops there
    ctx = run_context(console_config, RollbackType.PARTIAL,
                      incidents_root() / new_incident_id(), backup, tables=("public.media",))
    cfg, journal = ctx.cfg, ctx.journal
    assert await execute(partial.build(cfg, backup, ctx.options.tables), ctx) \
        is Outcome.NEEDS_OPERATOR
    token_file.write_text(good_token)  # the operator fixed the app's token

    app = RollbackConsoleApp(config.load(console_config), mode="live")
    async with app.run_test(size=(140, 45)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "maintenance" in app.screen.question
        assert "ago" in app.screen.question and "phrase again" in app.screen.question
        await pilot.click("#yes")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not isinstance(app.screen, GateScreen):
            assert loop.time() < deadline
            await pilot.pause(0.05)
        gate_text = " ".join(app.screen.blast_radius)
        assert "done: prerequisites, assessment" in gate_text
        assert "will run: maintenance, safety_snapshot, restore (DESTRUCTIVE)" in gate_text
        await pilot.click("#confirm")   # nothing typed: the gate stays shut
        assert isinstance(app.screen, GateScreen)
        await pilot.press(*expected_phrase(RollbackType.PARTIAL, cfg.target.name), "enter")
        while not isinstance(app.screen, RollbackScreen):
            assert loop.time() < deadline
            await pilot.pause(0.05)
        screen = app.screen
        while screen.outcome is None:
            assert loop.time() < deadline + 30
            await pilot.pause(0.05)
        assert screen.outcome is Outcome.DONE
        assert screen.ctx.journal.path == journal.path
    assert backup.manifest is not None
    assert await checksums(conn, "public.media") == \
        [backup.manifest.state.tables["public.media"].checksum]
    started = [e.step for e in Journal(journal.path).of_kind("step_started")]
    assert started.count("prerequisites") == 1 and started.count("maintenance") == 2
