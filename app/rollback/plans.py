"""The plan of a rollback type (its module in app/rollback/types/ builds it), with the blast
radius the gate shows: what it replaces, and the set's age against the migration."""

from __future__ import annotations

from typing import Any

from app.backups.backupset import against_migration, describe_taken, migration_time, not_a_source
from app.config import Config
from app.db import connect
from app.errors import TakenAfterMigration
from app.rollback.context import Options
from app.rollback.plan import Plan
from app.rollback.registry import rollback_type


async def build_plan(cfg: Config, kind: str, backup: Any, options: Options) -> Plan:
    """The plan, and what it will touch (read-only look at the target). A set taken after the
    migration ran holds the broken state: refused unless the operator says otherwise."""
    conn = await connect(cfg.target)
    try:
        at, source = await migration_time(conn, options.migration_at
                                          or cfg.target.migration_at,
                                          getattr(backup, "path", None), cfg.target.tools_dir)
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
    plan = await rollback_type(kind).plan(cfg, backup, options)
    plan.blast_radius.append(_taken(backup))
    if timing:
        plan.blast_radius.append(("!" if not_a_source(timing) else "")
                                 + f"backup {backup.id}: {timing} ({source})")
    elif source:   # why the migration's time is unknown (Supabase's table cannot date it)
        plan.blast_radius.append(f"backup {backup.id}: the migration's time is {source}")
    return plan


def _taken(backup: Any) -> str:
    """The set's time for the blast radius, with where it comes from when it is a guess."""
    if backup.taken_at is None:
        return f"backup {backup.id}: when it was taken is unknown ({backup.taken_note})"
    return f"backup {backup.id} taken {describe_taken(backup)}"
