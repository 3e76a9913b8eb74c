"""Executes a plan: the target lock for the whole run, a journal entry before and after every
step, events on the channel, and resume from the journal after a crash."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from app import faults, logs
from app.errors import BadInput, ConsoleError
from app.events import RunFinished, StepFinished, StepStarted
from app.journal import Journal
from app.lock import TargetLock
from app.rollback.context import (
    EXIT_CODES,
    NeedsOperator,
    Outcome,
    RunContext,
    StepFailed,
    expected_phrase,
)
from app.rollback.plan import Plan
from app.rollback.steps import notify

log = logs.get("runner")


def restore_data(ctx: RunContext) -> None:
    """A resumed run gets back what earlier steps recorded."""
    for entry in ctx.journal.finished_steps().values():
        ctx.data.update(entry.data.get("result", {}))


async def execute(plan: Plan, ctx: RunContext) -> Outcome:
    """Run every step not yet done. Never raises for a step's failure: the outcome says it."""
    journal = ctx.journal
    if journal.last("incident_opened") is None:
        journal.append("incident_opened", target=plan.target, type=plan.kind.value,
                       backup=plan.backup_id, tables=list(plan.tables),
                       steps=[s.id for s in plan.steps])
    else:
        journal.append("incident_resumed", resumed_from=journal.started_not_finished())
        restore_data(ctx)
    done = journal.finished_steps()
    outcome, summary = Outcome.DONE, "rollback completed and validated"
    phrase = expected_phrase(plan.kind, plan.target)
    confirmed_before = any(e.data.get("ok") for e in journal.of_kind("gate"))
    if any(s.destructive for s in plan.steps) and ctx.options.confirm != phrase \
            and not confirmed_before:
        journal.append("gate", ok=False, expected=phrase, typed=ctx.options.confirm)
        return _close(ctx, Outcome.REFUSED,
                      f"the confirmation phrase does not match: type exactly {phrase!r} "
                      "(--confirm). Nothing was changed")
    if not confirmed_before:
        journal.append("gate", ok=True, expected=phrase)
    try:
        async with TargetLock(ctx.cfg.target, journal.incident_id) as lock:
            ctx.lock = lock
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
                ctx.channel.emit(StepStarted(step.id, step.title, index, len(plan.steps),
                                             step.budget_s, step.destructive,
                                             step.point_of_no_return))
                faults.point(f"before:{step.id}")
                journal.append("step_started", step=step.id, destructive=step.destructive)
                if step.point_of_no_return:
                    await notify(ctx, "point_of_no_return", step.title)
                started = time.monotonic()
                before = dict(ctx.data)
                try:
                    result = await step.action(ctx)
                except asyncio.CancelledError:
                    journal.append("step_finished", step=step.id, status="aborted",
                                   elapsed_s=round(time.monotonic() - started, 3))
                    ctx.channel.emit(StepFinished(step.id, "aborted", "aborted by the operator",
                                                  time.monotonic() - started))
                    raise
                except (StepFailed, NeedsOperator) as exc:
                    outcome = (Outcome.FAILED_RESTORED if isinstance(exc, StepFailed)
                               else Outcome.NEEDS_OPERATOR)
                    summary = f"{step.title}: {exc}"
                    journal.append("step_finished", step=step.id, status="failed",
                                   error=str(exc), outcome=outcome.value,
                                   elapsed_s=round(time.monotonic() - started, 3))
                    ctx.channel.emit(StepFinished(step.id, "failed", str(exc),
                                                  time.monotonic() - started))
                    break
                except Exception as exc:  # any failure ends the run, journaled
                    outcome = (Outcome.BAD_INPUT if isinstance(exc, BadInput)
                               else Outcome.NEEDS_OPERATOR)
                    error = str(exc) if isinstance(exc, ConsoleError) else describe(exc)
                    summary = f"{step.title}: {error}"
                    _journal_quietly(journal, "step_finished", step=step.id, status="failed",
                                     error=error, outcome=outcome.value,
                                     elapsed_s=round(time.monotonic() - started, 3))
                    ctx.channel.emit(StepFinished(step.id, "failed", error,
                                                  time.monotonic() - started))
                    break
                elapsed = time.monotonic() - started
                step_result = {k: v for k, v in ctx.data.items()
                               if k not in before or before[k] != v}
                journal.append("step_finished", step=step.id, status="done", summary=result,
                               result=step_result, elapsed_s=round(elapsed, 3))
                ctx.channel.emit(StepFinished(step.id, "done", result, elapsed))
                faults.point(f"after:{step.id}")
    except ConsoleError as exc:  # the lock was refused: nothing ran
        outcome, summary = Outcome(_outcome_for(exc)), str(exc)
    except Exception as exc:  # the journal or lock failed between steps
        outcome, summary = Outcome.NEEDS_OPERATOR, describe(exc)
    return _close(ctx, outcome, summary)


def _close(ctx: RunContext, outcome: Outcome, summary: str) -> Outcome:
    journal = ctx.journal
    if outcome is not Outcome.DONE and ctx.data.get("maintenance") == "on":
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


def _outcome_for(exc: ConsoleError) -> str:
    return {2: Outcome.BAD_INPUT, 3: Outcome.REFUSED}.get(exc.exit_code,
                                                          Outcome.NEEDS_OPERATOR).value
