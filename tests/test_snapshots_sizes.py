"""SVG snapshots of every screen at 80x24 (the smallest terminal the console supports) and
120x36. The target is unreachable on purpose and every clock is frozen, so the pictures are the
same on every machine. Update after an intended change with:
pytest tests/test_snapshots_sizes.py --snapshot-update (then look at the changed SVGs)."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.worker import WorkerFailed

from app import config
from app.tui import RollbackConsoleApp

SIZES = [(80, 24), (120, 36)]
SIZE_IDS = ["80x24", "120x36"]
# A fixed path: the screens show where the sets are, and a snapshot must not show a tmp name.
BACKUPS = Path("/tmp/rollback-console-snapshots/backups")
FROZEN_EPOCH = 1_795_494_600.0   # 2026-11-24 04:30 UTC
SET_TAKEN = 1_795_485_600.0      # 2026-11-24 02:00 UTC: the set's files' time (no manifest)
CONFIG = f"""
[target]
name = "shop-production"
environment = "production"
dsn = "postgresql://rollback:not-the-password@127.0.0.1:9/shop"
backups_root = "{BACKUPS}"
critical_tables = ["accounts", "objects", "media"]
[app]
base_url = "http://127.0.0.1:9"
timeout_s = 1
[[contacts.people]]
role = "Primary DBA"
name = "Aiko Tanaka"
phone = "+81 3-0000-0001"
[channels]
slack = "#incident-response"
"""


class FrozenTime:
    """``time`` for the screens and widgets: the wall clock and the monotonic clock stand
    still (elapsed times, ages and countdowns are then the same on every run)."""

    def time(self) -> float:
        return FROZEN_EPOCH

    def monotonic(self) -> float:
        return 1000.0

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[Callable[[str], RollbackConsoleApp]]:
    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    # no log file: a failure line names the log's path, which an earlier test on the same
    # worker may have set (the SVG would then depend on test order)
    monkeypatch.setattr("app.logs._log_path", None)
    for module in ("widgets.incident_clock", "widgets.step_list", "screens.home",
                   "screens.plan", "screens.backups", "screens.watch"):
        monkeypatch.setattr(f"{module}.time", FrozenTime())
    # the same content every time, never removed: tests on parallel workers (pytest -n 2)
    # write it side by side and may read it at any moment
    (BACKUPS / "production_migration_20261124").mkdir(parents=True, exist_ok=True)
    dump = BACKUPS / "production_migration_20261124" / "table_media_backup.sql"
    if not dump.exists() or os.stat(dump).st_mtime != SET_TAKEN:
        dump.write_text("--\n")
        os.utime(dump, (SET_TAKEN, SET_TAKEN))
    path = tmp_path / "rollback.toml"
    path.write_text(CONFIG)

    def make(mode: str = "live") -> RollbackConsoleApp:
        return RollbackConsoleApp(config.load(path), mode=mode)
    yield make


async def settled(pilot: Pilot[Any]) -> None:
    try:
        await pilot.app.workers.wait_for_complete()
    except WorkerFailed:
        pass   # the screen shows the failure (the target is unreachable on purpose)
    await pilot.pause()


def pressing(*keys: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settled(pilot)
        for key in keys:
            await pilot.press(key)
            await settled(pilot)
    return run_before


def pushing(make_screen: Callable[[], Any], *keys: str
            ) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settled(pilot)
        await pilot.app.push_screen(make_screen())
        await settled(pilot)
        for key in keys:
            await pilot.press(key)
            await settled(pilot)
    return run_before


def snap(snap_compare: Any, app: RollbackConsoleApp, size: tuple[int, int],
         run_before: Callable[[Pilot[Any]], Awaitable[None]]) -> bool:
    return bool(snap_compare(app, terminal_size=size, run_before=run_before))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_home(console, snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    assert snap(snap_compare, console(), size, pressing())


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_help(console, snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    assert snap(snap_compare, console(), size, pressing("question_mark"))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_drills(console, snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    assert snap(snap_compare, console(), size, pressing("d"))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_backups(console, snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    assert snap(snap_compare, console(), size, pressing("b"))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_watch(console, snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    assert snap(snap_compare, console(), size, pressing("w"))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_assess(console, snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    assert snap(snap_compare, console(), size, pressing("a"))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_plan(console, snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    from app.rollback.context import RollbackType
    from screens.plan import PlanScreen

    assert snap(snap_compare, console(), size,
                pushing(lambda: PlanScreen(RollbackType.PARTIAL, ("media",)), "b"))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_gate(console, snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    from screens.gate import GateScreen

    assert snap(snap_compare, console(), size, pushing(lambda: GateScreen(
        "Type 3: complete database restore of shop-production",
        ["!the whole database shop (1,204.5 MB) replaced by a restored copy; every change "
         "since the backup is lost", "backup production_migration_20261124 taken "
         "2026-11-24 02:00 UTC"], "CONFIRM_FULL_RESTORE shop-production")))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_finding(console, snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    from screens.finding import FindingScreen

    assert snap(snap_compare, console(), size, pushing(lambda: FindingScreen(
        "data integrity: FAIL", "Data corruption or loss in critical tables",
        "public.media: 2,000 rows changed since the backup (captions emptied)",
        {"table": "public.media", "changed": 2000, "sample": [{"id": 1, "caption": ""}]})))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_confirm(console, snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    from screens.confirm import ConfirmScreen

    assert snap(snap_compare, console(), size, pushing(lambda: ConfirmScreen(
        "Work is still running. Quit anyway? Running steps are stopped and the journal "
        "records where.", yes_label="Quit")))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_reason(console, snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    from screens.reason import ReasonScreen

    assert snap(snap_compare, console(), size, pushing(lambda: ReasonScreen(
        "Override the recommendation (FORWARD-FIX: recreate the index). Why? The reason is "
        "journaled and goes into the incident report.", "Override")))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_debrief(console, snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    from screens.debrief import DebriefScreen

    text = "\n".join([
        "Drill: A dropped index (easy)", "Score: 100/100 for aiko (last runs: 75, 100)", "",
        "✔ +25 tier: FORWARD-FIX", "✔ +75 no rollback: forward-fix was the right call", "",
        "What happened: Performance only: forward-fix (recreate the index, CONCURRENTLY).",
        "The ideal path: assess → see FORWARD-FIX → do not roll back; fix forward.",
        "The right answer: FORWARD-FIX / no rollback"])
    assert snap(snap_compare, console(), size, pushing(lambda: DebriefScreen(text)))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_log_lines(console, snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    from screens.log_lines import LogLinesScreen

    lines = ["── step 4/7: Safety snapshot",
             "saved the current schema to /var/lib/rollback-console/incidents/"
             "20261124-020000-ab12/safety/schema-before-rollback.dump (48,213 bytes)",
             "   DONE: saved the current schema",
             "── step 5/7: Apply the schema plan",
             'ALTER TABLE "public"."objects" DROP COLUMN "legacy_code";']
    assert snap(snap_compare, console(), size, pushing(lambda: LogLinesScreen(lines, 1)))


async def _quick(_ctx: Any) -> str:
    return "ok"


async def _logs(ctx: Any) -> str:
    ctx.log("saved the current schema to /var/lib/rollback-console/incidents/"
            "20261124-020000-ab12/safety/schema-before-rollback.dump (48,213 bytes)")
    ctx.log('ALTER TABLE "public"."objects" DROP COLUMN "legacy_code";')
    return "applied 1 change(s) (1 statements) in one transaction"


def _rollback_screen(app: RollbackConsoleApp, home: Path) -> Any:
    from app.rollback.context import RollbackType
    from app.rollback.plan import Plan, Step
    from screens.rollback import RollbackScreen
    from tests.helpers import run_context

    cfg = app.config
    ctx = run_context(cfg, RollbackType.SCHEMA, home / "incident", None)
    steps = [Step("prerequisites", "Prerequisites check", "The set is present.", 300, _quick),
             Step("restore", "Apply the schema plan", "One transaction.", 1800, _logs,
                  destructive=True, point_of_no_return=True,
                  statements=('ALTER TABLE "public"."objects" DROP COLUMN "legacy_code";',)),
             Step("validation", "Schema validation", "Zero drift.", 600, _quick)]
    return RollbackScreen(Plan(RollbackType.SCHEMA, cfg.target.name,
                               "production_migration_20261124", (), steps), ctx)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_rollback_refused_at_the_lock(console, snap_compare, size, tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = console()

    async def run_before(pilot: Pilot[Any]) -> None:
        await settled(pilot)
        screen = _rollback_screen(app, tmp_path)
        await app.push_screen(screen)
        while screen.outcome is None:
            await pilot.pause(0.05)
        await pilot.pause(0.3)   # the log's batch is written
        await settled(pilot)

    assert snap(snap_compare, app, size, run_before)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_validation(console, snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    from screens.validation import ValidationScreen

    assert snap(snap_compare, console(), size,
                pushing(lambda: ValidationScreen("production_migration_20261124")))
