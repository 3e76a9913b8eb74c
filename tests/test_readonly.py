"""Read-only means read-only (issue 13): in --mode assess, and in the headless `assess`, nothing
can change the target, any schema of it, or its app. Commands that could change something are
refused (exit 3) before anything connects; every database session is read-only at the server
(the dump tools' too); the login probe, which makes the app record a sign-in, is not run and
says so instead of passing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from app import config
from app.backups.tools import run_tool
from app.catalog import quote_ident
from app.checks.assessment import open_context
from app.checks.context import read_only_checks
from app.cli import cli as console_cli
from app.db import connect, create_pool, read_only_sessions
from app.errors import ConsoleError
from app.tui import RollbackConsoleApp
from tests.conftest import DemoApp, DemoDb
from tests.helpers import cli
from tests.test_assess import make_backup
from tests.test_assess_screen import _open
from tests.test_partial_rollback import make_set

TARGET = "tea-school-sandbox"
WRITE = "INSERT INTO public.objects (name, kind, era, owner_id) " \
        "SELECT name, kind, era, owner_id FROM public.objects LIMIT 1"


@pytest.fixture
def read_only() -> Iterator[None]:
    """The process-wide switch on for one test, and off again after it."""
    read_only_sessions(True)
    try:
        yield
    finally:
        read_only_sessions(False)
        read_only_checks(False)


async def every_table(conn: asyncpg.Connection) -> dict[str, str]:
    """A checksum of every table in every schema (auth, storage, public, ...)."""
    rows = await conn.fetch(
        "SELECT n.nspname, c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1, 2")
    out = {}
    for r in rows:
        name = f"{quote_ident(r['nspname'])}.{quote_ident(r['relname'])}"
        out[name] = await conn.fetchval(
            f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {name} t")
    assert {'"auth"."users"', '"public"."media"'} <= set(out)
    return out


def maintenance_on(app: DemoApp) -> bool:
    r = httpx.get(f"{app.url}/admin/maintenance-mode",
                  headers={"Authorization": f"Bearer {app.admin_token}"})
    r.raise_for_status()
    return bool(r.json()["maintenance"])


async def test_read_only_sessions_refuse_writes_on_every_connection(
        console_config: Path, demo_db: DemoDb, conn: asyncpg.Connection, read_only: None) -> None:
    target = config.load(console_config).target
    before = await every_table(conn)
    one = await connect(target, server_settings={"default_transaction_read_only": "off"})
    try:
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await one.execute(WRITE)
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await one.execute("ALTER TABLE public.media ADD COLUMN junk int")
    finally:
        await one.close()
    pool = await create_pool(target, max_size=2)
    try:
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await pool.execute(WRITE)
    finally:
        await pool.close()
    # the dump tools get the same setting (PGOPTIONS)
    lines: list[str] = []
    with pytest.raises(ConsoleError):
        await run_tool("psql", ["--no-psqlrc", "--set=ON_ERROR_STOP=1", "-c", WRITE], target,
                       lines.append)
    assert any("read-only transaction" in line for line in lines), lines
    assert await every_table(conn) == before


async def test_assess_mode_refuses_what_changes_and_allows_what_reads(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    await make_set(demo_db, conn, console_config.parent / "backups")
    await conn.execute("UPDATE media SET caption = 'x'")
    await conn.execute("ALTER TABLE media ADD COLUMN junk int")   # drift Type 1 would drop
    before = await every_table(conn)
    refused = [
        ("run", "--type", "partial", "--tables", "media", "--confirm", f"ROLLBACK {TARGET}"),
        ("run", "--type", "schema", "--confirm", f"ROLLBACK SCHEMA {TARGET}"),
        ("run", "--type", "full", "--confirm", f"CONFIRM_FULL_RESTORE {TARGET}"),
        ("resume",),
        ("maintenance", "on"),
        ("maintenance", "off"),
    ]
    if "abandon" in console_cli.commands:   # refused by name, like anything not known to read
        refused.append(("abandon", "--reason", "test"))
    for args in refused:
        result = cli(console_config, tmp_path, "--mode", "assess", *args)
        assert result.returncode == 3, (args, result.stdout + result.stderr)
        assert "--mode assess is read-only" in result.stderr, (args, result.stderr)
        assert f"`{args[0]}` is refused" in result.stderr
        assert not maintenance_on(demo_app)
    assert await every_table(conn) == before
    assert await conn.fetchval("SELECT count(*) FROM information_schema.columns "
                               "WHERE table_name = 'media' AND column_name = 'junk'") == 1
    assert not (tmp_path / "incidents").exists() or not any((tmp_path / "incidents").iterdir())

    # what only reads still works
    status = cli(console_config, tmp_path, "--mode", "assess", "maintenance", "status")
    assert status.returncode == 0 and "maintenance mode is OFF" in status.stdout, status.stderr
    dry = cli(console_config, tmp_path, "--mode", "assess", "run", "--type", "partial",
              "--tables", "media", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "DRY RUN: nothing is changed" in dry.stdout
    backup = cli(console_config, tmp_path, "--mode", "assess", "backup", "--label", "ro")
    assert backup.returncode == 0, backup.stderr
    assert "backup set production_migration_" in backup.stdout
    made = next((console_config.parent / "backups").glob("production_migration_*_ro"))
    assert (made / "manifest.json").is_file()
    assert (made / "full_database_backup.dump").stat().st_size > 0
    helped = " ".join(cli(console_config, tmp_path, "--help").stdout.split())
    assert "backup (it only reads the target)" in helped and "run --dry-run" in helped
    assert await every_table(conn) == before
    assert not maintenance_on(demo_app)


async def test_a_write_the_server_refuses_in_assess_mode_is_a_plain_refusal(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    """`diff` of a hand-made set needs a scratch database on the server: in assess mode the
    server refuses to create it, and the operator reads why (exit 3), not a traceback."""
    made = await make_backup(conn, config.load(console_config), demo_db.dsn)
    (made / "schema_model.json").unlink()   # a set with only the runbook's schema dump
    databases = await conn.fetchval("SELECT count(*) FROM pg_database")
    result = cli(console_config, tmp_path, "--mode", "assess", "diff")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "--mode assess is read-only: the server refused a write" in result.stderr
    assert "Traceback" not in result.stderr
    assert await conn.fetchval("SELECT count(*) FROM pg_database") == databases
    rehearse = cli(console_config, tmp_path, "--mode", "assess", "diff", "--rehearse")
    assert rehearse.returncode == 3 and "scratch database" in rehearse.stderr


async def test_headless_assess_changes_nothing_in_any_schema(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    await make_backup(conn, config.load(console_config), demo_db.dsn)
    before = await every_table(conn)
    result = cli(console_config, tmp_path, "assess", "--json")
    assert await every_table(conn) == before
    assert result.returncode == 40, result.stdout + result.stderr   # INCONCLUSIVE
    data = json.loads(result.stdout)
    auth = next(r for r in data["findings"] if r["check"] == "auth")
    # the login probe is named as not run, and not counted as a pass
    assert auth["status"] == "skip", auth
    assert auth["summary"].startswith("not run: would write (login probe"), auth["summary"]
    assert auth["evidence"]["login"]["would_write"] is True
    assert any(line.startswith("auth: not run: would write") for line in data["not_run"])
    assert data["tier"] == "INCONCLUSIVE" and "passed" not in data["action"]
    assert "could not run" in data["action"] and "auth: run the login probe" in data["action"]

    table = cli(console_config, tmp_path, "assess")
    assert table.returncode == 40, table.stderr
    assert "not run: auth: not run: would write" in " ".join(table.stdout.split())
    assert await every_table(conn) == before

    # validate in assess mode does not run it either, so Authentication does not pass
    checked = cli(console_config, tmp_path, "--mode", "assess", "validate", "--json")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    items = {i["item"]: i for i in json.loads(checked.stdout)["items"]}
    assert items["Authentication"]["status"] != "pass"
    assert await every_table(conn) == before


async def test_console_in_assess_mode_is_read_only_and_skips_the_login_probe(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp,
        conn: asyncpg.Connection) -> None:
    await make_backup(conn, config.load(console_config), demo_db.dsn)
    cfg = config.load(console_config)
    before = await every_table(conn)
    app = RollbackConsoleApp(cfg, mode="assess")
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await _open(app, pilot)
        assert screen.assessment is not None
        auth = next(r for r in screen.assessment.results if r.check == "auth")
        assert str(auth.status) == "skip" and "not run: would write" in auth.summary
        session = await connect(cfg.target)
        try:
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await session.execute(WRITE)
        finally:
            await session.close()
        await pilot.press("q")
        await pilot.pause()
    assert await every_table(conn) == before
    # the switch is the console's: after it, this process writes again
    session = await connect(cfg.target)
    try:
        async with session.transaction():
            await session.execute("CREATE TEMP TABLE after_console (x int)")
    finally:
        await session.close()


async def test_read_only_checks_cannot_post_to_the_app(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp,
        conn: asyncpg.Connection) -> None:
    """Belt and braces: while checks are read-only their HTTP client refuses anything but GET, so
    a check that forgot the rule still cannot make the app write."""
    cfg = config.load(console_config)
    assert cfg.auth is not None and cfg.auth.test_user_password is not None
    before = await every_table(conn)
    async with open_context(cfg, read_only=True) as ctx:
        assert ctx.http is not None
        with pytest.raises(httpx.RequestError, match="not run: would write"):
            await ctx.http.post("/api/login", json={
                "email": cfg.auth.test_user_email,
                "password": cfg.auth.test_user_password.reveal()})
        assert (await ctx.http.get("/api/health")).status_code == 200
    assert await every_table(conn) == before
