"""The decision-matrix screen with Pilot on the sandbox: checks stream in, the injected incident
lands in IMMEDIATE ROLLBACK with a partial rollback of the corrupted table, the evidence is one
key away, and the decision (accept or override with a reason) is journaled."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from app import config
from app.journal import Journal, incidents_root
from app.tui import RollbackConsoleApp
from screens.assess import AssessScreen
from screens.finding import FindingScreen
from screens.plan import PlanScreen
from screens.reason import ReasonScreen
from tests.conftest import DemoApp, DemoDb, wait_until
from tests.test_partial_rollback import make_set
from widgets.check_list import CheckList


async def _open(app: RollbackConsoleApp, pilot) -> AssessScreen:  # type: ignore[no-untyped-def]
    await app.workers.wait_for_complete()
    await pilot.press("a")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, AssessScreen)
    await wait_until(lambda: screen.assessment is not None, pilot)
    return screen


async def test_incident_recommendation_accept_is_journaled(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp,
        conn: asyncpg.Connection) -> None:
    await make_set(demo_db, conn, console_config.parent / "backups", ("media",))
    await conn.execute("UPDATE media SET caption = 'corrupted' WHERE id % 2 = 0")
    app = RollbackConsoleApp(config.load(console_config), mode="live")
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await _open(app, pilot)
        checks = screen.query_one(CheckList)
        assert checks.done == len(checks.names)
        assert checks.statuses["data_integrity"] == "fail"
        verdict = str(screen.query_one("#assess-verdict").render())
        assert "IMMEDIATE ROLLBACK" in verdict and "Partial data rollback" in verdict
        await pilot.press("enter")  # evidence of the highlighted check
        await pilot.pause()
        assert isinstance(app.screen, FindingScreen)
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("Y")
        await pilot.pause()
        assert isinstance(app.screen, PlanScreen)
        assert app.screen.kind.value == "partial"
        assert app.screen.preselected == ("public.media",)
    journals = [Journal(p) for p in incidents_root().glob("*/journal.jsonl")]
    accepted = [j for j in journals
                if (d := j.last("decision")) is not None and d.data["choice"] == "accept partial"]
    assert accepted, "the decision was not journaled"
    assessment = accepted[-1].last("assessment")
    assert assessment is not None and assessment.data["tier"] == "IMMEDIATE ROLLBACK"


async def test_override_needs_a_reason(console_config: Path, demo_db: DemoDb,
                                       demo_app: DemoApp, conn: asyncpg.Connection) -> None:
    await make_set(demo_db, conn, console_config.parent / "backups", ("media",))
    app = RollbackConsoleApp(config.load(console_config), mode="live")
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await _open(app, pilot)
        verdict = str(screen.query_one("#assess-verdict").render())
        assert "IMMEDIATE ROLLBACK" not in verdict and "FORWARD-FIX" not in verdict, verdict
        await pilot.press("O")
        await pilot.pause()
        assert isinstance(app.screen, ReasonScreen)
        await pilot.click("#yes")  # no reason typed: refused
        await pilot.pause()
        assert isinstance(app.screen, ReasonScreen)
        assert "reason is required" in str(app.screen.query_one("#reason-error").render())
        await pilot.click("#reason")
        await pilot.press(*"users report wrong captions", "enter")
        await pilot.pause()
        assert isinstance(app.screen, PlanScreen)
    decisions = [Journal(p).last("decision") for p in incidents_root().glob("*/journal.jsonl")]
    assert any(d is not None and d.data["reason"] == "users report wrong captions"
               for d in decisions)


async def test_assess_mode_cannot_go_past_the_matrix(console_config: Path, demo_db: DemoDb,
                                                      demo_app: DemoApp,
                                                      conn: asyncpg.Connection) -> None:
    await make_set(demo_db, conn, console_config.parent / "backups", ("media",))
    await conn.execute("UPDATE media SET caption = 'corrupted'")
    app = RollbackConsoleApp(config.load(console_config), mode="assess")
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await _open(app, pilot)
        assert "READ-ONLY" in str(screen.query_one("#assess-verdict").render())
        for key in ("Y", "O"):
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is screen
