"""Extended monitoring: `validate --watch` re-runs the checklist, shows the trend, and catches a
regression injected while it watches (an ALERT line, exit 1, and a notification)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from app import config
from app.backups.create import create_set
from app.errors import BadInput
from app.watch import parse_duration, sparkline
from tests.conftest import DemoApp, DemoDb
from tests.helpers import CONSOLE


def test_durations_and_sparkline() -> None:
    assert parse_duration("90") == 90 and parse_duration("10m") == 600
    assert parse_duration("24h") == 86400
    with pytest.raises(BadInput, match="like 30s, 10m or 24h"):
        parse_duration("soon")
    assert sparkline([7, 7, 3, 0], 7) == "██▄▁"


async def test_watch_catches_a_regression(console_config: Path, demo_db: DemoDb,
                                          demo_app: DemoApp, conn: asyncpg.Connection) -> None:
    console_config.write_text(console_config.read_text().replace(
        "webhooks = []", f'webhooks = ["{demo_app.url}/hooks/ops"]'))
    await create_set(config.load(console_config))
    proc = subprocess.Popen(
        [*CONSOLE, "-c", str(console_config), "validate", "--watch", "8s",
         "--interval", "1", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ}, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    assert first["passing"] == first["of"] == 7 and first["regressed"] == []
    await conn.execute("DELETE FROM chakai WHERE id <= 20")  # the regression
    rounds = [first] + [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=60) == 1
    assert len(rounds) >= 3
    regressions = [r for r in rounds if r["regressed"]]
    assert regressions and any("Data Integrity" in line for line in regressions[0]["regressed"])
    deadline = time.monotonic() + 10
    events: list[str] = []
    while time.monotonic() < deadline and "regression" not in events:
        events = [n["payload"]["event"] for n in
                  httpx.get(f"{demo_app.url}/hooks").json()["notifications"]]
        time.sleep(0.2)
    assert "regression" in events
