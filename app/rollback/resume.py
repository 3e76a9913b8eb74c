"""What resuming an incident means, said once for the CLI and the console (``prepare_resume``):
which rollback it was (type, source, tables, every option the gate approved, as its
``incident_opened`` recorded them), how old it is, what is done and what is left, and which
incidents live on the target's database."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from app.backups.source import RestoreSource, open_source
from app.catalog import DatabaseIdentity, identity
from app.config import Config, parse_time
from app.db import connect
from app.journal import Incident, Journal, find_unfinished
from app.journal_entries import IncidentOpened, opened
from app.rollback.context import Options, expected_phrase
from app.rollback.plan import Plan
from app.rollback.plans import build_plan


async def target_database(cfg: Config) -> DatabaseIdentity:
    """The identity incidents are bound to: cluster, database OID and name."""
    conn = await connect(cfg.target)
    try:
        return await identity(conn)
    finally:
        await conn.close()


async def unfinished_incident(cfg: Config) -> Incident | None:
    return find_unfinished(await target_database(cfg))


@dataclass(frozen=True)
class Resumption:
    """The run to resume, as approved when it started: its type, its source, its options and
    the plan they build again (finished steps are skipped by the runner)."""

    journal: Journal
    kind: str             # the type's key (app.rollback.registry)
    source: RestoreSource
    options: Options
    plan: Plan
    opened: IncidentOpened

    def describe(self) -> list[str]:
        return describe(self.journal, self.plan)


def options_of(journal: Journal, confirm: str = "", maintenance_failure: str = "stop") -> Options:
    """The options the gate approved, from ``incident_opened``. A journal from before they were
    recorded (version 1) falls back to what its steps found (an in-place Type 3 says so in its
    prerequisites' result) and to the first gate having accepted the set's age."""
    first = opened(journal)
    if first is None:
        raise ValueError(f"incident {journal.incident_id} was never opened: nothing to resume")
    found = journal.recorded()
    in_place = first.allow_in_place
    after = first.allow_after_migration
    return Options(tables=first.tables, confirm=confirm,
                   maintenance_failure=maintenance_failure,
                   allow_in_place=bool(found.get("in_place")) if in_place is None else in_place,
                   allow_after_migration=True if after is None else after,
                   migration_at=parse_time(first.migration_at) if first.migration_at else None,
                   keep_maintenance=first.keep_maintenance,
                   leaves_rows_in_backup=first.leaves_rows_in_backup,
                   after=first.after, damage=first.damage, conflicts=first.conflicts,
                   fire_triggers=first.fire_triggers)


async def prepare_resume(cfg: Config, journal: Journal, confirm: str = "",
                         maintenance_failure: str = "stop") -> Resumption:
    """The one way to resume (CLI and console): the recorded source opened again and the plan
    rebuilt from the recorded options, so it is the plan the gate approved."""
    first = opened(journal)
    if first is None:
        raise ValueError(f"incident {journal.incident_id} was never opened: nothing to resume")
    options = options_of(journal, confirm, maintenance_failure)
    source = open_source(first.source or {"id": first.backup}, cfg.target.backups_root)
    kind = first.type
    # The set's age was judged at the first gate: a resume never refuses it again, even when
    # the migration's time reads differently now (the blast radius still says AFTER).
    plan = await build_plan(cfg, kind, source, replace(options, allow_after_migration=True))
    return Resumption(journal, kind, source, options, plan, first)


def age(at: str, now: datetime | None = None) -> str:
    """'3 d 4 h', '25 min', '40 s' since the ISO time ``at``."""
    seconds = int(((now or datetime.now(UTC)) - datetime.fromisoformat(at)).total_seconds())
    if seconds >= 86400:
        return f"{seconds // 86400} d {seconds % 86400 // 3600} h"
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 60} min" if seconds >= 60 else f"{max(seconds, 0)} s"


def _approved(first: IncidentOpened) -> list[str]:
    """The gate's second confirmations, said again: the resume goes on under them."""
    lines = []
    if first.allow_in_place:
        lines.append("approved at the first gate: restore IN PLACE (renaming is impossible "
                     "here), after a safety dump")
    if first.allow_after_migration:
        lines.append("approved at the first gate: use the set although it was taken after "
                     "the migration (or at an unknown time)")
    return lines


def describe(journal: Journal, plan: Plan) -> list[str]:
    """What the operator must see before a resume: the incident, its age, the steps done, the
    steps it will run, and whether the phrase is asked again."""
    first = opened(journal)
    assert first is not None
    done = journal.finished_steps()
    left = [s for s in plan.steps if s.id not in done]
    interrupted = journal.started_not_finished()
    lines = [f"incident {journal.incident_id}: {plan.kind} rollback of {plan.target} "
             f"from backup {plan.backup_id}"
             + (f", tables {', '.join(plan.tables)}" if plan.tables else ""),
             f"opened {first.at} ({age(first.at)} ago); last entry {journal.entries[-1].at}",
             *_approved(first),
             "done: " + (", ".join(done) or "nothing"),
             "interrupted in: " + (interrupted or "no step (stopped between steps)"),
             "will run: " + ", ".join(s.id + (" (DESTRUCTIVE)" if s.destructive else "")
                                      for s in left)]
    if any(s.destructive for s in left):
        lines.append("!it goes past the point of no return: confirm with the phrase "
                     f"{expected_phrase(plan.kind, plan.target)!r} again")
    return lines
