"""Type 1 on a 20-change migration: the whole schema rollback (plan from the live schema,
safety snapshot, one-transaction apply with its in-transaction proof, validation on a fresh
connection, maintenance mode on and off) against `pg_dump --schema-only` of the target, in
the same run. The migration's changes are catalog changes (none rewrites a large table), as a
schema rollback's usually are; reverting a type change on a large table costs a table rewrite
that no baseline here has."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

from app import config
from app.backups.create import create_set
from app.drift import drift
from app.events import EventChannel
from app.journal import Journal
from app.rollback.context import Options, Outcome, RollbackType, RunContext, expected_phrase
from app.rollback.plans import build_plan
from app.rollback.runner import execute
from app.sandbox.server import bin_dir
from bench.common import Result, psql, timed

MIGRATION = [
    "ALTER TABLE public.objects ADD COLUMN search_text text",
    "ALTER TABLE public.objects ADD COLUMN legacy_code text",
    "ALTER TABLE public.media RENAME COLUMN caption TO alt_text",
    "ALTER TABLE public.accounts ADD COLUMN nickname text",
    "ALTER TABLE public.chakai ALTER COLUMN guests SET DEFAULT 1",
    "ALTER TABLE public.local_classes ALTER COLUMN school DROP DEFAULT",
    "CREATE TABLE public.tags (id bigint PRIMARY KEY, label text NOT NULL)",
    "CREATE TABLE public.object_tags (object_id bigint REFERENCES public.objects (id), "
    "tag_id bigint REFERENCES public.tags (id), PRIMARY KEY (object_id, tag_id))",
    "CREATE INDEX tags_label_idx ON public.tags (label)",
    "DROP POLICY \"objects: owner reads\" ON public.objects",
    "CREATE POLICY \"objects: owner reads\" ON public.objects FOR SELECT TO authenticated "
    "USING (owner_id = auth.uid() OR is_public)",
    "DROP POLICY \"chakai: host writes\" ON public.chakai",
    "ALTER TABLE public.tags ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY \"tags: read\" ON public.tags FOR SELECT USING (true)",
    "REVOKE INSERT ON public.chakai FROM authenticated",
    "GRANT SELECT ON public.tags TO anon",
    "CREATE FUNCTION public.slugify(t text) RETURNS text LANGUAGE sql IMMUTABLE AS "
    "$$ SELECT lower(replace(t, ' ', '-')) $$",
    "CREATE OR REPLACE FUNCTION public.set_updated_at() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$",
    "DROP TRIGGER media_updated_at ON public.media",
    "CREATE VIEW public.public_objects AS SELECT id, name FROM public.objects WHERE is_public",
]
assert len(MIGRATION) == 20


APP_STEPS = ("maintenance", "recovery")   # the app's round trips, not schema work


async def _ours(config_path: Path, workdir: Path, backup_id: str, run: int) -> float:
    """Runs the whole plan; returns the seconds of schema work in it (plan, assessment,
    safety snapshot, apply, validation), the app's maintenance round trips left out."""
    from app.backups.backupset import resolve

    cfg = config.load(config_path)
    backup = resolve(cfg.target.backups_root, backup_id)
    started = time.perf_counter()
    plan = await build_plan(cfg, RollbackType.SCHEMA, backup, Options())
    planning = time.perf_counter() - started
    ctx = RunContext(cfg, RollbackType.SCHEMA, Journal.open(workdir / f"incident-{run}"),
                     EventChannel(), backup,
                     Options(confirm=expected_phrase(RollbackType.SCHEMA, cfg.target.name)))
    outcome = await execute(plan, ctx)
    if outcome is not Outcome.DONE:
        raise RuntimeError(f"the schema rollback did not finish: {ctx.journal.entries[-1].data}")
    return planning + sum(float(e.data["elapsed_s"]) for e in ctx.journal.entries
                          if e.kind == "step_finished" and e.data["step"] not in APP_STEPS)


async def _zero_drift(config_path: Path, backup_id: str) -> bool:
    from app.backups.backupset import resolve

    cfg = config.load(config_path)
    found = await drift(cfg, resolve(cfg.target.backups_root, backup_id))
    return found.diff.empty


def run(config_path: Path, dsn: str, workdir: Path, runs: int) -> list[Result]:
    cfg = config.load(config_path)
    backup = asyncio.run(create_set(cfg, "bench-schema"))
    core: list[float] = []
    whole: list[float] = []
    baseline: list[float] = []
    dump = workdir / "schema-baseline.sql"
    for i in range(runs):
        psql(dsn, "-c", "; ".join(MIGRATION))
        baseline.append(timed(lambda: subprocess.run(
            [str(bin_dir() / "pg_dump"), "--schema-only", f"--file={dump}", dsn], check=True)))
        started = time.perf_counter()
        core.append(asyncio.run(_ours(config_path, workdir, backup.id, i)))
        whole.append(time.perf_counter() - started)
        if not asyncio.run(_zero_drift(config_path, backup.id)):
            raise RuntimeError("drift left after the schema rollback")
    notes = ["after every run the schema equals the backup's (checked, not timed)",
             "the backup's schema model was read inside the backup's snapshot "
             "(schema_model.json); a hand-made set adds one scratch restore per process"]
    return [
        Result("Type 1 schema rollback (plan, apply, verify), 20-change migration", core,
               baseline, "pg_dump --schema-only of the target", 5.0,
               ["plan from the live schema, assessment (compared again), safety snapshot "
                "(itself a pg_dump -s), one-transaction apply with its in-transaction "
                "re-read, validation on a fresh connection; journal fsyncs included",
                *notes]),
        Result("Type 1 whole run incl. maintenance mode on/off", whole, baseline,
               "pg_dump --schema-only of the target", None,
               ["adds the app's maintenance round trips, health checks and process-level "
                "work (config load, event loop)", *notes]),
    ]
