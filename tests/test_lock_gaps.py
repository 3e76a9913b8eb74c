"""The target lock has no gaps: a run whose lock session is ended stops before its next
destructive action (a second console could have the target by then), and the maintenance
switch is refused while a live run holds the target, from any state directory."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import asyncpg
import httpx

from app import config
from app.lock import TargetLock, lock_key
from tests.conftest import DemoApp, DemoDb
from tests.helpers import CONSOLE, cli
from tests.test_partial_rollback import checksums, make_set
from tests.test_run_cli import _wait_for, grow_media


async def _lock_holder(admin: asyncpg.Connection, key: int) -> int | None:
    """The server pid holding the target's advisory lock (whoever it is)."""
    return await admin.fetchval(   # type: ignore[no-any-return]
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND ((classid::bigint << 32) | objid::bigint) = $1", key)


async def test_a_run_whose_lock_session_is_ended_stops_before_changing_anything_more(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    # a table large enough that the run is still in its safety snapshot when the lock goes
    await grow_media(conn)
    backup = await make_set(demo_db, conn, console_config.parent / "backups", ("media",))
    assert backup.manifest is not None
    restored = [backup.manifest.state.tables["public.media"].checksum]
    await conn.execute("UPDATE media SET caption = 'broken' WHERE id % 3 = 0")
    broken = await checksums(conn, "public.media")
    key = lock_key(config.load(console_config).target)

    env = {**os.environ, "ROLLBACK_CONSOLE_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [*CONSOLE, "-c", str(console_config), "run", "--type", "partial",
         "--tables", "media", "--confirm", "ROLLBACK tea-school-sandbox"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        stdin=subprocess.DEVNULL)
    try:
        _wait_for(tmp_path, "action_started", "safety_snapshot", proc)
        holder = await _lock_holder(conn, key)
        assert holder is not None
        # someone ends the lock's session (a DBA clearing "idle" sessions, a failover):
        # the advisory lock goes with it, and another console could take the target now
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", holder)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 5, out
    assert "the target lock was lost" in out
    # the runner asks the server before the destructive step; the action asks again itself
    assert re.search(r"stopping before (restore|reload_tables)", out), out
    assert "nothing more will be changed" in out
    assert await checksums(conn, "public.media") == broken   # the reload never ran
    journal = [json.loads(line) for line in
               next(tmp_path.glob("incidents/*/journal.jsonl")).read_text().splitlines()]
    assert not any(e["kind"] == "action_started" and e["data"].get("action") == "reload_tables"
                   for e in journal)
    assert any(e["kind"] == "lock_lost" for e in journal)

    # the stop names its ways out, and they work: the app is in maintenance, `maintenance
    # off` is allowed now that no live run holds the target, and `resume` finishes the job
    assert "`rollback-console maintenance off`" in out and "`rollback-console resume`" in out
    assert httpx.get(f"{demo_app.url}/api/health").status_code == 503
    off = cli(console_config, tmp_path, "maintenance", "off")
    assert off.returncode == 0, off.stdout + off.stderr
    assert httpx.get(f"{demo_app.url}/api/health").status_code == 200
    resumed = cli(console_config, tmp_path, "resume", "--confirm", "ROLLBACK tea-school-sandbox")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # the app must not serve while the table is replaced: maintenance goes back on first
    after = [json.loads(line) for line in
             next(tmp_path.glob("incidents/*/journal.jsonl")).read_text().splitlines()]
    actions = [e["data"]["action"] for e in after if e["kind"] == "action_started"]
    resumed_at = max(i for i, e in enumerate(after) if e["kind"] == "incident_resumed")
    later = [e["data"]["action"] for e in after[resumed_at:] if e["kind"] == "action_started"]
    assert later[:2] == ["maintenance_on", "reload_tables"], actions
    assert await checksums(conn, "public.media") == restored
    assert httpx.get(f"{demo_app.url}/api/health").status_code == 200


async def test_maintenance_off_is_refused_while_a_live_run_holds_the_target(
        console_config: Path, demo_app: DemoApp, tmp_path: Path) -> None:
    """A console on another host (another state directory: no shared lock file) holds the
    target; `maintenance off` here must not switch the app out of maintenance under it."""
    on = cli(console_config, tmp_path, "maintenance", "on")
    assert on.returncode == 0, on.stdout + on.stderr
    target = config.load(console_config).target
    async with TargetLock(target, "inc-live"):   # what a run holds for its whole length
        off = cli(console_config, tmp_path / "elsewhere", "maintenance", "off")
        assert off.returncode == 3, off.stdout + off.stderr
        assert f"target {target.name} is locked by" in off.stderr
        assert "incident=inc-live" in off.stderr   # the holder, named
        assert httpx.get(f"{demo_app.url}/api/health").status_code == 503
    off = cli(console_config, tmp_path / "elsewhere", "maintenance", "off")
    assert off.returncode == 0, off.stdout + off.stderr   # the run ended: allowed
    assert httpx.get(f"{demo_app.url}/api/health").status_code == 200
