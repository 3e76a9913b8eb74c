"""Type 2 end to end on the sandbox: an injected incident, the plan run headless, exactly the
backup's content back (checksums equal the manifest), the app out of maintenance, every step
journaled; and the faults: a held lock, orphans, a wrong table, a maintenance switch that fails."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from app import config
from app.backups.backupset import BackupSet
from app.backups.manifest import FileEntry, capture_state, new_manifest
from app.catalog import table_content
from app.events import EventChannel, RunFinished
from app.journal import Journal
from app.rollback import partial
from app.rollback.context import (
    Options,
    Outcome,
    RollbackType,
    RunContext,
    expected_phrase,
)
from app.rollback.plans import build_plan
from app.rollback.runner import execute
from app.sandbox.server import bin_dir
from tests.conftest import DemoApp, DemoDb


async def make_set(db: DemoDb, conn: asyncpg.Connection, root: Path,
                   tables: tuple[str, ...] = ("objects", "media")) -> BackupSet:
    path = root / "production_migration_20261124"
    path.mkdir(parents=True)
    files = {}
    for t in tables:
        f = path / f"table_{t}_backup.sql"
        subprocess.run([str(bin_dir() / "pg_dump"), "--data-only", f"--table=public.{t}",
                        f"--file={f}", db.dsn], check=True, capture_output=True)
        files[f.name] = FileEntry(hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_size)
    manifest = new_manifest("before-migration", await capture_state(conn))
    manifest.files = files
    (path / "manifest.json").write_text(manifest.to_json())
    return BackupSet(path.name, path, manifest, datetime.now(UTC))


def ctx_for(console_config: Path, tmp_path: Path, backup: BackupSet,
            tables: tuple[str, ...], **options: object) -> RunContext:
    cfg = config.load(console_config)
    options.setdefault("confirm", expected_phrase(RollbackType.PARTIAL, cfg.target.name))
    return RunContext(cfg, RollbackType.PARTIAL, Journal.open(tmp_path / "incident"),
                      EventChannel(), backup,
                      Options(tables=tables, **options))  # type: ignore[arg-type]


def last_event(ctx: RunContext) -> RunFinished:
    """The run's closing event (a refused run journals nothing: the event is what it says)."""
    events = []
    while not ctx.channel.queue.empty():
        events.append(ctx.channel.queue.get_nowait())
    assert isinstance(events[-1], RunFinished)
    return events[-1]


async def checksums(conn: asyncpg.Connection, *tables: str) -> list[str]:
    return [(await table_content(conn, t)).checksum for t in tables]


async def test_partial_rollback_restores_the_backup_exactly(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    backup = await make_set(demo_db, conn, tmp_path / "backups")
    tables = ("public.objects", "public.media")
    # the incident: a migration corrupted captions and eras, and deleted rows
    await conn.execute("UPDATE media SET caption = NULL, updated_at = now() WHERE id % 2 = 0")
    await conn.execute("UPDATE objects SET era = 'ERROR', updated_at = now() WHERE id % 5 = 0")
    await conn.execute("DELETE FROM media WHERE id % 7 = 0")

    ctx = ctx_for(console_config, tmp_path, backup, tables)
    plan = partial.build(ctx.cfg, backup, tables)
    outcome = await execute(plan, ctx)
    assert outcome is Outcome.DONE, ctx.journal.entries[-1].data
    assert backup.manifest is not None
    assert await checksums(conn, *tables) == [backup.manifest.state.tables[t].checksum
                                              for t in tables]
    assert httpx.get(f"{demo_app.url}/api/objects?limit=1").status_code == 200
    snapshot = ctx.safety_snapshot
    assert snapshot is not None and snapshot.is_file() and snapshot.stat().st_size > 0
    exported = [Path(p) for p in ctx.partial.exported_since_backup or []]
    assert len(exported) == 2 and all(p.read_text().count("\n") > 1 for p in exported)
    kinds = [e.kind for e in ctx.journal.entries]
    assert kinds.count("step_started") == kinds.count("step_finished") == 7
    actions = [e.data["action"] for e in ctx.journal.of_kind("action_finished")]
    assert actions == ["maintenance_on", "safety_snapshot", "reload_tables", "maintenance_off"]
    notified = httpx.get(f"{demo_app.url}/hooks").json()["notifications"]
    assert notified == []  # no webhooks configured in this target: nothing sent anywhere


async def test_orphans_refuse_the_reload_and_nothing_changes(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    backup = await make_set(demo_db, conn, tmp_path / "backups", ("objects",))
    owner = await conn.fetchval("SELECT owner_id FROM objects LIMIT 1")
    new = await conn.fetchval("INSERT INTO objects (owner_id, name, kind) VALUES ($1, 'n', "
                              "'chawan') RETURNING id", owner)
    await conn.execute("INSERT INTO media (object_id, owner_id, url, mime_type, bytes) "
                       "VALUES ($1, $2, 'u', 'image/png', 1)", new, owner)
    before = await checksums(conn, "public.objects", "public.media")
    ctx = ctx_for(console_config, tmp_path, backup, ("public.objects",))
    outcome = await execute(partial.build(ctx.cfg, backup, ("public.objects",)), ctx)
    assert outcome is Outcome.FAILED_RESTORED
    assert await checksums(conn, "public.objects", "public.media") == before
    failed = ctx.journal.of_kind("step_finished")[-1]
    assert failed.step == "restore" and "Roll back public.media too" in failed.data["error"]
    closed = ctx.journal.last("incident_closed")
    assert closed is not None and closed.data["exit_code"] == 4


async def test_a_foreign_key_dropped_since_the_backup_is_added_back(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    """The migration dropped media's key to objects, then deleted objects media point at: Type 2
    of objects brings the parents back and the key with them (shown in the plan first)."""
    backup = await make_set(demo_db, conn, tmp_path / "backups", ("objects",))
    await conn.execute("ALTER TABLE media DROP CONSTRAINT media_object_id_fkey;"
                       "DELETE FROM objects WHERE id % 7 = 0")
    media = await checksums(conn, "public.media")
    ctx = ctx_for(console_config, tmp_path, backup, ("public.objects",))
    plan = await build_plan(ctx.cfg, RollbackType.PARTIAL, backup, ctx.options)
    assert any("foreign key media_object_id_fkey was dropped since the backup; added back"
               in line for line in plan.blast_radius), plan.blast_radius
    restore = next(s for s in plan.steps if s.id == "restore")
    add = 'ALTER TABLE "public"."media" ADD CONSTRAINT "media_object_id_fkey"'
    assert any(st.startswith(add) for st in restore.statements), restore.statements
    assert await execute(plan, ctx) is Outcome.DONE, ctx.journal.entries[-1].data
    assert await conn.fetchval("SELECT convalidated FROM pg_constraint "
                               "WHERE conname = 'media_object_id_fkey'") is True
    assert backup.manifest is not None
    assert await checksums(conn, "public.objects") == [
        backup.manifest.state.tables["public.objects"].checksum]
    assert await checksums(conn, "public.media") == media   # the children were not touched
    reload = next(e for e in ctx.journal.of_kind("action_started")
                  if e.data["action"] == "reload_tables")
    assert reload.data["foreign_keys_added_back"] == ["media_object_id_fkey"]


async def test_a_hand_made_set_adds_back_the_keys_its_schema_dump_declares(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    """The runbook's own set (pg_dump by hand, no manifest): the dropped key is read from
    schema_only_backup.sql and added back with the parents."""
    from app.backups.backupset import open_set

    path = console_config.parent / "backups" / "production_migration_20261124"
    path.mkdir(parents=True)
    pg_dump = str(bin_dir() / "pg_dump")
    subprocess.run([pg_dump, "--schema-only", f"--file={path / 'schema_only_backup.sql'}",
                    demo_db.dsn], check=True, capture_output=True)
    subprocess.run([pg_dump, "--data-only", "--table=public.objects",
                    f"--file={path / 'table_objects_backup.sql'}", demo_db.dsn], check=True,
                   capture_output=True)
    objects = await checksums(conn, "public.objects")
    backup = open_set(path)
    assert backup.manifest is None
    await conn.execute("ALTER TABLE media DROP CONSTRAINT media_object_id_fkey;"
                       "DELETE FROM objects WHERE id % 7 = 0")
    ctx = ctx_for(console_config, tmp_path, backup, ("public.objects",))
    plan = await build_plan(ctx.cfg, RollbackType.PARTIAL, backup, ctx.options)
    assert await execute(plan, ctx) is Outcome.DONE, ctx.journal.entries[-1].data
    assert await conn.fetchval("SELECT convalidated FROM pg_constraint "
                               "WHERE conname = 'media_object_id_fkey'") is True
    assert await checksums(conn, "public.objects") == objects


def test_foreign_keys_are_read_from_a_plain_schema_dump(tmp_path: Path) -> None:
    dump = tmp_path / "schema_only_backup.sql"
    dump.write_text(
        'ALTER TABLE ONLY "Shop"."Order Lines"\n'
        '    ADD CONSTRAINT "lines→orders" FOREIGN KEY (order_id, "Line") REFERENCES '
        '"Shop".orders(id, "Line") NOT VALID;\n'
        "ALTER TABLE ONLY public.media\n    ADD CONSTRAINT media_pkey PRIMARY KEY (id);\n")
    [fk] = partial.foreign_keys_in_dump(dump)
    assert (fk.name, fk.table, fk.referenced) == ("lines→orders", "Shop.Order Lines",
                                                  "Shop.orders")
    assert fk.columns == ("order_id", "Line") and fk.referenced_columns == ("id", "Line")
    assert not fk.validated and fk.definition.startswith("FOREIGN KEY (order_id, ")


@pytest.mark.parametrize(("tables", "message"), [
    (("public.chakai",), "has no table_chakai_backup.sql"),
    ((), "needs the tables"),
])
async def test_bad_table_choice_is_bad_input(console_config: Path, demo_db: DemoDb,
                                             demo_app: DemoApp, conn: asyncpg.Connection,
                                             tmp_path: Path, tables: tuple[str, ...],
                                             message: str) -> None:
    backup = await make_set(demo_db, conn, tmp_path / "backups", ("objects",))
    before = await checksums(conn, "public.chakai")
    ctx = ctx_for(console_config, tmp_path, backup, tables)
    assert await execute(partial.build(ctx.cfg, backup, tables), ctx) is Outcome.BAD_INPUT
    assert message in ctx.journal.of_kind("step_finished")[-1].data["error"]
    assert await checksums(conn, "public.chakai") == before


async def test_corrupt_table_dump_is_refused(console_config: Path, demo_db: DemoDb,
                                             demo_app: DemoApp, conn: asyncpg.Connection,
                                             tmp_path: Path) -> None:
    backup = await make_set(demo_db, conn, tmp_path / "backups", ("media",))
    dump = backup.path / "table_media_backup.sql"
    dump.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])  # truncated in transit
    await conn.execute("UPDATE media SET caption = 'x'")
    before = await checksums(conn, "public.media")
    ctx = ctx_for(console_config, tmp_path, backup, ("public.media",))
    assert await execute(partial.build(ctx.cfg, backup, ("public.media",)), ctx) \
        is Outcome.BAD_INPUT
    assert "does not match its manifest" in ctx.journal.of_kind("step_finished")[-1].data["error"]
    assert await checksums(conn, "public.media") == before


async def test_failed_maintenance_switch_stops_for_the_operator(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    backup = await make_set(demo_db, conn, tmp_path / "backups", ("media",))
    (console_config.parent / "secrets" / "app_admin_token").write_text("wrong-token\n")
    await conn.execute("UPDATE media SET caption = 'x'")
    before = await checksums(conn, "public.media")
    ctx = ctx_for(console_config, tmp_path, backup, ("public.media",))
    assert await execute(partial.build(ctx.cfg, backup, ("public.media",)), ctx) \
        is Outcome.NEEDS_OPERATOR
    assert "check app.token" in ctx.journal.of_kind("step_finished")[-1].data["error"]
    assert await checksums(conn, "public.media") == before
    # the operator decides to go on without maintenance mode
    ctx2 = ctx_for(console_config, tmp_path, backup, ("public.media",),
                   maintenance_failure="continue")
    assert await execute(partial.build(ctx2.cfg, backup, ("public.media",)), ctx2) \
        is Outcome.DONE
    assert backup.manifest is not None
    assert await checksums(conn, "public.media") == \
        [backup.manifest.state.tables["public.media"].checksum]


async def test_a_wrong_confirmation_phrase_is_refused(console_config: Path, demo_db: DemoDb,
                                                      demo_app: DemoApp,
                                                      conn: asyncpg.Connection,
                                                      tmp_path: Path) -> None:
    backup = await make_set(demo_db, conn, tmp_path / "backups", ("media",))
    await conn.execute("UPDATE media SET caption = 'x'")
    before = await checksums(conn, "public.media")
    ctx = ctx_for(console_config, tmp_path, backup, ("public.media",), confirm="ROLLBACK")
    assert await execute(partial.build(ctx.cfg, backup, ("public.media",)), ctx) \
        is Outcome.REFUSED
    finished = last_event(ctx)
    assert finished.exit_code == 3
    assert "type exactly 'ROLLBACK tea-school-sandbox'" in finished.summary
    assert not ctx.journal.path.exists(), "a refused run opened an incident"
    assert await checksums(conn, "public.media") == before
    assert httpx.get(f"{demo_app.url}/api/health").status_code == 200  # no maintenance mode


async def test_no_space_for_the_safety_snapshot_stops_before_any_change(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    """A real ENOSPC: the snapshot's path is a link to /dev/full, where every write fails."""
    backup = await make_set(demo_db, conn, tmp_path / "backups", ("media",))
    await conn.execute("UPDATE media SET caption = 'x'")
    before = await checksums(conn, "public.media")
    ctx = ctx_for(console_config, tmp_path, backup, ("public.media",))
    safety = ctx.incident_dir / "safety"
    safety.mkdir(parents=True)
    (safety / "tables-before-rollback.dump").symlink_to("/dev/full")
    outcome = await execute(partial.build(ctx.cfg, backup, ("public.media",)), ctx)
    assert outcome is Outcome.NEEDS_OPERATOR
    error = ctx.journal.of_kind("step_finished")[-1].data["error"]
    assert "no space left while writing the safety snapshot" in error
    assert "Nothing was changed" in error
    assert ctx.journal.of_kind("step_finished")[-1].step == "safety_snapshot"
    assert await checksums(conn, "public.media") == before


async def test_a_set_from_another_database_is_refused(console_config: Path, demo_db: DemoDb,
                                                      demo_app: DemoApp,
                                                      conn: asyncpg.Connection,
                                                      tmp_path: Path) -> None:
    other_name = f"{demo_db.name}_other"
    admin = await asyncpg.connect(demo_db.server.dsn())
    await admin.execute(f'CREATE DATABASE "{other_name}" TEMPLATE demo_template')
    try:
        other = DemoDb(other_name, demo_db.server.dsn(other_name), demo_db.facts, demo_db.server)
        other_conn = await other.connect()
        backup = await make_set(other, other_conn, tmp_path / "backups", ("media",))
        await other_conn.close()
        await conn.execute("UPDATE media SET caption = 'x'")
        before = await checksums(conn, "public.media")
        ctx = ctx_for(console_config, tmp_path, backup, ("public.media",))
        assert await execute(partial.build(ctx.cfg, backup, ("public.media",)), ctx) \
            is Outcome.BAD_INPUT
        error = ctx.journal.of_kind("step_finished")[-1].data["error"]
        assert f"was taken from database '{other_name}'" in error
        assert await checksums(conn, "public.media") == before
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{other_name}" WITH (FORCE)')
        await admin.close()


async def test_notifications_at_start_point_of_no_return_and_completion(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    text = console_config.read_text().replace(
        "webhooks = []", f'webhooks = ["{demo_app.url}/hooks/ops"]')
    console_config.write_text(text)
    backup = await make_set(demo_db, conn, tmp_path / "backups", ("media",))
    await conn.execute("UPDATE media SET caption = 'x'")
    ctx = ctx_for(console_config, tmp_path, backup, ("public.media",))
    assert await execute(partial.build(ctx.cfg, backup, ("public.media",)), ctx) is Outcome.DONE
    received = httpx.get(f"{demo_app.url}/hooks").json()["notifications"]
    assert [n["payload"]["event"] for n in received] == ["started", "point_of_no_return",
                                                          "completed"]
    assert received[0]["payload"]["message"].startswith("🚨 EMERGENCY ROLLBACK IN PROGRESS")
