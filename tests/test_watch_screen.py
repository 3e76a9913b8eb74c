"""The console's extended-monitoring view: rounds fill in, a regression injected while it
watches raises an ALERT naming the item and notifies the channels (the demo app's real
receiver), stop ends the worker cleanly, `?` lists its keys, and a bad start says why."""

from __future__ import annotations

import time
from pathlib import Path

import asyncpg
import httpx

from app import config
from app.backups.create import create_set
from app.tui import RollbackConsoleApp
from screens.help import HelpScreen
from screens.watch import WatchScreen
from tests.conftest import DemoApp, DemoDb, wait_until


async def test_the_view_shows_rounds_and_alerts_on_a_regression(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp,
        conn: asyncpg.Connection) -> None:
    console_config.write_text(console_config.read_text().replace(
        "webhooks = []", f'webhooks = ["{demo_app.url}/hooks/ops"]'))
    cfg = config.load(console_config)
    await create_set(cfg)
    app = RollbackConsoleApp(cfg, mode="drill")
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        await app.push_screen(WatchScreen(duration_s=600, interval_s=1))
        screen = app.screen
        assert isinstance(screen, WatchScreen)
        await wait_until(lambda: len(screen.rounds) >= 1, pilot, 60)
        assert screen.rounds[0].passing == len(screen.rounds[0].checklist.items)
        assert "round 1" in str(screen.query_one("#watch-status").render())
        await conn.execute("DELETE FROM chakai WHERE id <= 20")   # the regression
        await wait_until(lambda: bool(screen.alerts), pilot, 60)
        alert = str(screen.query_one("#watch-alert").render())
        assert "ALERT: REGRESSED" in alert and "Data Integrity" in alert
        table = screen.query_one("#watch-items")
        row = table.get_row("Data Integrity")  # type: ignore[attr-defined]
        assert "FAIL" in str(row[1])            # a word, not only a colour
        assert "▁" in str(row[2]) and "█" in str(row[2])   # passed, then not
        table.focus()
        await pilot.pause()
        first = table.cursor_row  # type: ignore[attr-defined]
        await pilot.press("j")                  # vim keys move in every screen's lists
        assert table.cursor_row == first + 1  # type: ignore[attr-defined]
        await pilot.press("k")
        assert table.cursor_row == first  # type: ignore[attr-defined]
        await pilot.press("s")
        await wait_until(lambda: not screen.watching, pilot, 10)
        assert "STOPPED by the operator" in str(screen.query_one("#watch-status").render())
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert ("s", "Stop watching") in [(k, d) for k, d in app.screen.keys]
    deadline = time.monotonic() + 10
    events: list[str] = []
    while time.monotonic() < deadline and "regression" not in events:
        events = [n["payload"]["event"] for n in
                  httpx.get(f"{demo_app.url}/hooks").json()["notifications"]]
        time.sleep(0.2)
    assert "regression" in events


async def test_without_a_backup_the_view_says_why(console_config: Path,
                                                  demo_app: DemoApp) -> None:
    app = RollbackConsoleApp(config.load(console_config), mode="drill")
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("w")
        screen = app.screen
        assert isinstance(screen, WatchScreen)
        await wait_until(lambda: bool(screen.finished), pilot, 30)
        status = str(screen.query_one("#watch-status").render())
        assert "could not watch" in status and "backup" in status, status
