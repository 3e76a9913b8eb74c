"""Drills on a sandbox shaped like a Supabase project (issue 19: "every rollback type, assess,
validate, backups and drills run on the Supabase-shaped fixture"): `drill --headless --shape
supabase` starts the sandbox with `supabase_admin` as the cluster's superuser and the console
connected as the non-superuser `postgres`; a data scenario and a schema scenario play to the same
score as on the plain sandbox, and the platform's rows and objects are never touched."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from app import config, drills
from app.db import connect
from app.rollback.context import expected_phrase
from tests.helpers import CONSOLE, read_until_enter
from tests.supabase import platform_state_of


async def _console_session(config_path: Path) -> tuple[tuple[str, bool, str], dict[str, object]]:
    """As the console connects (the sandbox's rollback.toml): who it is, and the platform's
    state read in that session."""
    conn = await connect(config.load(config_path).target)
    try:
        me = await conn.fetchrow(
            "SELECT current_user AS name, rolsuper, current_database() AS db "
            "FROM pg_roles WHERE rolname = current_user")
        assert me is not None
        platform = await platform_state_of(conn)
        platform["platform_sessions"] = sorted(
            r[0] for r in await conn.fetch(
                "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = "
                "current_database() AND application_name IN "
                "('supabase_admin platform', 'postgrest')"))
        return (me["name"], me["rolsuper"], me["db"]), platform
    finally:
        await conn.close()


@pytest.mark.parametrize("scenario", ["corrupted-captions", "rls-blocks-users"])
def test_a_headless_drill_on_the_supabase_shape_scores_as_on_the_plain_sandbox(
        scenario: str, tmp_path: Path) -> None:
    """A data scenario (Type 2) and a schema scenario (Type 1), played with the commands as
    `postgres`, no superuser: assess finds the scenario's answer, the rollback and validate
    pass, the score is 100; auth.users, auth.refresh_tokens, storage.objects, the platform's
    roles, event triggers, extensions and publication are identical before and after the
    rollback; the sandbox stops at the end."""
    s = drills.BY_NAME[scenario]
    env = {**os.environ, "ROLLBACK_CONSOLE_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([*CONSOLE, "drill", "--headless", "--shape", "supabase",
                             "--scenario", scenario, "--rows", "400", "--dir",
                             str(tmp_path / "box"), "--operator", "trainee"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        printed = read_until_enter(proc)
        found = re.search(r"assess:\s+rollback-console -c (\S+) assess", printed)
        assert found, printed
        config_path = Path(found.group(1))
        me, platform = asyncio.run(_console_session(config_path))
        assert me == ("postgres", False, "postgres")      # no superuser, the project's db
        assert platform["platform_sessions"] == ["authenticator", "supabase_admin"]
        assert len(platform["event_triggers"]) == 6  # type: ignore[arg-type]

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*CONSOLE, "-c", str(config_path), *args],
                                  capture_output=True, text=True, env=env, timeout=300,
                                  stdin=subprocess.DEVNULL)

        assessed = run("assess", "--json")
        assert assessed.returncode == 30, assessed.stdout + assessed.stderr  # IMMEDIATE
        result = json.loads(assessed.stdout)
        assert result["recommended_type"] == s.expected_type, result
        seen = next(c for c in result["findings"] if c["check"] == "connectivity")["evidence"]
        assert (seen["role"], seen["superuser"]) == ("postgres", False)
        kind = s.expected_type
        assert kind is not None
        tables = ["--tables", ",".join(t.split(".")[1] for t in s.tables)] \
            if kind == "partial" else []
        _, before = asyncio.run(_console_session(config_path))
        rolled = run("run", "--type", kind, *tables, "--confirm",
                     expected_phrase(kind, "tea-school-sandbox"))
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        _, after = asyncio.run(_console_session(config_path))
        assert after == before      # (validate's login then writes auth.users.last_sign_in_at)
        validated = run("validate")
        assert validated.returncode == 0, validated.stdout + validated.stderr
        out, _ = proc.communicate("\n1\n", timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "Score: 100/100 for trainee" in out, out
    assert f"The right answer: IMMEDIATE ROLLBACK / {kind}" in out
    assert not list((tmp_path / "box").rglob("postmaster.pid"))        # the sandbox stopped


def test_sandbox_up_shape_supabase_connects_as_postgres_and_down_leaves_nothing(
        tmp_path: Path) -> None:
    """`sandbox up --shape supabase`: the printed DSN (psql's) is the non-superuser `postgres`
    on the database `postgres`, owned by `supabase_admin`, with the platform's session held;
    `sandbox down` stops it all."""
    from app.sandbox.manager import read_info
    from app.sandbox.server import bin_dir
    from tests.test_sandbox import _gone

    box = tmp_path / "sbx"
    proc = subprocess.Popen([*CONSOLE, "sandbox", "up", "--shape", "supabase", "--rows", "100",
                             "--dir", str(box)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        printed: dict[str, str] = {}
        for line in proc.stdout:
            m = re.match(r"\s+(\w[\w ]*):\s+(.*)$", line)
            if m:
                printed[m.group(1).strip()] = m.group(2).strip()
            if "psql" in printed:
                break
        assert printed.get("shape", "").startswith("supabase"), printed
        query = ("SELECT current_user, r.rolsuper, current_database(), "
                 "pg_get_userbyid(d.datdba), (SELECT count(*) FROM pg_stat_activity a WHERE "
                 "a.datname = current_database() AND a.usename = 'supabase_admin') "
                 "FROM pg_roles r, pg_database d WHERE r.rolname = current_user "
                 "AND d.datname = current_database()")
        out = subprocess.run([str(bin_dir() / "psql"), printed["database"], "-Atc", query],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "postgres|f|postgres|supabase_admin|1", out.stderr
        info = read_info(box)
        assert info is not None and info.shape == "supabase"
        down = subprocess.run([*CONSOLE, "sandbox", "down", "--dir", str(box)],
                              capture_output=True, text=True, timeout=60)
        assert down.returncode == 0, down.stderr
        assert proc.wait(timeout=30) == 0
        assert _gone(info.postgres_pid) and _gone(info.app_pid)
    finally:
        if proc.poll() is None:
            proc.kill()
