"""`maintenance on|off|status`: the app's maintenance switch by hand, verified the way a
rollback's steps verify it (503 when on, health 200 when off). For the operator after a run
that stopped with the app still in maintenance. It takes the target lock like every command
that acts on the target, so it is refused while a live run works on it (from any state
directory or host) and allowed after any stop; journaled in the target's unfinished incident,
else its newest."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from app.config import Config
    from app.journal import Incident, Journal

from app.errors import BadInput, Refused


def register(group: click.Group) -> None:
    group.add_command(maintenance)


@click.command()
@click.argument("action", type=click.Choice(["on", "off", "status"]))
@click.pass_context
def maintenance(ctx: click.Context, action: str) -> None:
    """The app's maintenance mode: on (verified: the API answers 503), off (verified: health
    answers 200) or status. Refused while a live run holds the target lock (it names the
    holder) and in --mode assess; allowed after a run stopped (a later `resume` sees the
    switch and goes on).

    \b
    Exit codes: 0 done (status: 0 off, 10 on), 1 the switch failed, 2 bad input,
    3 refused."""
    import asyncio

    from app import config as config_mod
    from app import logs
    from app.comms import Maintenance
    from app.rollback.steps import operator_maintenance

    logs.configure()
    cfg = config_mod.load(ctx.obj["config_path"])
    if cfg.app is None:
        raise BadInput("the config has no [app]: there is no maintenance switch to use")
    app = cfg.app
    if action == "status":
        async def status() -> bool:
            m = Maintenance(app)
            try:
                return await m.status()
            finally:
                await m.aclose()

        on = asyncio.run(status())   # MaintenanceFailed: exit 1 with its message
        click.echo(f"maintenance mode is {'ON' if on else 'OFF'} at {app.base_url}")
        sys.exit(10 if on else 0)
    if ctx.obj.get("mode") == "assess":
        raise Refused("--mode assess is read-only: the maintenance switch is not touched")
    unfinished, journal = asyncio.run(_incident(cfg))
    summary = asyncio.run(operator_maintenance(   # TargetLocked: exit 3 naming the holder
        cfg, action == "on", journal, f"operator (rollback-console maintenance {action})",
        warn=lambda line: click.echo(f"warning: {line}", err=True)))
    click.echo(summary + (f" (journaled in incident {journal.incident_id})" if journal else ""))
    if unfinished is not None:
        click.echo(f"incident {unfinished.id} is unfinished: `rollback-console "
                   "resume` goes on from where it stopped", err=True)


async def _incident(cfg: Config) -> tuple[Incident | None, Journal | None]:
    """The incident on the target's database to journal the switch in: the unfinished one, else
    the newest; none when the database cannot be reached (the switch still works)."""
    from app.errors import ConsoleError
    from app.journal import find_unfinished, newest_incident
    from app.rollback.resume import target_database

    try:
        database = await target_database(cfg)
    except ConsoleError:
        return None, None
    unfinished = find_unfinished(database)
    if unfinished is not None:
        return unfinished, unfinished.journal
    return None, newest_incident(database)
