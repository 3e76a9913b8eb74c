"""Supabase as it really is (issue 19): the console connected as the platform's non-superuser
`postgres` role, on a cluster shaped like a Supabase project (tests/supabase.py): platform
schemas, roles, event triggers and extensions owned by `supabase_admin`, the database named
`postgres`, and the platform's own sessions on it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from app.capabilities import FULL, PARTIAL, SCHEMA, capabilities
from app.rollback.context import StepFailed
from app.rollback.switch import stop_sessions
from tests.conftest import DemoDb
from tests.helpers import cli
from tests.supabase import (
    Console,
    SupabaseCluster,
    SupabaseDb,
    allows_connections,
    databases_like,
    migrated_now,
    open_console,
    platform_state,
    run_as_postgres,
    start_cluster,
    supabase_database,
    take_backup,
)


@pytest.fixture(scope="session")
def supabase_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SupabaseCluster]:
    """One Supabase-shaped cluster per test session (per xdist worker)."""
    cluster = start_cluster(tmp_path_factory.mktemp("supabase") / "pgdata")
    yield cluster
    cluster.server.stop()


@pytest.fixture
def sb_postgres(supabase_cluster: SupabaseCluster) -> Iterator[SupabaseDb]:
    """The project's database under its real name, `postgres`, fresh from the template."""
    yield from supabase_database(supabase_cluster, "postgres")


@pytest.fixture
def sb_copy(supabase_cluster: SupabaseCluster) -> Iterator[SupabaseDb]:
    """The same database under a name of its own (what a rename-and-switch could work on)."""
    yield from supabase_database(supabase_cluster)


@pytest.fixture
def console(sb_postgres: SupabaseDb, tmp_path: Path) -> Iterator[Console]:
    yield from open_console(sb_postgres, tmp_path)


@pytest.fixture
def console_copy(sb_copy: SupabaseDb, tmp_path: Path) -> Iterator[Console]:
    yield from open_console(sb_copy, tmp_path)


@pytest.fixture
async def as_postgres(sb_postgres: SupabaseDb) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(sb_postgres.dsn)
    yield conn
    await conn.close()


# --- 1. the fixture is Supabase-shaped -----------------------------------------------------

async def test_the_fixture_is_shaped_like_a_supabase_project(
        as_postgres: asyncpg.Connection, sb_postgres: SupabaseDb) -> None:
    """`postgres` is no superuser, the database is `postgres` owned by supabase_admin, the
    platform's objects belong to the platform and two platform sessions are held on it."""
    me = await as_postgres.fetchrow(
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls "
        "FROM pg_roles WHERE rolname = current_user")
    assert tuple(me) == (False, True, True, True, True)
    assert await as_postgres.fetchval(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
    ) == "supabase_admin"
    assert await as_postgres.fetchval("SELECT count(*) FROM pg_event_trigger") == 6
    assert await as_postgres.fetchval(
        "SELECT extowner::regrole::text FROM pg_extension WHERE extname = 'pg_stat_statements'"
    ) == "supabase_admin"
    owners = dict(await as_postgres.fetch(
        "SELECT relname, relowner::regrole::text FROM pg_class WHERE relname IN "
        "('users', 'refresh_tokens', 'objects', 'media') AND relkind = 'r' "
        "AND relnamespace::regnamespace::text IN ('auth', 'storage', 'public') "
        "AND NOT (relname = 'objects' AND relnamespace = 'public'::regnamespace)"))
    assert owners == {"users": "supabase_auth_admin", "refresh_tokens": "supabase_auth_admin",
                      "objects": "supabase_storage_admin", "media": "postgres"}
    sessions = await as_postgres.fetch(
        "SELECT usename FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() ORDER BY 1")
    assert [s["usename"] for s in sessions][:2] == ["authenticator", "supabase_admin"]


# --- 2. know the role you are --------------------------------------------------------------

async def test_capabilities_as_supabase_postgres(as_postgres: asyncpg.Connection) -> None:
    """As `postgres` on the project's database: Type 1 and Type 2 can run; Type 3 cannot swap
    databases, so it runs in place, schema by schema, and says why (it was refused)."""
    caps = await capabilities(as_postgres)
    assert caps[SCHEMA].possible and caps[PARTIAL].possible
    full = caps[FULL]
    assert full.possible and full.how == "in_place_by_schema", full.why
    assert "named postgres" in full.why
    assert "may not end the sessions of authenticator, supabase_admin" in full.why
    assert "event triggers" in full.why


async def test_type3_is_impossible_without_createdb_and_names_the_platform_restore(
        as_postgres: asyncpg.Connection) -> None:
    """A role that can neither swap nor compare schemas (no CREATEDB): Type 3 is impossible,
    said before starting, naming the platform's restore with the exact time to ask for."""
    from datetime import UTC, datetime

    from app.capabilities import decide, read_facts

    facts = await read_facts(as_postgres)
    from dataclasses import replace
    taken = datetime(2026, 12, 2, 1, 44, 59, tzinfo=UTC)
    full = decide(replace(facts, createdb=False), taken)[FULL]
    assert not full.possible
    assert "no CREATEDB" in full.why
    assert "point-in-time restore to 2026-12-02 01:44:59 UTC" in full.instead


async def test_capabilities_as_a_superuser_on_a_plain_database(
        sb_copy: SupabaseDb) -> None:
    """The same facts read as the cluster's superuser on a database of another name with no
    session in the way: Type 3 is possible."""
    conn = await asyncpg.connect(sb_copy.admin_dsn)
    try:
        caps = await capabilities(conn)
        assert caps[FULL].possible, caps[FULL].why
    finally:
        await conn.close()


# --- 3. the switch never leaves the database closed ----------------------------------------

async def test_the_switch_refuses_from_a_session_on_the_target_itself(
        sb_copy: SupabaseDb) -> None:
    """The admin connection on the target itself: refused before anything is changed (where
    PostgreSQL said "cannot disallow connections for current database")."""
    conn = await asyncpg.connect(sb_copy.admin_dsn)
    try:
        with pytest.raises(StepFailed, match="maintenance connection is on"):
            await stop_sessions(conn, sb_copy.name)
    finally:
        await conn.close()
    assert await allows_connections(sb_copy) is True


def test_a_switch_that_may_not_end_a_superusers_session_never_closes_the_database(
        sb_copy: SupabaseDb, tmp_path: Path) -> None:
    """The database's owner (not a superuser) switches while the platform's superuser session
    is on it: the permission is checked first, so a kill at the moment connections would be
    refused never comes: the database still accepts connections (before, it was left closed
    by a kill there)."""
    script = tmp_path / "switch.py"
    script.write_text(
        "import asyncio, asyncpg, sys\n"
        "from app.rollback.switch import stop_sessions\n"
        "from app.rollback.context import StepFailed\n"
        "async def main():\n"
        "    admin = await asyncpg.connect(sys.argv[1])\n"
        "    try:\n"
        "        await stop_sessions(admin, sys.argv[2])\n"
        "    except StepFailed as exc:\n"
        "        print(exc)\n"
        "asyncio.run(main())\n")
    owner_dsn = sb_copy.cluster.dsn("template1")

    async def give() -> None:
        conn = await asyncpg.connect(sb_copy.cluster.server.dsn("template1"))
        await conn.execute(f'ALTER DATABASE "{sb_copy.name}" OWNER TO postgres')
        await conn.close()

    asyncio.run(give())
    proc = subprocess.run([sys.executable, str(script), owner_dsn, sb_copy.name],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]),
                               "ROLLBACK_CONSOLE_KILL_AT": "switch:connections_refused"})
    assert proc.returncode == 0, proc.stderr   # not killed: connections were never refused
    assert "may not end every session" in proc.stdout
    assert "connections were never refused" in proc.stdout
    assert asyncio.run(allows_connections(sb_copy)) is True


# --- the platform is never touched; Types 1 and 2 work as postgres ------------------------

def test_backup_assess_validate_type1_type2_as_postgres_leave_the_platform_alone(
        console: Console) -> None:
    """As `postgres` on the project: backup, assess, validate, Type 1 and Type 2 work; the
    platform's tables, roles, default privileges, event triggers and extensions are identical
    before and after each."""
    dsn = console.db.admin_dsn
    before = asyncio.run(platform_state(dsn))
    take_backup(console)
    code, out = console.run("assess", "--json")
    verdict = json.loads(out)
    # healthy; INCONCLUSIVE only for the login probe assess never runs (it writes)
    assert (code, verdict["tier"]) in ((0, "HEALTHY"), (40, "INCONCLUSIVE")), out
    assert [m["check"] for m in verdict["missing"]] in ([], ["auth"]), out
    assert asyncio.run(platform_state(dsn)) == before
    code, out = console.run("validate")
    assert code == 0, out
    before = asyncio.run(platform_state(dsn))   # its login probe signs the test user in
    code, out = console.run("run", "--type", "schema", "--confirm",
                            "ROLLBACK SCHEMA tea-school-sandbox")
    assert code == 0, out
    assert asyncio.run(platform_state(dsn)) == before
    code, out = console.run("run", "--type", "partial", "--tables", "media", "--confirm",
                            "ROLLBACK tea-school-sandbox")
    assert code == 0, out
    assert asyncio.run(platform_state(dsn)) == before


# --- 4. checksums by named columns ---------------------------------------------------------

def test_a_dropped_column_type1_then_type2_ends_validated(console: Console) -> None:
    """The documented path after a migration that dropped a column: Type 1 re-adds it (at the
    end), Type 2 reloads the table; its validation compares by named columns: exit 0 (it
    stopped at exit 5, "checksum DIFFERS", with identical data)."""
    take_backup(console)

    async def migrate() -> None:
        conn = await asyncpg.connect(console.db.dsn)
        await conn.execute("ALTER TABLE public.local_classes DROP COLUMN school")
        await conn.close()

    asyncio.run(migrate())
    migrated = migrated_now()
    code, out = console.run("run", "--type", "schema", "--migration-time", migrated,
                            "--confirm", "ROLLBACK SCHEMA tea-school-sandbox")
    assert code == 0, out
    code, out = console.run("run", "--type", "partial", "--tables", "local_classes",
                            "--migration-time", migrated, "--confirm",
                            "ROLLBACK tea-school-sandbox")
    assert code == 0, out
    assert "DIFFERS" not in out
    code, out = console.run("validate")   # the column at its new place is no difference
    assert code == 0, out


# --- 6. platform defaults are not findings -------------------------------------------------

def test_a_set_holding_every_recorded_migration_is_not_after_the_migration(
        console: Console) -> None:
    """Supabase's migrations table records old versions only, all in the set too; the bad
    migration (unrecorded) ran after the backup. The set is not refused as "taken AFTER the
    migration": the recorded time is not this migration's, and the dry run says why the
    migration's time is unknown."""
    backup = take_backup(console)
    code, out = console.run("run", "--type", "partial", "--tables", "media", "--dry-run")
    assert code == 0, out
    assert "after the migration ran" not in out
    assert "the migration's time is unknown: the newest version in " \
           "supabase_migrations.schema_migrations (20250301000000) is in the set too" in out
    code, out = console.run("backups", "--verify", backup)
    assert "is in the set too, so the bad migration is not recorded there" in out, out


# --- 5. app items without [app] are not configured -----------------------------------------

@pytest.fixture
def console_without_app(sb_postgres: SupabaseDb, tmp_path: Path) -> Iterator[Console]:
    yield from open_console(sb_postgres, tmp_path, with_app=False)


def test_validate_passes_on_a_healthy_database_without_an_app_section(
        console_without_app: Console) -> None:
    """No [app] in the config: the app items are "not configured", not failures; validate
    passes (it could never pass before) and says so."""
    take_backup(console_without_app)
    code, out = console_without_app.run("validate", "--json")
    assert code == 0, out
    items = {i["item"]: i for i in json.loads(out)["items"]}
    assert items["Application"]["not_configured"] is True
    assert items["Error Rates"]["summary"].startswith("not configured: no [app] section")
    assert items["Data Integrity"]["status"] == "pass"
    code, out = console_without_app.run("validate")
    assert code == 0, out
    assert "not configured" in out and "ALL ITEMS PASS" in out


# --- 6. platform defaults are not findings (RLS) -------------------------------------------

def test_a_table_public_read_by_policy_in_the_backup_too_is_no_exposure(
        console: Console) -> None:
    """local_classes is public-read by policy (anon included) at the backup and now: assess
    finds no exposure (it said IMMEDIATE ROLLBACK, "anon can read private rows")."""
    run_as_postgres(console, 'CREATE POLICY "classes: everyone reads" ON public.local_classes '
                          "FOR SELECT TO anon, authenticated USING (true)")
    take_backup(console)
    code, out = console.run("assess", "--json")
    verdict = json.loads(out)
    assert code == 40 and verdict["tier"] == "INCONCLUSIVE", out   # only the login probe
    assert "anon can read" not in out
    rls = next(f for f in verdict["findings"] if f["check"] == "rls")
    assert rls["status"] == "pass", rls


def test_anon_reading_a_private_table_names_the_setting_that_makes_it_private(
        console: Console) -> None:
    """A migration lets anon read accounts (private at the backup): the exposure is found,
    and the finding says why the table counts as private and names [assess] private_tables."""
    take_backup(console)
    run_as_postgres(console, 'CREATE POLICY "oops" ON public.accounts FOR SELECT TO anon '
                          "USING (true)")
    code, out = console.run("assess", "--json")
    assert code == 30, out
    assert "anon can read private rows of public.accounts" in out
    assert "[assess] private_tables" in out


def test_a_rehearsal_as_postgres_says_why_it_cannot_restore_the_whole_dump(
        console: Console) -> None:
    """`backups --verify --rehearse` as `postgres`: the whole dump cannot be restored by this
    role (platform owners, event triggers); said as not verifiable, with the reason, instead
    of a failed restore that blames the set; no scratch database is left."""
    backup = take_backup(console)
    code, out = console.run("backups", "--verify", backup, "--rehearse")
    assert code == 0, out
    assert "cannot be rehearsed here: a restore as postgres cannot set the owners" in out
    assert "did not restore" not in out
    assert asyncio.run(databases_like(console.db, "rollback_rehearsal_")) == []


def test_a_type3_whose_restored_copy_does_not_match_drops_it(
        console_config: Path, demo_db: DemoDb, tmp_path: Path) -> None:
    """A superuser's Type 3 on a plain database whose restored copy does not match the
    manifest (its recorded checksum of media edited: the copy differs) fails before the
    switch and drops its `<db>_restored_*` copy (it was left behind), the target untouched."""
    home = tmp_path / "home"
    assert cli(console_config, home, "backup", "--label", "before").returncode == 0
    manifest_path = next((console_config.parent / "backups").glob("*/manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    rows = manifest["state"]["tables"]["public.media"]["rows"]
    manifest["state"]["tables"]["public.media"]["checksum"] = f"{rows}:12345"
    manifest_path.write_text(json.dumps(manifest))
    proc = cli(console_config, home, "run", "--type", "full", "--migration-time",
               migrated_now(), "--confirm", "CONFIRM_FULL_RESTORE tea-school-sandbox")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out
    assert "does not match the backup's manifest" in out
    assert "was dropped" in out

    async def leftovers() -> list[str]:
        conn = await asyncpg.connect(demo_db.server.dsn())
        try:
            return [r["datname"] for r in await conn.fetch(
                "SELECT datname FROM pg_database WHERE left(datname, length($1)) = $1",
                f"{demo_db.name}_restored_")]
        finally:
            await conn.close()

    assert asyncio.run(leftovers()) == []
