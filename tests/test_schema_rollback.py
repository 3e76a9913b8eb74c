"""Type 1 on the sandbox: the migrations a real "consolidation" does, applied to a copy of the
demo database, rolled back through the whole plan (the real runner, the real demo app for
maintenance mode). After each: zero drift against the backup (our diff) AND, independently,
`pg_dump --schema-only` equal to the one taken before the migration wherever column order
allows; the data in untouched columns identical (checksums); the annotations right.
Faults: a lock held elsewhere, a schema changed after the gate, a wrong phrase, a value that
blocks the plan: each changes nothing."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from app import config
from app.backups.backupset import BackupSet, open_set
from app.backups.create import create_set
from app.drift import drift
from app.events import EventChannel
from app.journal import Journal
from app.rollback.context import Options, Outcome, RollbackType, RunContext, expected_phrase
from app.rollback.plans import build_plan
from app.rollback.runner import execute
from app.sandbox.server import bin_dir
from tests.conftest import DemoApp, DemoDb
from tests.helpers import CONSOLE_SCRIPT
from tests.test_partial_rollback import last_event

CLI = [str(CONSOLE_SCRIPT)]   # the installed console script of this environment


def schema_dump(db: DemoDb) -> str:
    """pg_dump's own view of the schema, without its per-run \\restrict key lines, and with
    each object's GRANT lines sorted (they follow the ACL's internal order, which a revoke
    and re-grant changes without changing any privilege)."""
    out = subprocess.run([str(bin_dir() / "pg_dump"), "--schema-only", db.dsn], check=True,
                         capture_output=True, text=True).stdout
    lines: list[str] = []
    grants: list[str] = []
    for line in out.splitlines():
        if line.startswith(("\\restrict", "\\unrestrict")):
            continue
        if line.startswith(("GRANT ", "REVOKE ")):
            grants.append(line)
            continue
        lines += sorted(grants)
        grants = []
        lines.append(line)
    return "\n".join(lines + sorted(grants))


async def content(conn: asyncpg.Connection, table: str, skip: tuple[str, ...] = ()) -> str:
    """An order-independent checksum of a table's rows over its columns minus ``skip``."""
    cols = [r["attname"] for r in await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attname", f"public.{table}") if r["attname"] not in skip]
    row_expr = ", ".join(f'"{c}"' for c in cols)
    value = await conn.fetchval(
        f"SELECT count(*)::text || ':' || coalesce(sum(('x' || left(md5(ROW({row_expr})::text),"
        f" 16))::bit(64)::bigint::numeric), 0)::text FROM public.{table}")
    return str(value)


@dataclass
class Migration:
    name: str
    sql: str
    expect: tuple[str, ...]                 # substrings the plan's annotations must contain
    skip: dict[str, tuple[str, ...]]        # table -> columns whose values may not come back
    same_dump: bool = True                  # pg_dump -s equal afterwards (column order kept)
    before: str = ""                        # set-up that is part of the backed-up schema


CATALOGUE = [
    Migration("add column", "ALTER TABLE objects ADD COLUMN legacy_code text DEFAULT 'L-0'",
              ("drop column \"public\".\"objects\".\"legacy_code\"", "DESTROYS 1,000 non-null"),
              {}),
    Migration("drop column", "ALTER TABLE media DROP COLUMN caption",
              ("add column \"public\".\"media\".\"caption\"", "without its values"),
              {"media": ("caption",)}, same_dump=False),
    Migration("rename column", "ALTER TABLE media RENAME COLUMN caption TO title",
              ("rename column \"public\".\"media\".\"title\": back to caption",), {}),
    Migration("rename table", "ALTER TABLE chakai RENAME TO gatherings",
              ("rename table \"public\".\"gatherings\"",), {}),
    Migration("add table",
              "CREATE TABLE public.audit_log (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY "
              "KEY, account_id uuid REFERENCES public.accounts (id), note text NOT NULL); "
              "INSERT INTO public.audit_log (account_id, note) "
              "SELECT id, 'x' FROM accounts LIMIT 20",
              ("drop table \"public\".\"audit_log\"", "DESTROYS 20 rows"), {}),
    Migration("drop table", "DROP TABLE chakai",
              ("create table \"public\".\"chakai\"", "comes back EMPTY"),
              {"chakai": ("*",)}),
    Migration("change types",
              "ALTER TABLE objects ALTER COLUMN name TYPE varchar(200); "
              "ALTER TABLE chakai ALTER COLUMN held_on TYPE timestamptz",
              ("change type \"public\".\"objects\".\"name\"",
               "timestamp with time zone back to date"), {}),
    Migration("change defaults",
              "ALTER TABLE objects ALTER COLUMN is_public SET DEFAULT true; "
              "ALTER TABLE local_classes ALTER COLUMN school DROP DEFAULT",
              ("default \"public\".\"objects\".\"is_public\": back to false",
               "default \"public\".\"local_classes\".\"school\""), {}),
    Migration("foreign keys",
              "ALTER TABLE media DROP CONSTRAINT media_object_id_fkey; "
              "ALTER TABLE chakai DROP CONSTRAINT chakai_host_id_fkey; "
              "ALTER TABLE chakai ADD CONSTRAINT chakai_host_id_fkey FOREIGN KEY (host_id) "
              "REFERENCES accounts (id) ON DELETE CASCADE NOT VALID; "
              "ALTER TABLE objects ADD CONSTRAINT objects_kind_check CHECK (kind <> '')",
              ("add foreign key \"public\".\"media\" media_object_id_fkey",
               "drop constraint \"public\".\"objects\" objects_kind_check"), {}),
    Migration("indexes",
              "DROP INDEX objects_kind_idx; CREATE INDEX media_caption_idx ON media (caption); "
              "DROP INDEX chakai_local_class_id_idx; "
              "CREATE INDEX chakai_local_class_id_idx ON chakai (local_class_id)",
              ("create index \"public\".\"objects_kind_idx\"",
               "drop index \"public\".\"media_caption_idx\"",
               "drop index \"public\".\"chakai_local_class_id_idx\": changed"), {}),
    Migration("policies and RLS",
              "DROP POLICY \"objects: owner reads\" ON objects; CREATE POLICY \"objects: owner "
              "reads\" ON objects FOR SELECT TO authenticated USING (false); "
              "ALTER TABLE media DISABLE ROW LEVEL SECURITY; "
              "CREATE POLICY \"chakai: anyone reads\" ON chakai FOR SELECT USING (true)",
              ("drop policy \"public\".\"objects\" objects: owner reads: replaced",
               "row level security \"public\".\"media\": enabled in the backup",
               "drop policy \"public\".\"chakai\" chakai: anyone reads"), {}),
    Migration("functions and triggers",
              "CREATE OR REPLACE FUNCTION public.set_updated_at() RETURNS trigger LANGUAGE "
              "plpgsql AS $$ BEGIN RETURN NEW; END $$; DROP TRIGGER media_updated_at ON media; "
              "CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS "
              "$$ BEGIN RETURN NEW; END $$; CREATE TRIGGER objects_touch BEFORE INSERT ON "
              "objects FOR EACH ROW EXECUTE FUNCTION public.touch()",
              ("replace function \"public\".\"set_updated_at\"()",
               "create trigger \"public\".\"media\" media_updated_at",
               "drop function \"public\".\"touch\"()"), {}),
    Migration("enum value", "ALTER TYPE public.object_state ADD VALUE 'archived'",
              ("recreate enum \"public\".\"object_state\"",
               "convert column \"public\".\"objects\".\"state\""), {},
              before="CREATE TYPE public.object_state AS ENUM ('draft', 'listed'); "
                     "ALTER TABLE objects ADD COLUMN state public.object_state NOT NULL "
                     "DEFAULT 'listed'"),
    Migration("grants",
              "REVOKE SELECT ON objects FROM authenticated; GRANT ALL ON media TO PUBLIC; "
              "REVOKE USAGE ON SCHEMA auth FROM authenticated; "
              "REVOKE EXECUTE ON FUNCTION public.set_updated_at() FROM anon; "
              "REVOKE EXECUTE ON FUNCTION auth.uid() FROM PUBLIC, authenticated",
              ("grants \"public\".\"objects\": grant back (authenticated:SELECT)",
               "grants auth.uid(): grant back (PUBLIC:EXECUTE, authenticated:EXECUTE)",
               "revoke what the migration granted (PUBLIC:",
               "grants \"auth\": grant back (authenticated:USAGE)"), {}),
    Migration("view over a retyped column",
              "DROP VIEW public.object_names; ALTER TABLE objects ALTER COLUMN maker TYPE "
              "varchar(80); CREATE VIEW public.object_names AS SELECT id, name, maker, era "
              "FROM objects",
              ("drop view \"public\".\"object_names\"", "create view \"public\".\"object_names\"",
               "change type \"public\".\"objects\".\"maker\""), {},
              before="CREATE VIEW public.object_names AS SELECT id, name, maker FROM objects; "
                     "GRANT SELECT ON public.object_names TO authenticated"),
    Migration("consolidation (several at once)",
              "ALTER TABLE media RENAME COLUMN caption TO alt_text; "
              "ALTER TABLE objects ADD COLUMN search tsvector; "
              "ALTER TABLE accounts ALTER COLUMN display_name TYPE varchar(120); "
              "DROP INDEX media_owner_id_idx; ALTER TABLE media DROP CONSTRAINT "
              "media_owner_id_fkey; CREATE TABLE public.tags (id bigint PRIMARY KEY, "
              "label text); DROP POLICY \"chakai: host writes\" ON chakai; "
              "REVOKE INSERT ON chakai FROM authenticated",
              ("rename column", "drop column \"public\".\"objects\".\"search\"",
               "drop table \"public\".\"tags\"", "create policy \"public\".\"chakai\" chakai: "
               "host writes", "add foreign key \"public\".\"media\" media_owner_id_fkey"), {}),
]


async def backup_of(console_config: Path, conn: asyncpg.Connection, before: str) -> BackupSet:
    if before:
        await conn.execute(before)
    return await create_set(config.load(console_config), "before-migration")


def run_ctx(console_config: Path, tmp_path: Path, backup: BackupSet, phrase: str | None = None
            ) -> RunContext:
    cfg = config.load(console_config)
    confirm = expected_phrase(RollbackType.SCHEMA, cfg.target.name) if phrase is None \
        else phrase
    return RunContext(cfg, RollbackType.SCHEMA, Journal.open(tmp_path / "incident"),
                      EventChannel(), backup, Options(confirm=confirm))


@pytest.mark.parametrize("migration", CATALOGUE, ids=[m.name for m in CATALOGUE])
async def test_each_migration_rolls_back_to_zero_drift(
        migration: Migration, console_config: Path, demo_db: DemoDb, demo_app: DemoApp,
        conn: asyncpg.Connection, tmp_path: Path) -> None:
    backup = await backup_of(console_config, conn, migration.before)
    dump_before = schema_dump(demo_db)
    tables = ["accounts", "objects", "media", "chakai", "local_classes"]
    data_before = {t: await content(conn, t, migration.skip.get(t, ())) for t in tables
                   if "*" not in migration.skip.get(t, ())}
    await conn.execute(migration.sql)

    cfg = config.load(console_config)
    plan = await build_plan(cfg, RollbackType.SCHEMA, backup, Options())
    text = "\n".join(s for step in plan.steps for s in step.statements) + \
        "\n".join(plan.blast_radius)
    for expected in migration.expect:
        assert expected in text, f"{expected!r} not in the plan:\n{text}"

    ctx = run_ctx(console_config, tmp_path, backup)
    outcome = await execute(plan, ctx)
    assert outcome is Outcome.DONE, [e.data for e in ctx.journal.entries[-3:]]

    after = await drift(cfg, backup)
    assert after.diff.empty, after.diff.summary()
    if migration.same_dump:
        assert schema_dump(demo_db) == dump_before
    for table, checksum in data_before.items():
        assert await content(conn, table, migration.skip.get(table, ())) == checksum, table
    kinds = [e.kind for e in ctx.journal.entries]
    assert kinds.count("action_started") == kinds.count("action_finished")
    applied = next(e for e in ctx.journal.entries if e.kind == "action_finished"
                   and e.data.get("action") == "apply_schema_plan")
    assert applied.data["ok"] is True


async def test_a_plain_pg_dump_schema_file_works_the_same(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    """The runbook's hand-made set: only `pg_dump --schema-only > schema_only_backup.sql`."""
    folder = config.load(console_config).target.backups_root / "production_migration_20261124"
    folder.mkdir()
    subprocess.run([str(bin_dir() / "pg_dump"), "--schema-only",
                    f"--file={folder / 'schema_only_backup.sql'}", demo_db.dsn], check=True)
    backup = open_set(folder)
    dump_before = schema_dump(demo_db)
    objects_before = await content(conn, "objects")
    await conn.execute(CATALOGUE[-1].sql)

    cfg = config.load(console_config)
    plan = await build_plan(cfg, RollbackType.SCHEMA, backup, Options())
    outcome = await execute(plan, run_ctx(console_config, tmp_path, backup))
    assert outcome is Outcome.DONE
    assert (await drift(cfg, backup)).diff.empty
    assert schema_dump(demo_db) == dump_before
    assert await content(conn, "objects") == objects_before


async def test_a_lock_held_elsewhere_fails_the_plan_and_changes_nothing(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    backup = await backup_of(console_config, conn, "")
    await conn.execute(CATALOGUE[-1].sql)
    migrated = schema_dump(demo_db)
    cfg = config.load(console_config)
    plan = await build_plan(cfg, RollbackType.SCHEMA, backup, Options())
    holder = await demo_db.connect()
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("LOCK TABLE public.chakai IN ACCESS SHARE MODE")
        ctx = run_ctx(console_config, tmp_path, backup)
        outcome = await execute(plan, ctx)
        await tx.rollback()
    finally:
        await holder.close()
    assert outcome is Outcome.FAILED_RESTORED
    failed = [e for e in ctx.journal.entries if e.kind == "step_finished"
              and e.data.get("status") == "failed"]
    assert failed[0].data["step"] == "restore"
    assert "lock" in failed[0].data["error"].lower()
    assert "rolled back" in failed[0].data["error"]
    assert schema_dump(demo_db) == migrated


async def test_a_schema_changed_after_the_gate_is_not_applied(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    backup = await backup_of(console_config, conn, "")
    await conn.execute("ALTER TABLE objects ADD COLUMN legacy_code text")
    cfg = config.load(console_config)
    plan = await build_plan(cfg, RollbackType.SCHEMA, backup, Options())
    await conn.execute("ALTER TABLE media ADD COLUMN extra int")   # after the plan was shown
    changed = schema_dump(demo_db)
    ctx = run_ctx(console_config, tmp_path, backup)
    outcome = await execute(plan, ctx)
    assert outcome is Outcome.NEEDS_OPERATOR
    assert "changed since the plan was shown" in ctx.journal.entries[-1].data["summary"]
    assert schema_dump(demo_db) == changed


async def test_a_wrong_phrase_is_refused(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    backup = await backup_of(console_config, conn, "")
    await conn.execute("ALTER TABLE objects ADD COLUMN legacy_code text")
    migrated = schema_dump(demo_db)
    cfg = config.load(console_config)
    plan = await build_plan(cfg, RollbackType.SCHEMA, backup, Options())
    ctx = run_ctx(console_config, tmp_path, backup, phrase=f"ROLLBACK {cfg.target.name}")
    assert await execute(plan, ctx) is Outcome.REFUSED
    assert "ROLLBACK SCHEMA" in last_event(ctx).summary
    assert not ctx.journal.path.exists(), "a refused run opened an incident"
    assert schema_dump(demo_db) == migrated


async def test_values_the_backup_cannot_hold_block_the_plan_up_front(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    """The migration made a column nullable and rows now hold NULL: NOT NULL cannot come back;
    the gate shows why, and the run stops before anything changes."""
    backup = await backup_of(console_config, conn, "")
    await conn.execute("ALTER TABLE objects ALTER COLUMN name DROP NOT NULL; "
                       "UPDATE objects SET name = NULL WHERE id <= 3")
    migrated = schema_dump(demo_db)
    cfg = config.load(console_config)
    plan = await build_plan(cfg, RollbackType.SCHEMA, backup, Options())
    assert any("BLOCKS THE PLAN" in line and "3 rows are NULL" in line
               for line in plan.blast_radius), plan.blast_radius
    ctx = run_ctx(console_config, tmp_path, backup)
    assert await execute(plan, ctx) is Outcome.NEEDS_OPERATOR
    assert "3 rows are NULL" in ctx.journal.entries[-1].data["summary"]
    assert schema_dump(demo_db) == migrated
    assert not (ctx.incident_dir / "safety").exists()   # stopped before the snapshot even


def test_dry_run_and_diff_commands_change_nothing(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, tmp_path: Path) -> None:
    import asyncio

    async def prepare() -> None:
        c = await demo_db.connect()
        try:
            await create_set(config.load(console_config), "before-migration")
            await c.execute("ALTER TABLE objects ADD COLUMN legacy_code text DEFAULT 'x'; "
                            "DROP INDEX objects_kind_idx")
        finally:
            await c.close()

    asyncio.run(prepare())
    migrated = schema_dump(demo_db)
    base = [*CLI, "--config", str(console_config)]
    dry = subprocess.run([*base, "run", "--type", "schema", "--dry-run"], capture_output=True,
                         text=True)
    assert dry.returncode == 0, dry.stderr
    assert 'ALTER TABLE "public"."objects" DROP COLUMN "legacy_code";' in dry.stdout
    assert "DESTROYS 1,000 non-null values" in dry.stdout
    assert "CREATE INDEX objects_kind_idx ON public.objects USING btree (kind);" in dry.stdout
    shown = subprocess.run([*base, "diff"], capture_output=True, text=True)
    assert shown.returncode == 1, shown.stderr        # drift found
    assert "2 difference(s)" in shown.stdout
    as_json = subprocess.run([*base, "diff", "--json"], capture_output=True, text=True)
    data = json.loads(as_json.stdout)
    assert [c["kind"] for c in data["changes"]] == ["drop column", "create index"]
    assert data["changes"][0]["destroys"] == "1,000 non-null values"
    rehearsed = subprocess.run([*base, "diff", "--rehearse"], capture_output=True, text=True)
    assert rehearsed.returncode == 1, rehearsed.stderr
    assert "rehearsal: on a scratch copy of the target's schema the plan ran" in rehearsed.stdout
    assert schema_dump(demo_db) == migrated

    async def scratch_left() -> list[str]:
        c = await demo_db.connect()
        try:
            return [r["datname"] for r in await c.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE 'rollback\\_%'")]
        finally:
            await c.close()

    assert asyncio.run(scratch_left()) == []
    unknown = subprocess.run([*base, "diff", "--backup", "nope"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "no backup set 'nope'" in unknown.stderr
    assert re.search(r"Traceback", unknown.stderr) is None


def test_a_role_that_cannot_create_the_scratch_database_is_told_why(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, tmp_path: Path) -> None:
    """A hand-made set has no schema model: Type 1 restores its schema into a scratch database,
    which needs CREATEDB. Without it: exit 2, what to grant, nothing created or changed."""
    import asyncio

    folder = config.load(console_config).target.backups_root / "production_migration_20261124"
    folder.mkdir()
    subprocess.run([str(bin_dir() / "pg_dump"), "--schema-only",
                    f"--file={folder / 'schema_only_backup.sql'}", demo_db.dsn], check=True)

    async def as_admin(sql: str) -> list[str]:
        c = await demo_db.connect()
        try:
            await c.execute(sql)
            return [r["datname"] for r in await c.fetch("SELECT datname FROM pg_database")]
        finally:
            await c.close()

    before = asyncio.run(as_admin(
        "CREATE ROLE reader LOGIN NOCREATEDB PASSWORD 's3cret-reader-pw';"
        "ALTER DATABASE " + demo_db.name + " OWNER TO postgres; GRANT pg_read_all_data TO "
        "reader; ALTER TABLE objects ADD COLUMN legacy_code text"))
    migrated = schema_dump(demo_db)
    text = console_config.read_text().replace('dsn = "postgresql://postgres@',
                                              'dsn = "postgresql://reader@').replace(
        "secrets/db_password", "secrets/reader_password")
    (console_config.parent / "secrets" / "reader_password").write_text("s3cret-reader-pw")
    reader = console_config.parent / "reader.toml"
    reader.write_text(text)
    shown = subprocess.run([*CLI, "--config", str(reader), "diff"],
                           capture_output=True, text=True)
    assert shown.returncode == 2, (shown.stdout, shown.stderr)
    assert "cannot create databases" in shown.stderr and "CREATEDB" in shown.stderr
    assert "s3cret-reader-pw" not in shown.stdout + shown.stderr
    assert "Traceback" not in shown.stderr
    assert asyncio.run(as_admin("SELECT 1")) == before
    assert schema_dump(demo_db) == migrated


async def test_the_console_shows_the_schema_plan_before_the_gate_and_runs_it(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The drill rls-blocks-users in the TUI: the assessment recommends Type 1, the plan screen
    shows the statements, the gate wants ROLLBACK SCHEMA, the policy comes back."""
    from app import drills
    from app.tui import RollbackConsoleApp
    from screens.rollback import RollbackScreen
    from tests.conftest import wait_until

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    cfg = config.load(console_config)
    backup = await create_set(cfg, "before-migration")
    await conn.execute(drills.BY_NAME["rls-blocks-users"].migration)
    app = RollbackConsoleApp(cfg, mode="drill")
    async with app.run_test(size=(140, 45)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("a")
        await wait_until(lambda: getattr(app.screen, "assessment", None) is not None, pilot, 60)
        await pilot.press("Y")
        await pilot.pause()
        await pilot.press("b")
        await wait_until(lambda: getattr(app.screen, "plan", None) is not None, pilot, 60)
        shown = str(app.screen.query_one("#plan-text").render())
        assert 'CREATE POLICY "objects: owner reads"' in shown
        assert 'CREATE POLICY "objects: owner writes"' in shown
        await pilot.press("G")
        await pilot.pause()
        app.screen.query_one("#gate-input").value = "ROLLBACK tea-school-sandbox"  # type: ignore[attr-defined]
        await pilot.click("#confirm")
        await pilot.pause()
        assert not isinstance(app.screen, RollbackScreen)     # the wrong phrase: refused
        gate_input = app.screen.query_one("#gate-input")
        gate_input.value = "ROLLBACK SCHEMA tea-school-sandbox"  # type: ignore[attr-defined]
        gate_input.focus()
        await pilot.press("enter")
        await wait_until(lambda: getattr(app.screen, "outcome", None) is not None, pilot, 60)
        assert app.screen.outcome == "done"  # type: ignore[attr-defined]
    assert (await drift(cfg, backup)).diff.empty


async def test_after_a_dropped_column_comes_back_the_console_offers_the_data_rollback(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.tui import RollbackConsoleApp
    from screens.plan import PlanScreen
    from tests.conftest import wait_until

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    cfg = config.load(console_config)
    await create_set(cfg, "before-migration")
    await conn.execute("ALTER TABLE media DROP COLUMN caption")
    app = RollbackConsoleApp(cfg, mode="drill")
    async with app.run_test(size=(140, 45)) as pilot:
        await app.workers.wait_for_complete()
        await app.push_screen(PlanScreen(RollbackType.SCHEMA))
        await pilot.pause()
        await pilot.press("b")
        await wait_until(lambda: getattr(app.screen, "plan", None) is not None, pilot, 60)
        assert "LOSS" in str(app.screen.query_one("#plan-text").render())
        await pilot.press("G")
        await pilot.pause()
        gate_input = app.screen.query_one("#gate-input")
        gate_input.value = "ROLLBACK SCHEMA tea-school-sandbox"  # type: ignore[attr-defined]
        gate_input.focus()
        await pilot.press("enter")
        await wait_until(lambda: getattr(app.screen, "outcome", None) is not None, pilot, 60)
        outcome_text = str(app.screen.query_one("#rb-outcome").render())
        assert "press D for phase 2, the partial data rollback of public.media" in outcome_text
        await pilot.press("D")
        await pilot.pause()
        assert isinstance(app.screen, PlanScreen)
        assert app.screen.kind is RollbackType.PARTIAL
        assert app.screen.preselected == ("public.media",)
    assert await conn.fetchval("SELECT count(*) FROM information_schema.columns WHERE "
                               "table_name = 'media' AND column_name = 'caption'") == 1


async def test_large_tables_are_estimated_not_scanned(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp,
        conn: asyncpg.Connection) -> None:
    """Above 200,000 rows the annotations come from the planner's statistics (or a 1% page
    sample for a column added since the last ANALYZE), said as an estimate."""
    await conn.execute("CREATE TABLE public.events AS SELECT g AS id, 'e' || g AS label "
                       "FROM generate_series(1, 250000) g; ANALYZE public.events")
    cfg = config.load(console_config)
    backup = await create_set(cfg, "before-migration")
    await conn.execute("ALTER TABLE public.events ADD COLUMN source text DEFAULT 'app'; "
                       "ALTER TABLE public.events ALTER COLUMN id TYPE bigint")
    found = await drift(cfg, backup)
    by_kind = {c.kind: c for c in found.diff.changes}
    dropped = by_kind["drop column"]
    assert dropped.destroys.startswith("about ") and "estimated" in dropped.destroys
    n = int(dropped.destroys.split()[1].replace(",", ""))
    assert 150_000 <= n <= 350_000      # every row has the default (about 250,000)
    rewritten = by_kind["change type"].note
    assert "about " in rewritten and "rows rewritten (estimated" in rewritten


@pytest.mark.parametrize(("kind", "step"), [
    ("step_finished", "safety_snapshot"),
    ("action_started", "restore"),      # the apply's transaction may be open
    ("step_started", "validation"),
])
async def test_kill_9_then_resume_ends_at_zero_drift(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, kind: str, step: str) -> None:
    """Killed anywhere, resumed: the same schema as a run never interrupted (the apply either
    committed or the server rolled it back; the resumed apply computes what is left)."""
    import os
    import signal
    import sys

    from tests.test_run_cli import _wait_for, cli

    await create_set(config.load(console_config), "before-migration")
    dump_before = schema_dump(demo_db)
    objects_before = await content(conn, "objects")
    await conn.execute(CATALOGUE[-1].sql)
    env = {**os.environ, "ROLLBACK_CONSOLE_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "-c", str(console_config), "run", "--type", "schema",
         "--confirm", "ROLLBACK SCHEMA tea-school-sandbox", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        stdin=subprocess.DEVNULL)
    try:
        _wait_for(tmp_path, kind, step, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    resumed = cli(console_config, tmp_path, "resume", "--json",
                  "--confirm", "ROLLBACK SCHEMA tea-school-sandbox")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert schema_dump(demo_db) == dump_before
    assert await content(conn, "objects") == objects_before
    journal = next(tmp_path.glob("incidents/*/journal.jsonl")).read_text().splitlines()
    entries = [json.loads(line) for line in journal]
    assert any(e["kind"] == "incident_resumed" for e in entries)
    assert entries[-1]["kind"] == "incident_closed" and entries[-1]["data"]["exit_code"] == 0
