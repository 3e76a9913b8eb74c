"""Executes a plan: the target lock for the whole run, a journal entry before and after every
step, events on the channel, and resume from the journal after a crash."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from app import faults, logs
from app.catalog import DatabaseIdentity, identity
from app.errors import BadInput, ConsoleError
from app.events import RunFinished, StepFinished, StepStarted
from app.exits import outcome_of
from app.journal import Journal, find_unfinished, newest_incident, same_database
from app.journal_entries import IncidentOpened
from app.lock import TargetLock
from app.rollback.context import (
    EXIT_CODES,
    Outcome,
    RunContext,
    StepFailed,
    expected_phrase,
)
from app.rollback.plan import Plan, Step
from app.rollback.steps import maintenance_back_on, notify

log = logs.get("runner")


def restore_data(ctx: RunContext) -> None:
    """A resumed run gets back what earlier steps recorded."""
    ctx.restore(ctx.journal.recorded())


async def execute(plan: Plan, ctx: RunContext) -> Outcome:
    """Run every step not yet done. Never raises for a step's failure: the outcome says it.

    Nothing is written to any journal before the phrase is right and the target lock is held:
    a refused run opens no incident, and a refused resume leaves the incident (perhaps another
    console's live run) as it was."""
    journal = ctx.journal
    resuming = journal.last("incident_opened") is not None
    phrase = expected_phrase(plan.kind, plan.target)
    remaining = [s for s in plan.steps if s.id not in journal.finished_steps()]
    if any(s.destructive for s in remaining) and ctx.options.confirm != phrase:
        what = (f"resuming incident {journal.incident_id} goes on to destructive steps "
                f"({', '.join(s.id for s in remaining if s.destructive)}): confirm again, "
                if resuming else "the confirmation phrase does not match: ")
        return _refuse(ctx, Outcome.REFUSED, f"{what}type exactly {phrase!r} (--confirm). "
                       "Nothing was changed")
    outcome, summary = Outcome.DONE, "rollback completed and validated"
    try:
        async with TargetLock(ctx.cfg.target, journal.incident_id) as lock:
            ctx.lock = lock
            refusal = await _bind(ctx, plan, lock, resuming)
            if refusal is not None:
                return _refuse(ctx, *refusal)
            done = journal.finished_steps()
            for index, step in enumerate(plan.steps, start=1):
                ctx.step = step.id
                if step.id in done:
                    status = done[step.id].data.get("status", "done")
                    ctx.channel.emit(StepFinished(step.id, status, "before the resume", 0))
                    continue
                if ctx.pause_requested:
                    outcome = Outcome.NEEDS_OPERATOR
                    summary = f"paused by the operator before {step.title!r}; resume to go on"
                    break
                ended = await _run_step(ctx, step, index, len(plan.steps), resuming)
                if ended is not None:
                    outcome, summary = ended
                    break
    except Exception as exc:  # the lock refused or lost, the journal or the catalog failed
        outcome = outcome_of(exc.exit_code) if isinstance(exc, ConsoleError) \
            else Outcome.NEEDS_OPERATOR
        summary = explain(exc)
        if not ctx.step:   # before the first step: nothing ran, no incident to close
            return _refuse(ctx, outcome, summary + _way_on(ctx, exc))
    if outcome is Outcome.DONE and plan.holds_maintenance:   # DONE only after the last phase
        from app.rollback.schema import phase_one_summary

        outcome = Outcome.PHASE_VALIDATED
        summary = phase_one_summary(ctx.cfg, plan, ctx.maintenance)
    return _close(ctx, outcome, summary)


async def _run_step(ctx: RunContext, step: Step, index: int, total: int, resuming: bool
                    ) -> tuple[Outcome, str] | None:
    """One step, journaled before and after: None once it is done, else how the run ends. A
    cancelled step is journaled as aborted and the cancellation goes on."""
    journal = ctx.journal
    ctx.channel.emit(StepStarted(step.id, step.title, index, total, step.budget_s,
                                 step.destructive, step.point_of_no_return))
    faults.point(f"before:{step.id}")
    journal.append("step_started", step=step.id, destructive=step.destructive)
    if step.point_of_no_return:
        await notify(ctx, "point_of_no_return", step.title)
    started = time.monotonic()
    before = ctx.recorded()
    try:
        if step.destructive:
            await ctx.ensure_lock(step.id)
            if resuming:
                await maintenance_back_on(ctx)
        result = await step.action(ctx)
    except asyncio.CancelledError:
        journal.append("step_finished", step=step.id, status="aborted",
                       elapsed_s=round(time.monotonic() - started, 3))
        ctx.channel.emit(StepFinished(step.id, "aborted", "aborted by the operator",
                                      time.monotonic() - started))
        raise
    except Exception as exc:  # any failure ends the run, journaled
        outcome, error = _failed(exc), explain(exc)
        _journal_quietly(journal, "step_finished", step=step.id, status="failed", error=error,
                         outcome=outcome.value, elapsed_s=round(time.monotonic() - started, 3))
        ctx.channel.emit(StepFinished(step.id, "failed", error, time.monotonic() - started))
        return outcome, f"{step.title}: {error}"
    elapsed = time.monotonic() - started
    step_result = {k: v for k, v in ctx.recorded().items()
                   if k not in before or before[k] != v}
    journal.append("step_finished", step=step.id, status="done", summary=result,
                   result=step_result, elapsed_s=round(elapsed, 3))
    ctx.channel.emit(StepFinished(step.id, "done", result, elapsed))
    faults.point(f"after:{step.id}")
    return None


def _failed(exc: Exception) -> Outcome:
    """A step's failure as the run's outcome: a step that put everything back (StepFailed)
    exits 4, bad input 2, anything else needs the operator (5)."""
    if isinstance(exc, StepFailed):
        return Outcome.FAILED_RESTORED
    return Outcome.BAD_INPUT if isinstance(exc, BadInput) else Outcome.NEEDS_OPERATOR


def _way_on(ctx: RunContext, exc: Exception) -> str:
    """What the operator does after a run that could not start: nothing was changed by it, but
    a resumed incident may have left the app in maintenance."""
    if isinstance(exc, ConsoleError) and exc.exit_code in (2, 3):
        return ""   # the refusal names its own fix
    text = ("; the journal could not record this (the state directory's disk, see "
            "ROLLBACK_CONSOLE_HOME): nothing was changed by this run; free space there, then "
            "run it again" if isinstance(exc, OSError) else
            "; nothing was changed by this run: fix the cause (see the log), then run it again")
    if ctx.journal.recorded().get("maintenance") == "on":
        text += ("; the app is still in maintenance mode from the interrupted run "
                 "(`rollback-console maintenance off` when the database is fit to serve)")
    return text


async def _bind(ctx: RunContext, plan: Plan, lock: TargetLock, resuming: bool
                ) -> tuple[Outcome, str] | None:
    """Under the target lock: the database's identity, then one incident per database. A new
    run is refused while another incident on this database is unfinished; a resume goes on
    only with its own incident, re-read (another console may have moved it on), on the
    database it was opened on. Returns the refusal, or None once the incident is journaled."""
    journal = ctx.journal
    assert lock.conn is not None
    database = await identity(lock.conn)
    if resuming:
        ended_here = journal.closed   # this console closed it and the operator goes on
        journal.reload()
        opened = journal.last("incident_opened")
        assert opened is not None
        if journal.closed and not ended_here:
            return Outcome.REFUSED, (f"incident {journal.incident_id} has ended meanwhile; "
                                     "nothing to resume. Nothing was changed")
        if not same_database(opened.data, database):
            return Outcome.REFUSED, (
                f"incident {journal.incident_id} was opened on another database than "
                f"{database.name} (system id {database.system_identifier}, oid {database.oid})"
                ": refusing to replay it here. Nothing was changed")
        journal.append("incident_resumed", resumed_from=journal.started_not_finished(),
                       confirmed=ctx.options.confirm == expected_phrase(plan.kind, plan.target))
        restore_data(ctx)
        return None
    other = find_unfinished(database)
    if other is not None and other.dir != journal.dir:
        return Outcome.REFUSED, (
            f"incident {other.id} on {database.name} (opened {other.opened_at}) is unfinished"
            + (f" and its journal fails verification ({other.problem})" if other.problem
               else "") + ": only one incident per database. `rollback-console resume` goes "
            f"on with it, or `rollback-console abandon {other.id} --reason '...'` sets it "
            "aside. Nothing was changed")
    journal.append("incident_opened", **_opening(ctx, plan, database).fields())
    journal.append("gate", ok=True, expected=expected_phrase(plan.kind, plan.target))
    return None


def _opening(ctx: RunContext, plan: Plan, database: DatabaseIdentity) -> IncidentOpened:
    """Everything that shapes the plan, as the gate approved it: a resume builds the same plan
    from it (``app.rollback.resume.prepare_resume``)."""
    o = ctx.options
    record = getattr(ctx.backup, "journal_record", None)
    return IncidentOpened(
        type=str(plan.kind), target=plan.target, backup=plan.backup_id,
        source=record() if record is not None else {"id": plan.backup_id},
        tables=plan.tables, steps=tuple(s.id for s in plan.steps),
        database={"system_identifier": database.system_identifier, "oid": database.oid,
                  "name": database.name},
        keep_maintenance=plan.holds_maintenance, follows=_held_phase(database),
        leaves_rows_in_backup=plan.leaves_rows_in_backup, allow_in_place=o.allow_in_place,
        allow_after_migration=o.allow_after_migration,
        migration_at=o.migration_at.isoformat() if o.migration_at else None,
        after=o.after, damage=o.damage, conflicts=o.conflicts, fire_triggers=o.fire_triggers)


def _held_phase(database: DatabaseIdentity) -> str | None:
    """The incident this run is the next phase of: the newest one on the database, when it
    ended as phase 1 of 2 with maintenance held on for this one."""
    newest = newest_incident(database)
    closed = newest.last("incident_closed") if newest is not None else None
    if newest is None or closed is None or not newest.closed:
        return None
    return newest.incident_id if closed.data.get("outcome") == Outcome.PHASE_VALIDATED.value \
        else None


def followed_by(journal: Journal) -> str | None:
    """The incident that took up this phase 1 of 2 (its opening says it follows this one)."""
    for path in journal.dir.parent.glob("*/journal.jsonl"):
        if path.parent == journal.dir:
            continue
        try:
            opened = Journal(path).last("incident_opened")
        except (ConsoleError, OSError):
            continue
        if opened is not None and opened.data.get("follows") == journal.incident_id:
            return path.parent.name
    return None


def _refuse(ctx: RunContext, outcome: Outcome, summary: str) -> Outcome:
    """A run that never started: told and logged, and journaled nowhere."""
    ctx.channel.emit(RunFinished(outcome.value, EXIT_CODES[outcome], summary, ""))
    log.info("run refused", incident=ctx.journal.incident_id, outcome=outcome.value,
             summary=summary)
    return outcome


def _close(ctx: RunContext, outcome: Outcome, summary: str) -> Outcome:
    journal = ctx.journal
    if outcome not in (Outcome.DONE, Outcome.PHASE_VALIDATED) \
            and ctx.maintenance == "on":
        summary += ("; the app is still in maintenance mode: "
                    + ("`rollback-console resume` goes on, or " if outcome is
                       Outcome.NEEDS_OPERATOR else "")
                    + "`rollback-console maintenance off` when the database is fit to serve")
        ctx.log("the app is still in maintenance mode", "warning")
    kind = "incident_closed" if outcome is not Outcome.NEEDS_OPERATOR else "incident_paused"
    if not _journal_quietly(journal, kind, outcome=outcome.value,
                            exit_code=EXIT_CODES[outcome], summary=summary):
        outcome = Outcome.NEEDS_OPERATOR
        summary += (f"; the journal {journal.path} could not record this end (see the log): "
                    "free space there before `rollback-console resume`")
    ctx.channel.emit(RunFinished(outcome.value, EXIT_CODES[outcome], summary,
                                 journal.incident_id))
    log.info("run finished", incident=journal.incident_id, outcome=outcome.value)
    return outcome


def describe(exc: BaseException) -> str:
    """An unexpected failure in one line: its type and message, never a traceback."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}"


def explain(exc: Exception) -> str:
    """A failure in one line: a domain error's own message (it names the fix), else its type
    and message."""
    return str(exc) if isinstance(exc, ConsoleError) else describe(exc)


def _journal_quietly(journal: Journal, kind: str, **data: Any) -> bool:
    """Append, but a journal that cannot be written (a full disk) must not stop the run from
    ending with its outcome: say so in the log and return False."""
    try:
        journal.append(kind, **data)
    except OSError as exc:
        log.error("journal write failed", kind=kind, error=describe(exc))
        return False
    return True


def skip_step(ctx: RunContext, step_id: str, reason: str) -> None:
    """The operator skips a step, with a reason; journaled, and shown in the report."""
    if not reason.strip():
        raise ConsoleError("skipping a step needs a reason (it goes into the journal)")
    ctx.journal.append("step_finished", step=step_id, status="skipped", reason=reason.strip())
