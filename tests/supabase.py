"""A PostgreSQL cluster shaped like a Supabase project, for the tests of tests/test_supabase.py.

The shape (the platform's roles and attributes, memberships, schemas, event triggers, the realtime
publication, extensions owned by ``supabase_admin``, the migrations table, the idle platform
sessions) is the product's, app/sandbox/supabase_shape.py, the same that `sandbox up --shape
supabase` and `drill --shape supabase` start; see its docstring for the facts it is written from.

One cluster per test session (per xdist worker). The Supabase database is built once as a
template (``sb_template``); each test gets either the real name ``postgres`` (dropped and
created again from the template: a database named ``postgres`` cannot be a per-test copy) or a
copy under its own name, both with the two platform sessions held while the test runs.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from app.catalog import table_content
from app.sandbox.demo_data import DemoFacts
from app.sandbox.manager import info_app_url, start_demo_app, write_config, write_secrets
from app.sandbox.server import PgServer, stop_pid
from app.sandbox.supabase_shape import (
    PLATFORM_TABLES,
    SUPABASE_ADMIN,
    build_project,
    database_grants_sql,
    open_platform_sessions,
)
from tests.helpers import cli

TEMPLATE = "sb_template"


@dataclass
class SupabaseCluster:
    server: PgServer
    postgres_password: str
    authenticator_password: str
    facts: DemoFacts

    def dsn(self, database: str, user: str = "postgres") -> str:
        password = {"postgres": self.postgres_password,
                    "authenticator": self.authenticator_password}.get(user)
        return self.server.dsn(database, user, password)


def start_cluster(data_dir: Path) -> SupabaseCluster:
    server = PgServer.create(data_dir, superuser=SUPABASE_ADMIN)
    server.start()
    postgres_pw, auth_pw = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    try:
        facts = asyncio.run(build_project(server, TEMPLATE, postgres_pw, auth_pw, rows=400,
                                          seed=7))
    except BaseException:
        server.stop()
        raise
    return SupabaseCluster(server, postgres_pw, auth_pw, facts)


@dataclass
class SupabaseDb:
    """One test's Supabase database (``name``), with the platform's sessions held on it."""

    cluster: SupabaseCluster
    name: str
    sessions: list[asyncpg.Connection] = field(default_factory=list)

    @property
    def dsn(self) -> str:
        return self.cluster.dsn(self.name)

    @property
    def admin_dsn(self) -> str:
        return self.cluster.server.dsn(self.name)


async def _recreate(cluster: SupabaseCluster, name: str) -> None:
    admin = await asyncpg.connect(cluster.server.dsn("template1"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE} '
                            f"OWNER {SUPABASE_ADMIN}")
        await admin.execute(database_grants_sql(name))
    finally:
        await admin.close()


async def hold_platform_sessions(db: SupabaseDb) -> None:
    """The two idle sessions the platform keeps on a project's database."""
    db.sessions.extend(await open_platform_sessions(db.admin_dsn,
                                                    db.cluster.dsn(db.name, "authenticator")))


def supabase_database(cluster: SupabaseCluster, name: str | None = None
                      ) -> Iterator[SupabaseDb]:
    """The Supabase database for one test: ``name`` (``postgres``, the real name: created
    again from the template, left for the next test to reset) or a copy named
    ``sb_<random>``, dropped after."""
    db = SupabaseDb(cluster, name or f"sb_{uuid.uuid4().hex[:10]}")

    async def up() -> None:
        await _recreate(cluster, db.name)
        await hold_platform_sessions(db)

    async def down() -> None:
        for session in db.sessions:
            await session.close()
        if name is None:
            admin = await asyncpg.connect(cluster.server.dsn("template1"))
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
            finally:
                await admin.close()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(up())
        yield db
    finally:
        loop.run_until_complete(down())
        loop.close()


# --- the console on a Supabase database, and what the tests read there -------------------

@dataclass
class Console:
    config: Path
    home: Path
    db: SupabaseDb

    def run(self, *args: str) -> tuple[int, str]:
        proc = cli(self.config, self.home, *args)
        return proc.returncode, proc.stdout + proc.stderr


def open_console(db: SupabaseDb, tmp_path: Path, with_app: bool = True) -> Iterator[Console]:
    """A console config connecting as `postgres` with its password (and the real demo app on
    the database, as the platform's `authenticator`)."""
    cluster = db.cluster
    workdir = tmp_path / "console"
    (workdir / "backups").mkdir(parents=True)
    token = secrets.token_urlsafe(16)
    proc, port = start_demo_app(cluster.dsn(db.name, "authenticator"), token,
                                cluster.facts.test_user_id, tmp_path / "demo-app.log")
    try:
        write_secrets(workdir, cluster.server.port, cluster.postgres_password, token,
                      cluster.facts.test_user_password)
        path = write_config(workdir, cluster.server.port, db.name, info_app_url(port),
                            cluster.facts)
        if not with_app:
            text = path.read_text()
            start, end = text.index("[app]"), text.index("[auth]")
            path.write_text(text[:start] + text[end:])
        yield Console(path, tmp_path / "home", db)
    finally:
        stop_pid(proc.pid, timeout=5, sig=signal.SIGTERM)


async def platform_state(dsn: str) -> dict[str, object]:
    """What belongs to the platform and must never change: its tables' contents, roles and
    their attributes and memberships, default privileges, event triggers, extensions,
    publications, schema owners."""
    conn = await asyncpg.connect(dsn)
    try:
        return await platform_state_of(conn)
    finally:
        await conn.close()


async def platform_state_of(conn: asyncpg.Connection) -> dict[str, object]:
    """platform_state, read on ``conn`` (the console's own session: `postgres` reads the
    platform's tables through pg_read_all_data)."""
    state: dict[str, object] = {}
    for table in PLATFORM_TABLES:
        content = await table_content(conn, table)
        state[table] = (content.rows, content.checksum)
    for name, sql in {
        "roles": "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolreplication, "
                 "rolbypassrls, rolcanlogin, rolinherit FROM pg_roles "
                 "WHERE rolname !~ '^pg_' ORDER BY 1",
        "members": "SELECT roleid::regrole::text, member::regrole::text, admin_option "
                   "FROM pg_auth_members ORDER BY 1, 2",
        "default_acl": "SELECT defaclrole::regrole::text, defaclnamespace::regnamespace"
                       "::text, defaclobjtype, defaclacl::text FROM pg_default_acl "
                       "ORDER BY 1, 2, 3",
        "event_triggers": "SELECT evtname, evtevent, evtowner::regrole::text, evtenabled "
                          "FROM pg_event_trigger ORDER BY 1",
        "extensions": "SELECT extname, extowner::regrole::text, "
                      "extnamespace::regnamespace::text, extversion FROM pg_extension "
                      "ORDER BY 1",
        "publications": "SELECT pubname, pubowner::regrole::text FROM pg_publication",
        "schemas": "SELECT nspname, nspowner::regrole::text FROM pg_namespace "
                   "WHERE nspname IN ('auth', 'storage', 'extensions') ORDER BY 1",
        "signup_trigger": "SELECT tgname, tgenabled FROM pg_trigger "
                          "WHERE tgrelid = 'auth.users'::regclass AND NOT tgisinternal",
    }.items():
        state[name] = [tuple(r) for r in await conn.fetch(sql)]
    return state


async def allows_connections(db: SupabaseDb, name: str | None = None) -> bool:
    conn = await asyncpg.connect(db.cluster.server.dsn("template1"))
    try:
        return bool(await conn.fetchval("SELECT datallowconn FROM pg_database "
                                        "WHERE datname = $1", name or db.name))
    finally:
        await conn.close()


async def databases_like(db: SupabaseDb, prefix: str) -> list[str]:
    conn = await asyncpg.connect(db.cluster.server.dsn("template1"))
    try:
        return [r["datname"] for r in await conn.fetch(
            "SELECT datname FROM pg_database WHERE left(datname, length($1)) = $1", prefix)]
    finally:
        await conn.close()


def take_backup(console: Console) -> str:
    code, out = console.run("backup", "--label", "before")
    assert code == 0, out
    sets = sorted((console.config.parent / "backups").iterdir())
    assert sets, out
    return sets[-1].name


def migrated_now() -> str:
    """--migration-time for a migration that ran just now, after the backup (the operator
    knows it; these tests are not about the migrations table)."""
    return (datetime.now(UTC) + timedelta(seconds=1)).isoformat(timespec="seconds")


def run_as_postgres(console: Console, sql: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(console.db.dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()
    asyncio.run(go())


# A migration that damages schema, data, policies, grants and the app's trigger on auth.users.
DAMAGE = """
ALTER TABLE public.local_classes DROP COLUMN school;
UPDATE public.media SET caption = 'broken';
DROP POLICY "media: owner reads" ON public.media;
REVOKE ALL ON public.chakai FROM anon;
DROP TRIGGER on_auth_user_created ON auth.users;
"""


def damage(console: Console) -> None:
    run_as_postgres(console, DAMAGE)
