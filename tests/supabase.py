"""A PostgreSQL cluster shaped like a Supabase project, for the tests of tests/test_supabase.py.

Written from the platform's documented facts (its roles guide "Roles, superuser access and
unsupported operations", the self-hosting note on ``supabase_admin`` and ``postgres``, and the
knowledge-base page on memberships granted by ``supabase_admin``), not copied from its scripts:

- ``supabase_admin`` is the bootstrap superuser (initdb's user): it owns the cluster's first
  databases, so the ``postgres`` database is owned by ``supabase_admin`` here (a database initdb
  makes belongs to the bootstrap superuser; the platform never gives it to ``postgres``, which
  therefore may not rename it);
- ``postgres`` is NOSUPERUSER with CREATEDB, CREATEROLE, REPLICATION, BYPASSRLS and LOGIN, a
  member of the API roles, ``supabase_auth_admin``, ``supabase_storage_admin`` and
  ``pg_read_all_data``; it owns the app's tables in ``public`` (it created them);
- ``auth`` belongs to ``supabase_auth_admin``, ``storage`` to ``supabase_storage_admin``;
  ``extensions``, its extensions, six event triggers and the ``supabase_realtime`` publication
  to ``supabase_admin``; the Supabase CLI's ``supabase_migrations.schema_migrations`` records
  the migrations; default privileges give the API roles the tables ``postgres`` creates;
- the platform keeps sessions open on the database (``supabase_admin`` and ``authenticator``).

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
from app.sandbox.demo_data import DemoFacts, load_demo
from app.sandbox.manager import info_app_url, start_demo_app, write_config, write_secrets
from app.sandbox.server import PgServer, stop_pid
from tests.helpers import cli

SUPABASE_ADMIN = "supabase_admin"
TEMPLATE = "sb_template"
PLATFORM_ROLES = ("anon", "authenticated", "service_role", "supabase_auth_admin",
                  "supabase_storage_admin", "authenticator", "postgres", SUPABASE_ADMIN)
EVENT_TRIGGERS = ("issue_pg_cron_access", "issue_graphql_placeholder",
                  "issue_pg_graphql_access", "issue_pg_net_access", "pgrst_ddl_watch",
                  "pgrst_drop_watch")
PLATFORM_TABLES = ("auth.users", "auth.refresh_tokens", "storage.objects")


def _roles_sql(postgres_pw: str, authenticator_pw: str) -> str:
    """The cluster's roles, as the platform sets them (run once, as supabase_admin)."""
    return f"""
    CREATE ROLE anon NOLOGIN NOINHERIT;
    CREATE ROLE authenticated NOLOGIN NOINHERIT;
    CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    CREATE ROLE supabase_auth_admin NOINHERIT CREATEROLE LOGIN NOREPLICATION;
    CREATE ROLE supabase_storage_admin NOINHERIT CREATEROLE LOGIN NOREPLICATION;
    CREATE ROLE authenticator NOINHERIT LOGIN PASSWORD '{authenticator_pw}';
    CREATE ROLE postgres NOSUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS LOGIN
        PASSWORD '{postgres_pw}';
    GRANT anon, authenticated, service_role TO postgres WITH ADMIN OPTION;
    GRANT supabase_auth_admin, supabase_storage_admin TO postgres WITH ADMIN OPTION;
    GRANT pg_read_all_data TO postgres;
    GRANT anon, authenticated, service_role TO authenticator;
    """


def _platform_sql() -> str:
    """What the platform puts in the database beside the app (as supabase_admin)."""
    functions = "\n".join(
        f"CREATE FUNCTION extensions.{name}() RETURNS event_trigger LANGUAGE plpgsql "
        f"AS $f$ BEGIN NULL; END $f$;" for name in EVENT_TRIGGERS)
    triggers = "\n".join(
        f"CREATE EVENT TRIGGER {name} ON "
        f"{'sql_drop' if name == 'pgrst_drop_watch' else 'ddl_command_end'} "
        f"EXECUTE FUNCTION extensions.{name}();" for name in EVENT_TRIGGERS)
    return f"""
    CREATE SCHEMA IF NOT EXISTS extensions;
    GRANT USAGE ON SCHEMA extensions TO postgres, anon, authenticated, service_role;
    CREATE EXTENSION pg_stat_statements SCHEMA extensions;
    CREATE TABLE auth.refresh_tokens (
        id bigserial PRIMARY KEY, token text UNIQUE, user_id text, revoked boolean,
        created_at timestamptz, updated_at timestamptz);
    ALTER TABLE auth.refresh_tokens OWNER TO supabase_auth_admin;
    INSERT INTO auth.refresh_tokens (token, user_id, revoked, created_at, updated_at)
        SELECT 'tok-' || id, id::text, false, created_at, created_at FROM auth.users;
    CREATE SCHEMA storage AUTHORIZATION supabase_storage_admin;
    CREATE TABLE storage.objects (
        id uuid PRIMARY KEY, bucket_id text, name text, owner uuid,
        created_at timestamptz, metadata jsonb);
    ALTER TABLE storage.objects OWNER TO supabase_storage_admin;
    INSERT INTO storage.objects
        SELECT md5('obj' || u.id)::uuid, 'avatars', u.id || '/avatar.png', u.id, u.created_at,
               jsonb_build_object('size', length(u.email))
        FROM auth.users u;
    GRANT USAGE ON SCHEMA storage TO postgres, anon, authenticated, service_role;
    {functions}
    {triggers}
    CREATE PUBLICATION supabase_realtime;
    ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public
        GRANT ALL ON TABLES TO anon, authenticated, service_role;
    ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA public
        GRANT ALL ON TABLES TO anon, authenticated, service_role;
    """


# The app's own objects, created by postgres after its tables: the Supabase CLI's migrations
# table and the usual sign-up trigger on auth.users (a user object in a platform schema).
APP_SQL = """
CREATE SCHEMA supabase_migrations;
CREATE TABLE supabase_migrations.schema_migrations (
    version text PRIMARY KEY, statements text[], name text);
INSERT INTO supabase_migrations.schema_migrations VALUES
    ('20250101000000', ARRAY['create table ...'], 'initial'),
    ('20250301000000', ARRAY['create policy ...'], 'policies');
CREATE FUNCTION public.handle_new_user() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  INSERT INTO public.accounts (id, email, display_name)
  VALUES (NEW.id, NEW.email, split_part(NEW.email, '@', 1)) ON CONFLICT (id) DO NOTHING;
  RETURN NEW;
END
$$;
CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users
  FOR EACH ROW EXECUTE FUNCTION public.handle_new_user();
"""


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


async def _build(server: PgServer, postgres_pw: str, auth_pw: str) -> DemoFacts:
    admin = await asyncpg.connect(server.dsn("template1"))
    try:
        await admin.execute(_roles_sql(postgres_pw, auth_pw))
        await admin.execute(f"CREATE DATABASE {TEMPLATE} OWNER {SUPABASE_ADMIN}")
        await admin.execute(f"GRANT CREATE, CONNECT, TEMPORARY ON DATABASE {TEMPLATE} "
                            "TO postgres")
    finally:
        await admin.close()
    sa = await asyncpg.connect(server.dsn(TEMPLATE))
    try:   # the platform first: extensions, event triggers (a fresh project has them)
        await sa.execute("CREATE SCHEMA extensions; GRANT ALL ON SCHEMA public TO postgres")
        app = await asyncpg.connect(server.dsn(TEMPLATE, "postgres", postgres_pw))
        try:   # the app's schema and rows, created by postgres as a Supabase user does
            facts = await load_demo(app, rows=400, seed=7)
            await sa.execute(_platform_sql())
            await app.execute(APP_SQL)
            await app.execute("ANALYZE")
        finally:
            await app.close()
    finally:
        await sa.close()
    return facts


def start_cluster(data_dir: Path) -> SupabaseCluster:
    server = PgServer.create(data_dir, superuser=SUPABASE_ADMIN)
    server.start()
    postgres_pw, auth_pw = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    try:
        facts = asyncio.run(_build(server, postgres_pw, auth_pw))
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
        await admin.execute(f'GRANT CREATE, CONNECT, TEMPORARY ON DATABASE "{name}" '
                            "TO postgres")
    finally:
        await admin.close()


async def hold_platform_sessions(db: SupabaseDb) -> None:
    """The two idle sessions the platform keeps on a project's database."""
    db.sessions.append(await asyncpg.connect(
        db.admin_dsn, server_settings={"application_name": "supabase_admin platform"}))
    db.sessions.append(await asyncpg.connect(
        db.cluster.dsn(db.name, "authenticator"),
        server_settings={"application_name": "postgrest"}))


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
    finally:
        await conn.close()


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
