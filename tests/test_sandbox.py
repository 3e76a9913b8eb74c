"""`sandbox up` / `sandbox down` as a user runs them: the printed DSN works with psql, the demo app
answers, and stopping (or a crash) leaves no postgres or demo-app process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.sandbox.manager import read_info
from app.sandbox.server import bin_dir, pid_alive
from tests.helpers import CONSOLE


def _up(directory: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [*CONSOLE, "sandbox", "up", "--rows", "300", "--dir", str(directory)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    printed: dict[str, str] = {}
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        m = re.match(r"\s+(\w[\w ]*):\s+(.*)$", line)
        if m:
            printed[m.group(1).strip()] = m.group(2).strip()
        if "psql" in printed or time.monotonic() > deadline:
            break
    if "psql" not in printed:
        proc.kill()
        pytest.fail(f"sandbox up did not come up: {proc.stderr.read() if proc.stderr else ''}")
    return proc, printed


def _gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def sandbox_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "sbx"
    yield directory
    subprocess.run([*CONSOLE, "sandbox", "down", "--dir", str(directory)],
                   capture_output=True, timeout=60)


def test_up_prints_a_working_dsn_and_down_leaves_nothing(sandbox_dir: Path) -> None:
    proc, printed = _up(sandbox_dir)
    info = read_info(sandbox_dir)
    assert info is not None
    dsn = printed["database"]
    assert info.psql_dsn == dsn
    query = ("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_stat_user_tables "
             "WHERE schemaname = 'public' AND n_live_tup > 0")
    out = subprocess.run([str(bin_dir() / "psql"), dsn, "-Atc", query],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "accounts,chakai,local_classes,media,objects", out.stderr
    assert httpx.get(printed["demo app"] + "/api/health").status_code == 200
    config_text = Path(printed["config"]).read_text()
    assert info.app_url in config_text
    password = (sandbox_dir / "secrets" / "db_password").read_text().strip()
    assert password not in config_text and password not in dsn

    down = subprocess.run([*CONSOLE, "sandbox", "down", "--dir",
                           str(sandbox_dir)], capture_output=True, text=True, timeout=60)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert proc.wait(timeout=30) == 0
    for pid in (info.postgres_pid, info.app_pid, info.owner_pid):
        assert _gone(pid), f"process {pid} still running after sandbox down"
    assert read_info(sandbox_dir) is None


def test_a_killed_console_takes_its_sandbox_down_and_the_next_start_cleans_up(
        sandbox_dir: Path) -> None:
    proc, _ = _up(sandbox_dir)
    info = read_info(sandbox_dir)
    assert info is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert _gone(info.postgres_pid) and _gone(info.app_pid), "children outlived kill -9"
    assert read_info(sandbox_dir) is not None  # the crash left its state file behind

    proc2, printed = _up(sandbox_dir)
    try:
        assert httpx.get(printed["demo app"] + "/api/health").status_code == 200
    finally:
        proc2.send_signal(signal.SIGINT)
        proc2.wait(timeout=30)
    assert proc2.stderr is not None
    assert "stale sandbox" in proc2.stderr.read()


def test_a_second_sandbox_in_the_same_dir_is_refused(sandbox_dir: Path) -> None:
    proc, _ = _up(sandbox_dir)
    try:
        second = subprocess.run(
            [*CONSOLE, "sandbox", "up", "--dir", str(sandbox_dir)],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert second.returncode == 1
        assert "already running" in second.stderr and "sandbox down" in second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
