"""SVG snapshots of the main screens at a fixed size (Textual is pinned exactly). The target is
unreachable on purpose: every text on screen is then the same on every machine.
Update after an intended change with: pytest tests/test_snapshots.py --snapshot-update"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from app import config
from app.tui import RollbackConsoleApp
from screens.gate import GateScreen

CONFIG = """
[target]
name = "shop-production"
environment = "production"
dsn = "postgresql://rollback:not-the-password@127.0.0.1:9/shop"
backups_root = "/nonexistent/rollback-backups"
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


@pytest.fixture
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    path = tmp_path / "rollback.toml"
    path.write_text(CONFIG)

    def make(mode: str = "live") -> RollbackConsoleApp:
        return RollbackConsoleApp(config.load(path), mode=mode)
    return make


async def settled(pilot: Pilot[object]) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_home(console, snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(console(), terminal_size=(100, 30), run_before=settled)


def test_home_assess_mode_80x24(console, snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(console("assess"), terminal_size=(80, 24), run_before=settled)


def test_help(console, snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot[object]) -> None:
        await settled(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(console(), terminal_size=(100, 30), run_before=run_before)


def test_gate(console, snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot[object]) -> None:
        await settled(pilot)
        await pilot.app.push_screen(GateScreen(
            "Type 3: complete database restore of shop-production",
            ["!the whole database shop (1,204.5 MB) replaced by a restored copy; every change "
             "since the backup is lost", "backup production_migration_20261124 taken "
             "2026-11-24 02:00 UTC"], "CONFIRM_FULL_RESTORE shop-production"))
        await pilot.pause()

    assert snap_compare(console(), terminal_size=(100, 30), run_before=run_before)


def test_assess_unreachable(console, snap_compare) -> None:  # type: ignore[no-untyped-def]
    """The decision matrix when the target cannot be reached: every check says NOT RUN (in
    words) and the recommendation says why, with the password masked."""
    async def run_before(pilot: Pilot[object]) -> None:
        await settled(pilot)
        await pilot.press("a")
        await settled(pilot)

    assert snap_compare(console(), terminal_size=(100, 30), run_before=run_before)
