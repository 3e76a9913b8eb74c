"""Type 3, complete database restore: the whole database from the set, by a restored copy
switched in (the current one kept aside), or in place when renaming is impossible."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.rollback.registry import RollbackType, TypeSpec, register

if TYPE_CHECKING:
    from app.config import Config
    from app.rollback.context import Options
    from app.rollback.plan import Plan


async def plan(cfg: Config, backup: Any, options: Options) -> Plan:
    """The restore's steps, and the whole database (its size) as the blast radius."""
    from app.capabilities import IN_PLACE_BY_SCHEMA, full_capability
    from app.db import connect
    from app.errors import BadInput
    from app.rollback import full
    from app.rollback.switch import can_rename

    conn = await connect(cfg.target)
    try:
        cap = await full_capability(conn, backup.taken_at, options.allow_in_place)
        if not cap.possible:
            raise BadInput(cap.message())
        if cap.how == IN_PLACE_BY_SCHEMA:
            return await _in_place_by_schema(cfg, backup, conn, cap.why)
        in_place = bool(await can_rename(conn, cfg.target.database)) and options.allow_in_place
        built = full.build(cfg, backup, in_place=in_place)
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await conn.close()
    how = ("IN PLACE (a safety dump is taken first)" if in_place else
           "by a restored copy; the current database is kept aside")
    built.blast_radius.append(f"!the whole database {cfg.target.database} "
                              f"({size / 1e6:,.1f} MB) replaced {how}; every change "
                              "since the backup is lost")
    built.blast_radius.append(f"why this way: {cap.why}")
    return built


async def _in_place_by_schema(cfg: Config, backup: Any, conn: Any, why: str) -> Plan:
    """Type 3 where no swap is possible: the app's schemas restored in place (Type 1's diff,
    measured read-only, then Type 2's reload of every app table)."""
    from app.drift import drift
    from app.rollback import full_by_schema

    found = await drift(cfg, backup, cfg.target.platform_schemas)
    left_alone = await full_by_schema.platform_left_alone(conn, cfg.target.platform_schemas)
    no_swap = why.split("impossible here: ", 1)[-1]
    return full_by_schema.build(cfg, backup, found.diff, no_swap, left_alone)


FULL = register(TypeSpec(
    key=RollbackType.FULL, number=3, title="Complete database restore",
    when="Complete system failure, widespread corruption", risk="High",
    downtime="2-4 hours", phrase=lambda target: f"CONFIRM_FULL_RESTORE {target}",
    loses="every change since the backup, in every table", restores="database", plan=plan,
    resume_state=("allow_in_place",)))
