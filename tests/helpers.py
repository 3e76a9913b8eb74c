"""What the test files share besides fixtures (those are in conftest.py): the console's CLI in a
subprocess, a RunContext for a headless run, a full backup set as `backup` makes it, and the
check that a database holds a manifest's content."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from app import config
from app.backups.backupset import BackupSet
from app.backups.manifest import FileEntry, Manifest, capture_state, new_manifest
from app.catalog import table_content
from app.config import Config
from app.events import EventChannel
from app.journal import Journal
from app.rollback.context import Options, RollbackType, RunContext, expected_phrase
from app.sandbox.server import bin_dir

if TYPE_CHECKING:
    from tests.conftest import DemoDb

# The console as a user runs it: `python -m app` in this environment, or its installed script.
CONSOLE = [sys.executable, "-m", "app"]
CONSOLE_SCRIPT = Path(sys.executable).parent / "rollback-console"


def cli(config_path: Path, home: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `rollback-console -c CONFIG ARGS` to its end, no terminal on stdin. ``home`` is its
    state folder (incidents, logs); None keeps the test session's."""
    env = dict(os.environ)
    if home is not None:
        env["ROLLBACK_CONSOLE_HOME"] = str(home)
    return subprocess.run([*CONSOLE, "-c", str(config_path), *args], capture_output=True,
                          text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)


def run_context(cfg: Config | Path, kind: RollbackType, incident_dir: Path,
                backup: BackupSet | None, **options: Any) -> RunContext:
    """A RunContext for ``kind`` journaling into ``incident_dir``; the confirmation is the
    right phrase unless ``confirm`` is given."""
    if isinstance(cfg, Path):
        cfg = config.load(cfg)
    options.setdefault("confirm", expected_phrase(kind, cfg.target.name))
    return RunContext(cfg, kind, Journal.open(incident_dir), EventChannel(), backup,
                      Options(**options))


async def make_full_set(db: DemoDb, conn: asyncpg.Connection, root: Path) -> BackupSet:
    """A set with only the full dump (custom format) and its manifest, as `backup` makes."""
    path = root / "production_migration_20261124"
    path.mkdir(parents=True)
    dump = path / "full_database_backup.dump"
    subprocess.run([str(bin_dir() / "pg_dump"), "--format=custom", f"--file={dump}", db.dsn],
                   check=True, capture_output=True)
    manifest = new_manifest("before", await capture_state(conn))
    manifest.files = {dump.name: FileEntry(hashlib.sha256(dump.read_bytes()).hexdigest(),
                                           dump.stat().st_size)}
    (path / "manifest.json").write_text(manifest.to_json())
    return BackupSet(path.name, path, manifest, datetime.now(UTC))


async def matches_manifest(dsn: str, manifest: Manifest) -> bool:
    """Every table of the manifest has its rows and checksum in ``dsn``."""
    conn = await asyncpg.connect(dsn)
    try:
        for table, expected in manifest.state.tables.items():
            got = await table_content(conn, table)
            if (got.rows, got.checksum) != (expected.rows, expected.checksum):
                return False
    finally:
        await conn.close()
    return True


def read_until_enter(proc: subprocess.Popen[str]) -> str:
    """What a headless drill prints up to its "Press Enter" prompt (the trainee's turn)."""
    assert proc.stdout is not None
    printed = ""
    while "Press Enter" not in printed:
        line = proc.stdout.readline()
        assert line, f"the drill ended early: {printed}"
        printed += line
    return printed
