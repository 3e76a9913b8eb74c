"""`assess` and `validate` as an operator runs them: exit codes, JSON, and bad input that names
the problem and changes nothing. Also: a role that can only read."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import asyncpg

from app import config as config_mod
from app.checks import run_assessment
from tests.conftest import DemoDb
from tests.test_assess import make_backup


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=120)


async def _backup(conn: asyncpg.Connection, config: Path, demo_db: DemoDb) -> None:
    await make_backup(conn, config_mod.load(config), demo_db.dsn)


async def test_assess_json_healthy_then_immediate(conn: asyncpg.Connection, console_config: Path,
                                                  demo_db: DemoDb) -> None:
    await _backup(conn, console_config, demo_db)
    ok = cli(console_config, "assess", "--json")
    # nothing wrong, but the headless assess never runs the login probe (it would write):
    # no bill of health without it
    assert ok.returncode == 40, ok.stderr
    data = json.loads(ok.stdout)
    assert data["tier"] == "INCONCLUSIVE" and data["recommended_type"] is None
    assert [m["check"] for m in data["missing"]] == ["auth"]
    assert len(data["findings"]) == 11
    await conn.execute("UPDATE media SET mime_type = 'application/octet-stream'")
    bad = cli(console_config, "assess", "--json", "--backup", "production_migration_20250101")
    assert bad.returncode == 30, bad.stderr
    data = json.loads(bad.stdout)
    assert (data["tier"], data["recommended_type"], data["tables"]) == \
        ("IMMEDIATE ROLLBACK", "partial", ["public.media"])
    secret = (console_config.parent / "secrets" / "db_password").read_text().strip()
    assert secret not in bad.stdout + bad.stderr


async def test_assess_table_output_and_forward_fix_code(conn: asyncpg.Connection,
                                                        console_config: Path,
                                                        demo_db: DemoDb) -> None:
    await _backup(conn, console_config, demo_db)
    await conn.execute("DROP INDEX objects_owner_id_idx")
    proc = cli(console_config, "assess")
    assert proc.returncode == 20, proc.stderr
    assert "FORWARD-FIX" in proc.stdout and "Minor performance degradation" in proc.stdout
    assert "Type 1 Schema-only rollback" not in proc.stdout   # no rollback is recommended
    assert "Suggested fix (run or copy; nothing was run):" in proc.stdout
    assert "critical_queries" in proc.stderr   # each check reported as it completed


async def test_validate_passes_healthy_and_fails_on_fault(conn: asyncpg.Connection,
                                                          console_config: Path,
                                                          demo_db: DemoDb) -> None:
    await _backup(conn, console_config, demo_db)
    ok = cli(console_config, "validate", "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["passed"] is True
    await conn.execute("REVOKE ALL ON auth.users FROM supabase_auth_admin")
    bad = cli(console_config, "validate")
    assert bad.returncode == 1
    assert "VALIDATION FAILED" in bad.stdout and "Authentication" in bad.stdout


def test_wrong_database_name_is_bad_input(console_config: Path) -> None:
    """A wrong name is bad input (exit 2); a database that is down is a verdict of its own
    (DATABASE UNREACHABLE, exit 50: tests/test_verdict_paths.py)."""
    text = console_config.read_text()
    port = text.split("127.0.0.1:")[1].split("/")[0]
    name = text.split(f"127.0.0.1:{port}/")[1].split("?")[0].split('"')[0]
    console_config.write_text(text.replace(f"127.0.0.1:{port}/{name}",
                                           f"127.0.0.1:{port}/no_such_database"))
    proc = cli(console_config, "assess", "--json")
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and proc.stdout == ""


async def test_unknown_backup_is_bad_input(conn: asyncpg.Connection, console_config: Path,
                                           demo_db: DemoDb) -> None:
    await _backup(conn, console_config, demo_db)
    for command in ("assess", "validate"):
        proc = cli(console_config, command, "--backup", "20991231")
        assert proc.returncode == 2, proc.stderr
        assert "no backup set '20991231' under" in proc.stderr
        assert "production_migration_20250101" in proc.stderr   # names the sets that exist


def test_validate_without_backup_is_bad_input(console_config: Path) -> None:
    proc = cli(console_config, "validate")
    assert proc.returncode == 2
    assert "no backup set with a manifest.json" in proc.stderr


async def test_backup_of_another_database_is_refused(conn: asyncpg.Connection,
                                                     console_config: Path,
                                                     demo_db: DemoDb) -> None:
    directory = await make_backup(conn, config_mod.load(console_config), demo_db.dsn)
    manifest = directory / "manifest.json"
    manifest.write_text(manifest.read_text().replace(f'"{demo_db.name}"', '"shop_staging"'))
    proc = cli(console_config, "assess")
    assert proc.returncode == 2
    assert "was taken from database 'shop_staging'" in proc.stderr


async def test_unreachable_app_is_monitor_and_named(conn: asyncpg.Connection,
                                                    console_config: Path,
                                                    demo_db: DemoDb) -> None:
    await _backup(conn, console_config, demo_db)
    text = console_config.read_text()
    url = text.split('base_url = "')[1].split('"')[0]
    console_config.write_text(text.replace(url, "http://127.0.0.1:1"))
    proc = cli(console_config, "assess", "--json")
    assert proc.returncode == 10, proc.stderr
    data = json.loads(proc.stdout)
    assert data["tier"] == "MONITOR AND ASSESS"
    assert any("nothing answers at http://127.0.0.1:1" in r["summary"] for r in data["reasons"])


async def test_read_only_role_says_what_it_cannot_check(conn: asyncpg.Connection,
                                                        console_config: Path,
                                                        demo_db: DemoDb) -> None:
    """A role with only pg_read_all_data: assessment runs, and lists the checks RLS or missing
    role memberships keep it from running, instead of reporting empty tables as data loss."""
    await _backup(conn, console_config, demo_db)
    role, password = f"ro_{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}' IN ROLE pg_read_all_data")
    try:
        (console_config.parent / "secrets" / "ro_password").write_text(password)
        text = console_config.read_text().replace("postgresql://postgres@",
                                                  f"postgresql://{role}@")
        console_config.write_text(text.replace('password_file = "secrets/db_password"',
                                               'password_file = "secrets/ro_password"'))
        a = await run_assessment(config_mod.load(console_config))
    finally:
        await conn.execute(f"DROP ROLE {role}")
    by = {r.check: r for r in a.results}
    assert by["connectivity"].evidence["role"] == role
    assert {c for c, r in by.items() if str(r.status) == "skip"} == \
        {"data_integrity", "foreign_keys", "rls"}
    assert "BYPASSRLS" in by["data_integrity"].summary
    # not HEALTHY on half the evidence
    assert a.decision.tier.label == "INCONCLUSIVE", a.decision.reasons
    assert {str(r.kind) for r in a.decision.reasons} == {"incomplete"}
    assert len(a.decision.not_run) == 3
    for name in ("schema", "auth", "critical_queries", "app_endpoints", "locks"):
        assert str(by[name].status) == "pass", (name, by[name].summary)


async def test_the_text_table_keeps_words_in_brackets_and_reads_as_prose(
        conn: asyncpg.Connection, console_config: Path, demo_db: DemoDb) -> None:
    """Summaries are text, not markup: 'no [app] section' keeps its [app]; what a rollback
    would lose is written out, not JSON."""
    await _backup(conn, console_config, demo_db)
    text = console_config.read_text()
    console_config.write_text(text[:text.index("[app]")] + text[text.index("[auth]"):])
    await conn.execute("DELETE FROM media WHERE id % 2 = 0")
    shown = cli(console_config, "assess")
    out = " ".join(shown.stdout.split())   # the table wraps long summaries
    assert "no [app] section" in out, shown.stdout
    assert "Would lose:" in out and '{"' not in out, shown.stdout
