"""Critical queries (succeed, within budget, vs the backup's latency baseline, and whether an index
they used is gone) and contention (blocking chains, long and idle transactions)."""

from __future__ import annotations

import json
import statistics
from typing import Any

import asyncpg

from app.backups.manifest import time_query
from app.checks.context import APPLICATION_NAME, CheckContext
from app.checks.model import Finding, Kind, Skip, Status
from app.checks.runner import LOCKED, Outcome, blocked_outcome, holders_text, lock_holders
from app.checks.schema import current_indexes, dropped_indexes
from app.secrets import scrub

NOISE_FLOOR_MS = 5.0   # below this, a latency ratio is noise, not a regression
BUDGET_SHARE = 0.25    # a rise counts only once the median is over this share of the budget
SAMPLES = 5            # runs of each critical query; the verdict reads their median


def slow_floor(budget_ms: float) -> float:
    """The latency under which no rise is a regression: a quarter of the query's budget, never
    under NOISE_FLOOR_MS. A busy server turns a 0.1 ms query into 25 ms now and then; against
    a 200 ms budget that is noise, not a forward-fix."""
    return max(NOISE_FLOOR_MS, budget_ms * BUDGET_SHARE)


def slower(ms: float, base: float | None, budget_ms: float, factor: float) -> bool:
    """Slower than at the backup: ``ms`` (the median of the samples) is ``factor`` times the
    latency then, and over ``slow_floor`` of the budget (the budget itself is checked apart)."""
    if not base:
        return False
    return ms > base * factor and ms > slow_floor(budget_ms)


async def measure(conn: asyncpg.Connection, sql: str, n: int = SAMPLES) -> list[float]:
    """``n`` latencies of ``sql`` in milliseconds, one run each (a seam: tests inject samples
    here to play a loaded machine, which a real server cannot be made to be on cue)."""
    return [await time_query(conn, sql, repeat=1) for _ in range(n)]


def median(samples: list[float]) -> float:
    return round(statistics.median(samples), 3)


def latency_findings(name: str, samples: list[float], base: float | None, budget_ms: float,
                     factor: float) -> list[Finding]:
    """The verdict on one query's measured samples: over budget, or a regression against the
    backup's baseline. Judged on the median, so one slow run on a loaded machine is not a
    finding (nor is a whole burst of them, while it stays under ``slow_floor``)."""
    ms = median(samples)
    of = f"median of {len(samples)} runs"
    if ms > budget_ms:
        return [Finding(Kind.PERFORMANCE, f"critical query {name!r} took {ms:.0f} ms ({of}; "
                        f"budget {budget_ms:g} ms)")]
    if base and slower(ms, base, budget_ms, factor):
        return [Finding(Kind.PERFORMANCE, f"critical query {name!r} is {ms / base:.1f}x slower "
                        f"than at the backup ({ms:.1f} vs {base:.1f} ms, {of}; budget "
                        f"{budget_ms:g} ms)")]
    return []


def plan_relations(plan: Any) -> set[str]:
    """schema.table of every relation an EXPLAIN (FORMAT JSON) plan reads."""
    found: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if "Relation Name" in node:
            found.add(f"{node.get('Schema', 'public')}.{node['Relation Name']}")
        for child in node.get("Plans", []):
            walk(child)

    doc = json.loads(plan) if isinstance(plan, str) else plan
    walk(doc[0]["Plan"])
    return found


async def critical_queries(ctx: CheckContext) -> Outcome:
    queries = ctx.config.target.critical_queries
    if not queries:
        raise Skip("no target.critical_queries in the config")
    baselines = ctx.baseline.manifest.state.query_baselines_ms if ctx.baseline else {}
    findings: list[Finding] = []
    results: list[dict[str, Any]] = []
    blocked: list[str] = []
    slow_factor = ctx.settings.slow_factor
    async with ctx.pool.acquire() as conn:
        gone = dropped_indexes(ctx.baseline, await current_indexes(conn)) if ctx.baseline else {}
        for q in queries:
            entry: dict[str, Any] = {"name": q.name, "sql": q.sql, "budget_ms": q.budget_ms,
                                     "baseline_ms": baselines.get(q.name)}
            results.append(entry)
            try:
                plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {q.sql}")
                entry["reads"] = sorted(plan_relations(plan))
                entry["samples_ms"] = samples = await measure(conn, q.sql)
                entry["ms"] = median(samples)
            except LOCKED:
                blocked.append(q.name)
                entry["error"] = "lock or statement timeout"
                continue
            except asyncpg.PostgresError as exc:
                entry["error"] = f"{type(exc).__name__}: {scrub(str(exc))}"
                findings.append(Finding(Kind.CRITICAL_BROKEN,
                                        f"critical query {q.name!r} fails: {entry['error']}"))
                continue
            lost = sorted(i for i, t in gone.items() if t in entry["reads"])
            if lost:
                entry["indexes_dropped"] = lost
                findings.append(Finding(Kind.PERFORMANCE, f"critical query {q.name!r} reads "
                                        f"tables whose index {', '.join(lost)} was dropped "
                                        "since the backup"))
            findings += latency_findings(q.name, samples, baselines.get(q.name), q.budget_ms,
                                         slow_factor)
    evidence: dict[str, Any] = {"queries": results}
    if blocked:
        msg, holders = await blocked_outcome(ctx, "critical queries " + ", ".join(blocked))
        evidence["lock_holders"] = holders
        findings.append(Finding(Kind.CONTENTION, msg))
    status = (Status.FAIL if any(f.kind is Kind.CRITICAL_BROKEN for f in findings) else
              Status.ERROR if blocked else Status.WARN if findings else Status.PASS)
    summary = ("; ".join(f.summary for f in findings[:2]) if findings else
               f"{len(queries)} critical queries succeed within budget")
    return Outcome(status, summary, evidence, findings)


async def locks(ctx: CheckContext) -> Outcome:
    s = ctx.settings
    sql = ("SELECT pid, usename, application_name, state, wait_event_type, "
           "pg_blocking_pids(pid) AS blocked_by, left(query, 200) AS query, "
           "extract(epoch FROM now() - xact_start)::int AS transaction_age_s, "
           "extract(epoch FROM now() - state_change)::int AS state_age_s "
           "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
           " AND backend_type = 'client backend'")
    async with ctx.pool.acquire() as conn:
        sessions = [dict(r) for r in await conn.fetch(sql)]
        strong = await lock_holders(conn)
    ours = [x for x in sessions if x["application_name"] == APPLICATION_NAME]
    others = [x for x in sessions if x["application_name"] != APPLICATION_NAME]
    blocked = [x for x in sessions if x["blocked_by"]]
    long_tx = [x for x in others if (x["transaction_age_s"] or 0) > s.long_transaction_s]
    idle_tx = [x for x in others if x["state"] and x["state"].startswith("idle in transaction")
               and (x["state_age_s"] or 0) > 60]
    findings: list[Finding] = []
    if blocked:
        findings.append(Finding(Kind.CONTENTION, f"{len(blocked)} sessions wait on a lock ("
                                + ", ".join(f"pid {x['pid']} blocked by {list(x['blocked_by'])}"
                                            for x in blocked[:3]) + ")"))
    if strong:
        findings.append(Finding(Kind.CONTENTION, f"strong table locks held: "
                                f"{holders_text(strong)}"))
    if long_tx:
        findings.append(Finding(Kind.CONTENTION, f"{len(long_tx)} transactions older than "
                                f"{s.long_transaction_s} s"))
    if idle_tx:
        findings.append(Finding(Kind.CONTENTION, f"{len(idle_tx)} sessions idle in transaction "
                                "for over 60 s"))
    for row in sessions:
        row["blocked_by"] = list(row["blocked_by"])
    evidence = {"sessions": len(others), "assess_sessions": len(ours), "blocked": blocked,
                "strong_locks": strong, "long_transactions": long_tx,
                "idle_in_transaction": idle_tx, "sql": sql}
    summary = ("; ".join(f.summary for f in findings[:2]) if findings else
               f"{len(others)} other sessions, no blocking, no long or idle transactions")
    return Outcome(Status.WARN if findings else Status.PASS, summary, evidence, findings)


__all__ = ["blocked_outcome", "critical_queries", "locks", "plan_relations"]
