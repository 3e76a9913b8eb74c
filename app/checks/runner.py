"""Run checks concurrently, each on its own pooled connection and under its own deadline, and hand
out results as they complete (so a screen can show them one by one)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from app.checks.context import APPLICATION_NAME, CheckContext
from app.checks.model import CheckResult, Finding, Kind, Skip, Status
from app.secrets import scrub

# what a statement raises when it gave up on a lock (lock_timeout) or ran too long
LOCKED = (asyncpg.LockNotAvailableError, asyncpg.QueryCanceledError)


@dataclass
class Outcome:
    """What a check function returns; the runner adds the name, symptom and timing."""

    status: Status
    summary: str
    evidence: dict[str, Any]
    findings: list[Finding]


CheckFn = Callable[[CheckContext], Awaitable[Outcome]]


@dataclass(frozen=True)
class CheckSpec:
    name: str
    symptom: str          # the runbook's words
    fn: CheckFn


async def lock_holders(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Other sessions holding a strong table lock in this database: who a lock wait waits on."""
    rows = await conn.fetch(
        "SELECT l.pid, l.mode, l.relation::regclass::text AS relation, a.state, a.usename, "
        "left(a.query, 200) AS query, "
        "extract(epoch FROM now() - a.xact_start)::int AS transaction_age_s "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.granted AND l.locktype = 'relation' AND l.mode IN ('AccessExclusiveLock', "
        "'ExclusiveLock', 'ShareRowExclusiveLock', 'ShareLock') "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.pid <> pg_backend_pid() AND a.application_name <> $1 ORDER BY 1", APPLICATION_NAME)
    return [dict(r) for r in rows]


def holders_text(holders: list[dict[str, Any]]) -> str:
    if not holders:
        return "no other session holds a strong lock now"
    return "; ".join(f"pid {h['pid']} holds {h['mode']} on {h['relation']} ({h['state']}, "
                     f"transaction {h['transaction_age_s']}s old)" for h in holders[:3])


async def blocked_outcome(ctx: CheckContext, what: str) -> tuple[str, list[dict[str, Any]]]:
    """Name who holds the lock we timed out on (read on a fresh connection)."""
    try:
        async with ctx.pool.acquire() as conn:
            holders = await lock_holders(conn)
    except (asyncpg.PostgresError, OSError, TimeoutError):
        holders = []
    return f"{what}: waited {ctx.settings.lock_timeout_ms} ms for a lock, gave up; " \
           f"{holders_text(holders)}", holders


async def run_one(spec: CheckSpec, ctx: CheckContext) -> CheckResult:
    started = time.perf_counter()
    status, summary = Status.ERROR, ""
    evidence: dict[str, Any] = {}
    findings: list[Finding] = []
    try:
        async with asyncio.timeout(ctx.settings.check_timeout_s):
            out = await spec.fn(ctx)
        status, summary, evidence, findings = out.status, out.summary, out.evidence, out.findings
    except Skip as exc:
        status, summary = Status.SKIP, f"not run: {exc}"
        evidence = {"not_run": str(exc), "privilege": exc.privilege}
        if exc.privilege:
            findings = [Finding(Kind.INCOMPLETE, f"{spec.name} could not run: {exc}")]
    except asyncpg.InsufficientPrivilegeError as exc:
        status = Status.SKIP
        summary = (f"not run: role {ctx.role.name!r} lacks a privilege ({scrub(str(exc))}); "
                   "connect as a role that has it")
        evidence = {"not_run": summary, "privilege": True}
        findings = [Finding(Kind.INCOMPLETE, f"{spec.name} could not run: {scrub(str(exc))}")]
    except asyncpg.LockNotAvailableError:
        summary, holders = await blocked_outcome(ctx, spec.name)
        evidence = {"lock_holders": holders}
        findings = [Finding(Kind.CONTENTION, summary)]
    except asyncpg.QueryCanceledError:
        summary = (f"a statement ran past statement_timeout ({ctx.settings.statement_timeout_ms}"
                   " ms): raise assess.statement_timeout_ms if the tables are large")
        findings = [Finding(Kind.INCOMPLETE, f"{spec.name}: {summary}")]
    except TimeoutError:
        summary = (f"did not finish within {ctx.settings.check_timeout_s:g} s "
                   "(assess.check_timeout_s)")
        findings = [Finding(Kind.INCOMPLETE, f"{spec.name}: {summary}")]
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        summary = f"failed: {type(exc).__name__}: {scrub(str(exc))}"
        findings = [Finding(Kind.INCOMPLETE, f"{spec.name}: {summary}")]
    return CheckResult(spec.name, status, summary, spec.symptom, evidence, findings,
                       (time.perf_counter() - started) * 1000)


async def stream_checks(ctx: CheckContext, specs: list[CheckSpec]) -> AsyncIterator[CheckResult]:
    """Start every check at once; yield each result as soon as it is ready."""
    tasks = [asyncio.create_task(run_one(spec, ctx), name=f"check:{spec.name}")
             for spec in specs]
    try:
        for next_done in asyncio.as_completed(tasks):
            yield await next_done
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
