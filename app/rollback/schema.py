"""Type 1, schema-only rollback: the runbook's `psql < schema_only_backup.sql` cannot work on a
live database (the objects exist; a --clean dump drops tables with their rows). Instead the
way back is computed from the live schema (``app.schemadiff``), shown at the gate, applied in
ONE transaction with lock_timeout and statement_timeout, and proved: before committing, the
target is read again inside the transaction and must show no differences from the backup's
schema; otherwise everything rolls back."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from app.backups.backupset import MODEL_FILE, check_file, check_target, schema_source
from app.backups.copydata import parse_name
from app.backups.tools import private_dir
from app.config import Config
from app.drift import measure
from app.errors import BadInput
from app.rollback.context import NeedsOperator, RollbackType, RunContext, StepFailed
from app.rollback.plan import Plan, Step
from app.rollback.steps import (
    hold_maintenance,
    maintenance_on,
    recovery,
    safety_dump,
    target_conn,
)
from app.schemadiff import Diff, compare, left_for_data
from app.schemamodel import read
from app.scratch import backup_schema

APPLY_LOCK_TIMEOUT = "5s"
MAX_LISTED = 12   # changes named one by one in the blast radius (the plan lists all)
APPLY_STATEMENT_TIMEOUT = "5min"
NOTHING_TO_DO = ("nothing to do: the schema already equals the backup's (no maintenance, "
                 "nothing is changed)")


def _exclude(ctx: RunContext) -> tuple[str, ...]:
    return ctx.cfg.target.platform_schemas


async def prerequisites(ctx: RunContext) -> str:
    """The set's schema file is there and intact, and the set is this target's."""
    source = schema_source(ctx.backup_set.path)
    if check_file(ctx.backup_set, source) is False:
        raise BadInput(f"{source.name} in backup {ctx.backup.id} does not match its manifest "
                       "(sha256 differs): the file is corrupt or was edited; use another set")
    async with target_conn(ctx) as conn:
        await check_target(ctx.backup_set, conn)
    ctx.log(f"schema source: {source.name} ({source.stat().st_size:,} bytes)")
    return f"backup {ctx.backup.id}: {source.name} present" + (
        ", sha256 matches the manifest" if ctx.backup_set.manifest is not None else "")


async def assessment(ctx: RunContext, approved: tuple[str, ...]) -> str:
    """Compare again now: the plan approved at the gate must still be the way back."""
    want = await backup_schema(ctx.cfg, ctx.backup_set, _exclude(ctx), lambda line: ctx.log(line))
    async with target_conn(ctx) as conn:
        diff = compare(await read(conn, _exclude(ctx)), want)
        await measure(conn, diff, annotate=False)
    for change in diff.changes:
        ctx.log(change.describe())
    _same_as_approved(diff, approved)
    _refuse_blocked(diff)
    ctx.schema.schema_changes = len(diff.changes)
    ctx.schema.followup_tables = diff.data_tables
    return f"{len(diff.changes)} change(s) take the schema back to backup {ctx.backup.id}" \
        if diff.changes else "no drift: the schema already equals the backup's"


def _same_as_approved(diff: Diff, approved: tuple[str, ...]) -> None:
    if tuple(diff.statements) != approved:
        raise NeedsOperator("the target's schema changed since the plan was shown at the gate "
                            f"({len(diff.statements)} statements now, {len(approved)} "
                            "approved): nothing was changed; review the new plan and confirm "
                            "again")


def _refuse_blocked(diff: Diff) -> None:
    problems = diff.blockers + [f"unsupported: {u}" for u in diff.unsupported]
    if problems:
        raise NeedsOperator("the schema plan cannot be applied as it stands: "
                            + "; ".join(problems) + ". Nothing was changed")


async def safety_snapshot(ctx: RunContext) -> str:
    """The current schema (no rows) in custom format: the way back from this rollback."""
    path = private_dir(ctx.incident_dir / "safety") / "schema-before-rollback.dump"
    size = await safety_dump(ctx, path, ["--schema-only"], 10_000_000)
    return f"saved the current schema to {path} ({size:,} bytes)"


async def apply(ctx: RunContext, approved: tuple[str, ...]) -> str:
    """One transaction: the approved statements, then a re-read that must show zero drift
    (save what only data can bring back), then COMMIT; any failure rolls everything back."""
    async with target_conn(ctx) as conn:
        diff = await in_one_transaction(ctx, conn, approved)
    return committed(ctx, diff)


async def in_one_transaction(ctx: RunContext, conn: Any, approved: tuple[str, ...],
                             then: Callable[[], Awaitable[object]] | None = None) -> Diff:
    """The approved statements and the re-read in one transaction on ``conn``; ``then`` (the
    in-place Type 3's reload of every app table) runs in the same transaction before COMMIT.
    Any failure rolls everything back and says so."""
    want = await backup_schema(ctx.cfg, ctx.backup_set, _exclude(ctx), lambda line: ctx.log(line))
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(f"SET LOCAL lock_timeout = '{APPLY_LOCK_TIMEOUT}'; "
                           f"SET LOCAL statement_timeout = '{APPLY_STATEMENT_TIMEOUT}'; "
                           "SET LOCAL check_function_bodies = off")
        diff = compare(await read(conn, _exclude(ctx)), want)
        await measure(conn, diff, annotate=False)
        _same_as_approved(diff, approved)
        _refuse_blocked(diff)
        with ctx.action("apply_schema_plan", statements=len(diff.statements),
                        backup=ctx.backup.id):
            await _run_statements(ctx, conn, diff)
            left = compare(await read(conn, _exclude(ctx)), want)
            unexpected = [c for c in left.changes if not left_for_data(c, diff)]
            if unexpected or left.unsupported:
                raise StepFailed(
                    f"after the plan, {len(unexpected) + len(left.unsupported)} "
                    "difference(s) from the backup remain: "
                    + "; ".join([c.describe() for c in unexpected][:5] + left.unsupported)
                    + ". Rolled back: nothing was changed")
            if then is not None:
                await then()
            await tx.commit()
    except BaseException as exc:
        await _rollback(tx)
        if isinstance(exc, Exception) and not isinstance(exc, (StepFailed, NeedsOperator)):
            raise StepFailed(f"{type(exc).__name__}: {exc}. The transaction was rolled "
                             "back: the schema is exactly as it was") from None
        raise
    return diff


async def _run_statements(ctx: RunContext, conn: Any, diff: Diff) -> None:
    total, done = len(diff.statements), 0
    for change in diff.changes:
        ctx.log(f"-- {change.describe()}")
        for statement in change.sql:
            ctx.log(statement + ";")
            await conn.execute(statement)
            done += 1
            ctx.progress(done, total, "statements", change.object)


def committed(ctx: RunContext, diff: Diff) -> str:
    """What a committed schema plan leaves for the data rollback, logged and recorded."""
    residual = [c.residual for c in diff.changes if c.residual]
    ctx.schema.residual = residual
    ctx.schema.residual_objects = sorted({c.object for c in diff.changes if c.residual})
    ctx.log(f"committed {len(diff.statements)} statement(s); re-read inside the transaction: "
            "no differences from the backup's schema"
            + (f" except {len(residual)} left for a data rollback" if residual else ""))
    return (f"applied {len(diff.changes)} change(s) ({len(diff.statements)} statements) in "
            "one transaction")


async def _rollback(tx: Any) -> None:
    try:
        await asyncio.shield(tx.rollback())
    except Exception:
        pass


async def validation(ctx: RunContext) -> str:
    """Prove it on a fresh connection: zero drift against the backup's schema (save what was
    named as left for a data rollback). The data checks are the checklist's (`validate`)."""
    want = await backup_schema(ctx.cfg, ctx.backup_set, _exclude(ctx), lambda line: ctx.log(line))
    async with target_conn(ctx) as conn:
        diff = compare(await read(conn, _exclude(ctx)), want)
    left = set(ctx.schema.residual_objects or [])
    drift = [c.describe() for c in diff.changes if c.object not in left]
    for line in drift:
        ctx.log(f"drift: {line}", "warning")
    for change in diff.changes:
        if change.object in left:
            ctx.log(f"left for the data rollback: {change.describe()}")
    if diff.unsupported or drift:
        raise NeedsOperator("after the schema rollback: " + "; ".join(drift + diff.unsupported))
    ctx.log(f"zero drift: {want.object_count()} objects compared with backup {ctx.backup.id}")
    followup = ctx.followup_tables
    if followup:
        ctx.log("rows of " + ", ".join(followup) + " are only in the backup: follow with "
                f"`rollback-console run --type partial --tables {tables_option(followup)}`",
                "warning")
    return "zero drift from the backup's schema" + (
        f" ({len(drift)} left for a data rollback)" if drift else "")


def tables_option(quoted: list[str]) -> str:
    """``--tables``' value for SQL names (``"public"."We'ird"``): plain names, public's without
    their schema, quoted for the shell."""
    names = []
    for table in quoted:
        schema, name = parse_name(table)
        names.append(name if schema == "public" else f"{schema}.{name}")
    return shlex.quote(",".join(names))


def way_out(cfg: Config, tables: list[str] | tuple[str, ...]) -> tuple[str, str]:
    """The two ways on after phase 1 of 2 held maintenance on: phase 2's command (the partial
    data rollback of ``tables``, SQL names) and the switch by hand, both runnable as shown."""
    base = f"rollback-console --config {shlex.quote(str(cfg.path))}"
    phrase = shlex.quote(f"ROLLBACK {cfg.target.name}")
    return (f"{base} run --type partial --tables {tables_option(list(tables))} "
            f"--confirm {phrase}", f"{base} maintenance off")


def phase_one_summary(cfg: Config, plan: Plan, maintenance: str | None) -> str:
    """How phase 1 of 2 ends: validated, not done; the app's state and the way on."""
    tables = plan.leaves_rows_in_backup
    phase2, off = way_out(cfg, tables)
    names = ", ".join(t.replace('"', "") for t in tables)
    held = (f"the app is still in MAINTENANCE mode, held for phase 2: `{phase2}` reloads them "
            "and switches maintenance off after validating; or `" + off + "` serves the "
            "database as it is (half back)" if maintenance == "on" else
            f"maintenance mode is off; phase 2: `{phase2}`")
    return (f"phase 1 of 2 validated, the incident is not over: the rows of {names} are only "
            f"in the backup; {held}")


def _endpoints(cfg: Config) -> tuple[str, str, str]:
    """The app's base URL, maintenance path and health path, as the plan's statements show."""
    if cfg.app is None:
        return "(no app configured)", "", ""
    return cfg.app.base_url, cfg.app.maintenance, cfg.app.health


def _finish_step(cfg: Config, leaves: tuple[str, ...], keep: bool) -> Step:
    """The last step: the runbook's recovery, or for phase 1 of 2 the hold."""
    app, maint, health = _endpoints(cfg)
    if not (keep and leaves):
        return Step("recovery", "Application recovery",
                    "Maintenance mode off, health and critical endpoints answer 200, channels "
                    "told.", 600, recovery,
                    statements=(f"DELETE {app}{maint}", f"GET {app}{health}  -> expect 200"))
    names = ", ".join(t.replace('"', "") for t in leaves)
    return Step("hold_maintenance", "Keep maintenance on for phase 2",
                f"Phase 1 of 2: the rows of {names} are only in the backup, so the app stays "
                "in maintenance (asked and journaled) for phase 2, the partial data rollback, "
                "which switches it off after validating.", 60, hold_maintenance,
                statements=(f"GET {app}{maint}  -> expect maintenance on",))


def build(cfg: Config, backup: Any, diff: Diff, keep_maintenance: bool = False,
          recorded_leaves: tuple[str, ...] = ()) -> Plan:
    """The Type 1 plan; ``diff`` (computed read-only) is what the gate shows and approves.
    With ``keep_maintenance`` a plan that leaves rows in the backup is phase 1 of 2: its last
    step keeps the app in maintenance for phase 2. ``recorded_leaves``: what a resumed
    incident's plan left there (the diff no longer shows it once the apply ran)."""
    leaves = tuple(diff.data_tables) or recorded_leaves
    plan = Plan(RollbackType.SCHEMA, cfg.target.name, backup.id, (),
                leaves_rows_in_backup=leaves, holds_maintenance=keep_maintenance and bool(leaves))
    plan.steps = [*_steps(cfg, backup, diff), _finish_step(cfg, leaves, keep_maintenance)]
    plan.blast_radius.extend(_blast_radius(diff, plan.holds_maintenance))
    return plan


def _steps(cfg: Config, backup: Any, diff: Diff) -> list[Step]:
    """Every step but the last: check, compare again, maintenance on, snapshot, apply,
    validate."""
    approved = tuple(diff.statements)
    app, maint, health = _endpoints(cfg)
    return [
        Step("prerequisites", "Prerequisites check",
             "The set's schema dump is present and matches its manifest; the set was taken "
             "from this target.", 300, prerequisites,
             statements=(f"sha256 {schema_source(backup.path).name}",)),
        Step("assessment", "Issue assessment",
             "Compare the live schema with the backup's again: the plan must still be the one "
             "approved at the gate.", 300, partial(assessment, approved=approved),
             statements=(("the backup's schema: schema_model.json, read inside the backup's "
                          "snapshot",) if (backup.path / MODEL_FILE).is_file() else
                         (f"CREATE DATABASE rollback_schema_<set>_<random> (from "
                          f"{schema_source(backup.path).name}, dropped after)",))),
        Step("maintenance", "Set maintenance mode",
             "Turn the app's maintenance mode on and verify the API answers 503; notify the "
             "channels: EMERGENCY ROLLBACK IN PROGRESS.", 120, maintenance_on,
             statements=(f"POST {app}{maint}", f"GET {app}{health}  -> expect 503")),
        Step("safety_snapshot", "Safety snapshot",
             "Dump the current schema (no rows) so this rollback can itself be undone.", 300,
             safety_snapshot, statements=("pg_dump --schema-only --format=custom",)),
        Step("restore", "Apply the schema plan",
             "One transaction with lock_timeout and statement_timeout: every statement below, "
             "then the schema is read again inside the transaction and must equal the "
             "backup's, then COMMIT. Any failure rolls back everything.", 1800,
             partial(apply, approved=approved), destructive=bool(approved),
             point_of_no_return=bool(approved),
             undo="compute the way back to the safety snapshot's schema the same way",
             statements=(f"SET LOCAL lock_timeout = '{APPLY_LOCK_TIMEOUT}'",
                         f"SET LOCAL statement_timeout = '{APPLY_STATEMENT_TIMEOUT}'",
                         *(f"-- {c.describe()}\n" + "\n".join(s + ";" for s in c.sql)
                           for c in diff.changes),
                         "-- read the schema again: zero differences, or ROLLBACK", "COMMIT")),
        Step("validation", "Schema validation",
             "On a fresh connection: zero drift from the backup's schema.", 600, validation),
    ]


def _blast_radius(diff: Diff, holds_maintenance: bool) -> list[str]:
    """What the gate shows: every change that destroys something and the first ``MAX_LISTED``
    others, the rows left in the backup, what blocks the plan, and its size."""
    lines: list[str] = []
    shown = 0
    for c in diff.changes:
        if c.destroys:
            lines.append(f"!{c.kind} {c.object}: destroys {c.destroys}")
        elif shown < MAX_LISTED:
            lines.append(f"{c.kind} {c.object}")
            shown += 1
    hidden = sum(1 for c in diff.changes if not c.destroys) - shown
    if hidden:
        lines.append(f"… and {hidden} more change(s): the plan lists every statement")
    lines += [f"!{table}: its rows (or dropped columns' values) are only in the backup; "
              "phase 2, a partial data rollback, brings them back" for table in diff.data_tables]
    if holds_maintenance:
        lines.append("phase 1 of 2: the app stays in maintenance until phase 2 validates")
    lines += [f"!BLOCKS THE PLAN: {line}" for line in diff.blockers]
    lines += [f"!UNSUPPORTED, by hand: {line}" for line in diff.unsupported]
    if diff.changes:
        lines.append(f"{len(diff.changes)} schema change(s), {len(diff.statements)} "
                     "statement(s), in one transaction")
    elif not diff.blockers and not diff.unsupported:
        lines.append(NOTHING_TO_DO)
    return lines


def nothing_to_do(plan: Plan) -> bool:
    """A Type 1 plan with no drift to take back: running it would only switch the app's
    maintenance on and off (downtime for nothing), so the CLI and the console do not run it.
    Only for a fresh run: a resumed run keeps its plan (its recovery step may be left)."""
    return plan.kind is RollbackType.SCHEMA and NOTHING_TO_DO in plan.blast_radius
