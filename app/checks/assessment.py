"""One assessment: resolve the baseline, open read-only sessions, run the checks concurrently,
stream each result, and place the incident in the decision matrix."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from app import catalog
from app import decision as decision_mod  # a module: app.decision imports app.checks.model
from app.capabilities import FULL, capabilities
from app.checks.access import authentication, rls
from app.checks.context import (
    WOULD_WRITE,
    CheckContext,
    check_identity,
    checks_read_only,
    open_assess_pool,
    resolve_baseline,
    resolve_row_set,
    role_facts,
)
from app.checks.database import connectivity, data_integrity, writes
from app.checks.http import app_endpoints, error_rate
from app.checks.keys import foreign_keys
from app.checks.model import CheckResult
from app.checks.performance import critical_queries, locks
from app.checks.runner import CheckSpec, stream_checks
from app.checks.schema import schema
from app.config import Config
from app.db import TargetUnreachable

ASSESS_CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("connectivity", "Complete system failure", connectivity),
    CheckSpec("schema", "Schema changes causing issues, data remains intact", schema),
    CheckSpec("data_integrity", "Data corruption detected", data_integrity),
    CheckSpec("foreign_keys", "Foreign key constraint violations preventing normal operation",
              foreign_keys),
    CheckSpec("rls", "RLS policies blocking legitimate user access", rls),
    CheckSpec("auth", "Authentication system failure", authentication),
    CheckSpec("critical_queries", "Minor performance degradation / critical functionality",
              critical_queries),
    CheckSpec("app_endpoints", "Critical application functionality broken", app_endpoints),
    CheckSpec("error_rate", "Elevated error rates but service functional", error_rate),
    CheckSpec("locks", "Performance issues that might resolve", locks),
    CheckSpec("writes", "What a data rollback would lose", writes),
)
CHECKS_BY_NAME = {c.name: c for c in ASSESS_CHECKS}

OnResult = Callable[[CheckResult], None]


@dataclass
class Assessment:
    target: str
    backup: str | None
    started_at: str
    results: list[CheckResult]
    decision: decision_mod.Decision
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The CLI's JSON: tier, recommended_type, tables, findings, then the details."""
        d = self.decision.to_dict()
        return {"tier": d.pop("tier"), "recommended_type": d.pop("recommended_type"),
                "tables": d.pop("tables"),
                "findings": [r.to_dict() for r in self.results],
                "target": self.target, "backup": self.backup, "started_at": self.started_at,
                **d}


class WouldWrite(httpx.RequestError):
    """A check tried a request that can change the app while checks are read-only."""


async def _refuse_writes(request: httpx.Request) -> None:
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        raise WouldWrite(f"{WOULD_WRITE}: {request.method} {request.url.path} refused in a "
                         "read-only assessment", request=request)


@asynccontextmanager
async def open_context(config: Config, backup_id: str | None = None, *, size: int = 12,
                       transport: httpx.AsyncBaseTransport | None = None,
                       read_only: bool | None = None) -> AsyncIterator[CheckContext]:
    """Baseline, read-only pool and HTTP client; raises BadInput / TargetUnreachable (exit 2)
    before any check runs. ``read_only`` (default: the process-wide ``read_only_checks``):
    checks that would write are not run, and the HTTP client refuses any request but GET."""
    if read_only is None:
        read_only = checks_read_only()
    baseline = resolve_baseline(config.target.backups_root, backup_id)
    rows_from = resolve_row_set(config.target.backups_root, backup_id, baseline)
    pool = await open_assess_pool(config, size)
    http: httpx.AsyncClient | None = None
    try:
        async with pool.acquire() as conn:
            if baseline is not None:
                check_identity(baseline, await catalog.identity(conn))
            role = await role_facts(conn)
        if config.app is not None:
            # GET only, except the login probe (refused, and not tried, when read-only); no
            # redirects to somewhere unexpected.
            http = httpx.AsyncClient(base_url=config.app.base_url, timeout=config.app.timeout_s,
                                     transport=transport, follow_redirects=False,
                                     event_hooks={"request": [_refuse_writes]} if read_only
                                     else None)
        yield CheckContext(config, pool, role, baseline, http, read_only, rows_from)
    finally:
        if http is not None:
            await http.aclose()
        await pool.close()


async def collect(ctx: CheckContext, specs: Sequence[CheckSpec],
                  on_result: OnResult | None = None) -> list[CheckResult]:
    results: list[CheckResult] = []
    ctx.share_scans([s.name for s in specs])
    async for result in stream_checks(ctx, list(specs)):
        results.append(result)
        if on_result is not None:
            on_result(result)
    order = {s.name: i for i, s in enumerate(specs)}
    return sorted(results, key=lambda r: order[r.check])


async def run_assessment(config: Config, backup_id: str | None = None, *,
                         on_result: OnResult | None = None,
                         checks: Sequence[CheckSpec] | None = None,
                         transport: httpx.AsyncBaseTransport | None = None,
                         read_only: bool | None = None) -> Assessment:
    """Assess the target read-only and decide: the entry point for the TUI and the CLI.
    ``read_only``: see ``open_context``."""
    specs = list(checks if checks is not None else ASSESS_CHECKS)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        return await _assess(config, backup_id, specs, started, on_result, transport,
                             read_only)
    except TargetUnreachable as exc:
        if not exc.down:   # a wrong password or database name stays bad input (exit 2)
            raise
        results = decision_mod.unreachable_results(
            [(s.name, s.symptom) for s in specs], str(exc))
        for result in results:
            if on_result is not None:
                on_result(result)
        return Assessment(config.target.name, backup_id, started, results,
                          decision_mod.decide(results))


async def _assess(config: Config, backup_id: str | None, specs: list[CheckSpec], started: str,
                  on_result: OnResult | None, transport: httpx.AsyncBaseTransport | None,
                  read_only: bool | None) -> Assessment:
    async with open_context(config, backup_id, size=len(specs) + 1,
                            transport=transport, read_only=read_only) as ctx:
        results = await collect(ctx, specs, on_result)
        if ctx.baseline is not None:
            tables: list[str] | None = sorted(ctx.baseline.manifest.state.tables)
            set_id: str | None = ctx.baseline.set_id
        elif ctx.rows_from is not None:   # a hand-made set: its data dumps are the baseline
            data = next((r for r in results if r.check == "data_integrity"), None)
            tables = sorted(data.evidence.get("tables", {})) if data else []
            tables = tables or None
            set_id = ctx.rows_from.set_id
        else:
            tables, set_id = None, None
        async with ctx.pool.acquire() as conn:   # Type 3 as this role (issue 19)
            full = (await capabilities(conn))[FULL]
            sources = await _repair_sources(config, conn, set_id)
    decision = decision_mod.decide(results, tables, full, sources)
    return Assessment(config.target.name, set_id, started, results, decision)


async def _repair_sources(config: Config, conn: asyncpg.Connection,
                          set_id: str | None) -> decision_mod.RepairSources:
    """What a repair could run from here: [pitr] and the marks made on this database, and the
    set compared with. The marks are read from their journal as app.pitr.marks.marks_on reads
    it (app.pitr sits above the checks: its journal's path and entries, not its module)."""
    marks: tuple[tuple[str, datetime], ...] = ()
    if config.pitr is not None:
        from app.journal import Journal, JournalCorrupt
        from app.paths import state_dir

        try:
            ident = await catalog.identity(conn)
            entries = Journal(state_dir() / "marks" / "journal.jsonl").of_kind("mark")
            marks = tuple((str(e.data["label"]), datetime.fromisoformat(str(e.data["at"])))
                          for e in entries
                          if e.data.get("system_identifier") == ident.system_identifier
                          and e.data.get("database") == ident.name)
        except (OSError, ValueError, KeyError, JournalCorrupt):
            marks = ()   # unreadable: the decision then says no mark is on this database
    return decision_mod.RepairSources(config.target.name,
                                      config.pitr.engine if config.pitr else None,
                                      marks, set_id)
