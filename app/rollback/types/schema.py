"""Type 1, schema-only rollback: the schema back to the backup's, table data kept."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.rollback.registry import RollbackType, TypeSpec, register

if TYPE_CHECKING:
    from app.config import Config
    from app.rollback.context import Options
    from app.rollback.plan import Plan


async def plan(cfg: Config, backup: Any, options: Options) -> Plan:
    """The DDL that takes the live schema back to the backup's (the drift, measured on a
    scratch copy of the backup's schema)."""
    from app.drift import drift
    from app.rollback import schema

    found = await drift(cfg, backup, cfg.target.platform_schemas)
    return schema.build(cfg, backup, found.diff, options.keep_maintenance,
                        options.leaves_rows_in_backup)


SCHEMA = register(TypeSpec(
    key=RollbackType.SCHEMA, number=1, title="Schema-only rollback",
    when="Schema changes causing issues, data remains intact", risk="Low",
    downtime="30-60 minutes", phrase=lambda target: f"ROLLBACK SCHEMA {target}",
    loses="none: table data stays as it is", restores="schema", plan=plan,
    resume_state=("keep_maintenance", "leaves_rows_in_backup")))
