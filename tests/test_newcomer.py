"""The console for a tired newcomer (issue 15): what the screen and the CLI say must never lead
the wrong way. Each test plays what a newcomer would do and asserts what they would notice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from app import config
from app.rollback.backupset import create_set
from tests.conftest import DemoApp, DemoDb, wait_until
from tests.test_partial_rollback import checksums, make_set

PHRASE_SCHEMA = "ROLLBACK SCHEMA tea-school-sandbox"


def cli(console_config: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROLLBACK_CONSOLE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "app", "-c", str(console_config), *args],
                          capture_output=True, text=True, timeout=300, env=env,
                          stdin=subprocess.DEVNULL)


# item 3: a schema rollback with nothing to change must not take the app down

async def test_a_schema_rollback_with_nothing_to_change_says_so_and_never_touches_the_app(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, tmp_path: Path) -> None:
    await create_set(config.load(console_config), "before-migration")   # no migration after
    home = tmp_path / "home"
    dry = cli(console_config, home, "run", "--type", "schema", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "NOTHING TO DO" in dry.stdout
    result = cli(console_config, home, "run", "--type", "schema", "--confirm", PHRASE_SCHEMA)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "NOTHING TO DO" in result.stdout and "nothing was changed" in result.stdout
    assert "Set maintenance mode" not in result.stdout   # no step ran: the app never went down
    assert not (home / "incidents").exists() or not any((home / "incidents").iterdir())
    as_json = cli(console_config, home, "run", "--type", "schema", "--confirm", PHRASE_SCHEMA,
                  "--json")
    last = json.loads(as_json.stdout.splitlines()[-1])
    assert as_json.returncode == 0
    assert last["event"] == "RunFinished" and last["outcome"] == "nothing_to_do"


async def test_the_console_offers_no_gate_for_a_schema_plan_with_nothing_to_change(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from app.rollback.context import RollbackType
    from app.tui import RollbackConsoleApp
    from screens.gate import GateScreen
    from screens.plan import PlanScreen

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    cfg = config.load(console_config)
    await create_set(cfg, "before-migration")
    app = RollbackConsoleApp(cfg, mode="live")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        app.push_screen(PlanScreen(RollbackType.SCHEMA))
        await pilot.pause()
        await pilot.press("b")
        await wait_until(lambda: getattr(app.screen, "plan", None) is not None, pilot, 60)
        shown = str(app.screen.query_one("#plan-text").render())
        assert "Nothing to do" in shown and "shift+g" not in shown
        await pilot.press("G")
        await pilot.pause()
        assert not isinstance(app.screen, GateScreen)


# item 5: a dry run exits with the code the run would

async def test_a_dry_run_of_a_table_not_on_the_target_exits_2_like_the_run(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    await make_set(demo_db, conn, console_config.parent / "backups")
    before = await checksums(conn, "public.media")
    home = tmp_path / "home"
    dry = cli(console_config, home, "run", "--type", "partial", "--tables", "medias",
              "--dry-run")
    run = cli(console_config, home, "run", "--type", "partial", "--tables", "medias",
              "--confirm", "ROLLBACK tea-school-sandbox")
    assert run.returncode == 2, run.stdout + run.stderr
    assert dry.returncode == run.returncode, dry.stdout + dry.stderr
    assert "the run would be refused (exit 2)" in dry.stderr
    assert "medias" in dry.stderr
    as_json = cli(console_config, home, "run", "--type", "partial", "--tables", "medias",
                  "--dry-run", "--json")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["exit_code"] == 2
    assert await checksums(conn, "public.media") == before


# item 4: assess mode says what it is and offers only what it can do

def _footer_keys(app: object) -> set[str]:
    screen = app.screen  # type: ignore[attr-defined]
    return {active.binding.key for active in screen.active_bindings.values()
            if active.binding.show and active.enabled}


async def test_assess_mode_offers_no_key_that_can_only_be_refused(
        console_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.tui import RollbackConsoleApp
    from screens.assess import AssessScreen

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    app = RollbackConsoleApp(config.load(console_config), mode="assess")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        home_keys = _footer_keys(app)
        assert "R" not in home_keys and "u" not in home_keys and "a" in home_keys
        app.screen.action_open("rollback")     # the disabled entry chosen anyway
        await pilot.pause()
        toast = next(iter(app._notifications))
        assert "Not in assess mode" not in toast.title
        assert "read-only" in toast.title.lower()
        await pilot.press("a")
        await wait_until(lambda: isinstance(app.screen, AssessScreen), pilot, 30)
        await wait_until(lambda: getattr(app.screen, "assessment", None) is not None, pilot, 90)
        keys = _footer_keys(app)
        assert "Y" not in keys and "O" not in keys and "r" in keys


async def test_live_mode_still_offers_the_rollback_keys(console_config: Path) -> None:
    from app.tui import RollbackConsoleApp

    app = RollbackConsoleApp(config.load(console_config), mode="live")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "R" in _footer_keys(app)


async def test_watch_that_cannot_start_leaves_no_row_running(console_config: Path,
                                                             demo_app: DemoApp) -> None:
    from app.tui import RollbackConsoleApp
    from screens.watch import WatchScreen

    app = RollbackConsoleApp(config.load(console_config), mode="assess")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("w")
        screen = app.screen
        assert isinstance(screen, WatchScreen)
        await wait_until(lambda: bool(screen.finished), pilot, 30)
        await pilot.pause()
        assert "could not watch" in screen.finished
        rows = [str(screen.query_one("#watch-items").get_row_at(i)[1])  # type: ignore[attr-defined]
                for i in range(screen.query_one("#watch-items").row_count)]  # type: ignore[attr-defined]
        assert rows and not any("RUNNING" in r for r in rows), rows
        assert all("NOT RUN" in r for r in rows)
