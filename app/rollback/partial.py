"""Type 2, partial data rollback: the runbook's loop over AFFECTED_TABLES, made safe.

Nothing is emptied by CASCADE, the rows written since the backup are exported first, a safety
snapshot of the tables is taken, and the reload is one transaction (see ``reload``)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from app.backups.backupset import (
    check_file,
    check_target,
    dump_problem,
    dumps_children,
    table_file,
    table_selection,
)
from app.backups.copydata import FileReader, Reader
from app.backups.manifest import inheritance_parents, own_content, partition_contents
from app.backups.tools import private_dir, private_file
from app.backups.verify import content_as_recorded
from app.catalog import SQL_IDENT, ForeignKey, TableContent, qualified
from app.config import Config
from app.errors import BadInput
from app.paths import file_part
from app.rollback.context import NeedsOperator, RollbackType, RunContext
from app.rollback.plan import Plan, Step
from app.rollback.reload import (
    dropped_foreign_keys,
    own_count,
    reload_tables,
    touching_foreign_keys,
)
from app.rollback.steps import maintenance_on, recovery, safety_dump, target_conn

_FK_IN_DUMP = re.compile(
    rf"ALTER TABLE (?:ONLY )?(?P<ts>{SQL_IDENT})\.(?P<tn>{SQL_IDENT})\s+ADD CONSTRAINT "
    rf"(?P<name>{SQL_IDENT}) (?P<definition>FOREIGN KEY \((?P<cols>[^)]*)\) REFERENCES "
    rf"(?P<rs>{SQL_IDENT})\.(?P<rn>{SQL_IDENT})\((?P<refcols>[^)]*)\)[^;]*);")


def _unquote(ident: str) -> str:
    ident = ident.strip()
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


def foreign_keys_in_dump(path: Path) -> list[ForeignKey]:
    """The foreign keys a plain pg_dump schema file declares (``ALTER TABLE ONLY … ADD
    CONSTRAINT … FOREIGN KEY …``): what a hand-made set without a manifest recorded."""
    found = []
    for m in _FK_IN_DUMP.finditer(path.read_text(errors="replace")):
        definition = m.group("definition")
        found.append(ForeignKey(
            _unquote(m.group("name")), f"{_unquote(m.group('ts'))}.{_unquote(m.group('tn'))}",
            f"{_unquote(m.group('rs'))}.{_unquote(m.group('rn'))}",
            tuple(_unquote(c) for c in m.group("cols").split(",")),
            tuple(_unquote(c) for c in m.group("refcols").split(",")),
            definition, not definition.endswith("NOT VALID")))
    return found


def recorded_foreign_keys(backup: Any) -> list[ForeignKey] | None:
    """The backup's foreign keys: its manifest's, else its plain schema dump's; None when the
    set records neither."""
    if backup.manifest is not None:
        return list(backup.manifest.state.foreign_keys)
    schema = backup.path / "schema_only_backup.sql"
    return foreign_keys_in_dump(schema) if schema.is_file() else None


def valid_keys(recorded: list[ForeignKey] | None) -> set[tuple[str, str]]:
    """(table, name) of the keys the backup had validated."""
    return {(fk.table, fk.name) for fk in recorded or [] if fk.validated}


async def _dropped_keys(ctx: RunContext, conn: asyncpg.Connection,
                        recorded: list[ForeignKey] | None) -> list[ForeignKey]:
    """Keys the backup recorded on these tables that the migration dropped."""
    return await dropped_foreign_keys(conn, list(ctx.options.tables), recorded or [])





async def prerequisites(ctx: RunContext) -> str:
    """Backups are there and intact, the tables exist on both sides."""
    backup = ctx.backup_set
    tables = list(ctx.options.tables)
    if not tables:
        raise BadInput("a partial rollback needs the tables to roll back (--tables a,b)")
    for table in tables:
        path = table_file(backup.path, table)
        if not path.is_file():
            raise BadInput(f"backup {backup.id} has no {path.name} for {table}: choose tables "
                           "the set holds, or another set")
        matches = check_file(backup, path)
        if matches is False:
            raise BadInput(f"{path.name} in backup {backup.id} does not match its manifest "
                           "(sha256 differs): the file is corrupt or was edited; use another set")
        ctx.log(f"{path.name}: {path.stat().st_size:,} bytes"
                + (", sha256 matches the manifest" if matches else ", no manifest to check"))
    async with target_conn(ctx) as conn:
        await check_target(backup, conn)
        for table in tables:
            if await conn.fetchval("SELECT to_regclass($1)", qualified(table)) is None:
                raise BadInput(f"table {table} does not exist on the target: a partial rollback "
                               "reloads rows; a dropped table needs a schema or full rollback")
        for table in tables:
            path = table_file(backup.path, table)
            problem = await dump_problem(backup, table, path, conn)
            if problem:
                raise BadInput(refusal(backup.id, table, problem))
            ctx.log(f"{path.name}: holds the rows of {table}"
                    + (", as many as the manifest says" if backup.manifest is not None else ""))
    return f"backup {backup.id} holds {len(tables)} table dump(s); all present on the target"


def refusal(set_id: str, table: str, problem: str) -> str:
    """Why a set's dump cannot roll ``table`` back: reloading it would replace the table's rows
    with fewer (or none)."""
    return (f"backup {set_id} cannot roll back {table}: {problem}. Reloading it would lose rows; "
            "nothing was changed. Use another set (`rollback-console backups --verify ID` checks "
            "one), or take one with `rollback-console backup`")


async def assessment(ctx: RunContext) -> str:
    """Current counts, what the reload touches through foreign keys, writes since the backup."""
    tables = list(ctx.options.tables)
    since = ctx.backup.taken_at
    counts: dict[str, int] = {}
    async with target_conn(ctx) as conn:
        for table in tables:
            counts[table] = await own_count(conn, table)
            ctx.log(f"{table}: {counts[table]:,} rows now")
        for fk in await touching_foreign_keys(conn, tables):
            outside = fk.table not in tables
            ctx.log(f"foreign key {fk.name}: {fk.table} -> {fk.referenced}"
                    + ("  (references these tables from outside: rows there must still find "
                       "their parents, or the reload is refused)" if outside else ""))
        recorded = recorded_foreign_keys(ctx.backup)
        for fk in await _dropped_keys(ctx, conn, recorded):
            ctx.log(f"foreign key {fk.name}: {fk.table} -> {fk.referenced} was dropped since "
                    "the backup: the reload adds it back (and validates it)", "warning")
        if recorded is None:
            ctx.log("this set has neither a manifest nor schema_only_backup.sql: foreign keys "
                    "dropped since the backup are not known here and are not added back "
                    "(Type 1 does that)", "warning")
        changed: dict[str, int] = {}
        if since is not None and ctx.backup.taken_note and \
                getattr(ctx.backup, "point_in_time", None) is None:
            ctx.log(f"the set's time is a guess ({ctx.backup.taken_note}): a file copied after "
                    "its dump is newer than the dump, so rows written between the real backup "
                    f"and {since:%Y-%m-%d %H:%M %Z} are not in the export below; the safety "
                    "snapshot holds every current row", "warning")
        if since is not None:
            for table in tables:
                cols = await _time_columns(conn, table)
                if cols:
                    cond = " OR ".join(f"{c} > $1" for c in cols)
                    changed[table] = int(await conn.fetchval(
                        f"SELECT count(*) FROM {qualified(table)} WHERE {cond}", since))
                    ctx.log(f"{table}: {changed[table]:,} rows written since the backup "
                            f"({since:%Y-%m-%d %H:%M %Z}); they are exported before the reload")
    ctx.partial.counts_before = counts
    ctx.partial.changed_since_backup = changed
    return ", ".join(f"{t} {n:,} rows" for t, n in counts.items())


async def _time_columns(conn: asyncpg.Connection, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT quote_ident(attname) AS c FROM pg_attribute WHERE attrelid = $1::regclass "
        "AND attname IN ('created_at', 'updated_at') AND NOT attisdropped "
        "AND atttypid IN ('timestamptz'::regtype, 'timestamp'::regtype)", qualified(table))
    return [r["c"] for r in rows]


async def safety_snapshot(ctx: RunContext) -> str:
    """Save the tables as they are now (so this rollback can be undone) and, as CSV, the rows
    written since the backup (so they are not silently lost)."""
    tables = list(ctx.options.tables)
    safety = private_dir(ctx.incident_dir / "safety")   # the tables' rows: owner only
    dump = safety / "tables-before-rollback.dump"
    async with target_conn(ctx) as conn:
        estimate = sum([int(await conn.fetchval(
            "SELECT coalesce(sum(pg_table_size(relid)), 0) FROM pg_partition_tree($1::regclass)",
            qualified(t))) for t in tables])
        children = await dumps_children(ctx.cfg.target.tools_dir)
        selection = [arg for t in tables for arg in await table_selection(conn, t, children)]
    await safety_dump(ctx, dump, ["--data-only", *dict.fromkeys(selection)], estimate // 2)
    exported = []
    since = ctx.backup.taken_at
    if since is not None:
        async with target_conn(ctx) as conn:
            for table in tables:
                cols = await _time_columns(conn, table)
                if not cols or not (ctx.partial.changed_since_backup or {}).get(table):
                    continue
                out = private_file(safety / f"written-since-backup.{file_part(table)}.csv")
                cond = " OR ".join(f"{c} > $1" for c in cols)
                await conn.copy_from_query(f"SELECT * FROM {qualified(table)} WHERE {cond}",
                                           since, output=str(out), format="csv", header=True)
                exported.append(str(out))
                ctx.log(f"exported rows written since the backup: {out}")
    ctx.partial.exported_since_backup = exported
    return f"saved to {dump}" + (f"; {len(exported)} CSV export(s)" if exported else "")


async def restore(ctx: RunContext) -> str:
    """One transaction: the tables get exactly the backup's rows, or nothing changes."""
    async with target_conn(ctx) as conn, target_conn(ctx) as watcher:
        return await reload_on(ctx, conn, watcher)


async def reload_on(ctx: RunContext, conn: asyncpg.Connection,
                    watcher: asyncpg.Connection) -> str:
    """The reload on ``conn`` (its own transaction, or a savepoint inside the caller's: the
    in-place Type 3 runs it in the schema plan's transaction); ``watcher`` names blockers."""
    tables = list(ctx.options.tables)
    sizes = {t: ctx.backup_set.table_path(t).stat().st_size for t in tables}

    @asynccontextmanager
    async def open_dump(table: str) -> AsyncIterator[Reader]:
        reader = FileReader(ctx.backup_set.table_path(table))
        try:
            yield reader
        finally:
            reader.close()

    def progress(table: str, done: int, rows: int) -> None:
        ctx.progress(done, sizes[table], "bytes", f"{table}: {rows:,} rows")

    recorded = recorded_foreign_keys(ctx.backup)
    restore_fks = await _dropped_keys(ctx, conn, recorded)
    with ctx.action("reload_tables", tables=tables, backup=ctx.backup.id,
                    foreign_keys_added_back=[fk.name for fk in restore_fks]):
        result = await reload_tables(conn, tables, open_dump, progress,
                                     blocker_conn=watcher, restore_fks=restore_fks,
                                     valid_in_backup=valid_keys(recorded))
    for table in tables:
        ctx.log(f"{table}: {result.rows.get(table, 0):,} rows, "
                f"{result.bytes.get(table, 0):,} bytes loaded")
    ctx.log(f"{result.indexes_rebuilt} indexes rebuilt, {result.foreign_keys_readded} foreign "
            f"keys re-added and validated in {result.seconds:.1f}s")
    if result.foreign_keys_restored:
        ctx.log(f"{result.foreign_keys_restored} foreign key(s) dropped since the backup added "
                "back: " + ", ".join(fk.name for fk in restore_fks))
    ctx.partial.rows_loaded = result.rows
    return (f"reloaded {', '.join(tables)} ({sum(result.rows.values()):,} rows) in "
            f"{result.seconds:.1f}s; committed")


async def validation(ctx: RunContext) -> str:
    """Counts and checksums against the manifest (or the rows loaded), keys all valid."""
    tables = list(ctx.options.tables)
    manifest = ctx.backup_set.manifest
    problems = []
    async with target_conn(ctx) as conn:
        parents = set(await inheritance_parents(conn, tables))
        for table in tables:
            content = await content_as_recorded(conn, table, manifest)   # by column names
            expected = manifest.state.tables.get(table) if manifest is not None else None
            if table in parents and expected is not None:
                # the reload replaced its own rows; its inheritance children are their own
                assert manifest is not None
                expected = manifest.state.own_content.get(table)
                content = await own_content(conn, table)
                if expected is None:
                    ctx.log(f"{table}: {content.rows:,} rows of its own; the manifest (an older "
                            "set) has no figure without its inheritance children: checksum not "
                            "compared", "warning")
                    continue
            if expected is not None:
                ok = (content.rows, content.checksum) == (expected.rows, expected.checksum)
                ctx.log(f"{table}: {content.rows:,} rows, checksum "
                        f"{'matches' if ok else 'DIFFERS FROM'} the manifest")
                if not ok:
                    problems.append(f"{table} differs from the backup's manifest")
                recorded = manifest.state.partitions.get(table) if manifest is not None else None
                if ok and recorded:
                    await _partitions_against(ctx, conn, table, recorded)
            else:
                loaded = (ctx.partial.rows_loaded or {}).get(table)
                own = await own_count(conn, table)   # not an inheritance parent's children
                ctx.log(f"{table}: {own:,} rows (loaded {loaded}); no manifest: "
                        "checksum not compared")
                if loaded is not None and loaded != own:
                    problems.append(f"{table} has {own} rows, {loaded} were loaded")
        invalid = await conn.fetchval("SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
                                      "AND NOT convalidated AND conrelid = ANY(SELECT "
                                      "to_regclass(t)::oid FROM unnest($1::text[]) t)",
                                      [qualified(t) for t in tables])
        if invalid:
            problems.append(f"{invalid} foreign keys on these tables are NOT VALID")
    if problems:
        raise NeedsOperator("validation found: " + "; ".join(problems))
    return "counts and checksums match the backup; every foreign key is valid"


async def _partitions_against(ctx: RunContext, conn: asyncpg.Connection, table: str,
                              recorded: dict[str, TableContent]) -> None:
    """Each leaf of a reloaded partitioned table against the manifest's. The table's rows
    already match; a leaf that differs means the partitions changed since the backup (bounds,
    a new or detached one) and rows now sit where today's bounds route them: said, not failed."""
    live = await partition_contents(conn, table)
    differ = [leaf for leaf in sorted(set(live) | set(recorded))
              if getattr(live.get(leaf), "checksum", None)
              != getattr(recorded.get(leaf), "checksum", None)]
    if not differ:
        ctx.log(f"{table}: each of its {len(live)} partitions matches the manifest (rows and "
                "checksum)")
        return
    for leaf in differ:
        now, then = live.get(leaf), recorded.get(leaf)
        ctx.log(f"{leaf}: {now.rows if now else 'no such partition now'} rows, the manifest "
                f"says {then.rows if then else 'no such partition then'}: the partitions "
                "changed since the backup; rows are where today's bounds put them", "warning")


def build(cfg: Config, backup: Any, tables: tuple[str, ...]) -> Plan:
    """The Type 2 plan for ``tables`` from ``backup``."""
    names = ", ".join(tables)
    path = backup.path
    app = cfg.app.base_url if cfg.app else "(no app configured)"
    maint = cfg.app.maintenance if cfg.app else ""
    health = cfg.app.health if cfg.app else ""
    plan = Plan(RollbackType.PARTIAL, cfg.target.name, backup.id, tables)
    plan.steps = [
        Step("prerequisites", "Prerequisites check",
             "Verify the backup set's table dumps (hashes against the manifest, the rows they "
             "hold against the manifest's counts) and that the tables exist on the target.",
             300, prerequisites,
             statements=tuple(f"sha256 {table_file(path, t).name}" for t in tables)),
        Step("assessment", "Issue assessment",
             "Count rows now, list the foreign keys into and out of the tables, count the rows "
             "written since the backup (they will be exported).", 300, assessment,
             statements=tuple(f"SELECT count(*) FROM {qualified(t)}" for t in tables)),
        Step("maintenance", "Set maintenance mode",
             "Turn the app's maintenance mode on and verify the API answers 503; notify the "
             "channels: EMERGENCY ROLLBACK IN PROGRESS.", 120, maintenance_on,
             statements=(f"POST {app}{maint}", f"GET {app}{health}  -> expect 503")),
        Step("safety_snapshot", "Safety snapshot",
             "Dump the tables as they are now (custom format) and export the rows written "
             "since the backup as CSV, so this rollback can be undone.", 600, safety_snapshot,
             statements=("pg_dump --data-only --format=custom "
                         + " ".join(f"--table={qualified(t)}" for t in tables),)),
        Step("restore", f"Reload {names} from the backup",
             "One transaction with lock_timeout: lock, drop the foreign keys and secondary "
             "indexes, TRUNCATE (no CASCADE), COPY FREEZE from the dumps, rebuild indexes, "
             "re-add and validate foreign keys (and add back the ones the backup had that were "
             "dropped since), move sequences forward, ANALYZE, commit.",
             1800, restore, destructive=True, point_of_no_return=True,
             undo="reload the safety snapshot the same way (its path is in the journal)",
             statements=("SET LOCAL lock_timeout = '5000ms'",
                         f"LOCK TABLE {', '.join(qualified(t) for t in tables)} IN ACCESS "
                         "EXCLUSIVE MODE", "ALTER TABLE ... DROP CONSTRAINT <each FK>",
                         "DROP INDEX <each secondary index>",
                         f"TRUNCATE {', '.join(qualified(t) for t in tables)}",
                         *(f"COPY {qualified(t)} FROM STDIN (FREEZE)  -- "
                           f"{table_file(path, t).name}" for t in tables),
                         "CREATE INDEX ... <each>", "ALTER TABLE ... ADD CONSTRAINT <each FK>",
                         "SELECT setval(...)", "ANALYZE", "COMMIT")),
        Step("validation", "Data validation",
             "Row counts and content checksums against the backup's manifest; every foreign "
             "key valid.", 600, validation),
        Step("recovery", "Application recovery",
             "Maintenance mode off, health and critical endpoints answer 200, channels told.",
             600, recovery,
             statements=(f"DELETE {app}{maint}", f"GET {app}{health}  -> expect 200")),
    ]
    return plan
