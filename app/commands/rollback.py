"""`run` and `resume`: the rollback engine headless, the runbook's emergency_rollback.sh made
safe. JSON lines with --json; exit codes: 0 done and validated, 2 bad input (nothing changed),
3 refused at a gate (nothing changed), 4 failed and returned to the state before, 5 stopped and
needs the operator (the journal says where)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from app.commands import LazyPath
from app.commands.pitr import at_option
from app.errors import BadInput
from app.exits import NEEDS_OPERATOR
from app.rollback.registry import all_types, type_keys

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from datetime import datetime
    from pathlib import Path

    from rich.console import Console

    from app.backups.source import RestoreSource
    from app.config import Config
    from app.rollback.context import Options
    from app.rollback.plan import Plan


def _types_help() -> str:
    """Each type's number, title, risk, downtime and phrase: the registry's words."""
    return "; ".join(f"{t.key} = {t.label} ({t.facts})" for t in all_types()) + "."


def _tables(raw: str) -> tuple[str, ...]:
    """``--tables``: comma separated, each as the console shows it (``name`` in public,
    ``schema.name``: characters taken as they are) or, starting with a double quote, SQL-quoted
    (``"Odd Schema"."Line Items"``: quotes keep dots, commas and spaces); as schema.name."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        if raw[i].isspace() or raw[i] == ",":
            i += 1
            continue
        if raw[i] == '"':
            parts, i = _quoted(raw, i)
            out.append(".".join(parts) if len(parts) == 2 else f"public.{parts[0]}")
        else:
            end = raw.find(",", i)
            end = len(raw) if end < 0 else end
            item = raw[i:end].strip()
            out.append(item if "." in item else f"public.{item}")
            i = end
    return tuple(out)


def _quoted(raw: str, i: int) -> tuple[list[str], int]:
    """A SQL-quoted ``"schema"."name"`` (or ``"name"``; a part may be bare) from ``raw[i]``
    up to the next comma outside quotes: its parts, and where it ended."""
    parts, part, quoted, bare = [], "", False, False
    while i < len(raw):
        ch = raw[i]
        if quoted:
            if ch == '"' and raw[i + 1:i + 2] == '"':
                part, i = part + '"', i + 1
            elif ch == '"':
                quoted = False
            else:
                part += ch
        elif ch == '"' and not part:
            quoted = True
        elif ch == ".":
            parts.append(part)
            part, bare = "", False
        elif ch == ",":
            break
        elif not ch.isspace() or bare:
            part, bare = part + ch, True
        i += 1
    if quoted:
        raise BadInput(f"--tables {raw!r}: a quote is not closed")
    parts.append(part)
    if len(parts) > 2 or not all(parts):
        raise BadInput(f"--tables: {'.'.join(parts)!r} is not a table name (name, schema.name, "
                       'or "Quoted Schema"."Quoted Name")')
    return parts, i


def given_time(text: str | None) -> datetime | None:
    """--migration-time, checked: bad input exits 2 with what is expected."""
    from app.config import parse_time

    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError:
        raise BadInput(f"--migration-time {text!r}: give an ISO time like "
                       "2026-11-24T02:00:00Z") from None


def register(group: click.Group) -> None:
    group.add_command(run)
    group.add_command(resume)
    group.add_command(report)
    group.add_command(abandon)


@click.command()
@click.argument("incident", required=False)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=LazyPath), default=None,
              help="Write the Markdown here [default: stdout].")
def report(incident: str | None, output: Path | None) -> None:
    """The incident report (Markdown) from the journal: timeline, decision, steps, what was
    saved where, validation, and the runbook's post-rollback actions.

    INCIDENT is an incident id (see the journal's folder name); default: the newest."""
    from app.journal import Journal, incidents_root
    from app.report import render_markdown

    journals = sorted(incidents_root().glob("*/journal.jsonl"))
    if incident is not None:
        journals = [j for j in journals if j.parent.name == incident
                    or j.parent.name.endswith(incident)]
    if not journals:
        raise BadInput(f"no incident {incident!r} in {incidents_root()}" if incident else
                       f"no incidents in {incidents_root()}")
    text = render_markdown(Journal(journals[-1]))   # JournalCorrupt: exit 5, the reason
    if output is None:
        click.echo(text)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"report written to {output}", err=True)


@click.command()
@click.option("--type", "kind", type=click.Choice(type_keys()), required=True,
              help=_types_help())
@click.option("--backup", "backup_id", default=None, help="Backup set id [default: newest].")
@at_option
@click.option("--tables", default="", help="Tables for --type partial, comma separated.")
@click.option("--confirm", default="", help="The typed confirmation: the type's phrase (see "
              "--type) with the target's name.")
@click.option("--dry-run", is_flag=True, help="Print the plan, every statement and command; "
              "change nothing.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines on stdout.")
@click.option("--maintenance-failure", type=click.Choice(["stop", "continue"]), default="stop",
              show_default=True, help="When the app's maintenance switch fails.")
@click.option("--allow-in-place", is_flag=True, help="Type 3 second confirmation: restore in "
              "place when the database cannot be renamed.")
@click.option("--migration-time", default=None, metavar="ISO",
              help="When the bad migration ran (UTC if no zone) [default: target.migration_at, "
              "else Supabase's supabase_migrations table]. A set taken after it is refused.")
@click.option("--allow-after-migration", is_flag=True,
              help="Use a set taken after the migration anyway.")
@click.option("--keep-maintenance", is_flag=True,
              help="--type schema that leaves tables empty (their rows only in the backup): "
              "phase 1 of 2, the app stays in maintenance for the `run --type partial` that "
              "follows, which switches it off after validating.")
@click.option("--after", default=None, metavar="WHEN",
              help="--type repair: the moment right after the migration committed (a mark, "
              "time or LSN; needs [pitr]): the rows as the migration left them.")
@click.option("--damage", default="", metavar="CLASSES",
              help="--type repair from a dump only (no --after): what counts as the "
              "migration's damage, comma separated: deleted, nulled, common (a value set on "
              "many rows; common:COLUMN for one column), inserted.")
@click.option("--conflicts", type=click.Choice(["keep", "take", "export"]), default="keep",
              show_default=True, help="--type repair: rows users changed after the migration "
              "too: keep the user's version, take the one before the migration, or keep and "
              "export both.")
@click.option("--fire-triggers", is_flag=True,
              help="--type repair: let user triggers (audit, updated_at) fire for its writes.")
@click.pass_context
def run(ctx: click.Context, kind: str, backup_id: str | None, at: str | None, tables: str,
        confirm: str,
        dry_run: bool, as_json: bool, maintenance_failure: str, allow_in_place: bool,
        migration_time: str | None, allow_after_migration: bool,
        keep_maintenance: bool, after: str | None, damage: str, conflicts: str,
        fire_triggers: bool) -> None:
    """Roll back the target headless.

    \b
    Examples:
      rollback-console run --type schema --dry-run
      rollback-console run --type schema --confirm 'ROLLBACK SCHEMA shop'
      rollback-console run --type schema --keep-maintenance --confirm 'ROLLBACK SCHEMA shop'
      rollback-console run --type partial --tables objects,media --dry-run
      rollback-console run --type partial --tables media --confirm 'ROLLBACK shop'
      rollback-console run --type full --confirm 'CONFIRM_FULL_RESTORE shop' --json
      rollback-console run --type partial --tables media --at before-deploy --dry-run
      rollback-console run --type full --at 2026-12-02T04:31:07Z --dry-run
      rollback-console run --type repair --tables media --at before-deploy --after after-deploy
      rollback-console run --type repair --tables media --damage deleted,nulled --dry-run
    """

    from app import config as config_mod
    from app import logs
    from app.backups.backupset import resolve
    from app.rollback.context import Options
    from app.rollback.registry import rollback_type

    logs.configure()
    if keep_maintenance and kind != "schema":
        raise BadInput("--keep-maintenance is for --type schema (phase 1 of 2); the partial "
                       "run that follows switches maintenance off")
    cfg = config_mod.load(ctx.obj["config_path"])
    if at is not None and backup_id is not None:
        raise BadInput("give --backup or --at, not both")
    options = Options(tables=_tables(tables), confirm=confirm,
                      maintenance_failure=maintenance_failure, allow_in_place=allow_in_place,
                      migration_at=given_time(migration_time),
                      allow_after_migration=allow_after_migration,
                      keep_maintenance=keep_maintenance, conflicts=conflicts,
                      fire_triggers=fire_triggers,
                      damage=tuple(d.strip() for d in damage.split(",") if d.strip()))
    if kind != "repair" and (after or damage or conflicts != "keep" or fire_triggers):
        raise BadInput("--after, --damage, --conflicts and --fire-triggers are for --type "
                       "repair")
    if after is not None and at is None:
        raise BadInput("--after needs --at (the moment before the migration): the repair "
                       "compares the two moments")
    spec = rollback_type(kind)
    if spec.takes_tables and not options.tables:
        raise BadInput(f"--type {kind} needs --tables (e.g. --tables objects,media)")
    if at is not None:
        import asyncio

        from app.commands.pitr import point_in_time_set

        backup: RestoreSource = asyncio.run(point_in_time_set(
            cfg, at, options.tables if spec.takes_tables else (), full=kind == "full",
            migration_at=options.migration_at))
        if after is not None:
            options.after = asyncio.run(point_in_time_set(
                cfg, after, options.tables, full=False, migration_at=options.migration_at)).id
    else:
        backup = resolve(cfg.target.backups_root, backup_id)
    sys.exit(_interruptible(_execute(cfg, spec.key, backup, options, dry_run, as_json, None)))


@click.command()
@click.option("--confirm", default="", help="The incident's phrase again, needed when what is "
              "left includes a destructive step (the description printed first says).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines on stdout.")
@click.option("--maintenance-failure", type=click.Choice(["stop", "continue"]), default="stop",
              show_default=True, help="When the app's maintenance switch fails.")
@click.pass_context
def resume(ctx: click.Context, confirm: str, as_json: bool, maintenance_failure: str) -> None:
    """Continue the unfinished incident on this target's database from its journal.

    First says what it is (its age, the steps done, the steps left); going on past the point
    of no return needs the phrase again (--confirm). A journal that fails verification (cut or
    edited) is never replayed: exit 5, and `abandon` sets it aside.

    \b
    Exit codes: as `run`; 2 nothing to resume; 3 refused (phrase, lock, another database)."""

    from app import config as config_mod
    from app import logs

    logs.configure()
    cfg = config_mod.load(ctx.obj["config_path"])
    sys.exit(_interruptible(_resume(cfg, confirm, as_json, maintenance_failure)))


async def _resume(cfg: Config, confirm: str, as_json: bool, maintenance_failure: str) -> int:
    from app.journal import JournalCorrupt
    from app.lock import TargetLock
    from app.rollback.full import reopen_interrupted_switch
    from app.rollback.resume import prepare_resume, unfinished_incident

    reopened = await reopen_interrupted_switch(cfg)   # a Type 3 killed inside its switch
    if reopened is not None:
        _stderr().print(reopened, markup=False)
    from app.pitr.source import sweep

    cleaned = sweep(cfg, lambda line: _stderr().print(line, markup=False))
    incident = await unfinished_incident(cfg)
    if incident is None:
        if cleaned:   # killed while restoring a point in time aside, before the gate
            _stderr().print("nothing else to resume: the run had not reached its gate, so "
                            "nothing was changed; run it again", markup=False)
            return 0
        raise BadInput(f"no unfinished incident on {cfg.target.name}'s database: nothing to "
                       "resume")
    if incident.journal is None:
        assert incident.problem is not None
        raise JournalCorrupt(f"incident {incident.id} cannot be resumed: {incident.problem}")
    journal = incident.journal
    async with TargetLock(cfg.target, journal.incident_id):
        pass   # a live run on it: refused now (exit 3, its holder named), before reading more
    what = await prepare_resume(cfg, journal, confirm, maintenance_failure)
    err = _stderr()
    for line in what.describe():
        err.print(("WARNING: " if line.startswith("!") else "") + line.lstrip("!"),
                  markup=False)
    return await _execute(cfg, what.kind, what.source, what.options, False, as_json,
                          journal.dir, what.plan)


@click.command()
@click.argument("incident", required=False)
@click.option("--reason", required=True, help="Why the incident is set aside (journaled).")
@click.pass_context
def abandon(ctx: click.Context, incident: str | None, reason: str) -> None:
    """Set aside the unfinished incident on this target's database, so that a new run may
    start: after you have checked the database by hand, or when its journal fails
    verification. The reason is journaled; the incident's files stay as evidence. Nothing in
    the database or the app changes. Refused while a console works on the target.

    INCIDENT: its id [default: the unfinished one].

    \b
    Exit codes: 0 set aside, 2 nothing to abandon or no reason, 3 the target is locked."""
    import asyncio
    import getpass

    from app import config as config_mod
    from app import logs

    logs.configure()
    if not reason.strip():
        raise BadInput("--reason is empty: say why the incident is set aside (it is journaled)")
    cfg = config_mod.load(ctx.obj["config_path"])
    by = f"{getpass.getuser()} (rollback-console abandon)"
    set_aside = asyncio.run(_abandon(cfg, incident, reason, by))
    click.echo(f"incident {set_aside} set aside: {reason.strip()}. A new run may start; the "
               "app's maintenance mode was not changed (`rollback-console maintenance status`)")


async def _abandon(cfg: Config, wanted: str | None, reason: str, by: str) -> str:
    from app.catalog import identity
    from app.journal import abandon as set_aside
    from app.journal import incidents_on
    from app.lock import TargetLock

    async with TargetLock(cfg.target, "abandon") as lock:
        assert lock.conn is not None
        database = await identity(lock.conn)
        open_ones = [i for i in incidents_on(database) if not i.finished]
        chosen = next((i for i in open_ones if wanted is None or i.id == wanted), None)
        if chosen is None:
            raise BadInput(f"no unfinished incident {wanted or ''} on {cfg.target.name}'s "
                           "database: nothing to abandon".replace("  ", " "))
        set_aside(chosen, reason, by)
        return chosen.id


def _interruptible(run: Coroutine[Any, Any, int]) -> int:
    """Ctrl-C or SIGTERM during a run cancels it: the step in flight is cancelled (its
    transaction rolls back) and journaled as aborted; then a message and exit 5, never a
    traceback."""
    import asyncio
    import signal

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        return await run

    try:
        return asyncio.run(guarded())
    except (asyncio.CancelledError, KeyboardInterrupt):
        _stderr().print("INTERRUPTED (exit 5): the step in flight was aborted and journaled. "
                        "`rollback-console resume` goes on from there; if the app is left in "
                        "maintenance, `rollback-console maintenance off` switches it back",
                        markup=False)
        return NEEDS_OPERATOR


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


async def _execute(cfg: Config, rtype: str, backup: RestoreSource, options: Options,
                   dry_run: bool, as_json: bool, incident_dir: Path | None,
                   plan: Plan | None = None) -> int:
    import asyncio

    from rich.console import Console

    from app.events import EventChannel, RunFinished, StepFinished, StepLog, StepStarted, to_json
    from app.journal import Journal, incidents_root, new_incident_id
    from app.rollback.context import RunContext
    from app.rollback.plans import build_plan
    from app.rollback.runner import describe, execute
    from app.rollback.schema import nothing_to_do

    plan = plan or await build_plan(cfg, rtype, backup, options)
    out = Console(highlight=False, soft_wrap=True)
    if incident_dir is None and nothing_to_do(plan):
        summary = (f"nothing to do: the schema of {plan.target} already equals backup "
                   f"{plan.backup_id}'s; no maintenance, nothing was changed")
        if as_json:
            print(to_json(RunFinished("nothing_to_do", 0, summary, "")), flush=True)
            return 0
        if dry_run:
            _print_plan(out, plan)
        out.print(f"[bold]NOTHING TO DO[/bold] (exit 0): {summary}")
        return 0
    if dry_run:
        return _dry_run(out, plan, backup, options, as_json)
    journal = Journal.open(incident_dir or incidents_root() / new_incident_id())
    ctx = RunContext(cfg, rtype, journal, EventChannel(), backup, options)

    async def show() -> None:
        async for event in ctx.channel:
            if as_json:
                print(to_json(event), flush=True)
            elif isinstance(event, StepStarted):
                out.print(f"[bold]▶ {event.index}/{event.total} {event.title}[/bold]")
            elif isinstance(event, StepLog):
                out.print(f"  {'WARN ' if event.level == 'warning' else ''}{event.line}",
                          markup=False)
            elif isinstance(event, StepFinished):
                out.print(f"  {event.status.upper()}: {event.summary}", markup=False)
            elif isinstance(event, RunFinished):
                out.print(f"[bold]{event.outcome.upper()}[/bold] (exit {event.exit_code}): ",
                          end="")
                out.print(event.summary + (f"\n  journal: {journal.path}" if event.incident
                                           else ""), markup=False)

    shown = asyncio.create_task(show())
    try:
        outcome = await execute(plan, ctx)
        await asyncio.wait({shown}, timeout=5)   # RunFinished ends it; never wait forever
    except Exception as exc:  # execute ends every failure itself; this is the last net
        _stderr().print(f"STOPPED (exit 5): {describe(exc)}; see the journal {journal.path} "
                        "and the log, then `rollback-console resume`", markup=False)
        return NEEDS_OPERATOR
    finally:
        shown.cancel()
    return outcome.exit_code


def _dry_run(out: Console, plan: Plan, backup: RestoreSource, options: Options,
             as_json: bool) -> int:
    """The plan, every statement and command; exit 2 when the run would be refused."""
    import json

    refusal = _dry_run_refusal(plan, backup, options)
    print(json.dumps({"dry_run": True, **plan.describe(), "exit_code": 2 if refusal else 0,
                      "refused": refusal}, default=str)) if as_json else _print_plan(out, plan)
    if refusal:
        _stderr().print(f"DRY RUN: the run would be refused (exit 2): {refusal}", markup=False)
        return 2
    return 0


def _dry_run_refusal(plan: Plan, backup: RestoreSource, options: Options) -> str | None:
    """What the run's prerequisites step would refuse, read from the set and the plan: a
    dry run exits with the code the run would (2: bad input, nothing changed)."""
    from app.backups.backupset import BackupSet, check_file
    from app.rollback.context import RollbackType

    if plan.kind is not RollbackType.PARTIAL or not isinstance(backup, BackupSet):
        return None
    for table in options.tables:
        path = backup.table_path(table)
        if not path.is_file():
            return (f"backup {backup.id} has no {path.name} for {table}: choose tables the "
                    "set holds, or another set")
        if check_file(backup, path) is False:
            return (f"{path.name} in backup {backup.id} does not match its manifest (sha256 "
                    "differs): the file is corrupt or was edited; use another set")
    missing = [line.removesuffix(": not on the target") for line in plan.blast_radius
               if line.endswith(": not on the target")]
    if missing:
        return (f"table {', '.join(missing)} does not exist on the target: a partial rollback "
                "reloads rows; a dropped table needs a schema or full rollback")
    return None


def _print_plan(out: Console, plan: Plan) -> None:
    out.print(f"[bold]Plan: {plan.kind} rollback of {plan.target} from backup "
              f"{plan.backup_id}[/bold]  (budget {plan.budget_s // 60} min)  "
              "DRY RUN: nothing is changed")
    for line in plan.blast_radius:
        out.print(f"  blast radius: {line.lstrip('!')}"
                  + ("  (LOSS)" if line.startswith("!") else ""), markup=False)
    for i, step in enumerate(plan.steps, start=1):
        marks = " ⚠ POINT OF NO RETURN" if step.point_of_no_return else (
            " ! destructive" if step.destructive else "")
        out.print(f"\n[bold]{i}. {step.title}[/bold]{marks}  ({step.budget_s // 60} min)")
        out.print(f"   {step.description}", markup=False)
        if step.undo:
            out.print(f"   undo: {step.undo}", markup=False)
        for statement in step.statements:
            out.print("     " + statement.replace("\n", "\n     "), markup=False)
