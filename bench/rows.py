"""Row-level evidence of the largest table (``public.media``) against one sequential scan plus a
content hash of that table in psql, the cheapest way to learn *whether* it changed (ours also
says which rows: deleted, changed and inserted, by key, with the columns that changed).

The set is the runbook's hand-made kind: ``pg_dump --data-only`` of the table. Before timing,
a little damage (a few hundred rows deleted, changed and inserted: the emergency this is for)
and one assessment that builds the backup's row index (its time is reported as a note: it is
paid once per dump, then cached next to the set). Ours runs through the console's own entry
point, ``app.checks.run_assessment`` with the data_integrity check only.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

from app import config
from app.checks import CHECKS_BY_NAME, Status, run_assessment
from app.sandbox.server import bin_dir
from bench.checks import database_only
from bench.common import Result, psql, timed

TABLE = "public.media"
BASELINE = ("SELECT count(*), sum(('x' || left(md5(t::text), 16))::bit(64)::bigint) "
            f"FROM {TABLE} AS t")
DAMAGE = ("DELETE FROM public.media WHERE id % 20011 = 0; "
          "UPDATE public.media SET caption = 'bench' WHERE id % 20021 = 0; "
          "INSERT INTO public.media (object_id, owner_id, url, mime_type, bytes) "
          "SELECT object_id, owner_id, url || '?copy', mime_type, bytes FROM public.media "
          "WHERE id % 20023 = 0")


def _ours(cfg: config.Config, set_id: str) -> dict[str, object]:
    a = asyncio.run(run_assessment(cfg, set_id, checks=[CHECKS_BY_NAME["data_integrity"]]))
    (data,) = a.results
    assert data.status is not Status.ERROR and data.status is not Status.SKIP, data.summary
    info = data.evidence["tables"][TABLE]
    assert info["compared"] == "row by row", info
    since = info["since_backup"]
    assert since["deleted"] and since["changed"] and since["inserted"], since
    return since


def run(config_path: Path, dsn: str, workdir: Path, runs: int) -> list[Result]:
    cfg = database_only(config.load(config_path))
    set_id = "production_migration_bench_rows"
    folder = cfg.target.backups_root / set_id
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(bin_dir() / "pg_dump"), "--data-only", f"--table={TABLE}",
                    f"--file={folder / 'table_media_backup.sql'}", dsn], check=True,
                   capture_output=True)
    psql(dsn, "-c", DAMAGE)
    psql(dsn, "-c", f"VACUUM ANALYZE {TABLE}")
    started = time.perf_counter()
    since = _ours(cfg, set_id)          # builds the index (once per dump)
    first = time.perf_counter() - started
    psql(dsn, "-c", BASELINE)           # both sides start from a warm cache
    ours: list[float] = []
    baseline: list[float] = []
    for _ in range(runs):   # interleaved: a busy neighbour slows both sides alike
        ours.append(timed(lambda: _ours(cfg, set_id)))
        baseline.append(timed(lambda: psql(dsn, "-c", BASELINE)))
    return [Result("row-level comparison of the largest table (rows deleted, changed, "
                   "inserted, by key)", ours, baseline,
                   "one scan + content hash of that table in psql", 1.5,
                   [f"first assessment, building the backup's row index from the dump: "
                    f"{first:.1f} s (once per dump, then cached next to the set)",
                    f"found: {since['deleted']} deleted, {since['changed']} changed, "
                    f"{since['inserted']} inserted; buckets differing: "
                    f"{since['buckets_differing']}"])]
