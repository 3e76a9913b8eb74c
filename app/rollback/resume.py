"""What resuming an incident means, said once for the CLI and the console: which rollback it
was (type, set, tables, options recorded by its steps), how old it is, what is done and what
is left, and which incidents live on the target's database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from app.catalog import DatabaseIdentity, identity
from app.config import Config
from app.db import connect
from app.journal import Incident, Journal, find_unfinished
from app.rollback.context import Options, RollbackType, expected_phrase
from app.rollback.plan import Plan


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
    kind: RollbackType
    backup_id: str
    options: Options


def resumption(journal: Journal, confirm: str = "",
               maintenance_failure: str = "stop") -> Resumption:
    """The run to resume, from what its journal recorded: the opening entry, and what its
    finished steps found (a Type 3 that had to restore in place says so in its result)."""
    opened = journal.last("incident_opened")
    assert opened is not None
    found = journal.recorded()
    options = Options(tables=tuple(opened.data.get("tables", ())), confirm=confirm,
                      maintenance_failure=maintenance_failure,
                      allow_in_place=bool(found.get("in_place")),
                      allow_after_migration=True,   # decided at the first gate
                      keep_maintenance=bool(opened.data.get("keep_maintenance")),
                      leaves_rows_in_backup=tuple(opened.data.get("leaves_rows_in_backup", ())))
    return Resumption(RollbackType(opened.data["type"]), str(opened.data["backup"]), options)


def age(at: str, now: datetime | None = None) -> str:
    """'3 d 4 h', '25 min', '40 s' since the ISO time ``at``."""
    seconds = int(((now or datetime.now(UTC)) - datetime.fromisoformat(at)).total_seconds())
    if seconds >= 86400:
        return f"{seconds // 86400} d {seconds % 86400 // 3600} h"
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 60} min" if seconds >= 60 else f"{max(seconds, 0)} s"


def describe(journal: Journal, plan: Plan) -> list[str]:
    """What the operator must see before a resume: the incident, its age, the steps done, the
    steps it will run, and whether the phrase is asked again."""
    opened = journal.last("incident_opened")
    assert opened is not None
    done = journal.finished_steps()
    left = [s for s in plan.steps if s.id not in done]
    interrupted = journal.started_not_finished()
    lines = [f"incident {journal.incident_id}: {plan.kind.value} rollback of {plan.target} "
             f"from backup {plan.backup_id}"
             + (f", tables {', '.join(plan.tables)}" if plan.tables else ""),
             f"opened {opened.at} ({age(opened.at)} ago); last entry {journal.entries[-1].at}",
             "done: " + (", ".join(done) or "nothing"),
             "interrupted in: " + (interrupted or "no step (stopped between steps)"),
             "will run: " + ", ".join(s.id + (" (DESTRUCTIVE)" if s.destructive else "")
                                      for s in left)]
    if any(s.destructive for s in left):
        lines.append("!it goes past the point of no return: confirm with the phrase "
                     f"{expected_phrase(plan.kind, plan.target)!r} again")
    return lines
