"""What the console leaves behind: no pg_dump/pg_restore/psql still running after the console
was killed (-9), and no file holding data that another user of the machine can read (backup
sets, safety dumps, CSV exports: files 0600, folders 0700)."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest

from app.backups.tools import run_tool
from app.config import Target
from app.secrets import Secret
from tests.conftest import DemoApp, DemoDb
from tests.helpers import CONSOLE, cli

TOOLS = {"pg_dump", "pg_restore", "psql"}


def _stat(pid: int) -> tuple[str, str, int] | None:
    """(command name, state, parent pid) of a live process; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    state, ppid = text[text.rindex(")") + 2:].split()[:2]
    return comm, state, int(ppid)


def _alive(pid: int) -> bool:
    found = _stat(pid)
    return found is not None and found[1] not in ("Z", "X")   # a zombie has stopped running


def _tool_children(parent: int) -> dict[int, str]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _stat(int(entry.name))
            if found and found[2] == parent and found[0] in TOOLS and _alive(int(entry.name)):
                out[int(entry.name)] = found[0]
    return out


def _still_running(children: dict[int, str], within: float) -> dict[int, str]:
    """The children still running once they all stopped, or ``within`` seconds passed."""
    deadline = time.monotonic() + within
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {pid: name for pid, name in children.items() if _alive(pid)}


async def test_kill_9_of_the_console_leaves_no_dump_tool_running(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    # another session holds a lock: the backup's pg_dump waits for it (as it would behind a
    # long migration), so it is surely running when the console is killed
    blocker = conn.transaction()
    await blocker.start()
    await conn.execute("LOCK TABLE media IN ACCESS EXCLUSIVE MODE")
    env = {**os.environ, "ROLLBACK_CONSOLE_HOME": str(tmp_path / "home")}
    with (tmp_path / "console.log").open("w") as log:
        console = subprocess.Popen(
            [*CONSOLE, "-c", str(console_config), "backup"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    children: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 60
        while not children:
            assert console.poll() is None, (tmp_path / "console.log").read_text()
            assert time.monotonic() < deadline, "no dump tool was started"
            await asyncio.sleep(0.05)
            children = _tool_children(console.pid)
        assert "pg_dump" in children.values()

        console.send_signal(signal.SIGKILL)
        console.wait(timeout=30)
        left = _still_running(children, within=10)
        assert left == {}, f"still running after the console was killed: {left}"
    finally:
        for pid in children:   # never leave them behind, whatever happened
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if console.poll() is None:
            console.kill()
            console.wait()
        await blocker.rollback()
    # the dump that was cut short is not a set anyone can pick
    listed = cli(console_config, tmp_path / "home", "backups", "--json")
    assert listed.returncode == 0, listed.stderr
    assert '"sets": []' in listed.stdout


def _exposed(root: Path) -> list[str]:
    """Files another user could read, and folders they could enter, under ``root``."""
    out = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_file() and mode & 0o077:
            out.append(f"{path.relative_to(root)} {mode:o}")
    return out


async def test_backup_sets_safety_dumps_and_exports_are_private(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    made = cli(console_config, home, "backup")
    assert made.returncode == 0, made.stdout + made.stderr
    await conn.execute("UPDATE media SET caption = 'broken', updated_at = now() "
                       "WHERE id % 3 = 0")
    run = cli(console_config, home, "run", "--type", "partial", "--tables", "media",
              "--confirm", "ROLLBACK tea-school-sandbox")
    assert run.returncode == 0, run.stdout + run.stderr

    backups = console_config.parent / "backups"
    (the_set,) = [p for p in backups.iterdir() if p.is_dir()]
    (journal,) = list((home / "incidents").glob("*/journal.jsonl"))
    safety = journal.parent / "safety"
    assert (the_set / "table_media_backup.sql").stat().st_size > 0
    assert (safety / "tables-before-rollback.dump").is_file()
    assert list(safety.glob("written-since-backup.*.csv")), "no CSV export was written"
    assert _exposed(backups) == []
    assert _exposed(home / "incidents") == []
    for folder in (the_set, safety):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


async def test_a_step_that_fails_while_a_tool_runs_leaves_no_tool_running(
        demo_db: DemoDb, conn: asyncpg.Connection, tmp_path: Path) -> None:
    """The step's own code fails (here: the log handler) while psql is still at work: the
    console stops the tool instead of leaving it running on its own."""
    target = Target("t", "drill", Secret(demo_db.dsn), tmp_path, (), ())

    def on_line(line: str) -> None:
        if "started" in line:
            raise RuntimeError("the step failed")

    try:
        with pytest.raises(RuntimeError, match="the step failed"):
            await run_tool("psql", ["--no-psqlrc", "--command=\\warn started",
                                    "--command=SELECT pg_sleep(600)"], target, on_line)
        left = _still_running({pid: name for pid, name in _tool_children(os.getpid()).items()
                               if name == "psql"}, within=10)
        assert left == {}, f"psql still running after the step failed: {left}"
    finally:
        for pid in _tool_children(os.getpid()):
            os.kill(pid, signal.SIGKILL)
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE query = 'SELECT pg_sleep(600)'")
