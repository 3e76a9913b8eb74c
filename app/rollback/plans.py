"""Which plan for which rollback type, with the blast radius the gate shows."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from app.catalog import qualified
from app.config import Config
from app.db import connect
from app.errors import BadInput
from app.rollback import full, partial
from app.rollback.backupset import against_migration, migration_time
from app.rollback.context import Options, RollbackType
from app.rollback.plan import Plan
from app.rollback.reload import dropped_foreign_keys, reload_statements, touching_foreign_keys
from app.rollback.switch import can_rename


async def build_plan(cfg: Config, kind: RollbackType, backup: Any, options: Options) -> Plan:
    """The plan, and what it will touch (read-only look at the target). A set taken after the
    migration ran holds the broken state: refused unless the operator says otherwise."""
    conn = await connect(cfg.target)
    try:
        at, source = await migration_time(conn, options.migration_at
                                          or cfg.target.migration_at)
    finally:
        await conn.close()
    timing = against_migration(backup, at)
    if timing.startswith("AFTER") and not options.allow_after_migration:
        raise BadInput(f"backup {backup.id} was taken {backup.taken_at:%Y-%m-%d %H:%M %Z}, "
                       f"after the migration ran ({at:%Y-%m-%d %H:%M %Z}, from {source}): it "
                       "holds the broken state. Choose a set taken before it "
                       "(`rollback-console backups`), or --allow-after-migration if you are "
                       "sure. Nothing was changed")
    plan = await _build(cfg, kind, backup, options)
    if timing:
        plan.blast_radius.append(("!" if timing.startswith("AFTER") else "")
                                 + f"backup {backup.id}: {timing} ({source})")
    return plan


async def _build(cfg: Config, kind: RollbackType, backup: Any, options: Options) -> Plan:
    if kind is RollbackType.SCHEMA:
        from app.rollback import schema
        from app.schemadiff import drift

        found = await drift(cfg, backup, cfg.target.platform_schemas)
        plan = schema.build(cfg, backup, found.diff)
        if backup.taken_at is not None:
            plan.blast_radius.append(f"backup {backup.id} taken "
                                     f"{backup.taken_at:%Y-%m-%d %H:%M %Z}")
        return plan
    conn = await connect(cfg.target)
    try:
        age = ""
        if backup.taken_at is not None:
            age = f"backup {backup.id} taken {backup.taken_at:%Y-%m-%d %H:%M %Z}"
        if kind is RollbackType.PARTIAL:
            plan = partial.build(cfg, backup, options.tables)
            present = [t for t in options.tables
                       if await conn.fetchval("SELECT to_regclass($1)", qualified(t))]
            recorded = partial.recorded_foreign_keys(backup) or []
            dropped = await dropped_foreign_keys(conn, present, recorded) if present else []
            for fk in dropped:
                plan.blast_radius.append(f"{fk.table} -> {fk.referenced}: foreign key {fk.name}"
                                         " was dropped since the backup; added back")
            if present:
                exact = tuple(await reload_statements(conn, present, restore_fks=dropped))
                plan.steps = [replace(s, statements=exact) if s.id == "restore" else s
                              for s in plan.steps]
            for table in options.tables:
                if await conn.fetchval("SELECT to_regclass($1)", qualified(table)) is None:
                    plan.blast_radius.append(f"{table}: not on the target")
                    continue
                row = await conn.fetchrow(
                    f"SELECT count(*) AS n, pg_total_relation_size($1::regclass) AS b "
                    f"FROM {qualified(table)}", qualified(table))
                assert row is not None
                plan.blast_radius.append(f"!{table}: all {row['n']:,} current rows replaced "
                                         f"({row['b'] / 1e6:,.1f} MB)")
            for fk in await touching_foreign_keys(conn, list(options.tables)):
                if fk.table not in options.tables:
                    plan.blast_radius.append(f"{fk.table} references {fk.referenced}: its rows "
                                             "must still find their parents (checked, never "
                                             "cascaded)")
        else:
            in_place = bool(await can_rename(conn, cfg.target.database)) \
                and options.allow_in_place
            plan = full.build(cfg, backup, in_place=in_place)
            size = await conn.fetchval("SELECT pg_database_size(current_database())")
            how = ("IN PLACE (a safety dump is taken first)" if in_place else
                   "by a restored copy; the current database is kept aside")
            plan.blast_radius.append(f"!the whole database {cfg.target.database} "
                                     f"({size / 1e6:,.1f} MB) replaced {how}; every change "
                                     "since the backup is lost")
        if age:
            plan.blast_radius.append(age)
    finally:
        await conn.close()
    return plan
