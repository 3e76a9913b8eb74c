"""End to end in a real terminal: the installed `rollback-console drill` under tmux shows the
banner on the sandbox, quits on `q`, and leaves no postgres or demo-app process behind."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from app.sandbox.manager import read_info
from app.sandbox.server import pid_alive
from tests.conftest import DemoApp, DemoDb
from tests.helpers import CONSOLE_SCRIPT
from tests.test_partial_rollback import checksums, make_set

pytestmark = pytest.mark.tmux
COMMAND = CONSOLE_SCRIPT


class Tmux:
    def __init__(self) -> None:
        self.socket = f"rc-test-{uuid.uuid4().hex[:8]}"

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=30, check=True).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "console")

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} did not appear on the screen:\n{screen}")


    def exit_code(self, done: Path, timeout: float = 30.0) -> str:
        """The exit code the shell wrote to ``done`` once the console quit."""
        deadline = time.monotonic() + timeout
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert done.exists(), f"the console did not exit:\n{self.screen()}"
        return done.read_text().strip()

    def wait_gone(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text in self.screen():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} stayed on the screen:\n{self.screen()}")
            time.sleep(0.2)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed: `make test` installs it; or apt-get install tmux")
    t = Tmux()
    yield t
    subprocess.run(["tmux", "-L", t.socket, "kill-server"], capture_output=True)


def test_drill_in_a_real_terminal(tmux: Tmux, tmp_path: Path) -> None:
    assert COMMAND.exists(), "the console script is not installed in this environment"
    sandbox = tmp_path / "sandbox"
    done = tmp_path / "exit-code"
    shell = (f"ROLLBACK_CONSOLE_HOME={tmp_path / 'home'} {COMMAND} drill --rows 300 "
             f"--dir {sandbox}; echo $? > {done}")
    tmux.run("new-session", "-d", "-s", "console", "-x", "100", "-y", "30", shell)

    screen = tmux.wait_for("PostgreSQL 18")  # the probe reached the sandbox database
    assert "tea-school-sandbox" in screen and "DRILL" in screen
    assert "DRILL INCIDENT" in screen  # the injected incident, as users report it
    tmux.wait_for("answered 200")  # and the demo app's health endpoint
    info = read_info(sandbox)
    assert info is not None and pid_alive(info.postgres_pid) and pid_alive(info.app_pid)

    tmux.run("send-keys", "-t", "console", "?")
    tmux.wait_for("Help: Home")
    tmux.run("send-keys", "-t", "console", "Escape")
    tmux.wait_gone("Help: Home")  # (an Escape followed at once by q would read as alt+q)
    tmux.run("send-keys", "-t", "console", "q")
    tmux.wait_for("Drill debrief")  # a drill ends with its score
    tmux.run("send-keys", "-t", "console", "q")

    assert tmux.exit_code(done) == "0"
    assert not pid_alive(info.postgres_pid), "postgres outlived the console"
    assert not pid_alive(info.app_pid), "the demo app outlived the console"


async def test_assess_to_rollback_walkthrough_in_a_real_terminal(
        tmux: Tmux, tmp_path: Path, console_config: Path, demo_db: DemoDb, demo_app: DemoApp,
        conn: asyncpg.Connection) -> None:
    """The installed command, real key presses: assess, accept, build, gate, run, validate."""
    backup = await make_set(demo_db, conn, console_config.parent / "backups", ("media",))
    await conn.execute("UPDATE media SET caption = 'corrupted by the migration' WHERE id % 2 = 0")
    done = tmp_path / "exit-code"
    shell = (f"ROLLBACK_CONSOLE_HOME={tmp_path / 'home'} {COMMAND} -c {console_config}; "
             f"echo $? > {done}")
    tmux.run("new-session", "-d", "-s", "console", "-x", "120", "-y", "40", shell)
    tmux.wait_for("answered 200")
    tmux.run("send-keys", "-t", "console", "a")
    tmux.wait_for("IMMEDIATE ROLLBACK", timeout=90)
    tmux.wait_for("shift+y: accept")
    tmux.run("send-keys", "-t", "console", "Y")
    tmux.wait_for("selected: media")  # the recommendation chose the corrupted table
    tmux.run("send-keys", "-t", "console", "b")
    tmux.wait_for("POINT OF NO RETURN")
    tmux.run("send-keys", "-t", "console", "G")
    tmux.wait_for("To go ahead, type exactly")
    tmux.run("send-keys", "-t", "console", "BTab")  # from Cancel back to the phrase input
    tmux.run("send-keys", "-t", "console", "-l", "ROLLBACK tea-school-sandbox")
    tmux.run("send-keys", "-t", "console", "Enter")
    tmux.wait_for("rollback completed and validated", timeout=120)
    tmux.run("send-keys", "-t", "console", "v")
    tmux.wait_for("ALL ITEMS PASS", timeout=120)
    tmux.run("send-keys", "-t", "console", "q")
    assert tmux.exit_code(done) == "0", tmux.screen()
    assert backup.manifest is not None
    assert await checksums(conn, "public.media") == \
        [backup.manifest.state.tables["public.media"].checksum]
