"""A drill's setup (the baseline backup, then the bad migration) and the drill played without
the console (``drill --headless``): the trainee uses the commands, then makes the call and is
scored the same way as in the console."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from app.config import Config
from app.drills import Scenario

if TYPE_CHECKING:
    from datetime import datetime

    import asyncpg

TIERS = ("IMMEDIATE ROLLBACK", "FORWARD-FIX", "MONITOR AND ASSESS", "HEALTHY")


def headless_drill(config_path: Path, scenario: Scenario, operator: str) -> int:
    """The drill without the console: the trainee uses the commands; Enter ends it, the
    trainee's call is asked (the console journals it from the assessment screen), then the
    score and the debrief, the same as the console's."""
    import time

    from rich.console import Console

    from app.drill_score import debrief_text, facts_for, record, score
    from app.journal import Journal, incidents_root, new_incident_id

    started = time.time()
    out = Console(highlight=False, soft_wrap=True)
    base = f"rollback-console -c {config_path}"
    out.print(f"[bold]DRILL INCIDENT[/bold]  {scenario.title}: {scenario.briefing}")
    facts = facts_for(scenario) if scenario.point_in_time else None
    if facts is not None and facts.mark != scenario.mark:
        out.print(f"  (on this sandbox the mark is named {facts.mark})", markup=False)
    if facts is not None and scenario.after_mark and facts.after_mark != scenario.after_mark:
        out.print(f"  (on this sandbox the mark after it is named {facts.after_mark})",
                  markup=False)
    if scenario.after_mark:
        out.print(f"  assess:    {base} assess [--at WHEN]\n"
                  f"  window:    {base} pitr   (the WAL archive: the moments that can be "
                  "restored, and the marks)\n"
                  f"  plan:      {base} run --type TYPE [--tables T] [--at WHEN] [--after WHEN] "
                  "--dry-run\n"
                  f"  roll back: {base} run --type TYPE [--tables T] [--at WHEN] [--after WHEN] "
                  "--confirm PHRASE\n"
                  f"  validate:  {base} validate\n"
                  "  (WHEN: a mark's label, an ISO time or an LSN; without --at, the newest "
                  "backup set; --after: the repair's moment right after the migration; "
                  "`rollback-console run --help` lists the types)", markup=False)
    elif scenario.point_in_time:
        out.print(f"  assess:    {base} assess [--at WHEN]\n"
                  f"  window:    {base} pitr   (the WAL archive: the moments that can be "
                  "restored, and the marks)\n"
                  f"  plan:      {base} run --type TYPE [--tables T] [--at WHEN] --dry-run\n"
                  f"  roll back: {base} run --type TYPE [--tables T] [--at WHEN] --confirm "
                  "PHRASE\n"
                  f"  validate:  {base} validate\n"
                  "  (WHEN: a mark's label, an ISO time or an LSN; without --at, the newest "
                  "backup set)", markup=False)
    else:
        out.print(f"  assess:    {base} assess\n"
                  f"  plan:      {base} run --type TYPE [--tables T] --dry-run\n"
                  f"  roll back: {base} run --type TYPE [--tables T] --confirm PHRASE\n"
                  f"  validate:  {base} validate")
    out.print("Press Enter when you are done (Ctrl-C stops without a score).", style="dim")
    sys.stdout.flush()
    sys.stdin.readline()
    for n, tier in enumerate(TIERS, 1):
        out.print(f"  {n}. {tier}")
    choice = click.prompt("Your call (the runbook's tier)", type=click.IntRange(1, len(TIERS)))
    journal = Journal.open(incidents_root() / new_incident_id())
    journal.append("assessment", tier=TIERS[choice - 1], action="headless drill",
                   recommended=None, tables=[], backup=None, findings=[])
    journal.append("decision", choice=TIERS[choice - 1], reason="headless drill")
    result = score(scenario, started, operator)
    out.print(debrief_text(scenario, result, record(result)), markup=False)
    return 0


async def prepare_drill(cfg: Config, migration: str | Scenario) -> None:
    """The baseline backup, then the bad migration. A point-in-time scenario (``mark``) has
    users writing between the two, a mark made just before the migration, and more writes
    after it; what a Type 2 from the dump would lose is counted and kept for the debrief
    (``app.drill_score.save_facts``). ``migration``: the scenario, or its migration's SQL
    (then the scenario with that migration, when there is one)."""
    from app.backups.create import create_set
    from app.db import connect
    from app.drills import SCENARIOS

    scenario = migration if isinstance(migration, Scenario) else \
        next((s for s in SCENARIOS if s.migration == migration), None)
    sql = scenario.migration if scenario is not None else str(migration)
    if scenario is not None and scenario.mark:
        await _prepare_point_in_time(cfg, scenario)
        return
    await create_set(cfg, "before-drill")
    conn = await connect(cfg.target)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _prepare_point_in_time(cfg: Config, scenario: Scenario) -> None:
    """Dump, users' writes, the mark, the migration, more writes: the facts recorded."""
    from datetime import UTC, datetime

    import asyncpg

    from app.backups.create import create_set
    from app.db import connect
    from app.drill_score import DrillFacts, save_facts
    from app.errors import BadInput

    if cfg.pitr is None:
        raise BadInput(f"drill {scenario.name!r} restores from a point in time and the "
                       f"sandbox's config ({cfg.path}) has no [pitr] section: its server "
                       "does not archive WAL")
    dump = await create_set(cfg, "before-drill")
    conn = await connect(cfg.target)
    try:
        for n, table in enumerate(scenario.tables):   # the damaged tables as dumped
            await conn.execute(f"CREATE TEMP TABLE drill_dumped_{n} AS TABLE {table}")
        await conn.execute(scenario.before_mark)
        lost: dict[str, dict[str, object]] = {}
        for n, table in enumerate(scenario.tables):
            lost[table] = await _written(conn, table, f"drill_dumped_{n}",
                                         all_keys=bool(scenario.after_mark))
            await conn.execute(f"DROP TABLE drill_dumped_{n}")
    finally:
        await conn.close()
    mark = await _mark(cfg, scenario, scenario.mark)
    conn = await connect(cfg.target)
    after_mark = None
    written_after: dict[str, dict[str, object]] = {}
    damaged: dict[str, dict[str, str | None]] = {}
    try:
        migration_at = await conn.fetchval("SELECT clock_timestamp()")
        if scenario.after_mark:    # the rows before it, to know what the migration did
            for n, table in enumerate(scenario.tables):
                await conn.execute(f"CREATE TEMP TABLE drill_before_{n} AS TABLE {table}")
        await conn.execute(scenario.migration)
        if scenario.after_mark:
            for n, table in enumerate(scenario.tables):
                await conn.execute(f"CREATE TEMP TABLE drill_migrated_{n} AS TABLE {table}")
                damaged[table] = await _damaged(conn, f"drill_before_{n}", f"drill_migrated_{n}")
            after_mark = await _mark(cfg, scenario, scenario.after_mark)
        if scenario.after:
            await conn.execute(scenario.after)
        for n, table in enumerate(scenario.tables if scenario.after_mark else ()):
            written_after[table] = await _written(conn, table, f"drill_migrated_{n}",
                                                  all_keys=True)
            lost[table]["since_dump"] = len(_keys(lost[table]) | _keys(written_after[table]))
        try:   # the archive catches up, as archive_timeout would in a minute
            await conn.execute("SELECT pg_switch_wal()")
        except asyncpg.PostgresError:
            pass
    finally:
        await conn.close()
    for written in lost.values():
        written.pop("keys", None)
    if scenario.after_mark:
        _record_migration_time(cfg.path, migration_at)
    save_facts(DrillFacts(
        scenario=scenario.name, dump_id=dump.id,
        dump_at=(dump.taken_at or datetime.now(UTC)).astimezone(UTC).isoformat(),
        mark=mark.label, mark_at=mark.at.isoformat(), mark_lsn=mark.lsn,
        migration_at=migration_at.astimezone(UTC).isoformat(), lost=lost,
        after_mark=after_mark.label if after_mark else "",
        after_mark_at=after_mark.at.isoformat() if after_mark else "",
        after_mark_lsn=after_mark.lsn if after_mark else "",
        written_after=written_after, damaged=damaged))


async def _mark(cfg: Config, scenario: Scenario, label: str) -> Any:
    """The deploy script's mark (a named restore point); a unique suffix on a reused sandbox."""
    from datetime import UTC, datetime

    from app.errors import BadInput
    from app.pitr.marks import create_mark

    try:
        try:
            return await create_mark(cfg, label, "drill")
        except BadInput as exc:
            if "exists on" not in str(exc):
                raise
            return await create_mark(cfg, f"{label}-{datetime.now(UTC):%H%M%S}", "drill")
    except BadInput as exc:
        raise BadInput(f"drill {scenario.name!r} marks the moment before its migration, and "
                       f"this sandbox cannot: {exc}. Play it on the plain sandbox (no "
                       "--shape)") from None


def _record_migration_time(path: Path | None, at: datetime) -> None:
    """The deploy script's record of when the migration ran (``target.migration_at`` in the
    sandbox's config), as a deploy pipeline's log would say: the assessment weighs the users'
    writes after it (the repair)."""
    from datetime import UTC

    if path is None or not path.is_file():
        return
    text = path.read_text()
    if "\nmigration_at" in text or "\n[target]\n" not in text:
        return
    stamp = at.astimezone(UTC).isoformat()
    path.write_text(text.replace("\n[target]\n", f"\n[target]\nmigration_at = \"{stamp}\"  "
                                 "# the deploy script's record (drill)\n", 1))


def _keys(written: dict[str, object]) -> set[str]:
    keys = written.get("keys")
    return {str(k) for k in keys} if isinstance(keys, list) else set()


async def _damaged(conn: asyncpg.Connection, before: str,
                   migrated: str) -> dict[str, str | None]:
    """The rows the migration touched, by key: the md5 of each as it was before (None: the
    migration inserted it)."""
    rows = await conn.fetch(
        f"SELECT coalesce(b.id, m.id)::text AS key, md5(b::text) AS was FROM {before} b "
        f"FULL JOIN {migrated} m ON m.id = b.id WHERE b IS DISTINCT FROM m "
        "ORDER BY coalesce(b.id, m.id)")
    return {r["key"]: r["was"] for r in rows}


async def _written(conn: asyncpg.Connection, table: str, dumped: str,
                   all_keys: bool = False) -> dict[str, object]:
    """The rows of ``table`` users wrote since ``dumped`` (its copy at the dump): new ones,
    edited ones, and a few of their keys (the demo's tables are keyed by ``id``); ``all_keys``:
    every key too (``keys``)."""
    new = await conn.fetch(f"SELECT t.id::text AS key FROM {table} t WHERE t.id NOT IN "
                           f"(SELECT id FROM {dumped}) ORDER BY t.id")
    edited = await conn.fetch(f"SELECT w.id::text AS key FROM (TABLE {table} EXCEPT TABLE "
                              f"{dumped}) AS w WHERE w.id IN (SELECT id FROM {dumped}) "
                              "ORDER BY w.id")
    return {"new": len(new), "edited": len(edited),
            "new_keys": [r["key"] for r in new[:5]],
            "edited_keys": [r["key"] for r in edited[:5]],
            **({"keys": [r["key"] for r in [*new, *edited]]} if all_keys else {})}
