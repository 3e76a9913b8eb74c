"""Backup sets from the command line: take one, list it, verify and rehearse it (restored into a
scratch database and compared with the manifest); a set made by hand with the runbook's pg_dump
commands is found and verified as far as it can be; bad sets are named and nothing changes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import asyncpg
import pytest

from app.sandbox.server import bin_dir
from tests.conftest import DemoApp, DemoDb
from tests.helpers import CONSOLE, cli


async def databases(conn: asyncpg.Connection) -> set[str]:
    return {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}


async def test_take_list_verify_rehearse(console_config: Path, demo_db: DemoDb,
                                         demo_app: DemoApp, conn: asyncpg.Connection) -> None:
    made = cli(console_config, None, "backup", "--label", "before-migration")
    assert made.returncode == 0, made.stderr
    assert "backup set production_migration_" in made.stdout
    listing = json.loads(cli(console_config, None, "backups", "--json").stdout)
    listed = listing["sets"]
    assert len(listed) == 1 and listed[0]["manifest"] is True
    assert listing["tools"]["pg_dump"]["version"].startswith("18")
    assert listing["server_version"].startswith("18")
    assert set(listed[0]["parts"]) == {"schema", "5 tables", "full SQL", "full custom"}
    set_id = listed[0]["id"]
    before = await databases(conn)
    checked = cli(console_config, None, "backups", "--verify", set_id, "--rehearse", "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    result = json.loads(checked.stdout)
    assert result["ok"] and not result["problems"]
    lines = " ".join(result["checked"])
    assert "public.media: 2,000 rows, checksum equal to the manifest" in lines
    assert "taken from this target" in lines
    assert await databases(conn) == before  # the scratch database was dropped


async def test_a_hand_made_runbook_set_is_found_and_verified(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp) -> None:
    path = console_config.parent / "backups" / "production_migration_20261124"
    path.mkdir(parents=True)
    pg_dump = str(bin_dir() / "pg_dump")
    subprocess.run([pg_dump, "--schema-only", f"--file={path / 'schema_only_backup.sql'}",
                    demo_db.dsn], check=True)
    subprocess.run([pg_dump, "--data-only", "--table=public.media",
                    f"--file={path / 'table_media_backup.sql'}", demo_db.dsn], check=True)
    subprocess.run([pg_dump, f"--file={path / 'full_database_backup.sql'}", demo_db.dsn],
                   check=True)
    (path / "backup_info.txt").write_text("Backup completed: 2026-11-24 02:00:00\n")
    listed = json.loads(cli(console_config, None, "backups", "--json").stdout)["sets"]
    assert listed[0]["id"] == path.name and listed[0]["manifest"] is False
    assert listed[0]["taken_at"].startswith("2026-11-24T02:00")
    checked = cli(console_config, None, "backups", "--verify", path.name, "--rehearse")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "NOT VERIFIABLE: no manifest.json" in checked.stdout
    assert "full_database_backup.sql restored into rollback_rehearsal_" in checked.stdout
    assert "VERIFIED" in checked.stdout


@pytest.mark.parametrize("damage", ["truncated", "edited", "empty", "foreign"])
async def test_bad_sets_are_named(console_config: Path, demo_db: DemoDb, demo_app: DemoApp,
                                  conn: asyncpg.Connection, damage: str) -> None:
    made = cli(console_config, None, "backup")
    assert made.returncode == 0, made.stderr
    set_dir = next(p for p in (console_config.parent / "backups").iterdir())
    if damage == "truncated":
        dump = set_dir / "full_database_backup.sql"
        dump.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])
        expected = "full_database_backup.sql: sha256 differs"
    elif damage == "edited":
        manifest = json.loads((set_dir / "manifest.json").read_text())
        manifest["files"]["table_media_backup.sql"]["sha256"] = "0" * 64
        (set_dir / "manifest.json").write_text(json.dumps(manifest))
        expected = "table_media_backup.sql: sha256 differs from the manifest"
    elif damage == "empty":
        for p in set_dir.iterdir():   # the dumps and the row index beside them
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        expected = "holds no dump files"
    else:
        manifest = json.loads((set_dir / "manifest.json").read_text())
        manifest["state"]["identity"]["name"] = "shop"
        (set_dir / "manifest.json").write_text(json.dumps(manifest))
        expected = "was taken from database 'shop'"
    before = await databases(conn)
    checked = cli(console_config, None, "backups", "--verify", set_dir.name, "--rehearse")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert expected in checked.stdout and "NOT VERIFIED" in checked.stdout
    assert await databases(conn) == before


async def test_missing_root_and_unknown_set_are_bad_input(console_config: Path,
                                                          demo_db: DemoDb) -> None:
    unknown = cli(console_config, None, "backups", "--verify", "nope")
    assert unknown.returncode == 2 and "no backup set 'nope'" in unknown.stderr
    shutil.rmtree(console_config.parent / "backups")
    missing = cli(console_config, None, "backups")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    bad_label = cli(console_config, None, "backup", "--label", "a b")
    assert bad_label.returncode == 2 and "--label" in bad_label.stderr


async def test_backups_screen_verifies_and_rehearses(console_config: Path, demo_db: DemoDb,
                                                     demo_app: DemoApp) -> None:
    from app import config
    from app.tui import RollbackConsoleApp
    from screens.backups import BackupsScreen
    from tests.conftest import wait_until

    assert cli(console_config, None, "backup").returncode == 0
    app = RollbackConsoleApp(config.load(console_config), mode="live")
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("b")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, BackupsScreen) and len(screen.sets) == 1
        await pilot.press("V")
        text = screen.query_one("#set-text")
        await wait_until(lambda: "VERIFIED" in str(text.render()), pilot, 60)
        shown = str(text.render())
        assert "✔ VERIFIED" in shown and "checksum equal to the manifest" in shown


async def test_tables_option_and_unknown_table(console_config: Path, demo_db: DemoDb) -> None:
    made = cli(console_config, None, "backup", "--tables", "media")
    assert made.returncode == 0, made.stderr
    set_dir = next((console_config.parent / "backups").iterdir())
    assert sorted(p.name for p in set_dir.glob("table_*")) == ["table_media_backup.sql"]
    unknown = cli(console_config, None, "backup", "--tables", "nope")
    assert unknown.returncode == 2 and "no such table(s) on the target: public.nope" in \
        unknown.stderr
    assert len(list((console_config.parent / "backups").iterdir())) == 1  # nothing left over


async def test_a_role_without_privileges_gets_a_clear_message(
        console_config: Path, demo_db: DemoDb, conn: asyncpg.Connection) -> None:
    await conn.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
                       "'backup_weak') THEN CREATE ROLE backup_weak LOGIN PASSWORD 'weak-pw'; "
                       "END IF; END $$")
    weak = console_config.parent / "weak.toml"
    weak.write_text(console_config.read_text()
                    .replace("postgresql://postgres@", "postgresql://backup_weak@")
                    .replace('password_file = "secrets/db_password"', 'password = "weak-pw"'))
    result = cli(weak, None, "backup")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "may not read everything a backup needs" in result.stderr
    assert "permission denied" in result.stderr
    assert not any((console_config.parent / "backups").iterdir())  # the partial set is gone


async def test_sets_are_dated_against_the_migration_and_a_later_one_is_refused(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp,
        conn: asyncpg.Connection) -> None:
    """Supabase records each migration in supabase_migrations.schema_migrations (version =
    YYYYMMDDHHMMSS, UTC): a set taken after the newest one holds the broken state."""
    assert cli(console_config, None, "backup", "--label", "after").returncode == 0
    await conn.execute("CREATE SCHEMA supabase_migrations; CREATE TABLE "
                       "supabase_migrations.schema_migrations (version text PRIMARY KEY); "
                       "INSERT INTO supabase_migrations.schema_migrations VALUES "
                       "('20200101000000'), ('20240101020000')")
    listing = json.loads(cli(console_config, None, "backups", "--json").stdout)
    assert listing["migration_at"].startswith("2024-01-01T02:00")
    assert "version 20240101020000" in listing["migration_source"]
    assert listing["sets"][0]["after_migration"] is True
    assert "AFTER the migration" in listing["sets"][0]["against_migration"]
    text = cli(console_config, None, "backups").stdout
    assert "AFTER" in text and "migration: 2024-01-01 02:00" in text
    before = await conn.fetchval("SELECT count(*) FROM media")
    refused = cli(console_config, None, "run", "--type", "partial", "--tables", "media",
                  "--confirm", "ROLLBACK tea-school-sandbox")
    assert refused.returncode == 2
    assert "after the migration ran" in refused.stderr and "Nothing was changed" in refused.stderr
    assert await conn.fetchval("SELECT count(*) FROM media") == before
    allowed = cli(console_config, None, "run", "--type", "partial", "--tables", "media",
                  "--dry-run", "--allow-after-migration")
    assert allowed.returncode == 0 and "AFTER the migration" in allowed.stdout
    verified = cli(console_config, None, "backups", "--verify", listing["sets"][0]["id"])
    assert verified.returncode == 1
    assert "PROBLEM: taken AFTER the migration" in verified.stdout
    earlier = json.loads(cli(console_config, None, "backups", "--json", "--migration-time",
                             "2099-01-01T00:00:00Z").stdout)
    assert earlier["sets"][0]["after_migration"] is False
    assert "h before the migration" in earlier["sets"][0]["against_migration"]
    bad = cli(console_config, None, "backups", "--migration-time", "yesterday")
    assert bad.returncode == 2 and "give an ISO time like" in bad.stderr


def test_a_configured_tools_dir_is_used_and_a_wrong_one_named(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, tmp_path: Path) -> None:
    text = console_config.read_text()
    console_config.write_text(text.replace("[target]\n", "[target]\ntools_dir = "
                                           f'"{tmp_path / "nowhere"}"\n', 1))
    missing = cli(console_config, None, "backups")
    assert missing.returncode == 2 and "target.tools_dir" in missing.stderr
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    console_config.write_text(text.replace("[target]\n", f'[target]\ntools_dir = "{empty}"\n',
                                           1))
    listing = cli(console_config, None, "backups")
    assert "pg_dump: MISSING" in listing.stdout and "is not in target.tools_dir" in listing.stdout
    made = cli(console_config, None, "backup")
    assert made.returncode == 2 or made.returncode == 1
    assert "pg_dump is not in target.tools_dir" in made.stderr
    assert not any((console_config.parent / "backups").iterdir())   # nothing half-written
    console_config.write_text(text.replace("[target]\n", f'[target]\ntools_dir = "{bin_dir()}"\n',
                                           1))
    listing = json.loads(cli(console_config, None, "backups", "--json").stdout)
    assert listing["tools"]["pg_dump"]["path"] == str(bin_dir() / "pg_dump")


def test_a_full_disk_leaves_no_set(console_config: Path, demo_db: DemoDb, demo_app: DemoApp,
                                   tmp_path: Path) -> None:
    """A real full filesystem: a 1 MB tmpfs as the backups root (needs root and mount rights;
    where the platform refuses the mount the test is skipped and says so)."""
    root = tmp_path / "tiny"
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        text = console_config.read_text()
        console_config.write_text(text.replace('backups_root = "backups"',
                                               f'backups_root = "{root}"'))
        made = cli(console_config, None, "backup", "--label", "full-disk")
        assert made.returncode != 0
        assert "no space left" in made.stderr.lower(), made.stderr
        assert list(root.iterdir()) == []   # the partial set was removed
        listed = json.loads(cli(console_config, None, "backups", "--json").stdout)
        assert listed["sets"] == []
    finally:
        subprocess.run(["umount", str(root)], check=False)


async def test_the_console_refuses_a_later_set_until_the_operator_says_why(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app import config
    from app.backups.create import create_set
    from app.journal import Journal, incidents_root
    from app.rollback.context import RollbackType
    from app.tui import RollbackConsoleApp
    from screens.plan import PlanScreen
    from screens.reason import ReasonScreen
    from tests.conftest import wait_until

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    cfg = config.load(console_config)
    await create_set(cfg, "after")
    await conn.execute("CREATE SCHEMA supabase_migrations; CREATE TABLE "
                       "supabase_migrations.schema_migrations (version text PRIMARY KEY); "
                       "INSERT INTO supabase_migrations.schema_migrations VALUES "
                       "('20240101020000')")
    app = RollbackConsoleApp(cfg, mode="live")
    async with app.run_test(size=(140, 45)) as pilot:
        await app.workers.wait_for_complete()
        await app.push_screen(PlanScreen(RollbackType.PARTIAL, ("public.media",)))
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PlanScreen)
        await pilot.press("b")
        await wait_until(lambda: screen.refused is not None, pilot, 30)
        await pilot.pause()
        text = str(screen.query_one("#plan-text").render())
        assert "after the migration ran" in text and "shift+o" in text
        assert screen.plan is None
        await pilot.press("O")
        await pilot.pause()
        assert isinstance(app.screen, ReasonScreen)
        await pilot.click("#reason")
        await pilot.press(*"migration table is stale", "enter")
        await wait_until(lambda: screen.plan is not None, pilot, 30)
        assert screen.plan is not None
        assert any("AFTER the migration" in line for line in screen.plan.blast_radius)
    decisions = [Journal(p).last("decision") for p in incidents_root().glob("*/journal.jsonl")]
    assert any(d is not None and d.data["reason"] == "migration table is stale"
               for d in decisions)


def test_the_local_store_lists_only_published_sets(tmp_path: Path) -> None:
    """The storage seam (app/backups/store.py): a set being written is invisible until it is
    published, a discarded one leaves nothing behind."""
    from app.backups.store import store_at

    store = store_at(tmp_path / "backups")
    assert not store.available() and store.names() == []
    work = store.staging("production_migration_20261124")
    (work / "schema_only_backup.sql").write_text("-- schema\n")
    assert store.available() and store.names() == []
    final = store.publish(work, "production_migration_20261124")
    assert store.names() == ["production_migration_20261124"] and not work.exists()
    assert (store.folder("production_migration_20261124") / "schema_only_backup.sql") \
        .read_text() == "-- schema\n" and final == store.folder("production_migration_20261124")
    store.discard(store.staging("production_migration_20261125"))
    assert store.names() == ["production_migration_20261124"]
    assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == [
        "production_migration_20261124"]


async def test_a_backup_indexes_its_rows_for_the_first_assessment(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp) -> None:
    """The row index assess compares with is built with the set, not at 3 a.m. by the first
    assessment; assess then reuses it (no file in it is rewritten)."""
    made = cli(console_config, None, "backup")
    assert made.returncode == 0, made.stderr
    set_dir = next(p for p in (console_config.parent / "backups").iterdir())
    index = set_dir / ".rowindex"
    built = {p.name: p.stat().st_mtime_ns for p in index.iterdir()}
    tables = [p for p in set_dir.glob("table_*_backup.sql")]
    assert len(built) >= len(tables) > 0, (built, tables)
    assessed = cli(console_config, None, "assess", "--json")
    assert assessed.returncode in (0, 40), assessed.stderr
    assert {p.name: p.stat().st_mtime_ns for p in index.iterdir()} == built


async def test_a_set_id_is_never_cut_at_any_width(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp) -> None:
    """The id is what `--backup` takes: shown whole on its own line even in a narrow terminal."""
    made = cli(console_config, None, "backup", "--label", "before-the-long-migration")
    assert made.returncode == 0, made.stderr
    set_id = next((console_config.parent / "backups").iterdir()).name
    narrow = subprocess.run([*CONSOLE, "-c", str(console_config), "backups"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": "40"})
    assert narrow.returncode == 0, narrow.stderr
    assert set_id in narrow.stdout.splitlines(), narrow.stdout
