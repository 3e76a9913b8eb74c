"""`assess` (read-only checks + decision matrix) and `validate` (post-rollback checklist).

Exit codes: assess 0 healthy, 10 monitor and assess, 20 forward-fix, 30 immediate rollback,
40 inconclusive, 50 database unreachable;
validate 0 when every item passes, 1 otherwise; both 2 on bad input (nothing was touched).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from app.commands.pitr import at_option, set_at

if TYPE_CHECKING:
    from rich.console import Console

    from app.checks.assessment import Assessment
    from app.config import Config
    from app.validation import Checklist

TIER_STYLE = {"HEALTHY": "bold green", "INCONCLUSIVE": "bold magenta",
              "MONITOR AND ASSESS": "bold yellow",
              "FORWARD-FIX": "bold dark_orange", "IMMEDIATE ROLLBACK": "bold white on red",
              "DATABASE UNREACHABLE": "bold white on red"}
FIX_HEADING = "Suggested fix (run or copy; nothing was run):"
WATCH_HINT = ("Watch: `rollback-console validate --watch 1h` runs the checklist again and again "
              "and alerts on a regression; assess again after.")


def _style(status: Any) -> str:
    """A check's colour, from the one table of marks the console's widgets read too."""
    from app.checks.model import mark

    return mark(str(status)).style


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _progress(console: Console) -> Any:
    """Print each check as it completes (stderr), so a long assessment is not a silent one."""
    def show(result: Any) -> None:
        console.print(f"  [{_style(result.status)}]{result.status:>5}[/] {result.check}",
                      markup=True)
    return show


def _render_assessment(a: Assessment) -> None:

    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    out = _console()
    table = Table(title=f"Assessment of {a.target} vs backup {a.backup or '(none)'}",
                  expand=True, show_lines=False)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("summary (runbook symptom)")
    for r in a.results:   # summaries hold names like [app]: text, never markup
        table.add_row(escape(r.check), f"[{_style(r.status)}]{r.status}[/]",
                      f"{escape(r.summary)}\n[dim]{escape(r.symptom)}[/dim]")
    out.print(table)

    d = a.decision
    lines = [f"[{TIER_STYLE[d.tier.label]}] {d.tier.label} [/]", escape(d.action), ""]
    for reason in d.reasons:
        lines.append(escape(f"- [{reason.tier.label}] {reason.runbook}: {reason.summary}"))
    if d.recommended is not None:
        t = d.recommended
        lines += ["", f"Recommended: Type {t.number} {t.title} ({t.key}) - risk {t.risk}, "
                      f"downtime {t.downtime}; when: {t.when}"]
        if d.tables:
            lines.append("Tables: " + escape(", ".join(d.tables)))
        lines.append("Would lose:")
        lines += [escape(line) for line in _readable(d.would_lose, "  ")]
    elif d.instead:   # a complete restore is needed but Type 3 is impossible as this role
        lines += ["", "Recommended instead: " + escape(d.instead)]
    if d.offers_watch:
        lines += ["", escape(WATCH_HINT)]
    for m in d.missing:
        lines.append(f"[dim]not run: {m.check}: {escape(m.why)}[/dim]")
        lines.append(f"[dim]  get it: {escape(m.how)}[/dim]")
    out.print(Panel("\n".join(lines), title="Decision matrix", expand=True))
    if d.fix:   # outside the panel, never cut or boxed: it is copied as it is
        out.print(FIX_HEADING, markup=False)
        for step in d.fix:
            out.print("\n".join(step.lines()), markup=False, soft_wrap=True)


def _readable(value: Any, indent: str) -> list[str]:
    """A nested dict of evidence as indented 'key: value' lines (not JSON)."""
    if isinstance(value, dict):
        out = []
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                out.append(f"{indent}{str(key).replace('_', ' ')}:")
                out += _readable(item, indent + "  ")
            else:
                shown = "unknown" if item is None else "none" if item in ([], {}) else item
                out.append(f"{indent}{str(key).replace('_', ' ')}: {shown}")
        return out
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return [indent + ", ".join(str(v) for v in value)]
        return [line for v in value for line in _readable(v, indent)]
    return [f"{indent}{value}"]


def _render_checklist(c: Checklist) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = _console()
    table = Table(title=f"Post-rollback validation of {c.target} vs backup {c.backup}",
                  expand=True)
    table.add_column("item", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("evidence")
    for i in c.items:
        table.add_row(f"{escape(i.name)}\n[dim]{escape(i.runbook)}[/dim]",
                      f"[{_style(i.status)}]{i.status}[/]", escape(i.summary))
    out.print(table)
    out.print("[bold green]ALL ITEMS PASS[/]" if c.passed else
              "[bold red]VALIDATION FAILED[/]: items not passing: " +
              ", ".join(i.name for i in c.items if not i.ok), markup=True)


def register(group: click.Group) -> None:
    @group.command("assess")
    @click.option("--backup", "backup_id", default=None, metavar="ID",
                  help="Compare with this backup set [default: the newest with a manifest].")
    @at_option
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @click.pass_context
    def assess(ctx: click.Context, backup_id: str | None, at: str | None,
               as_json: bool) -> None:
        """Read-only assessment: run the checks and place the incident in the runbook's decision
        matrix. Changes nothing: read-only database sessions and GET requests only (the login
        probe, which makes the app record a sign-in, is not run: `validate` runs it).

        \b
        Exit codes: 0 healthy (every check ran and passed), 10 monitor and
        assess, 20 forward-fix (the suggested fix is printed: nothing was run),
        30 immediate rollback, 40 inconclusive (no finding, but some check could
        not run: the missing evidence is named, with how to get it), 50 database
        unreachable (refused or timed out: check the server, network and pooler),
        2 bad input (config, wrong password or database name, unknown --backup),
        1 unexpected error (the traceback is in the log file)."""
        sys.exit(_assess(ctx.obj["config_path"], backup_id, as_json, at))

    @group.command("validate")
    @click.option("--backup", "backup_id", default=None, metavar="ID",
                  help="Validate against this backup set [default: the newest].")
    @at_option
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @click.option("--watch", "watch_for", default=None, metavar="DURATION",
                  help="Extended monitoring: run the checklist again and again for DURATION "
                       "(30s, 10m, 24h), alerting on a regression.")
    @click.option("--interval", type=click.FloatRange(min=1), default=60.0, show_default=True,
                  help="Seconds between runs with --watch.")
    @click.pass_context
    def validate(ctx: click.Context, backup_id: str | None, at: str | None, as_json: bool,
                 watch_for: str | None, interval: float) -> None:
        """The runbook's post-rollback validation checklist, each item a real check.

        \b
        Exit codes: 0 every item passes, 1 some item does not, 2 bad input;
        with --watch: 1 when anything regressed or the last run does not pass."""
        sys.exit(_validate(ctx.obj["config_path"], backup_id, as_json, watch_for, interval, at))


def _assess(config_path: str, backup_id: str | None, as_json: bool,
            at: str | None = None) -> int:
    """The ``assess`` command's work: the checks, the verdict shown; its exit code."""
    import asyncio
    import json

    from app import config as config_mod
    from app import logs
    from app.checks import run_assessment
    from app.checks.context import read_only_checks
    from app.db import read_only_sessions

    read_only_sessions(True)   # read-only by nature, whatever --mode says
    read_only_checks(True)
    logs.configure()
    cfg = config_mod.load(config_path)
    backup_id = set_at(cfg, backup_id, at)
    on_result = None if as_json else _progress(_console(stderr=True))
    result = asyncio.run(run_assessment(cfg, backup_id, on_result=on_result))
    logs.get("assess").info("assessment", tier=result.decision.tier.label,
                            backup=result.backup)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        _render_assessment(result)
    return result.decision.exit_code


def _validate(config_path: str, backup_id: str | None, as_json: bool, watch_for: str | None,
              interval: float, at: str | None = None) -> int:
    """The ``validate`` command's work: the checklist once (journaled), or watched; its exit
    code."""
    import asyncio
    import json

    from app import config as config_mod
    from app import logs
    from app.db import read_only_sessions
    from app.validation import run_validation

    read_only_sessions(True)   # read-only by nature (the login probe runs in live mode)
    logs.configure()
    cfg = config_mod.load(config_path)
    backup_id = set_at(cfg, backup_id, at)
    if watch_for is not None:
        return _watch(cfg, backup_id, watch_for, interval, as_json)
    on_result = None if as_json else _progress(_console(stderr=True))
    result = asyncio.run(run_validation(cfg, backup_id, on_result=on_result))
    journal = asyncio.run(_journal_validation(cfg, result))
    if journal is not None:
        click.echo(f"(journaled in incident {journal})", err=True)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        _render_checklist(result)
    return result.exit_code


async def _journal_validation(cfg: Config, result: Any) -> str | None:
    """Journal the checklist in the incident of the last 24 hours on this target's database, as
    the console's validation screen does, so the report and a drill's score see it; the
    incident's id. Only into an ended incident: an unfinished one may be another console's
    live run, whose journal only that console writes."""
    from datetime import UTC, datetime, timedelta

    from app.errors import ConsoleError
    from app.journal import newest_incident
    from app.rollback.resume import target_database

    try:
        journal = newest_incident(await target_database(cfg))
    except ConsoleError:
        return None
    if journal is None or not journal.closed or datetime.fromisoformat(
            journal.entries[-1].at) < datetime.now(UTC) - timedelta(hours=24):
        return None
    journal.append("validation", **result.journal_fields())
    return journal.incident_id


def _watch(cfg: Config, backup_id: str | None, duration: str, interval: float,
           as_json: bool) -> int:
    """`validate --watch`: one line per run with the trend; ALERT lines on a regression."""
    import asyncio
    import json
    import time

    from app.watch import Round, parse_duration, sparkline, watch

    seconds = parse_duration(duration)
    out = _console()

    def on_round(current: Round, rounds: list[Round]) -> None:
        total = len(current.checklist.items)
        if as_json:
            click.echo(json.dumps({"at": current.at, "passing": current.passing, "of": total,
                                   "regressed": current.regressed}), nl=True)
            return
        trend = sparkline([r.passing for r in rounds], total)
        out.print(f"{time.strftime('%H:%M:%S', time.localtime(current.at))}  "
                  f"{current.passing}/{total} pass  {trend}", markup=False)
        for line in current.regressed:
            out.print(f"ALERT: regressed: {line}", markup=False)

    rounds = asyncio.run(watch(cfg, backup_id, seconds, interval, on_round))
    regressed = any(r.regressed for r in rounds)
    return 1 if regressed or not rounds[-1].checklist.passed else 0
