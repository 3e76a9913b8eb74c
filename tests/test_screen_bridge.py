"""One bridge from the screens to the engine: when the engine work behind a screen fails, every
screen says it the same way, in one line: ``could not <what>: <Type>: <first line> (details in
the log: <path>)``, and the traceback is in that log file, not on the screen.

The failure is a FAULT INJECTION: each test replaces the screen's engine call with ``crash``,
which raises what a bug in the engine would (an unexpected exception). The real engine, run
against the real database and demo app of these tests, cannot be made to fail that way on
purpose. Everything else (the app, the screens, the database and the demo app) is real."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from app import config, logs
from app.events import EventChannel
from app.journal import Journal
from app.rollback.context import Options, Outcome, RollbackType, RunContext
from app.rollback.plan import Plan
from app.tui import RollbackConsoleApp
from screens.backups import BackupsScreen
from screens.plan import PlanScreen
from screens.rollback import RollbackScreen
from screens.validation import ValidationScreen
from screens.watch import WatchScreen
from tests.conftest import wait_until
from widgets.check_list import CheckList
from widgets.status_line import StatusLine

FAULT = "injected fault: the engine call crashed"


async def crash(*_args: Any, **_kwargs: Any) -> Any:
    """FAULT INJECTION: stands in for an engine call (a coroutine, as they all are) and fails
    as a bug in it would, once it is under way."""
    await asyncio.sleep(0.05)
    raise RuntimeError(f"{FAULT}\nsecond line of the message, never on the screen")


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "logs" / "run.jsonl"
    logs.configure(path)
    return path


@pytest.fixture
def console(console_config: Path, log_path: Path) -> RollbackConsoleApp:
    cfg = config.load(console_config)
    set_dir = cfg.target.backups_root / "production_migration_20261124"
    set_dir.mkdir(parents=True, exist_ok=True)
    (set_dir / "table_media_backup.sql").write_text("--\n")
    return RollbackConsoleApp(cfg, mode="drill", log_path=log_path)


def said(text: str, what: str, log_path: Path) -> None:
    """The one shape, on one line, naming the log; the traceback is in that log."""
    line = next((x for x in str(text).splitlines() if "could not" in x), "")
    assert re.fullmatch(
        rf"(✖ )?could not {re.escape(what)}: RuntimeError: {re.escape(FAULT)} "
        rf"\(details in the log: {re.escape(str(log_path))}\)", line), text
    assert "second line" not in str(text)
    log = log_path.read_text(encoding="utf-8")
    assert "Traceback" in log and FAULT in log


def rendered(app: RollbackConsoleApp, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def test_home_probe_and_incident_lookup(console: RollbackConsoleApp, log_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("screens.home.server_facts", crash)
    monkeypatch.setattr("screens.home.unfinished_incident", crash)
    async with console.run_test(size=(120, 36)) as pilot:
        db = console.screen.query_one("#probe-db", StatusLine)
        incident = console.screen.query_one("#probe-incident", StatusLine)
        await wait_until(lambda: db.status == "error" and incident.status == "error", pilot)
        said(db.summary, "probe the target", log_path)
        said(incident.summary, "look for unfinished incidents", log_path)


async def test_assess(console: RollbackConsoleApp, log_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("screens.assess.run_assessment", crash)
    async with console.run_test(size=(120, 36)) as pilot:
        await pilot.press("a")
        await wait_until(lambda: "could not" in rendered(console, "#assess-verdict"), pilot)
        said(rendered(console, "#assess-verdict"), "assess", log_path)
        checks = console.screen.query_one(CheckList)
        assert set(checks.statuses.values()) == {"notrun"}   # none left RUNNING


async def test_validation(console: RollbackConsoleApp, log_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("screens.validation.run_validation", crash)
    async with console.run_test(size=(120, 36)) as pilot:
        await console.push_screen(ValidationScreen("production_migration_20261124"))
        await wait_until(lambda: "could not" in rendered(console, "#val-verdict"), pilot)
        said(rendered(console, "#val-verdict"), "validate", log_path)


async def test_watch(console: RollbackConsoleApp, log_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("screens.watch.watch", crash)
    async with console.run_test(size=(120, 36)) as pilot:
        screen = WatchScreen()
        await console.push_screen(screen)
        await wait_until(lambda: bool(screen.finished), pilot)
        said(screen.finished, "watch", log_path)


async def test_backups_verify(console: RollbackConsoleApp, log_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("screens.backups.verify", crash)
    async with console.run_test(size=(120, 36)) as pilot:
        await console.push_screen(BackupsScreen())
        await pilot.press("v")
        await wait_until(lambda: "could not" in rendered(console, "#set-text"), pilot)
        said(rendered(console, "#set-text"), "verify", log_path)


async def test_plan_build(console: RollbackConsoleApp, log_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("screens.plan.build_plan", crash)
    async with console.run_test(size=(120, 36)) as pilot:
        await console.push_screen(PlanScreen(RollbackType.SCHEMA))
        await pilot.press("b")
        await wait_until(lambda: "could not" in rendered(console, "#plan-text"), pilot)
        said(rendered(console, "#plan-text"), "build the plan", log_path)


async def test_rollback_runner(console: RollbackConsoleApp, log_path: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("screens.rollback.execute", crash)
    cfg = console.config
    ctx = RunContext(cfg, RollbackType.PARTIAL, Journal.open(tmp_path / "incident"),
                     EventChannel(), None,  # type: ignore[arg-type]  # restores nothing
                     Options(confirm=f"ROLLBACK {cfg.target.name}"))
    plan = Plan(RollbackType.PARTIAL, cfg.target.name, "b1", ("public.media",), [])
    async with console.run_test(size=(120, 36)) as pilot:
        screen = RollbackScreen(plan, ctx)
        await console.push_screen(screen)
        await wait_until(lambda: screen.outcome is not None, pilot)
        assert screen.outcome is Outcome.NEEDS_OPERATOR
        said(screen.summary, "finish the rollback", log_path)
        assert "STOPPED, needs you" in rendered(console, "#rb-outcome")
