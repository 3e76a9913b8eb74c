"""Type 3 in place, schema by schema: the complete restore where the database cannot be swapped
(a managed platform: the database is named ``postgres``, the platform holds sessions the role
may not end, or the role may not rename it or set the dump's owners).

Every schema the app owns comes back from the backup with the same machinery as Types 1 and 2:
Type 1's catalog diff brings every app-owned object back (schemas, tables, columns,
constraints, indexes, views, functions, triggers, grants, RLS policies, and the app's own
objects inside platform schemas such as the sign-up trigger on ``auth.users``) in one
transaction, then Type 2 reloads every app table from the set in one transaction. The
platform's schemas and their rows, roles, event triggers, extensions and publications are left
alone and listed on the gate as "not restored: owned by the platform".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from typing import Any

import asyncpg

from app import faults
from app.backups.backupset import check_file, schema_source, table_file
from app.backups.copydata import parse_name
from app.backups.tools import private_dir
from app.capabilities import FULL, capabilities
from app.catalog import qualified
from app.config import Config
from app.errors import BadInput
from app.rollback import partial as type2
from app.rollback import schema as type1
from app.rollback.context import RollbackType, RunContext
from app.rollback.plan import Plan, Step
from app.rollback.steps import STEP_TIMEOUTS, recovery, safety_dump, target_conn
from app.schemadiff import Diff


def app_tables(cfg: Config, backup: Any) -> tuple[str, ...]:
    """The set's tables outside the platform's schemas: what the reload brings back."""
    platform = set(cfg.target.platform_schemas)
    return tuple(sorted(t for t in backup.tables() if parse_name(t)[0] not in platform))


@contextmanager
def _as_reload_of(ctx: RunContext, tables: tuple[str, ...]) -> Iterator[None]:
    """Type 2's steps read their tables from the options: every app table, for this step."""
    before = ctx.options
    ctx.options = replace(before, tables=tables)
    try:
        yield
    finally:
        ctx.options = before


async def prerequisites(ctx: RunContext, tables: tuple[str, ...]) -> str:
    """The set's schema and every app table's dump, intact; the role may still do this."""
    said = await type1.prerequisites(ctx)
    for table in tables:
        path = table_file(ctx.backup_set.path, table)
        if not path.is_file() or check_file(ctx.backup_set, path) is False:
            raise BadInput(f"backup {ctx.backup.id}: {path.name} for {table} is "
                           + ("missing" if not path.is_file() else "not as its manifest says")
                           + ": a complete restore needs every app table's dump; use another "
                           "set")
    async with target_conn(ctx) as conn:
        cap = (await capabilities(conn, ctx.backup.taken_at))[FULL]
    if not cap.possible:
        raise BadInput(cap.message())
    ctx.full.in_place_by_schema = True
    return f"{said}; {len(tables)} table dump(s) present"


async def safety_snapshot(ctx: RunContext) -> str:
    """Every schema the app owns, schema and rows, as it is now (the platform's left out)."""
    path = private_dir(ctx.incident_dir / "safety") / "app-schemas-before-restore.dump"
    excluded = [f"--exclude-schema={s}" for s in ctx.cfg.target.platform_schemas]
    async with target_conn(ctx) as conn:
        estimate = int(await conn.fetchval("SELECT pg_database_size(current_database())"))
    size = await safety_dump(ctx, path, excluded, estimate // 3)
    return f"saved the app's schemas and rows to {path} ({size:,} bytes)"


async def restore(ctx: RunContext, approved: tuple[str, ...], tables: tuple[str, ...]) -> str:
    """ONE transaction: Type 1's approved statements (every app-owned object back), the
    re-read that must show no drift, then Type 2's reload of every app table, then COMMIT; any
    failure rolls everything back."""
    with _as_reload_of(ctx, tables):
        async with target_conn(ctx) as conn, target_conn(ctx) as watcher:
            reloaded: list[str] = []

            async def reload() -> None:   # a reload's COPY has no statement budget (Type 2's)
                faults.point("in_place:schema_applied")   # tests: a kill inside the transaction
                await conn.execute(f"SET LOCAL statement_timeout = "
                                   f"'{STEP_TIMEOUTS['statement_timeout']}'")
                reloaded.append(await type2.reload_on(ctx, conn, watcher))

            diff = await type1.in_one_transaction(ctx, conn, approved, then=reload)
    type1.committed(ctx, diff)
    return (f"{len(diff.changes)} schema change(s) and the reload of {len(tables)} tables "
            f"committed in one transaction ({reloaded[0] if reloaded else ''})")


async def validation(ctx: RunContext, tables: tuple[str, ...]) -> str:
    """Zero drift from the backup's schema, then every app table's count and checksum."""
    ctx.schema.residual_objects = []    # the reload brought back what the schema left
    ctx.schema.followup_tables = []
    schema = await type1.validation(ctx)
    with _as_reload_of(ctx, tables):
        data = await type2.validation(ctx)
    return f"{schema}; {data}"


async def platform_left_alone(conn: asyncpg.Connection, platform: tuple[str, ...]) -> list[str]:
    """What the in-place restore does not touch, for the gate (read-only)."""
    schemas = [f"{r['nspname']} ({r['owner']})" for r in await conn.fetch(
        "SELECT nspname, pg_get_userbyid(nspowner) AS owner FROM pg_namespace "
        "WHERE nspname = ANY($1::text[]) ORDER BY 1", list(platform))]
    events = [r[0] for r in await conn.fetch("SELECT evtname FROM pg_event_trigger ORDER BY 1")]
    extensions = [r[0] for r in await conn.fetch(
        "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1")]
    publications = [r[0] for r in await conn.fetch("SELECT pubname FROM pg_publication "
                                                   "ORDER BY 1")]
    out = []
    for what, names in (("schemas and their rows", schemas), ("event triggers", events),
                        ("extensions", extensions), ("publications", publications)):
        if names:
            out.append(f"not restored: owned by the platform: {what} {', '.join(names)}")
    out.append("not restored: owned by the platform: the roles, their memberships and "
               "default privileges")
    return out


def build(cfg: Config, backup: Any, diff: Diff, why: str,
          left_alone: list[str]) -> Plan:
    """The in-place Type 3 plan: Type 1's approved statements (``diff``, measured read-only),
    then the reload of every app table; ``why`` says why there is no swap."""
    tables = app_tables(cfg, backup)
    schema_plan = type1.build(cfg, backup, diff)
    data_plan = type2.build(cfg, backup, tables)
    approved = tuple(diff.statements)
    by_id = {s.id: s for s in schema_plan.steps}
    reload_step = next(s for s in data_plan.steps if s.id == "restore")
    plan = Plan(RollbackType.FULL, cfg.target.name, backup.id, tables)
    plan.steps = [
        Step("prerequisites", "Prerequisites check",
             "The set's schema and every app table's dump are present and match the manifest; "
             "the role may restore the app's schemas in place.", 300,
             partial(prerequisites, tables=tables),
             statements=(f"sha256 {schema_source(backup.path).name}",
                         *(f"sha256 {table_file(backup.path, t).name}" for t in tables))),
        replace(by_id["assessment"], title="Decision checkpoint",
                action=partial(type1.assessment, approved=approved)),
        by_id["maintenance"],
        Step("safety_snapshot", "Safety snapshot of the app's schemas",
             "pg_dump --format=custom of every schema the app owns, schema and rows (the "
             "platform's schemas left out).", 1800, safety_snapshot,
             statements=("pg_dump --format=custom " + " ".join(
                 f"--exclude-schema={s}" for s in cfg.target.platform_schemas),)),
        replace(by_id["restore"], title="Restore the app's schemas and rows in place",
                description="ONE transaction with lock_timeout: every statement of the "
                "schema plan, the schema read again (zero drift, or ROLLBACK), then every app "
                "table reloaded from the backup (TRUNCATE without CASCADE, COPY, indexes, "
                "foreign keys validated), then COMMIT. Any failure rolls everything back.",
                budget_s=7200, action=partial(restore, approved=approved, tables=tables),
                destructive=True, point_of_no_return=True, undo="restore the safety snapshot",
                statements=(*by_id["restore"].statements[:-1], *reload_step.statements[1:])),
        Step("validation", "Validation",
             "On a fresh connection: zero drift from the backup's schema; every app table's "
             "count and checksum against the manifest; every foreign key valid.", 1800,
             partial(validation, tables=tables)),
        Step("recovery", "Application recovery",
             "Maintenance off, health and critical endpoints answer 200, channels told.", 600,
             recovery),
    ]
    plan.blast_radius = [
        f"!IN PLACE, schema by schema (no swap: {why}): every schema the app owns and the "
        f"rows of its {len(tables)} tables replaced from the backup; every change since the "
        "backup to them is lost (a safety snapshot is taken first)",
        *[line for line in schema_plan.blast_radius if line != type1.NOTHING_TO_DO
          and "phase 2" not in line],
        *(f"!{qualified(t)}: every current row replaced" for t in tables),
        *left_alone,
    ]
    return plan

