"""`maintenance on|off|status`: the app's maintenance switch by hand, verified the way a
rollback's steps verify it (503 when on, health 200 when off). For the operator after a run
that stopped with the app still in maintenance; journaled in that target's newest incident."""

from __future__ import annotations

import sys

import click

from app.errors import BadInput, ConsoleError, Refused


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
    import time

    from app import config as config_mod
    from app import logs
    from app.comms import Maintenance, MaintenanceFailed
    from app.journal import find_unfinished, newest_incident

    logs.configure()
    cfg = config_mod.load(ctx.obj["config_path"])
    if cfg.app is None:
        raise BadInput("the config has no [app]: there is no maintenance switch to use")
    app = cfg.app
    if action != "status":
        if ctx.obj.get("mode") == "assess":
            raise Refused("--mode assess is read-only: the maintenance switch is not touched")
        unfinished = find_unfinished(cfg.target.name)
        if unfinished is not None:
            raise Refused(f"incident {unfinished.incident_id} on {cfg.target.name} is "
                          "unfinished: `rollback-console resume` goes on from where it stopped "
                          "(its recovery step switches maintenance off)")

    async def switch() -> str:
        m = Maintenance(app)
        try:
            if action == "status":
                return "on" if await m.status() else "off"
            result = await (m.enable() if action == "on" else m.disable())
            return result.summary
        finally:
            await m.aclose()

    if action == "status":
        try:
            state = asyncio.run(switch())
        except MaintenanceFailed as exc:
            raise ConsoleError(str(exc)) from None
        click.echo(f"maintenance mode is {state.upper()} at {app.base_url}")
        sys.exit(10 if state == "on" else 0)

    journal = newest_incident(cfg.target.name)
    name = f"maintenance_{action}"
    if journal is not None:
        journal.append("action_started", action=name, by="operator (rollback-console "
                       f"maintenance {action})")
    started = time.monotonic()
    try:
        summary = asyncio.run(switch())
    except MaintenanceFailed as exc:
        if journal is not None:
            journal.append("action_finished", action=name, ok=False, error=str(exc),
                           elapsed_s=round(time.monotonic() - started, 3))
        raise ConsoleError(str(exc)) from None
    if journal is not None:
        journal.append("action_finished", action=name, ok=True,
                       elapsed_s=round(time.monotonic() - started, 3))
    click.echo(summary + (f" (journaled in incident {journal.incident_id})" if journal else ""))
