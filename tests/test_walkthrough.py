"""The console end to end with Pilot on the sandbox: home -> rollback -> choose partial, a table
and the backup -> plan -> gate (a wrong phrase first) -> run -> done, content restored."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import httpx

from app import config
from app.tui import RollbackConsoleApp
from screens.gate import GateScreen
from screens.plan import PlanScreen
from screens.report import ReportScreen
from screens.rollback import RollbackScreen
from screens.validation import ValidationScreen
from tests.conftest import DemoApp, DemoDb, wait_until
from tests.test_partial_rollback import checksums, make_set


async def test_rollback_walkthrough(console_config: Path, demo_db: DemoDb, demo_app: DemoApp,
                                    conn: asyncpg.Connection) -> None:
    backup = await make_set(demo_db, conn, console_config.parent / "backups", ("media",))
    await conn.execute("UPDATE media SET caption = 'corrupted by the migration'")
    app = RollbackConsoleApp(config.load(console_config), mode="live")
    async with app.run_test(size=(140, 45)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("R")
        await pilot.pause()
        assert isinstance(app.screen, PlanScreen)
        plan_screen = app.screen
        await pilot.press("enter")              # Type 2, highlighted first? choose explicitly
        tables = plan_screen.query_one("#plan-tables")
        tables.focus()  # type: ignore[attr-defined]
        await pilot.pause()
        # the critical tables in config order: accounts, objects, media, ...
        for _ in range(2):
            await pilot.press("down")
        await pilot.press("space")
        await pilot.press("b")
        await wait_until(lambda: plan_screen.plan is not None, pilot)
        assert plan_screen.plan is not None
        assert plan_screen.plan.tables == ("public.media",)
        preview = str(plan_screen.query_one("#plan-text").render())
        assert "POINT OF NO RETURN" in preview and "LOSS" in preview

        await pilot.press("G")
        await pilot.pause()
        assert isinstance(app.screen, GateScreen)
        assert app.focused is not None and app.focused.id == "cancel"
        await pilot.click("#gate-input")
        await pilot.press(*"ROLLBACK", "enter")
        await pilot.pause()
        assert isinstance(app.screen, GateScreen)
        assert "WRONG PHRASE" in str(app.screen.query_one("#gate-error").render())
        gate_input = app.screen.query_one("#gate-input")
        gate_input.value = ""  # type: ignore[attr-defined]
        await pilot.press(*"ROLLBACK tea-school-sandbox", "enter")
        await pilot.pause()
        assert isinstance(app.screen, RollbackScreen)
        rollback = app.screen
        await wait_until(lambda: rollback.outcome is not None, pilot, 60)
        assert rollback.outcome is not None and rollback.outcome.value == "done", \
            str(rollback.query_one("#rb-outcome").render())
        assert "DONE" in str(rollback.query_one("#rb-outcome").render())

        await pilot.press("v")  # the runbook's post-rollback checklist
        await pilot.pause()
        assert isinstance(app.screen, ValidationScreen)
        validation = app.screen
        await wait_until(lambda: validation.checklist is not None, pilot, 60)
        assert validation.checklist is not None
        statuses = {i.name: str(i.status) for i in validation.checklist.items}
        assert set(statuses.values()) == {"pass"}, statuses
        assert "ALL ITEMS PASS" in str(validation.query_one("#val-verdict").render())
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("i")
        await pilot.pause()
        assert isinstance(app.screen, ReportScreen)
        report = app.screen.markdown
        assert "## Steps" in report and "| restore | done |" in report
        assert "## Validation" in report and "**every item passes**" in report
        assert "## Post-rollback actions" in report
        exported = app.screen.action_export()
        assert exported.read_text().startswith("# Incident")
    assert backup.manifest is not None
    assert await checksums(conn, "public.media") == \
        [backup.manifest.state.tables["public.media"].checksum]
    assert httpx.get(f"{demo_app.url}/api/health").status_code == 200
