"""The command line: the TUI, the sandbox, and the same engine headless.

Startup errors (bad config, unreachable target) are printed plainly and exit with a meaningful
code before any screen takes the terminal.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from typing import TYPE_CHECKING, NoReturn

import click

from app.commands import LazyPath, register_all
from app.errors import BadInput, ConsoleError, Refused
from app.exits import BAD_INPUT, INTERRUPTED
from app.helptext import HELP_FILE, HELP_WIDTH

if TYPE_CHECKING:
    from pathlib import Path
    from types import FrameType

    from rich.console import Console

    from app import config as config_mod
    from app.sandbox.manager import Sandbox
    from app.tui import DrillRun

# `--help` and `--version` import click and nothing heavy: rich, structlog, asyncio, asyncpg and
# Textual load inside the commands that use them (bench/startup.py measures it).


@cache
def _err() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """click.version_option's output, with the version looked up only when asked for."""
    if not value or ctx.resilient_parsing:
        return
    from app import __version__

    click.echo(f"rollback-console, version {__version__}", color=ctx.color)
    ctx.exit()

EXAMPLES = """\b
Examples:
  rollback-console drill                      sandbox + demo app + console (make drill)
  rollback-console -c prod.toml               the console on the target in prod.toml
  rollback-console -c prod.toml --mode assess read-only: nothing can be changed
  rollback-console sandbox up --rows 2000000  a big sandbox for benchmarks
  rollback-console sandbox down               stop it (or Ctrl-C where it runs)
  rollback-console -c prod.toml run --type partial --tables media --dry-run
  rollback-console -c prod.toml assess --json  read-only: the tier as exit code
  rollback-console -c prod.toml diff --rehearse read-only: Type 1's plan, rehearsed

\b
Environment: ROLLBACK_CONFIG (the config), ROLLBACK_CONSOLE_HOME (state: logs, incidents),
ROLLBACK_CONSOLE_THEME=high-contrast, NO_COLOR=1 (no colour; words carry every state).

\b
Exit codes: 0 ok, 1 not ok (validate: an item fails; diff: drift found; backups
--verify: a problem; the console quit while work ran), 2 bad input (nothing changed),
3 refused at a gate, 4 failed and returned to the state before, 5 stopped and needs the
operator; assess: 0 healthy, 10 monitor, 20 forward-fix, 30 immediate rollback,
40 inconclusive, 50 database unreachable.
"""


def _stop_on_signal(signum: int, _frame: FrameType | None) -> NoReturn:
    """SIGTERM/SIGHUP stop us like Ctrl-C does, so `finally` blocks stop the sandbox."""
    raise KeyboardInterrupt


def _start_sandbox(directory: Path | None, rows: int, seed: int, shape: str) -> Sandbox:
    """Start a sandbox with a spinner on a terminal, plain progress lines otherwise."""
    from app.paths import default_sandbox_dir
    from app.sandbox.manager import Sandbox

    err = _err()
    with err.status("starting the sandbox…") as status:
        def progress(message: str) -> None:
            status.update(message)
            if not err.is_terminal:
                err.print(message)

        return Sandbox.up(directory or default_sandbox_dir(), rows=rows, seed=seed,
                          progress=progress, shape=shape)


def _run_tui(cfg: config_mod.Config, mode: str, briefing: str = "",
             drill: DrillRun | None = None) -> int:

    from app import logs
    from app.tui import RollbackConsoleApp  # Textual loads only when a screen is wanted

    app = RollbackConsoleApp(cfg, mode=mode, log_path=logs.current_log_path(),
                             theme=os.environ.get("ROLLBACK_CONSOLE_THEME", "default"),
                             briefing=briefing, drill=drill)
    app.run()
    if app.debrief:
        click.echo(app.debrief)
    return app.return_code or 0


# --mode assess is read-only. Commands that only read the target and its app run in it (their
# database sessions and dump tools read-only at the server); every other command is refused
# before anything connects: run (but run --dry-run), resume, abandon, maintenance on|off (but
# status), drill, and any command added later until it is listed here.
READ_ONLY_COMMANDS = frozenset({"assess", "validate", "backup", "backups", "diff", "report",
                                "sandbox", "pitr"})
WHY_REFUSED = {
    "run": "run changes the target (run --dry-run only reads: it is allowed)",
    "resume": "resume goes on changing the target",
    "abandon": "abandon closes an incident and can leave the app's maintenance switch to you",
    "maintenance": "maintenance on|off switches the app (maintenance status is allowed)",
    "drill": "a drill applies a bad migration and rolls back",
    "mark": "mark writes a restore point into the target's WAL and switches segments",
    "backups": "backups --rehearse creates a scratch database on the target's server",
    "diff": "diff --rehearse creates a scratch database on the target's server",
}
_SUB = "rollback_console.subcommand"


class ConsoleGroup(click.Group):
    """The top-level group; keeps the sub-command's own arguments for the group's callback,
    which refuses what --mode assess does not allow before the sub-command runs."""

    def resolve_command(self, ctx: click.Context, args: list[str],
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        ctx.meta[_SUB] = (cmd, list(rest))
        return name, cmd, rest


def _read_only_refusal(ctx: click.Context) -> str | None:
    """Why --mode assess refuses the invoked sub-command; None when it only reads."""
    name = ctx.invoked_subcommand
    cmd, args = ctx.meta.get(_SUB, (None, []))
    if name is None or cmd is None or any(a in ("--help", "-h") for a in args):
        return None
    params: dict[str, object] = {}
    if name not in READ_ONLY_COMMANDS or name in ("backups", "diff"):
        # the sub-command's options as it will read them (no callbacks, no errors)
        params = cmd.make_context(name, list(args), parent=ctx, resilient_parsing=True).params
    if name in READ_ONLY_COMMANDS and not params.get("rehearse"):
        return None
    if name == "run" and params.get("dry_run"):
        return None
    if name == "maintenance" and params.get("action") == "status":
        return None
    why = WHY_REFUSED.get(name, f"`{name}` is not known to be read-only")
    return (f"--mode assess is read-only: `{name}` is refused ({why}). Nothing was changed; "
            "run it without --mode assess")


def _read_only_process() -> None:
    """Every database session of this process read-only at the server, dump tools too, and no
    check that would write (the login probe)."""
    from app.checks.context import read_only_checks
    from app.db import read_only_sessions

    read_only_sessions(True)
    read_only_checks(True)


@click.group(cls=ConsoleGroup, invoke_without_command=True, epilog=EXAMPLES,
             context_settings={"help_option_names": ["-h", "--help"],
                               "max_content_width": HELP_WIDTH})
@click.option("-c", "--config", "config_path", default="rollback.toml", show_default=True,
              envvar="ROLLBACK_CONFIG", type=click.Path(dir_okay=False, path_type=LazyPath),
              help="The target's TOML config (env: ROLLBACK_CONFIG).")
@click.option("--mode", type=click.Choice(["live", "assess"]), default="live", show_default=True,
              help="assess: read-only; every database session is read-only at the server. "
              "Allowed: assess, validate, backup (it only reads the target), backups, diff, "
              "report, run --dry-run, maintenance status; anything else is refused (exit 3).")
@click.option("-V", "--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_show_version, help="Show the version and exit.")
@click.pass_context
def cli(ctx: click.Context, config_path: Path, mode: str) -> None:
    """Incident console for an emergency rollback of a PostgreSQL / Supabase database after a
    bad migration: assess, decide, roll back, validate.

    Without a command, opens the console (TUI) on the target in --config."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path
    ctx.obj["mode"] = mode
    if mode == "assess":
        refusal = _read_only_refusal(ctx)
        if refusal is not None:
            raise Refused(refusal)
        _read_only_process()
    if ctx.invoked_subcommand is None:
        from app import config as config_mod
        from app import logs

        logs.configure()
        cfg = config_mod.load(config_path)
        sys.exit(_run_tui(cfg, mode))


_SHAPE_OPTION = click.option(   # app/sandbox/supabase_shape.py, docs/SUPABASE.md
    "--shape", type=click.Choice(["plain", "supabase"]), default="plain", show_default=True,
    help="supabase: shaped like a Supabase project (superuser supabase_admin, the platform's "
    "roles, schemas, event triggers and sessions, database postgres); the console connects "
    "as the non-superuser postgres.")


@cli.command()
@click.option("--rows", type=click.IntRange(min=10), default=2000, show_default=True,
              help="Rows in the largest demo table.")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the demo data.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=LazyPath),
              default=None, help="Sandbox directory [default: the user's state directory].")
@click.option("--scenario", default=None, help="The incident to inject (see --list) "
              "[default: the first of the curriculum].")
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and exit.")
@click.option("--operator", default=lambda: os.environ.get("USER", "operator"),
              show_default="$USER", help="Whose scores these are (kept locally).")
@_SHAPE_OPTION
@click.option("--headless", is_flag=True, help="No console: play with the commands "
              "(assess, run, validate) on the printed config; Enter ends the drill and scores "
              "it.")
def drill(rows: int, seed: int, directory: Path | None, scenario: str | None,
          list_only: bool, operator: str, shape: str, headless: bool) -> None:
    """Training drill: a sandbox (PostgreSQL + demo app), a baseline backup, then a bad
    migration; the console opens on it in drill mode (or, --headless, the commands are yours).
    Quitting stops the sandbox."""
    from app import drills

    if list_only:
        from rich.console import Console

        out = Console(highlight=False, soft_wrap=True)
        for s in drills.SCENARIOS:   # no answers here: they are the debrief's
            extra = f"  (needs {s.needs})" if s.needs else ""
            out.print(f"{s.name:<22} {s.difficulty:<7} {s.title}{extra}", markup=False)
        out.print("Play one: rollback-console drill --scenario NAME. The right answer is "
                  "shown in the debrief, after you have played it.", markup=False)
        return
    import asyncio
    import signal
    import time

    from app import config as config_mod
    from app import logs
    from app.drill_run import headless_drill, prepare_drill
    from app.drill_score import mastered

    chosen = drills.pick(scenario, mastered(operator))
    logs.configure()
    signal.signal(signal.SIGTERM, _stop_on_signal)
    box = _start_sandbox(directory, rows, seed, shape)
    try:
        cfg = config_mod.load(box.config_path)
        with _err().status("taking the baseline backup, then applying the bad migration…"):
            asyncio.run(prepare_drill(cfg, chosen))
        cfg = config_mod.load(box.config_path)   # the drill's setup may record in it (migration_at)
        if headless:
            code = headless_drill(box.config_path, chosen, operator)
        else:
            from app.tui import DrillRun

            code = _run_tui(cfg, "drill", briefing=f"{chosen.title}: {chosen.briefing}",
                            drill=DrillRun(chosen, time.time(), operator))
    finally:
        box.down()
    sys.exit(code)


@cli.group()
def sandbox() -> None:
    """A throwaway PostgreSQL with the demo database, and the demo app."""


@sandbox.command("up")
@click.option("--rows", type=click.IntRange(min=10), default=2000, show_default=True,
              help="Rows in the largest demo table.")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the demo data.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=LazyPath),
              default=None, help="Sandbox directory [default: the user's state directory].")
@_SHAPE_OPTION
def sandbox_up(rows: int, seed: int, directory: Path | None, shape: str) -> None:
    """Start the sandbox and keep it running until Ctrl-C or `sandbox down`."""
    import shlex
    import signal

    from rich.console import Console

    from app import logs

    logs.configure()
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGHUP, _stop_on_signal)
    box = _start_sandbox(directory, rows, seed, shape)
    try:
        assert box.info is not None
        out = Console(highlight=False, soft_wrap=True)
        out.print("[bold]Sandbox is up.[/bold]")
        if shape == "supabase":
            out.print("  shape:    supabase (the console connects as postgres, no superuser)")
        out.print(f"  config:   {box.config_path}")
        out.print(f"  database: {box.info.psql_dsn}")
        out.print(f"  demo app: {box.info.app_url}")
        out.print(f"  console:  rollback-console -c {box.config_path}")
        out.print(f"  psql:     psql '{box.info.psql_dsn}'")
        where = f" --dir {shlex.quote(str(directory))}" if directory is not None else ""
        out.print(f"Press Ctrl-C (or run `rollback-console sandbox down{where}`) to stop it.",
                  style="dim", markup=False)
        sys.stdout.flush()
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        box.down()
        _err().print("sandbox stopped")


@sandbox.command("down")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=LazyPath),
              default=None, help="Sandbox directory [default: the user's state directory].")
def sandbox_down(directory: Path | None) -> None:
    """Stop a running sandbox (and clean up one a crashed console left behind)."""
    from app import logs
    from app.paths import default_sandbox_dir
    from app.sandbox.manager import read_info, stop_running

    logs.configure()
    where = (directory or default_sandbox_dir()).expanduser().resolve()
    if read_info(where) is None:
        raise BadInput(f"no sandbox is running in {where}: nothing was stopped. A sandbox "
                       "started with --dir D is stopped with `rollback-console sandbox down "
                       "--dir D` (its `sandbox up` printed the command)")
    click.echo(stop_running(where))


register_all(cli)


def render_help() -> str:
    """The top-level help as click renders it at HELP_WIDTH: the text app/help.txt keeps.
    Regenerate with `python -c "import app.cli as c; c.write_help()"`."""
    with click.Context(cli, info_name="rollback-console", terminal_width=HELP_WIDTH) as ctx:
        return ctx.get_help() + "\n"


def write_help() -> None:
    with open(HELP_FILE, "w", encoding="utf-8") as out:
        out.write(render_help())


def main() -> None:
    """Entry point: domain errors become a plain message and their exit code."""
    try:
        cli.main(prog_name="rollback-console", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(BAD_INPUT if isinstance(exc, click.UsageError) else exc.exit_code)
    except click.exceptions.Abort:
        _err().print("aborted")
        sys.exit(INTERRUPTED)
    except Exception as caught:
        error = caught if isinstance(caught, ConsoleError) else (
            _read_only_violation(caught) or _unexpected(caught))
        from app import logs
        from app.secrets import scrub

        err = _err()
        logs.get("cli").error("startup failed", error=str(error))
        from rich.markup import escape

        err.print(f"[bold]error:[/bold] {escape(scrub(str(error)))}", markup=True)
        sys.exit(error.exit_code)


def _unexpected(exc: Exception) -> ConsoleError:
    """Any other failure: one line and exit 1, the traceback in the log file (never on the
    terminal: it can hold local values)."""
    from app import logs

    logs.get("cli").error("unexpected failure", exc_info=exc)
    text = str(exc).strip().splitlines()
    return ConsoleError(f"{type(exc).__name__}: {text[0] if text else 'no message'} (the "
                        f"details are in the log, {logs.current_log_path()})")


def _read_only_violation(exc: Exception) -> ConsoleError | None:
    """A write the server refused in a read-only session (--mode assess: a scratch database a
    hand-made backup set needs) is a refusal, said plainly; None for anything else."""
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is None or not isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
        return None
    return Refused("--mode assess is read-only: the server refused a write this command needed "
                   f"({exc}). Nothing was changed; run it without --mode assess")
