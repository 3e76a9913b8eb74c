"""The repair: undo what the migration did to the chosen tables' rows, keep what users wrote
after it (app/rollback/repair.py). Online: no maintenance window, row locks only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.rollback.registry import TypeSpec, register

if TYPE_CHECKING:
    from app.config import Config
    from app.rollback.context import Options
    from app.rollback.plan import Plan


async def plan(cfg: Config, backup: Any, options: Options) -> Plan:
    """The steps, and per table what the repair does (re-insert, revert, delete, conflicts
    and their resolution, the users' rows kept), found by loading the moments into a
    throwaway session of the target."""
    from app.backups.backupset import BackupSet, resolve
    from app.db import connect
    from app.errors import BadInput
    from app.rollback import repair
    from app.rollback.plan import Plan, Step

    if not isinstance(backup, BackupSet):
        raise BadInput("a repair reads a backup set's table dumps (or a point in time "
                       "captured as one)")
    if options.conflicts not in repair.CONFLICT_CHOICES:
        raise BadInput(f"--conflicts {options.conflicts!r}: choose one of "
                       f"{', '.join(repair.CONFLICT_CHOICES)}")
    unknown = [d for d in options.damage if d not in repair.DAMAGE_CLASSES
               and not d.startswith("common:")]
    if unknown:
        raise BadInput(f"--damage {', '.join(unknown)}: choose from "
                       f"{', '.join(repair.DAMAGE_CLASSES)}")
    after = resolve(cfg.target.backups_root, options.after) if options.after else None
    if after is None and not options.damage:
        raise BadInput("a repair needs the moment right after the migration (--after: a mark, "
                       "time or LSN after it committed, with --at for the moment before) or, "
                       "with only a dump, the classes of damage to put back (--damage "
                       "deleted,nulled,common[,inserted])")
    m = repair.Moments(backup, after, options.damage, options.conflicts, options.fire_triggers)
    built = Plan(KEY, cfg.target.name, backup.id, options.tables)
    conn = await connect(cfg.target)
    try:
        try:
            async with conn.transaction():   # temporary tables only; rolled back
                plans = [await repair.classify(conn, await repair.shape(
                    conn, t, backup, after), m) for t in options.tables]
        except Exception as exc:
            if "read-only transaction" in str(exc):
                raise BadInput("a repair's plan loads the moments into temporary tables, "
                               "which a read-only session refuses: run it without --mode "
                               "assess") from None
            raise
        triggers = "fire" if options.fire_triggers or not \
            await repair.can_disable_triggers(conn) else "off"
    finally:
        await conn.close()
    built.blast_radius += repair.plan_lines(plans, m, triggers)
    names = ", ".join(options.tables)
    built.steps = [
        Step("prerequisites", "Prerequisites check",
             "Both moments' dumps against their manifests, from this database; each table "
             "matched by its key, the same columns then and now.", 300, repair.prerequisites),
        Step("repair", f"Repair {names}",
             "Load the moments into this session, find what the migration did row by row, "
             "save the rows the repair touches (CSV) and the plan, then ONE transaction in "
             "batches (lock_timeout 5 s, row locks only): delete what it inserted, revert what "
             "it changed, re-insert what it deleted, each only while the row is as planned; "
             "conflicts as chosen; every foreign key checked; COMMIT.", 1800, repair.repair,
             destructive=True, undo="the rows it touched are in safety/repair-rows-before-"
             "<table>.csv: put them back the same way",
             statements=(f"CREATE TEMP TABLE ... AS SELECT ... WITH NO DATA; COPY FROM {backup.id}"
                         + (f" and {after.id}" if after else ""),
                         "SET LOCAL lock_timeout = '5s'",
                         *(("SET LOCAL session_replication_role = replica",)
                           if triggers == "off" else ()),
                         "DELETE ... WHERE <row as the migration left it>",
                         "UPDATE ... SET <columns as before the migration> WHERE <row as the "
                         "migration left it>",
                         "INSERT ... SELECT <rows the migration deleted> WHERE NOT EXISTS",
                         "SELECT setval(...)", "COMMIT")),
        Step("validation", "Validate row by row",
             "Every row the repair wrote holds what the plan said; every row it left is as it "
             "was.", 600, repair.validation),
    ]
    return built


KEY = "repair"

REPAIR = register(TypeSpec(
    key=KEY, number=4, title="Zero-loss repair",
    when="Rows damaged by the migration while users kept writing",
    risk="Low", downtime="none (online)",
    phrase=lambda target: f"ROLLBACK {target}",
    loses="nothing users wrote after the migration (conflicts as chosen; the touched rows "
          "are saved first)", restores="other",
    plan=plan, resume_state=("tables", "after", "damage", "conflicts", "fire_triggers"),
    takes_tables=True))
