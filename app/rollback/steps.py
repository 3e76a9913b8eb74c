"""Steps every rollback type shares: maintenance mode on and off (verified), notifications, and
connections to the target for a step."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path

import asyncpg

from app.backups.tools import run_tool
from app.comms import Maintenance, MaintenanceFailed, Notifier
from app.config import AppEndpoints, Config
from app.db import connect
from app.errors import BadInput, ConsoleError
from app.journal import Journal, journaled
from app.lock import TargetLock
from app.rollback.context import LockLost, NeedsOperator, RunContext

STEP_TIMEOUTS = {"lock_timeout": "5s", "statement_timeout": "0",
                 "idle_in_transaction_session_timeout": "0"}


@asynccontextmanager
async def target_conn(ctx: RunContext, database: str | None = None
                      ) -> AsyncIterator[asyncpg.Connection]:
    """A connection for one step, named so other sessions see who it is (pg_stat_activity)."""
    settings = {"application_name": f"rollback-console {ctx.journal.incident_id} {ctx.step}"[:63],
                **STEP_TIMEOUTS}
    conn = await connect(ctx.cfg.target, database=database, server_settings=settings)
    try:
        yield conn
    finally:
        await conn.close()


async def notify(ctx: RunContext, event: str, detail: str = "") -> None:
    """Best effort: a failed notification is a warning in the log, never a stop."""
    notifier = Notifier(ctx.cfg.notifications, ctx.cfg.target.name)
    try:
        results = await notifier.send(event, detail)
    finally:
        await notifier.aclose()
    for r in results:
        ctx.log(r.summary, "info" if r.ok else "warning")
    ctx.journal.append("notified", step=ctx.step, event=event,
                       results=[{"ok": r.ok, "summary": r.summary} for r in results])


async def maintenance_on(ctx: RunContext) -> str:
    """The runbook's Step 2: maintenance mode and user communication."""
    await notify(ctx, "started", f"{ctx.kind} rollback, incident {ctx.journal.incident_id}")
    if ctx.cfg.app is None:
        ctx.log("no [app] in the config: maintenance mode is not switched", "warning")
        return "skipped: no application configured"
    m = Maintenance(ctx.cfg.app)
    try:
        found = await _found_on(ctx, m)
        if found:
            return found
        async with ctx.checked_action("maintenance_on",
                                      url=ctx.cfg.app.base_url + ctx.cfg.app.maintenance):
            result = await m.enable()
    except MaintenanceFailed as exc:
        if ctx.options.maintenance_failure == "continue":
            ctx.log(f"maintenance mode failed, going on as --maintenance-failure=continue "
                    f"says: {exc}", "warning")
            ctx.maintenance = "failed"
            return f"maintenance mode FAILED (continuing as asked): {exc}"
        raise NeedsOperator(f"{exc}. Decide: fix the app's maintenance switch and resume, or "
                            "resume with --maintenance-failure=continue") from None
    finally:
        await m.aclose()
    ctx.maintenance = "on"
    ctx.log(result.summary)
    return result.summary


async def _found_on(ctx: RunContext, m: Maintenance) -> str | None:
    """The app already in maintenance (held on by phase 1 of 2, or switched on by hand):
    verified (the switch says on and the API answers 503) and journaled, not switched again.
    None when it is off, or on without taking effect (then it is switched on as usual)."""
    if not await m.status():
        return None
    probe = await m.health()
    if probe.status != 503:
        return None
    opened = ctx.journal.last("incident_opened")
    held_by = opened.data.get("follows") if opened is not None else None
    ctx.journal.append("maintenance_verified", step=ctx.step, on=True, api_status=503,
                       held_by=held_by)
    ctx.maintenance = "on"
    summary = ("maintenance mode is already on" + (f" (held by phase 1, incident {held_by})"
                                                   if held_by else "")
               + ": verified, the API answers 503; not switched again")
    ctx.log(summary)
    return summary


async def hold_maintenance(ctx: RunContext) -> str:
    """Phase 1 of 2's last step, instead of the recovery: the database is only half back (rows
    are still in the backup), so the app stays in maintenance for phase 2, which switches it
    off after validating. The app is asked that it is still on; the hold is journaled."""
    tables = [t.replace('"', "") for t in ctx.followup_tables]
    if ctx.cfg.app is None:
        return "no application configured: no maintenance mode to keep on for phase 2"
    m = Maintenance(ctx.cfg.app)
    try:
        on = await m.status()
    except MaintenanceFailed as exc:
        raise NeedsOperator(f"{exc}; the schema is rolled back, phase 2 is next") from None
    finally:
        await m.aclose()
    ctx.journal.append("maintenance_held", step=ctx.step, on=on, for_phase=2, tables=tables)
    if not on:
        ctx.log("maintenance mode is off (switched off by hand?): phase 2 switches it on "
                "again before it replaces anything", "warning")
        ctx.maintenance = "off"
        return "maintenance mode is OFF (not held): phase 2 switches it on again"
    ctx.log("maintenance stays on for phase 2 (the partial data rollback of "
            f"{', '.join(tables) or 'the tables left empty'}): it switches it off after "
            "validating", "warning")
    return "maintenance stays on for phase 2; not switched off, channels not told 'completed'"


async def maintenance_back_on(ctx: RunContext) -> None:
    """Before a destructive action of a resumed run: the run switched maintenance on, but the
    operator may have switched it off by hand after the stop (``maintenance off`` is allowed
    then). The app must not serve while the database is replaced: switch it on again,
    journaled. Does nothing when the run never switched it on, or it is still on."""
    if ctx.cfg.app is None or ctx.maintenance != "on":
        return
    m = Maintenance(ctx.cfg.app)
    try:
        if await m.status():
            return
        ctx.log("maintenance mode was switched off since this run switched it on: on again "
                "before the next destructive action", "warning")
        async with ctx.checked_action("maintenance_on", again=True,
                                      url=ctx.cfg.app.base_url + ctx.cfg.app.maintenance):
            await m.enable()
    except MaintenanceFailed as exc:
        raise NeedsOperator(f"{exc}. The app is out of maintenance and the next action "
                            "replaces data: fix the switch and resume") from None
    finally:
        await m.aclose()


async def recovery(ctx: RunContext) -> str:
    """The runbook's Step 5: maintenance off, critical endpoints answer, users told."""
    if ctx.cfg.app is None:
        await notify(ctx, "completed")
        return "no application configured; nothing to switch back"
    m = Maintenance(ctx.cfg.app)
    try:
        if ctx.maintenance == "on" and not await m.status():
            ctx.log("maintenance mode was already switched off (by the operator, "
                    "`rollback-console maintenance off`); checking the app")
        elif ctx.maintenance == "on":
            async with ctx.checked_action("maintenance_off",
                                          url=ctx.cfg.app.base_url + ctx.cfg.app.maintenance):
                result = await m.disable()
            ctx.log(result.summary)
        failures = []
        for path in (ctx.cfg.app.health, *ctx.cfg.app.critical):
            resp = await m.client.get(ctx.cfg.app.base_url + path)
            ctx.log(f"GET {path} -> {resp.status_code}")
            if resp.status_code != 200:
                failures.append(f"{path} answered {resp.status_code}")
    except MaintenanceFailed as exc:
        raise NeedsOperator(f"{exc}; the database is rolled back, the app is not back yet") \
            from None
    finally:
        await m.aclose()
    ctx.maintenance = "off"
    if failures:
        raise NeedsOperator("the app is out of maintenance but " + "; ".join(failures))
    await notify(ctx, "completed")
    return "maintenance mode off; health and critical endpoints answer 200"


async def safety_dump(ctx: RunContext, path: Path, args: list[str], estimate_bytes: int) -> int:
    """pg_dump the current state to ``path`` before anything is replaced. Refuses up front when
    the disk clearly lacks room; any failure stops the run for the operator with nothing
    changed. Returns the dump's size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path.parent).free
    if free < estimate_bytes:
        raise NeedsOperator(
            f"not enough space for the safety snapshot at {path.parent}: {free / 1e6:,.0f} MB "
            f"free, about {estimate_bytes / 1e6:,.0f} MB needed. Nothing was changed; free "
            "space (or move the state directory with ROLLBACK_CONSOLE_HOME) and resume")
    await ctx.ensure_lock("safety_snapshot")
    try:
        with ctx.action("safety_snapshot", path=str(path)):
            await run_tool("pg_dump", [*args, "--format=custom", f"--file={path}"],
                           ctx.cfg.target, lambda line: ctx.log(line))
    except LockLost:
        raise
    except ConsoleError as exc:
        nospace = "No space left" in str(exc)
        raise NeedsOperator(
            ("no space left while writing the safety snapshot" if nospace else
             "the safety snapshot failed") + f" ({exc}) at {path}. Nothing was changed; "
            + ("free space, then resume" if nospace else "fix the cause, then resume")) \
            from None
    size = os.stat(path).st_size  # a stat, not I/O worth a thread
    ctx.safety_snapshot = path
    ctx.log(f"safety snapshot: {path} ({size:,} bytes)")
    return size


async def operator_maintenance(cfg: Config, on: bool, journal: Journal | None, by: str,
                               warn: Callable[[str], None] = lambda _line: None) -> str:
    """The operator's switch (the ``maintenance`` command, the console's shift+m) under the
    target lock: refused with ``TargetLocked`` (exit 3, naming the holder) while a live run
    works on the target, whichever state directory it uses; allowed after any stop, since a
    stopped run holds nothing. Journaled in ``journal``."""
    if cfg.app is None:
        raise BadInput("the config has no [app]: there is no maintenance switch to use")
    lock = TargetLock(cfg.target, f"maintenance {'on' if on else 'off'} by hand")
    unchecked = await lock.acquire_unless_unreachable()
    try:
        if unchecked:
            warn(unchecked)
        return await switch_maintenance(cfg.app, on, journal, by)
    finally:
        await lock.release()


async def switch_maintenance(app: AppEndpoints, on: bool, journal: Journal | None,
                             by: str) -> str:
    """The operator's own switch, outside a step (after a run that stopped with the app in
    maintenance): verified like the steps, journaled before and after in ``journal``.
    Raises ``MaintenanceFailed`` with what went wrong."""
    m = Maintenance(app)
    try:
        with journaled(journal, "maintenance_on" if on else "maintenance_off", by=by) \
                if journal is not None else nullcontext():
            result = await (m.enable() if on else m.disable())
    finally:
        await m.aclose()
    return result.summary
