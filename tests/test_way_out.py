"""No dead end after a stop: a Type 3 restore from a corrupt hand-made set fails cleanly (exit 4,
its half-restored database dropped, the target untouched), the way out its message names works,
and the console's maintenance key asks the app rather than what the run remembers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import asyncpg
import httpx

from app.rollback.context import NeedsOperator, Outcome, RunContext
from app.rollback.plan import Step
from app.sandbox.server import bin_dir
from screens.confirm import ConfirmScreen
from tests.conftest import DemoApp, DemoDb, wait_until
from tests.helpers import cli
from tests.test_partial_rollback import checksums
from tests.test_rollback_screen import screen_for

TABLES = ("public.objects", "public.media", "public.accounts")


async def test_a_corrupt_hand_made_full_dump_fails_cleanly_and_maintenance_off_works(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    # a hand-made set: only a plain SQL dump, no manifest (so no checksum to catch damage)
    folder = console_config.parent / "backups" / "production_migration_20261124"
    folder.mkdir(parents=True)
    dump = folder / "full_database_backup.sql"
    subprocess.run([str(bin_dir() / "pg_dump"), f"--file={dump}", demo_db.dsn], check=True,
                   capture_output=True)
    data = bytearray(dump.read_bytes())
    at = data.index(b"CREATE TABLE public.")
    for i in (at, at + 1, at + 2):   # three flipped bytes
        data[i] ^= 0xFF
    dump.write_bytes(bytes(data))
    await conn.execute("UPDATE objects SET name = 'after the migration'")
    before = await checksums(conn, *TABLES)

    ran = cli(console_config, tmp_path, "run", "--type", "full", "--confirm",
              "CONFIRM_FULL_RESTORE tea-school-sandbox")
    out = ran.stdout + ran.stderr
    assert ran.returncode == 4, out   # failed, nothing changed on the target
    assert "the restore into" in out and "was dropped" in out and "use another set" in out
    leftovers = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1",
                                 f"{demo_db.name}\\_restored\\_%")
    assert leftovers == []   # no half-restored database left behind
    assert await checksums(conn, *TABLES) == before

    # the message's way out, each command tried: the app is still in maintenance
    assert "`rollback-console maintenance off`" in out
    status = cli(console_config, tmp_path, "maintenance", "status")
    assert status.returncode == 10 and "maintenance mode is ON" in status.stdout
    off = cli(console_config, tmp_path, "maintenance", "off")
    assert off.returncode == 0, off.stdout + off.stderr
    assert httpx.get(f"{demo_app.url}/api/health").status_code == 200
    status = cli(console_config, tmp_path, "maintenance", "status")
    assert status.returncode == 0 and "maintenance mode is OFF" in status.stdout
    assert "resume" not in out.split("journal:")[0].split("(exit 4)")[-1]   # not offered...
    again = cli(console_config, tmp_path, "resume")
    assert again.returncode == 2 and "nothing to resume" in again.stderr   # ...and indeed none


async def _stops(_ctx: RunContext) -> str:
    raise NeedsOperator("the validation found rows the operator must look at")


async def test_the_maintenance_key_after_a_stop_asks_the_app(
        console_config: Path, demo_app: DemoApp, tmp_path: Path) -> None:
    """The run switched the real app into maintenance and then stopped for the operator
    (exit 5), and it never recorded the switch (as after a crash in the step): shift+m asks the
    app, finds it in maintenance, and switches it off."""
    from app.comms import Maintenance
    from app.rollback.steps import maintenance_on

    async def on_but_not_recorded(ctx: RunContext) -> str:
        summary = await maintenance_on(ctx)
        ctx.run.maintenance = None
        return summary

    app, screen, ctx = screen_for(console_config, tmp_path, [
        Step("maintenance", "Set maintenance mode", "on", 120, on_but_not_recorded),
        Step("validation", "Validate", "checks", 10, _stops)])
    async with app.run_test(size=(120, 36)) as pilot:
        await app.push_screen(screen)
        await wait_until(lambda: screen.outcome is not None, pilot)
        assert screen.outcome is Outcome.NEEDS_OPERATOR
        assert httpx.get(f"{demo_app.url}/api/health").status_code == 503
        await pilot.press("M")
        await wait_until(lambda: isinstance(app.screen, ConfirmScreen), pilot)
        assert app.screen.focused is not None and app.screen.focused.id == "no"
        await pilot.click("#yes")
        await wait_until(lambda: ctx.maintenance == "off", pilot)
    assert httpx.get(f"{demo_app.url}/api/health").status_code == 200
    assert ctx.cfg.app is not None
    m = Maintenance(ctx.cfg.app)
    try:
        assert await m.status() is False
    finally:
        await m.aclose()
