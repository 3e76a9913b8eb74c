"""Which plan for which rollback type, with the blast radius the gate shows."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from app.backups.backupset import (
    against_migration,
    describe_taken,
    dump_problem,
    dumps_children,
    migration_time,
    not_a_source,
    table_selection,
)
from app.catalog import qualified
from app.config import Config
from app.db import connect
from app.errors import BadInput, TakenAfterMigration
from app.rollback import full, partial
from app.rollback.context import Options, RollbackType
from app.rollback.plan import Plan
from app.rollback.reload import (
    dropped_foreign_keys,
    is_partitioned,
    own_count,
    partitions,
    reload_statements,
    stored_size,
    touching_foreign_keys,
)
from app.rollback.switch import can_rename


async def build_plan(cfg: Config, kind: RollbackType, backup: Any, options: Options) -> Plan:
    """The plan, and what it will touch (read-only look at the target). A set taken after the
    migration ran holds the broken state: refused unless the operator says otherwise."""
    conn = await connect(cfg.target)
    try:
        at, source = await migration_time(conn, options.migration_at
                                          or cfg.target.migration_at, backup.taken_at)
    finally:
        await conn.close()
    timing = against_migration(backup, at)
    if not_a_source(timing) and not options.allow_after_migration:
        assert at is not None
        migration = f"({at:%Y-%m-%d %H:%M %Z}, from {source})"
        when = (f"was taken {describe_taken(backup)}, after the migration ran {migration}: it "
                "holds the broken state" if backup.taken_at is not None else
                f"has no known time ({backup.taken_note or 'unknown'}): it may have been taken "
                f"after the migration ran {migration} and hold the broken state")
        raise TakenAfterMigration(f"backup {backup.id} {when}. Choose a set taken before it "
                       "(`rollback-console backups`), or --allow-after-migration if you are "
                       "sure. Nothing was changed")
    plan = await _build(cfg, kind, backup, options)
    if timing:
        plan.blast_radius.append(("!" if not_a_source(timing) else "")
                                 + f"backup {backup.id}: {timing} ({source})")
    return plan


async def _build(cfg: Config, kind: RollbackType, backup: Any, options: Options) -> Plan:
    if kind is RollbackType.SCHEMA:
        from app.drift import drift
        from app.rollback import schema

        found = await drift(cfg, backup, cfg.target.platform_schemas)
        plan = schema.build(cfg, backup, found.diff, options.keep_maintenance,
                            options.leaves_rows_in_backup)
        plan.blast_radius.append(_taken(backup))
        return plan
    conn = await connect(cfg.target)
    try:
        age = _taken(backup)
        if kind is RollbackType.PARTIAL:
            plan = partial.build(cfg, backup, options.tables)
            present = [t for t in options.tables
                       if await conn.fetchval("SELECT to_regclass($1)", qualified(t))]
            problems = []
            for table in present:
                path = partial.table_file(backup.path, table)
                if path.is_file():
                    problem = await dump_problem(backup, table, path, conn)
                    if problem:
                        problems.append(partial.refusal(backup.id, table, problem))
            if problems:
                raise BadInput("; ".join(problems))
            recorded = partial.recorded_foreign_keys(backup) or []
            dropped = await dropped_foreign_keys(conn, present, recorded) if present else []
            for fk in dropped:
                plan.blast_radius.append(f"{fk.table} -> {fk.referenced}: foreign key {fk.name}"
                                         " was dropped since the backup; added back")
            if present:
                exact = tuple(await reload_statements(
                    conn, present, restore_fks=dropped,
                    valid_in_backup=partial.valid_keys(recorded)))
                children = await dumps_children(cfg.target.tools_dir)
                selection = [arg for t in present
                             for arg in await table_selection(conn, t, children)]
                snapshot = ("pg_dump --data-only --format=custom "
                            + " ".join(dict.fromkeys(selection)),)
                plan.steps = [replace(s, statements=exact) if s.id == "restore" else
                              replace(s, statements=snapshot) if s.id == "safety_snapshot"
                              else s for s in plan.steps]
            for table in options.tables:
                if await conn.fetchval("SELECT to_regclass($1)", qualified(table)) is None:
                    plan.blast_radius.append(f"{table}: not on the target")
                    continue
                rows = await own_count(conn, table)
                size = await stored_size(conn, table)
                parts = await partitions(conn, table)
                plan.blast_radius.append(
                    _replaced(table, rows) + f" ({size / 1e6:,.1f} MB"
                    + (f"; partitioned: {len(parts)} partition(s) below it, every one "
                       "emptied and reloaded" if await is_partitioned(conn, table) else "")
                    + ")")
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
        plan.blast_radius.append(age)
    finally:
        await conn.close()
    return plan


def _replaced(table: str, rows: int) -> str:
    """What the reload does to the table's current rows: a loss only when it has some."""
    if rows == 0:
        return f"{table}: empty now, no current rows to replace; the backup's rows are loaded"
    return f"!{table}: " + ("its 1 current row replaced" if rows == 1 else
                            f"all {rows:,} current rows replaced")


def _taken(backup: Any) -> str:
    """The set's time for the blast radius, with where it comes from when it is a guess."""
    if backup.taken_at is None:
        return f"backup {backup.id}: when it was taken is unknown ({backup.taken_note})"
    return f"backup {backup.id} taken {describe_taken(backup)}"
