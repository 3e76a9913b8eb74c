"""Type 2, partial data rollback: the chosen tables' rows reloaded from the set, the rest of
the database (and the other tables' writes) kept."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from app.rollback.registry import RollbackType, TypeSpec, register

if TYPE_CHECKING:
    import asyncpg

    from app.config import Config
    from app.rollback.context import Options
    from app.rollback.plan import Plan


async def plan(cfg: Config, backup: Any, options: Options) -> Plan:
    """The reload's steps with the exact statements it runs, and per table what is replaced
    (rows, size, partitions) and which foreign keys it touches."""
    from app.db import connect
    from app.rollback import partial

    built = partial.build(cfg, backup, options.tables)
    conn = await connect(cfg.target)
    try:
        present = await _present(conn, options.tables)
        await _refuse_bad_dumps(conn, backup, present)
        await _exact_statements(conn, cfg, backup, present, built)
        await _blast_radius(conn, options.tables, built)
    finally:
        await conn.close()
    return built


async def _present(conn: asyncpg.Connection, tables: tuple[str, ...]) -> list[str]:
    from app.catalog import qualified

    return [t for t in tables if await conn.fetchval("SELECT to_regclass($1)", qualified(t))]


async def _refuse_bad_dumps(conn: asyncpg.Connection, backup: Any, present: list[str]) -> None:
    from app.backups.backupset import dump_problem
    from app.errors import BadInput
    from app.rollback import partial

    problems = []
    for table in present:
        path = partial.table_file(backup.path, table)
        if path.is_file():
            problem = await dump_problem(backup, table, path, conn)
            if problem:
                problems.append(partial.refusal(backup.id, table, problem))
    if problems:
        raise BadInput("; ".join(problems))


async def _exact_statements(conn: asyncpg.Connection, cfg: Config, backup: Any,
                            present: list[str], built: Plan) -> None:
    """The reload's and the safety snapshot's exact statements (for --dry-run), and the
    foreign keys dropped since the backup that the reload adds back."""
    from app.backups.backupset import dumps_children, table_selection
    from app.rollback import partial
    from app.rollback.reload import dropped_foreign_keys, reload_statements

    recorded = partial.recorded_foreign_keys(backup) or []
    dropped = await dropped_foreign_keys(conn, present, recorded) if present else []
    for fk in dropped:
        built.blast_radius.append(f"{fk.table} -> {fk.referenced}: foreign key {fk.name}"
                                  " was dropped since the backup; added back")
    if not present:
        return
    exact = tuple(await reload_statements(conn, present, restore_fks=dropped,
                                          valid_in_backup=partial.valid_keys(recorded)))
    children = await dumps_children(cfg.target.tools_dir)
    selection = [arg for t in present for arg in await table_selection(conn, t, children)]
    snapshot = ("pg_dump --data-only --format=custom " + " ".join(dict.fromkeys(selection)),)
    built.steps = [replace(s, statements=exact) if s.id == "restore" else
                   replace(s, statements=snapshot) if s.id == "safety_snapshot"
                   else s for s in built.steps]


async def _blast_radius(conn: asyncpg.Connection, tables: tuple[str, ...], built: Plan) -> None:
    from app.catalog import qualified
    from app.rollback.reload import (
        is_partitioned,
        own_count,
        partitions,
        stored_size,
        touching_foreign_keys,
    )

    for table in tables:
        if await conn.fetchval("SELECT to_regclass($1)", qualified(table)) is None:
            built.blast_radius.append(f"{table}: not on the target")
            continue
        rows = await own_count(conn, table)
        size = await stored_size(conn, table)
        parts = await partitions(conn, table)
        built.blast_radius.append(
            _replaced(table, rows) + f" ({size / 1e6:,.1f} MB"
            + (f"; partitioned: {len(parts)} partition(s) below it, every one "
               "emptied and reloaded" if await is_partitioned(conn, table) else "")
            + ")")
    for fk in await touching_foreign_keys(conn, list(tables)):
        if fk.table not in tables:
            built.blast_radius.append(f"{fk.table} references {fk.referenced}: its rows "
                                      "must still find their parents (checked, never "
                                      "cascaded)")


def _replaced(table: str, rows: int) -> str:
    """What the reload does to the table's current rows: a loss only when it has some."""
    if rows == 0:
        return f"{table}: empty now, no current rows to replace; the backup's rows are loaded"
    return f"!{table}: " + ("its 1 current row replaced" if rows == 1 else
                            f"all {rows:,} current rows replaced")


PARTIAL = register(TypeSpec(
    key=RollbackType.PARTIAL, number=2, title="Partial data rollback",
    when="Specific table data corrupted", risk="Medium", downtime="1-2 hours",
    phrase=lambda target: f"ROLLBACK {target}",
    loses="the chosen tables' writes since the backup (exported first)", restores="tables",
    plan=plan, resume_state=("tables",), takes_tables=True))
