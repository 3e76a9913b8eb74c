"""`maintenance on|off|status`: the app's maintenance switch by hand, verified the way a
rollback's steps verify it (503 when on, health 200 when off). For the operator after a run
that stopped with the app still in maintenance; journaled in that target's newest incident."""

from __future__ import annotations

import sys

import click

from app.errors import BadInput, Refused


def register(group: click.Group) -> None:
    group.add_command(maintenance)


@click.command()
@click.argument("action", type=click.Choice(["on", "off", "status"]))
@click.pass_context
def maintenance(ctx: click.Context, action: str) -> None:
    """The app's maintenance mode: on (verified: the API answers 503), off (verified: health
    answers 200) or status. Refused while an incident on this target is unfinished (resume it:
    its recovery step switches maintenance off) and in --mode assess.

    \b
    Exit codes: 0 done (status: 0 off, 10 on), 1 the switch failed, 2 bad input,
    3 refused."""
    import asyncio

    from app import config as config_mod
    from app import logs
    from app.comms import Maintenance
    from app.journal import find_unfinished, newest_incident
    from app.rollback.steps import switch_maintenance

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
    unfinished = find_unfinished(cfg.target.name)
    if unfinished is not None:
        raise Refused(f"incident {unfinished.incident_id} on {cfg.target.name} is unfinished: "
                      "`rollback-console resume` goes on from where it stopped (its recovery "
                      "step switches maintenance off)")
    journal = newest_incident(cfg.target.name)
    summary = asyncio.run(switch_maintenance(
        app, action == "on", journal, f"operator (rollback-console maintenance {action})"))
    click.echo(summary + (f" (journaled in incident {journal.incident_id})" if journal else ""))
