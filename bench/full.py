"""Type 3: our complete restore (into a new database while the target stays online, then the
atomic switch) against ``pg_restore -j 2`` into a fresh database from the same custom dump, and
against the runbook's ``psql < full_database_backup.sql``."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from app import config
from app.backups.backupset import BackupSet
from app.backups.manifest import FileEntry, Manifest, capture_state, new_manifest
from app.events import EventChannel
from app.journal import Journal
from app.rollback import full
from app.rollback.context import Options, RollbackType, RunContext
from app.sandbox.server import bin_dir
from bench.common import Result, psql, timed


async def _manifest(dsn: str) -> Manifest:
    conn = await asyncpg.connect(dsn)
    try:
        return new_manifest("bench", await capture_state(conn))
    finally:
        await conn.close()


async def _admin(dsn: str, *sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _ours(cfg: config.Config, backup: BackupSet, workdir: Path, run: int,
                validate: bool) -> tuple[float, float]:
    """(restore + switch seconds, validation seconds) of the Type 3 steps."""
    ctx = RunContext(cfg, RollbackType.FULL, Journal.open(workdir / f"inc-{run}-{validate}"),
                     EventChannel(), backup, Options())
    await full.prerequisites(ctx)
    started = time.perf_counter()
    await full.restore_new(ctx)
    restored = time.perf_counter()
    if validate:
        await full.validate_new(ctx)
    validated = time.perf_counter()
    await full.switch_step(ctx)
    switched = time.perf_counter()
    aside = ctx.full.aside_database
    await _admin(cfg.target.dsn.reveal().rsplit("/", 1)[0] + "/postgres",
                 f'DROP DATABASE "{aside}" WITH (FORCE)')
    return (restored - started) + (switched - validated), validated - restored


def run(config_path: Path, dsn: str, admin_dsn: str, workdir: Path, runs: int) -> list[Result]:
    cfg = config.load(config_path)
    set_dir = workdir / "production_migration_bench"
    set_dir.mkdir(parents=True, exist_ok=True)
    custom = set_dir / "full_database_backup.dump"
    plain = set_dir / "full_database_backup.sql"
    subprocess.run([str(bin_dir() / "pg_dump"), "--format=custom", f"--file={custom}", dsn],
                   check=True)
    subprocess.run([str(bin_dir() / "pg_dump"), f"--file={plain}", dsn], check=True)
    manifest = asyncio.run(_manifest(dsn))
    manifest.files = {custom.name: FileEntry(hashlib.sha256(custom.read_bytes()).hexdigest(),
                                             custom.stat().st_size)}
    backup = BackupSet(set_dir.name, set_dir, manifest, datetime.now(UTC))

    ours, ours_validated, jobs2, runbook = [], [], [], []
    for i in range(runs):
        def pg_restore_j2() -> None:
            asyncio.run(_admin(admin_dsn, "DROP DATABASE IF EXISTS bench_fresh WITH (FORCE)",
                               "CREATE DATABASE bench_fresh TEMPLATE template0"))
            subprocess.run([str(bin_dir() / "pg_restore"), "--jobs=2", "--exit-on-error",
                            "--dbname=" + admin_dsn.rsplit("/", 1)[0] + "/bench_fresh",
                            str(custom)], check=True)

        def runbook_way() -> None:
            asyncio.run(_admin(admin_dsn, "DROP DATABASE IF EXISTS bench_fresh WITH (FORCE)",
                               "CREATE DATABASE bench_fresh TEMPLATE template0"))
            psql(admin_dsn.rsplit("/", 1)[0] + "/bench_fresh", "-f", str(plain))

        jobs2.append(timed(pg_restore_j2))
        runbook.append(timed(runbook_way))
        restore_s, _ = asyncio.run(_ours(cfg, backup, workdir, i, validate=False))
        ours.append(restore_s)
        restore_v, validate_s = asyncio.run(_ours(cfg, backup, workdir, i, validate=True))
        ours_validated.append(restore_v + validate_s)
        print(f"  full restore run {i + 1}: ours {restore_s:.2f}s (validated "
              f"{restore_v + validate_s:.2f}s), pg_restore -j 2 {jobs2[-1]:.2f}s, "
              f"psql < full {runbook[-1]:.2f}s", flush=True)
    asyncio.run(_admin(admin_dsn, "DROP DATABASE IF EXISTS bench_fresh WITH (FORCE)"))
    note = ("ours = restore into a new database + the atomic switch; the target stays online "
            "until the switch; foreign keys are added NOT VALID and validated online after "
            "the switch (in the validation step), which the 'with validation' row includes")
    return [
        Result("Type 3 complete restore", ours, jobs2, "pg_restore -j 2 into a fresh database",
               1.0, [note]),
        Result("Type 3 complete restore", ours, runbook,
               "the runbook's psql < full_database_backup.sql", 0.8, [note]),
        Result("Type 3 complete restore, with validation", ours_validated, jobs2,
               "pg_restore -j 2 into a fresh database (no validation at all)", None,
               ["adds the table-by-table count and checksum comparison with the manifest, "
                "which the baseline does not do"]),
    ]
