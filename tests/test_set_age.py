"""When a hand-made set was taken (issue 14): the runbook writes `Backup completed: $(date)`
into backup_info.txt ("Tue Dec  1 21:01:13 UTC 2026", two spaces before a one-digit day); the
console reads it, refuses a set taken after the migration, and, when a set's file says no
time, dates it by its newest dump file and says so."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from app.sandbox.server import bin_dir
from tests.conftest import DemoApp, DemoDb
from tests.helpers import cli
from tests.test_partial_rollback import checksums

PHRASE = "ROLLBACK tea-school-sandbox"


def runbook_set(db: DemoDb, root: Path, info: str | None) -> Path:
    """A set as the runbook makes it: pg_dump per table, and backup_info.txt (when given)."""
    path = root / "production_migration_20261201"
    path.mkdir(parents=True)
    subprocess.run([str(bin_dir() / "pg_dump"), "--data-only", "--table=public.media",
                    f"--file={path / 'table_media_backup.sql'}", db.dsn],
                   check=True, capture_output=True)
    if info is not None:
        (path / "backup_info.txt").write_text(info)
    return path


async def test_the_runbooks_date_line_is_read_and_a_later_set_refused(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    path = runbook_set(demo_db, console_config.parent / "backups",
                       "Database: tea_school\nBackup completed: Tue Dec  1 21:01:13 UTC 2026\n")
    listed = json.loads(cli(console_config, tmp_path, "backups", "--json").stdout)["sets"]
    assert listed[0]["taken_at"] == "2026-12-01T21:01:13+00:00"
    assert listed[0]["taken_from"] is None   # the set's own record, not a guess

    await conn.execute("UPDATE media SET caption = 'after the migration'")
    before = await checksums(conn, "public.media")
    refused = cli(console_config, tmp_path, "run", "--type", "partial", "--tables", "media",
                  "--migration-time", "2026-12-01T20:00:00Z", "--confirm", PHRASE)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "was taken 2026-12-01 21:01 UTC, after the migration ran" in refused.stderr
    assert await checksums(conn, "public.media") == before
    verified = cli(console_config, tmp_path, "backups", "--verify", path.name,
                   "--migration-time", "2026-12-01T20:00:00Z")
    assert verified.returncode == 1
    assert "PROBLEM: taken AFTER the migration by 1.0 h" in verified.stdout
    # the operator's override still works, and says what it overrides
    allowed = cli(console_config, tmp_path, "run", "--type", "partial", "--tables", "media",
                  "--migration-time", "2026-12-01T20:00:00Z", "--allow-after-migration",
                  "--dry-run")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "AFTER the migration by 1.0 h" in allowed.stdout
    # taken before the migration: a source
    earlier = cli(console_config, tmp_path, "run", "--type", "partial", "--tables", "media",
                  "--migration-time", "2026-12-01T23:00:00Z", "--dry-run")
    assert earlier.returncode == 0, earlier.stdout + earlier.stderr
    assert "2.0 h before the migration" in earlier.stdout


@pytest.mark.parametrize(("info", "why"), [
    ("Database: tea_school\nTables: media\n", "backup_info.txt has no time"),
    (None, "no backup_info.txt"),
    ("Backup completed: Tue Dec  1 21:01:13 CST 2026\n", "is in zone CST"),
])
async def test_a_set_without_a_time_is_dated_by_its_files_and_says_so(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, info: str | None, why: str) -> None:
    path = runbook_set(demo_db, console_config.parent / "backups", info)
    stamp = datetime(2026, 11, 30, 10, 0, tzinfo=UTC).timestamp()
    os.utime(path / "table_media_backup.sql", (stamp, stamp))

    listed = json.loads(cli(console_config, tmp_path, "backups", "--json").stdout)["sets"]
    assert listed[0]["taken_at"] == "2026-11-30T10:00:00+00:00"
    assert listed[0]["taken_from"].startswith("from file times: ") and why in \
        listed[0]["taken_from"]
    verified = cli(console_config, tmp_path, "backups", "--verify", path.name)
    assert "taken at: 2026-11-30 10:00 UTC (from file times: " in verified.stdout
    assert why in verified.stdout

    await conn.execute("UPDATE media SET caption = 'after the migration'")
    before = await checksums(conn, "public.media")
    # the files were written after the migration: refused, naming where the time comes from
    refused = cli(console_config, tmp_path, "run", "--type", "partial", "--tables", "media",
                  "--migration-time", "2026-11-30T09:00:00Z", "--confirm", PHRASE)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "after the migration ran" in refused.stderr and "from file times" in refused.stderr
    assert await checksums(conn, "public.media") == before
    plan = cli(console_config, tmp_path, "run", "--type", "partial", "--tables", "media",
               "--migration-time", "2026-11-30T12:00:00Z", "--dry-run")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "2.0 h before the migration (its time is from file times" in plan.stdout
