"""Type 3, complete restore, the last resort: restore the full backup into a NEW database while
the target stays online, validate it there, then switch names in one transaction. The current
database is kept aside (its name is journaled), so even this can be undone.

Where the role may not rename databases (a managed platform), an in-place restore is possible
only with a second, explicit confirmation (``Options.allow_in_place``), after a full safety dump.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import asyncpg

from app.backups.backupset import FULL_DUMP_NAMES, check_file, check_target
from app.backups.tools import restore_filtered, run_tool, server_major, tool_output
from app.backups.verify import content_as_recorded
from app.capabilities import MAINTENANCE_DB, SWAP, WHOLE_DUMP_IN_PLACE, full_capability
from app.catalog import SQL_IDENT, quote_ident
from app.config import Config
from app.errors import BadInput, ConsoleError
from app.rollback.context import NeedsOperator, RollbackType, RunContext, StepFailed
from app.rollback.plan import Plan, Step
from app.rollback.steps import (
    maintenance_back_on,
    maintenance_on,
    recovery,
    safety_dump,
    target_conn,
)
from app.rollback.switch import (  # noqa: F401  (reopen_interrupted_switch: re-exported)
    can_rename,
    database_exists,
    database_settings,
    reopen_interrupted_switch,
    switch,
)

# A restore into a database nobody uses yet can sort in memory and skip waiting for WAL flushes:
# index builds and foreign keys are most of a restore's time.
RESTORE_SESSION = "-c maintenance_work_mem=512MB -c synchronous_commit=off"
COMPARE_CONNECTIONS = 2


def names(ctx: RunContext) -> tuple[str, str, str]:
    """(target, restored, aside) database names for this incident."""
    target = ctx.cfg.target.database
    suffix = ctx.journal.incident_id.replace("-", "_")[-13:]
    return target, f"{target}_restored_{suffix}"[:63], f"{target}_aside_{suffix}"[:63]


async def prerequisites(ctx: RunContext) -> str:
    dump = ctx.backup_set.database_dump()
    if dump is None:
        raise BadInput(f"backup {ctx.backup.id} has no full dump ({' or '.join(FULL_DUMP_NAMES)})"
                       ": a complete restore needs one; choose another set")
    manifest = ctx.backup_set.manifest
    if check_file(ctx.backup_set, dump) is False:
        raise BadInput(f"{dump.name} in backup {ctx.backup.id} does not match its manifest: "
                       "the file is corrupt or was edited; use another set")
    if manifest is None:
        ctx.log("no manifest: the restored database cannot be compared with checksums, only "
                "checked for its tables", "warning")
    target, restored, aside = names(ctx)
    async with target_conn(ctx) as conn:
        await check_target(ctx.backup_set, conn)
        await _refuse_impossible(ctx, conn)
    async with target_conn(ctx, MAINTENANCE_DB) as admin:
        why_not = await can_rename(admin, target)
        if await database_exists(admin, aside):
            raise BadInput(f"a database named {aside} already exists; drop or rename it first")
    if why_not and not ctx.options.allow_in_place:
        raise BadInput(f"{why_not}. The switch is impossible here; an in-place restore is the "
                       "only way and needs a second confirmation (--allow-in-place)")
    ctx.full.full_dump = str(dump)
    ctx.full.in_place = bool(why_not)
    ctx.full.databases = {"target": target, "restored": restored, "aside": aside}
    return f"{dump.name} ({dump.stat().st_size:,} bytes) verified; " + (
        "IN-PLACE restore (second confirmation given)" if why_not else
        f"will restore into {restored} and switch")


async def _refuse_impossible(ctx: RunContext, conn: asyncpg.Connection) -> None:
    """Refuse (exit 2, nothing changed) when this role cannot do this Type 3 here, saying what
    to do instead. Only a role that may not rename the database, with nothing else in the way,
    may still restore the whole dump in place (--allow-in-place)."""
    cap = await full_capability(conn, ctx.backup.taken_at, ctx.options.allow_in_place)
    if cap.possible and cap.how in (SWAP, WHOLE_DUMP_IN_PLACE):
        return
    if cap.possible:
        raise BadInput(f"{cap.why}: run the plan this gives (rollback-console run --type full "
                       "--dry-run shows it)")
    raise BadInput(cap.message())


async def assessment(ctx: RunContext) -> str:
    async with target_conn(ctx) as conn:
        size = int(await conn.fetchval("SELECT pg_database_size(current_database())"))
        sessions = int(await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"))
    taken = ctx.backup.taken_at
    ctx.log(f"database size {size / 1e6:,.1f} MB; {sessions} other sessions will be ended at "
            "the switch")
    if taken is not None:
        ctx.log(f"EVERY change since {taken:%Y-%m-%d %H:%M %Z} is lost in the restored "
                "database (the current one is kept aside)", "warning")
    return f"{size / 1e6:,.1f} MB, {sessions} sessions"


async def restore_new(ctx: RunContext) -> str:
    """pg_restore into a fresh database, in parallel, the target still online."""
    dbs, dump = ctx.full.names, ctx.full.dump
    async with target_conn(ctx, MAINTENANCE_DB) as admin:
        if await database_exists(admin, dbs["restored"]):
            ctx.log(f"{dbs['restored']} exists from an interrupted run: dropping it and "
                    "restoring again")
            await admin.execute(f"DROP DATABASE {quote_ident(dbs['restored'])} WITH (FORCE)")
        owner = await admin.fetchval("SELECT pg_get_userbyid(datdba) FROM pg_database "
                                     "WHERE datname = $1", dbs["target"])
        await admin.execute(f"CREATE DATABASE {quote_ident(dbs['restored'])} "
                            f"OWNER {quote_ident(owner)} TEMPLATE template0")
    async with ctx.checked_action("restore_into_new_database", database=dbs["restored"],
                                  dump=str(dump)):
        try:
            await _carry_settings(ctx, dbs["target"], dbs["restored"])
            await _restore(ctx, dump, dbs["restored"], clean=False)
        except (ConsoleError, asyncpg.PostgresError) as exc:
            dropped = await _drop_half_restored(ctx, dbs["restored"])
            raise StepFailed(
                f"the restore into {dbs['restored']} failed ({exc}); " + dropped
                + f"; {dbs['target']} was not touched. {dump.name} in backup {ctx.backup.id} "
                "cannot be restored as it is: use another set (or repair this one) and run "
                "again") from None
    return f"restored into {dbs['restored']}"


async def _carry_settings(ctx: RunContext, target: str, restored: str) -> None:
    """The privileges and settings of the database itself, onto the restored copy."""
    async with target_conn(ctx, MAINTENANCE_DB) as admin:
        for statement in await database_settings(admin, target, restored):
            shown, is_set, _ = statement.partition(" SET ")
            ctx.log(f"{shown} SET <value as on the target>" if is_set else statement)
            await admin.execute(statement)   # values unlogged: settings may hold secrets


async def _drop_half_restored(ctx: RunContext, restored: str) -> str:
    """Drop the database a failed restore left behind: ours (``<db>_restored_<incident>``),
    half filled, and of no use to anybody."""
    try:
        async with target_conn(ctx, MAINTENANCE_DB) as admin:
            await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(restored)} WITH (FORCE)")
    except (ConsoleError, asyncpg.PostgresError) as exc:
        ctx.log(f"could not drop {restored}: {exc}", "warning")
        return f"{restored} could not be dropped ({exc}): drop it by hand"
    ctx.log(f"{restored} (the restored copy) was dropped")
    return f"the restored copy {restored} was dropped"


async def _restore(ctx: RunContext, dump: Path, database: str, clean: bool) -> None:
    lines = 0

    def on_line(line: str) -> None:
        nonlocal lines
        lines += 1
        ctx.log(line)
        ctx.progress(lines, None, "objects")

    if await server_major(ctx.cfg.target) < 17:
        ctx.log("the server is older than PostgreSQL 17: restoring through a filter for the "
                "dump's SET transaction_timeout (no parallel restore)", "warning")
        await restore_filtered(dump, ctx.cfg.target, on_line, database, clean=clean)
        return
    if dump.suffix == ".sql":
        args = ["--quiet", "--set=ON_ERROR_STOP=1", "--single-transaction", f"--file={dump}"]
        await run_tool("psql", args, ctx.cfg.target, on_line, database=database)
        return
    args = ["--verbose", "--exit-on-error"]
    if clean:
        args += ["--clean", "--if-exists", "--single-transaction", str(dump)]
        await run_tool("pg_restore", args, ctx.cfg.target, on_line, database=database,
                       server_options=RESTORE_SESSION)
        return
    # Everything but the foreign keys, in parallel; the keys are added NOT VALID (they guard
    # new writes at once) and validated after the switch, online (VALIDATE CONSTRAINT lets
    # normal reads and writes go on): the database is back sooner.
    toc = await tool_output("pg_restore", ["--list", str(dump)], ctx.cfg.target.tools_dir)
    main = [line for line in toc.splitlines() if " FK CONSTRAINT " not in line]
    keys = [line for line in toc.splitlines() if " FK CONSTRAINT " in line]
    lists = ctx.incident_dir / "restore"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "main.list").write_text("\n".join(main) + "\n")
    (lists / "keys.list").write_text("\n".join(keys) + "\n")
    await run_tool("pg_restore", [*args, "--jobs=2", f"--use-list={lists / 'main.list'}",
                                  str(dump)], ctx.cfg.target, on_line, database=database,
                   server_options=RESTORE_SESSION)
    if not keys:
        return
    sql = await tool_output("pg_restore", [f"--use-list={lists / 'keys.list'}", "--file=-",
                                           str(dump)], ctx.cfg.target.tools_dir)
    deferred = []
    async with target_conn(ctx, database) as conn, conn.transaction():
        for m in _FK.finditer(sql):
            statement = m.group(0).rstrip().rstrip(";")
            if not statement.endswith("NOT VALID"):
                statement += " NOT VALID"
                deferred.append([m.group("table"), m.group("name")])
            await conn.execute(statement)
    ctx.full.deferred_foreign_keys = deferred
    ctx.log(f"{len(deferred)} foreign keys added NOT VALID; validated after the switch")


_FK = re.compile(rf"ALTER TABLE (?:ONLY )?(?P<table>{SQL_IDENT}(?:\.{SQL_IDENT})?)\s+"
                 rf"ADD CONSTRAINT (?P<name>{SQL_IDENT}) FOREIGN KEY [^;]*;")


async def validate_deferred_keys(ctx: RunContext) -> None:
    """VALIDATE each foreign key the restore added NOT VALID (one anti-join each, online)."""
    keys = ctx.full.deferred_foreign_keys or []
    if not keys:
        return
    async with target_conn(ctx) as conn:
        for table, name in keys:
            try:
                await conn.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")
            except asyncpg.ForeignKeyViolationError as exc:
                raise NeedsOperator(f"foreign key {name} on {table} does not hold in the "
                                    f"restored data ({exc.detail or exc})") from None
    ctx.log(f"{len(keys)} foreign keys validated online")


async def _compare(ctx: RunContext, database: str) -> list[str]:
    """Every manifest table's count and checksum in ``database``, on a few connections at once
    (each checksum is one scan, CPU bound on the server)."""
    manifest = ctx.backup_set.manifest
    if manifest is None:
        return []
    problems: list[str] = []
    pending = list(manifest.state.tables.items())

    async def worker() -> None:
        async with target_conn(ctx, database) as conn:
            while pending:
                table, expected = pending.pop(0)
                try:
                    got = await content_as_recorded(conn, table, manifest)
                except asyncpg.UndefinedTableError:
                    problems.append(f"{table} is missing")
                    continue
                same = (got.rows, got.checksum) == (expected.rows, expected.checksum)
                ctx.log(f"{database}: {table} {got.rows:,} rows, checksum "
                        f"{'matches' if same else 'DIFFERS'}")
                if not same:
                    problems.append(f"{table} differs from the manifest")

    await asyncio.gather(*(worker() for _ in range(COMPARE_CONNECTIONS)))
    return sorted(problems)


async def validate_new(ctx: RunContext) -> str:
    restored = ctx.full.names["restored"]
    problems = await _compare(ctx, restored)
    if problems:
        dropped = await _drop_half_restored(ctx, restored)
        raise StepFailed("the restored copy does not match the backup's manifest ("
                         + "; ".join(problems) + f"); {dropped}; the target was not touched")
    return "the restored copy matches the manifest table by table"


async def switch_step(ctx: RunContext) -> str:
    dbs = ctx.full.names
    await maintenance_back_on(ctx)   # a resume after the operator switched it off by hand
    await ctx.ensure_lock("switch_databases")
    if ctx.lock is not None:
        await ctx.lock.suspend_db()  # our own session on the target must end too
    try:
        async with target_conn(ctx, MAINTENANCE_DB) as admin:
            with ctx.action("switch_databases", target=dbs["target"], aside=dbs["aside"],
                            restored=dbs["restored"]):
                await switch(admin, dbs["target"], dbs["restored"], dbs["aside"])
    except StepFailed as exc:   # nothing switched, the target serves again: no use for the copy
        raise StepFailed(f"{exc}; {await _drop_half_restored(ctx, dbs['restored'])}") from None
    finally:
        if ctx.lock is not None:
            await ctx.lock.resume_db()
    ctx.full.aside_database = dbs["aside"]
    ctx.log(f"the database as it was is kept as {dbs['aside']} (connections disabled); "
            f"undo: rename it back")
    return f"{dbs['restored']} is now {dbs['target']}; the old one is {dbs['aside']}"


async def in_place_snapshot(ctx: RunContext) -> str:
    dump = ctx.incident_dir / "safety" / "database-before-restore.dump"
    async with target_conn(ctx) as conn:
        estimate = int(await conn.fetchval("SELECT pg_database_size(current_database())"))
    size = await safety_dump(ctx, dump, [], estimate // 3)
    return f"saved to {dump} ({size:,} bytes)"


async def restore_in_place(ctx: RunContext) -> str:
    dump = ctx.full.dump
    await maintenance_back_on(ctx)
    async with ctx.checked_action("restore_in_place", dump=str(dump)):
        try:
            await _restore(ctx, dump, ctx.cfg.target.database, clean=True)
        except Exception as exc:
            raise StepFailed(f"the in-place restore failed in its single transaction and was "
                             f"rolled back: {exc}") from None
    return "restored in place in one transaction"


async def validation(ctx: RunContext) -> str:
    await validate_deferred_keys(ctx)
    problems = await _compare(ctx, ctx.cfg.target.database)
    if problems:
        raise NeedsOperator("after the restore: " + "; ".join(problems))
    return "the target matches the backup's manifest"


def build(cfg: Config, backup: Any, in_place: bool = False) -> Plan:
    """The Type 3 plan from ``backup`` (in place only when renaming is impossible)."""
    dump = backup.database_dump()
    dump_name = dump.name if dump else "full_database_backup.dump"
    target = cfg.target.database
    plan = Plan(RollbackType.FULL, cfg.target.name, backup.id, ())
    first = [
        Step("prerequisites", "Prerequisites check",
             "Verify the full dump against the manifest and that this role may switch "
             "databases by renaming.", 300, prerequisites, statements=(f"sha256 {dump_name}",)),
        Step("assessment", "Decision checkpoint",
             "Database size, sessions to be ended; every change since the backup is lost in "
             "the restored database.", 300, assessment),
        Step("maintenance", "Extended maintenance mode",
             "Maintenance mode on and verified; notify: extended downtime expected.", 120,
             maintenance_on),
    ]
    middle = _in_place_steps(target, dump_name) if in_place else _switch_steps(target, dump_name)
    last = [
        Step("validation", "Data validation", "The target, after the restore, against the "
             "manifest.", 1800, validation),
        Step("recovery", "Application recovery",
             "Maintenance off, health and critical endpoints answer 200, channels told.", 600,
             recovery),
    ]
    plan.steps = first + middle + last
    return plan


def _in_place_steps(target: str, dump_name: str) -> list[Step]:
    """A safety dump of the whole database, then the restore over it in one transaction."""
    return [
        Step("safety_snapshot", "Safety snapshot of the whole database",
             "pg_dump --format=custom of the current database.", 1800, in_place_snapshot,
             statements=("pg_dump --format=custom",)),
        Step("restore", "Restore in place",
             "pg_restore --clean --if-exists --single-transaction into the target.", 7200,
             restore_in_place, destructive=True, point_of_no_return=True,
             undo="restore the safety snapshot the same way",
             statements=(f"pg_restore --clean --if-exists --single-transaction "
                         f"--dbname={target} {dump_name}",)),
    ]


def _switch_steps(target: str, dump_name: str) -> list[Step]:
    """Restore into a new database, validate it there, then switch names."""
    return [
        Step("restore_new", "Restore into a new database",
             "CREATE DATABASE <target>_restored_<incident> with the target's owner, "
             "privileges and ALTER DATABASE/ROLE … SET settings (a dump without --create "
             "and a rename carry neither); pg_restore --jobs=2 into it. The target stays "
             "online.", 7200, restore_new,
             statements=(f"CREATE DATABASE {target}_restored_<incident> TEMPLATE template0",
                         "GRANT/REVOKE … ON DATABASE, ALTER DATABASE/ROLE … SET, "
                         "CONNECTION LIMIT, COMMENT: as on the target",
                         f"pg_restore --jobs=2 --exit-on-error {dump_name}")),
        Step("validate_new", "Validate the restored copy",
             "Row counts and checksums of every table against the manifest, before the "
             "target is touched.", 1800, validate_new),
        Step("switch", "Switch databases",
             "Refuse new connections, end the sessions on the target, then in one "
             "transaction rename the target aside and the restored copy into place.", 300,
             switch_step, destructive=True, point_of_no_return=True,
             undo="rename the aside database back (its name is in the journal)",
             statements=(f"ALTER DATABASE {target} WITH ALLOW_CONNECTIONS false",
                         "SELECT pg_terminate_backend(pid) ...",
                         f"ALTER DATABASE {target} RENAME TO {target}_aside_<incident>",
                         f"ALTER DATABASE {target}_restored_<incident> RENAME TO {target}")),
    ]
