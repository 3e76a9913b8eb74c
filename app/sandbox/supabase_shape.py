"""A sandbox shaped like a Supabase project (`sandbox up --shape supabase`, `drill --shape
supabase`, and the Supabase-shaped cluster of the tests): the console connects as the
platform's non-superuser ``postgres``, as a Supabase user does.

Written from the platform's documented facts (its roles guide "Roles, superuser access and
unsupported operations", the self-hosting note on ``supabase_admin`` and ``postgres``, and the
knowledge-base page on memberships granted by ``supabase_admin``), not copied from its scripts:

- ``supabase_admin`` is the bootstrap superuser (initdb's user): it owns the cluster's first
  databases, so the ``postgres`` database is owned by ``supabase_admin`` (a database initdb
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
"""

from __future__ import annotations

import asyncio

import asyncpg

from app.sandbox.demo_data import DemoFacts, load_demo
from app.sandbox.server import PgServer

SHAPES = ("plain", "supabase")
SUPABASE_ADMIN = "supabase_admin"
PROJECT_DATABASE = "postgres"     # a Supabase project's database is named postgres
PLATFORM_ROLES = ("anon", "authenticated", "service_role", "supabase_auth_admin",
                  "supabase_storage_admin", "authenticator", "postgres", SUPABASE_ADMIN)
EVENT_TRIGGERS = ("issue_pg_cron_access", "issue_graphql_placeholder",
                  "issue_pg_graphql_access", "issue_pg_net_access", "pgrst_ddl_watch",
                  "pgrst_drop_watch")
PLATFORM_TABLES = ("auth.users", "auth.refresh_tokens", "storage.objects")


def roles_sql(postgres_pw: str, authenticator_pw: str) -> str:
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


def database_grants_sql(database: str) -> str:
    """What `postgres` may do on the project's database (owned by supabase_admin)."""
    return f'GRANT CREATE, CONNECT, TEMPORARY ON DATABASE "{database}" TO postgres'


def platform_sql() -> str:
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


async def build_project(server: PgServer, database: str, postgres_pw: str,
                        authenticator_pw: str, rows: int, seed: int) -> DemoFacts:
    """The platform's roles on ``server`` (initdb'd with ``superuser=SUPABASE_ADMIN``), then
    ``database`` (created owned by supabase_admin unless it exists, as initdb's ``postgres``
    does) holding the platform's objects and the demo app, loaded as ``postgres``."""
    admin = await asyncpg.connect(server.dsn("template1"))
    try:
        await admin.execute(roles_sql(postgres_pw, authenticator_pw))
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await admin.execute(f'CREATE DATABASE "{database}" OWNER {SUPABASE_ADMIN}')
        await admin.execute(database_grants_sql(database))
    finally:
        await admin.close()
    sa = await asyncpg.connect(server.dsn(database))
    try:   # the platform's extensions schema, and public opened to postgres
        await sa.execute("CREATE SCHEMA extensions; GRANT ALL ON SCHEMA public TO postgres")
        app = await asyncpg.connect(server.dsn(database, "postgres", postgres_pw))
        try:   # the app's schema and rows, created by postgres as a Supabase user does
            facts = await load_demo(app, rows=rows, seed=seed)
            await sa.execute(platform_sql())
            await app.execute(APP_SQL)
            await app.execute("ANALYZE")
        finally:
            await app.close()
    finally:
        await sa.close()
    return facts


async def open_platform_sessions(admin_dsn: str, authenticator_dsn: str
                                 ) -> list[asyncpg.Connection]:
    """The two idle sessions the platform keeps on a project's database: supabase_admin's
    (a superuser's: `postgres` may not end it) and PostgREST's, as `authenticator`."""
    admin = await asyncpg.connect(
        admin_dsn, server_settings={"application_name": "supabase_admin platform"})
    try:
        rest = await asyncpg.connect(
            authenticator_dsn, server_settings={"application_name": "postgrest"})
    except BaseException:
        await admin.close()
        raise
    return [admin, rest]


class PlatformSessions:
    """The platform's idle sessions held for a sandbox's life, on a private event loop that
    never runs between calls (the sessions only stay connected), until ``close()``."""

    def __init__(self, admin_dsn: str, authenticator_dsn: str):
        self._loop = asyncio.new_event_loop()
        try:
            self.connections = self._loop.run_until_complete(
                open_platform_sessions(admin_dsn, authenticator_dsn))
        except BaseException:
            self._loop.close()
            raise

    def close(self) -> None:
        for conn in self.connections:
            try:
                self._loop.run_until_complete(conn.close(timeout=5))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                conn.terminate()
        self.connections = []
        self._loop.close()
