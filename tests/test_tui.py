"""The console's home screen, driven with Pilot against the real database and demo app."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from textual import events

from app import config
from app.tui import RollbackConsoleApp
from screens.confirm import ConfirmScreen
from screens.drills import DrillsScreen
from screens.help import HelpScreen
from screens.plan import PlanScreen
from tests.conftest import DemoApp, DemoDb
from widgets.banner import TargetBanner
from widgets.check_list import CheckList
from widgets.status_line import StatusLine


async def _settle(app: RollbackConsoleApp, pilot) -> None:  # type: ignore[no-untyped-def]
    await app.workers.wait_for_complete()
    await pilot.pause()


def _banner(app: RollbackConsoleApp) -> str:
    return str(app.screen.query_one(TargetBanner).render())


async def test_home_shows_the_banner_and_a_healthy_target(console_config: Path,
                                                          demo_db: DemoDb) -> None:
    app = RollbackConsoleApp(config.load(console_config), mode="drill")
    async with app.run_test(size=(100, 30)) as pilot:
        await _settle(app, pilot)
        banner = _banner(app)
        assert "tea-school-sandbox" in banner
        assert "DRILL" in banner and "PostgreSQL 18" in banner
        db = app.screen.query_one("#probe-db", StatusLine)
        assert db.status == "pass" and demo_db.name in db.summary
        assert app.screen.query_one("#probe-app", StatusLine).status == "pass"
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_assess_mode_says_read_only_and_refuses_rollback(console_config: Path) -> None:
    app = RollbackConsoleApp(config.load(console_config), mode="assess")
    async with app.run_test(size=(100, 30)) as pilot:
        await _settle(app, pilot)
        assert "READ-ONLY" in _banner(app)
        await pilot.press("R")
        await pilot.pause()
        assert not isinstance(app.screen, PlanScreen)  # nothing opened


async def test_unreachable_app_and_database_show_as_failures(tmp_path: Path) -> None:
    path = tmp_path / "rollback.toml"
    path.write_text('[target]\nname = "gone"\nenvironment = "staging"\n'
                    'dsn = "postgresql://x:secretpw@127.0.0.1:9/none"\n'
                    '[app]\nbase_url = "http://127.0.0.1:9"\ntimeout_s = 1\n')
    app = RollbackConsoleApp(config.load(path), mode="live")
    async with app.run_test(size=(100, 30)) as pilot:
        await _settle(app, pilot)
        db = app.screen.query_one("#probe-db", StatusLine)
        assert db.status == "fail" and "connection refused" in db.summary
        assert "secretpw" not in db.summary
        assert app.screen.query_one("#probe-app", StatusLine).status == "fail"
        assert "STAGING" in _banner(app) and "LIVE" in _banner(app)
        await pilot.press("a")              # an assessment that cannot connect at all
        await _settle(app, pilot)
        checks = app.screen.query_one(CheckList)
        assert checks.statuses["connectivity"] == "fail"      # not left "RUNNING" forever
        assert set(checks.statuses.values()) - {"fail"} == {"skip"}
        verdict = str(app.screen.query_one("#assess-verdict").render())
        assert "DATABASE UNREACHABLE" in verdict and "pooler" in verdict
        assert "secretpw" not in verdict


async def test_help_lists_the_screens_keys(console_config: Path) -> None:
    app = RollbackConsoleApp(config.load(console_config), mode="drill")
    async with app.run_test(size=(100, 30)) as pilot:
        await _settle(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        descriptions = [d for _, d in app.screen.keys]
        for expected in ("Assess", "Backups", "Drill", "Quit", "Help"):
            assert expected in descriptions
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


async def test_d_opens_the_drills_and_how_to_start_one(console_config: Path) -> None:
    app = RollbackConsoleApp(config.load(console_config), mode="live")
    async with app.run_test(size=(100, 30)) as pilot:
        await _settle(app, pilot)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, DrillsScreen)
        shown = str(app.screen.query_one("#drills-text").render())
        assert "not available yet" not in shown
        assert "rollback-console drill --scenario NAME" in shown and "dropped-index" in shown
        assert "FORWARD-FIX" not in shown and "IMMEDIATE" not in shown   # answers: debrief
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, DrillsScreen)


async def test_quit_while_work_runs_asks_first(console_config: Path, demo_app: DemoApp) -> None:
    app = RollbackConsoleApp(config.load(console_config), mode="drill")
    async with app.run_test(size=(100, 30)) as pilot:
        await _settle(app, pilot)

        async def long_work() -> None:
            async with httpx.AsyncClient() as client:
                while True:
                    await client.get(f"{demo_app.url}/livez")

        worker = app.run_worker(long_work(), group="rollback", name="pretend-rollback",
                                exit_on_error=False)
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert app.focused is not None and app.focused.id == "no"  # Cancel has the focus
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.is_running
        worker.cancel()


async def test_high_contrast_theme_toggles(console_config: Path) -> None:
    app = RollbackConsoleApp(config.load(console_config), mode="drill", theme="high-contrast")
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.theme == "high-contrast"
        await pilot.press("ctrl+t")
        assert app.theme == "textual-dark"
        await pilot.press("ctrl+t")
        assert app.theme == "high-contrast"


@pytest.mark.parametrize(("typed", "enter_on", "passed"), [
    ("ROLLBACK jq-kiosk", "field", True),     # letters the app binds (j, q, k) are typed
    ("ROLLBACK jq-kios", "field", False),     # not exact: stays shut, says what is expected
    ("", "cancel", False),                    # enter on the focused Cancel cancels
])
async def test_the_gate_takes_the_phrase_typed_straight_away(
        console_config: Path, typed: str, enter_on: str, passed: bool) -> None:
    from screens.gate import GateScreen

    app = RollbackConsoleApp(config.load(console_config), mode="drill")
    results: list[bool | None] = []
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        gate = GateScreen("Type 2 of jq-kiosk", ["!public.media: all rows replaced"],
                          "ROLLBACK jq-kiosk")
        await app.push_screen(gate, results.append)
        await pilot.pause()
        assert gate.focused is not None and gate.focused.id == "cancel"
        # all at once, as a terminal delivers a paste or fast typing: keys arrive before the
        # focus has moved to the field, spaces included
        for c in typed:
            gate.post_message(events.Key({" ": "space", "-": "minus"}.get(c, c), c))
        await pilot.press("enter")
        await pilot.pause()
        if passed:
            assert results == [True], gate.query_one("#gate-input").value  # type: ignore[attr-defined]
        elif enter_on == "cancel":
            assert results == [False]
        else:
            assert results == [] and app.screen is gate   # still open, nothing done
            error = str(gate.query_one("#gate-error").render())
            assert "WRONG PHRASE" in error and "'ROLLBACK jq-kiosk'" in error
    assert app.return_code in (None, 0)
