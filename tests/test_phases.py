"""A multi-phase recommendation is one plan (issue 15, item 2). Drill `dropped-table`: Type 1
brings chakai back empty (its rows are only in the backup), Type 2 reloads them. The real demo
app must stay in maintenance between the phases (its /api/health answers 503), DONE is said once,
after phase 2 validates, and stopping after phase 1 says plainly that the app is still down and
how to get out, and journals it. Headless: `run --type schema --keep-maintenance` then
`run --type partial`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app import config, drills
from app.backups.create import create_set
from app.journal import Journal
from tests.conftest import DemoApp, DemoDb, wait_until
from tests.helpers import cli
from widgets.step_list import StepList

TARGET = "tea-school-sandbox"
DROPPED = drills.BY_NAME["dropped-table"]


def health(app: DemoApp) -> int:
    return httpx.get(f"{app.url}/api/health", timeout=10).status_code


def journals(home: Path) -> list[Journal]:
    """The incidents under ``home``, oldest first."""
    return [Journal(p) for p in sorted(home.glob("incidents/*/journal.jsonl"))]


async def dropped_table(console_config: Path, conn: asyncpg.Connection) -> int:
    """The drill's incident on a backed-up database; chakai's row count before it."""
    await create_set(config.load(console_config), "before-migration")
    rows = int(await conn.fetchval("SELECT count(*) FROM public.chakai"))
    await conn.execute(DROPPED.migration)
    return rows


async def test_headless_keep_maintenance_holds_the_app_down_until_phase_2(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    rows = await dropped_table(console_config, conn)
    home = tmp_path / "home"
    first = cli(console_config, home, "run", "--type", "schema", "--keep-maintenance",
                "--confirm", f"ROLLBACK SCHEMA {TARGET}")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "PHASE_VALIDATED" in first.stdout and "DONE (exit" not in first.stdout
    assert "maintenance stays on for phase 2" in first.stdout
    assert "--tables chakai" in first.stdout and "maintenance off" in first.stdout
    assert health(demo_app) == 503          # between the phases the app is still down
    [phase1] = journals(home)
    closed = phase1.last("incident_closed")
    assert closed is not None and closed.data["outcome"] == "phase_validated"
    assert phase1.last("maintenance_held") is not None

    dry = cli(console_config, home, "run", "--type", "partial", "--tables", "chakai",
              "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "public.chakai: empty now, no current rows to replace" in dry.stdout
    assert "all 0 current rows" not in dry.stdout   # an empty table loses nothing

    second = cli(console_config, home, "run", "--type", "partial", "--tables", "chakai",
                 "--confirm", f"ROLLBACK {TARGET}")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "maintenance mode is already on (held by phase 1" in second.stdout
    assert health(demo_app) == 200          # phase 2 switched it off after validating
    assert await conn.fetchval("SELECT count(*) FROM public.chakai") == rows
    phase2 = journals(home)[1]
    opened = phase2.last("incident_opened")
    assert opened is not None and opened.data["follows"] == phase1.incident_id
    verified = phase2.last("maintenance_verified")
    assert verified is not None and verified.data["api_status"] == 503
    done = phase2.last("incident_closed")
    assert done is not None and done.data["outcome"] == "done"


async def test_a_phase_1_killed_and_resumed_still_holds_maintenance(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    """Killed (a real SIGKILL at the step boundary) before the hold: `resume` finishes
    phase 1 as phase 1 (the hold was recorded when the incident opened), never as DONE."""
    import subprocess

    from app.faults import ENV
    from tests.helpers import CONSOLE

    await dropped_table(console_config, conn)
    home = tmp_path / "home"
    killed = subprocess.run(
        [*CONSOLE, "-c", str(console_config), "run", "--type", "schema", "--keep-maintenance",
         "--confirm", f"ROLLBACK SCHEMA {TARGET}"], capture_output=True, text=True,
        env={**os.environ, "ROLLBACK_CONSOLE_HOME": str(home), ENV: "before:hold_maintenance"},
        stdin=subprocess.DEVNULL, timeout=300)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    resumed = cli(console_config, home, "resume", "--confirm", f"ROLLBACK SCHEMA {TARGET}")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "PHASE_VALIDATED" in resumed.stdout
    assert health(demo_app) == 503
    [journal] = journals(home)
    closed = journal.last("incident_closed")
    assert closed is not None and closed.data["outcome"] == "phase_validated"


def test_keep_maintenance_is_only_for_a_schema_rollback(console_config: Path,
                                                       tmp_path: Path) -> None:
    refused = cli(console_config, tmp_path, "run", "--type", "partial", "--tables", "media",
                  "--keep-maintenance", "--dry-run")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--keep-maintenance is for --type schema" in refused.stderr


async def phase_one_in_console(pilot: Any, app: Any, home: Path) -> None:
    """Plan Type 1, the gate, the run, as the screens lead."""
    from app.rollback.context import RollbackType
    from screens.plan import PlanScreen

    await app.workers.wait_for_complete()
    await app.push_screen(PlanScreen(RollbackType.SCHEMA))
    await pilot.press("b")
    await wait_until(lambda: getattr(app.screen, "plan", None) is not None, pilot, 60)
    await pilot.press("G")
    await pilot.pause()
    await pilot.press(*f"ROLLBACK SCHEMA {TARGET}")
    await pilot.press("enter")
    await wait_until(lambda: getattr(app.screen, "outcome", None) is not None, pilot, 90)


async def test_the_console_keeps_maintenance_on_between_phases_and_says_done_once(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.rollback.context import Outcome
    from app.tui import RollbackConsoleApp
    from screens.plan import PlanScreen
    from screens.rollback import RollbackScreen

    home = tmp_path / "home"
    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(home))
    rows = await dropped_table(console_config, conn)
    app = RollbackConsoleApp(config.load(console_config), mode="drill")
    async with app.run_test(size=(120, 36)) as pilot:
        await phase_one_in_console(pilot, app, home)
        phase1 = app.screen
        assert isinstance(phase1, RollbackScreen)
        outcome = str(phase1.query_one("#rb-outcome").render())
        assert "PHASE 1 OF 2 VALIDATED, the incident is not over" in outcome
        assert "DONE" not in outcome and "MAINTENANCE" in outcome
        assert "press D for phase 2" in outcome
        steps = phase1.query_one(StepList)
        assert "Keep maintenance on for phase 2" in str(steps.get_option("hold_maintenance")
                                                         .prompt)
        assert health(demo_app) == 503       # the app never came back half-fixed

        await pilot.press("D")
        await pilot.pause()
        assert isinstance(app.screen, PlanScreen) and app.screen.phase == (2, 2)
        await pilot.press("b")
        await wait_until(lambda: getattr(app.screen, "plan", None) is not None, pilot, 60)
        await pilot.press("G")
        await pilot.pause()
        await pilot.press(*f"ROLLBACK {TARGET}")
        await pilot.press("enter")
        await wait_until(lambda: isinstance(app.screen, RollbackScreen)
                         and app.screen is not phase1
                         and app.screen.outcome is not None, pilot, 90)
        phase2 = app.screen
        assert isinstance(phase2, RollbackScreen) and phase2.outcome is Outcome.DONE
        outcome = str(phase2.query_one("#rb-outcome").render())
        assert outcome.startswith("✔ DONE")
        assert health(demo_app) == 200
    assert await conn.fetchval("SELECT count(*) FROM public.chakai") == rows
    first, second = journals(home)
    assert not any(e.kind == "stopped_between_phases" for e in first.entries)
    assert [e.data["outcome"] for e in first.of_kind("incident_closed")] == ["phase_validated"]
    assert [e.data["outcome"] for e in second.of_kind("incident_closed")] == ["done"]
    found = second.last("maintenance_verified")
    assert found is not None and found.data["held_by"] == first.incident_id


async def test_stopping_after_phase_1_names_the_way_out_and_is_journaled(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.tui import RollbackConsoleApp
    from screens.confirm import ConfirmScreen

    home = tmp_path / "home"
    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(home))
    await dropped_table(console_config, conn)
    app = RollbackConsoleApp(config.load(console_config), mode="live")
    async with app.run_test(size=(120, 36)) as pilot:
        await phase_one_in_console(pilot, app, home)
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)          # not a silent quit
        question = app.screen.question
        assert "still in MAINTENANCE mode" in question
        assert f"rollback-console --config {console_config} maintenance off" in question
        assert "run --type partial --tables chakai" in question
        assert app.screen.focused is not None and app.screen.focused.id == "no"
        await pilot.click("#yes")
        await pilot.pause()
    assert health(demo_app) == 503
    [journal] = journals(home)
    stopped = journal.last("stopped_between_phases")
    assert stopped is not None and stopped.data["maintenance"] == "on"
    assert any("maintenance off" in line for line in stopped.data["way_out"])
    closed = [e.data["outcome"] for e in journal.of_kind("incident_closed")]
    assert "done" not in closed
    assert json.dumps(stopped.data).count("--tables chakai") == 1
