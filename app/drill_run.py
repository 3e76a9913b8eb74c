"""A drill's setup (the baseline backup, then the bad migration) and the drill played without
the console (``drill --headless``): the trainee uses the commands, then makes the call and is
scored the same way as in the console."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from app.config import Config
from app.drills import Scenario

TIERS = ("IMMEDIATE ROLLBACK", "FORWARD-FIX", "MONITOR AND ASSESS", "HEALTHY")


def headless_drill(config_path: Path, scenario: Scenario, operator: str) -> int:
    """The drill without the console: the trainee uses the commands; Enter ends it, the
    trainee's call is asked (the console journals it from the assessment screen), then the
    score and the debrief, the same as the console's."""
    import time

    from rich.console import Console

    from app.drill_score import debrief_text, record, score
    from app.journal import Journal, incidents_root, new_incident_id

    started = time.time()
    out = Console(highlight=False, soft_wrap=True)
    base = f"rollback-console -c {config_path}"
    out.print(f"[bold]DRILL INCIDENT[/bold]  {scenario.title}: {scenario.briefing}")
    out.print(f"  assess:    {base} assess\n"
              f"  plan:      {base} run --type TYPE [--tables T] --dry-run\n"
              f"  roll back: {base} run --type TYPE [--tables T] --confirm PHRASE\n"
              f"  validate:  {base} validate")
    out.print("Press Enter when you are done (Ctrl-C stops without a score).", style="dim")
    sys.stdout.flush()
    sys.stdin.readline()
    for n, tier in enumerate(TIERS, 1):
        out.print(f"  {n}. {tier}")
    choice = click.prompt("Your call (the runbook's tier)", type=click.IntRange(1, len(TIERS)))
    journal = Journal.open(incidents_root() / new_incident_id())
    journal.append("assessment", tier=TIERS[choice - 1], action="headless drill",
                   recommended=None, tables=[], backup=None, findings=[])
    journal.append("decision", choice=TIERS[choice - 1], reason="headless drill")
    result = score(scenario, started, operator)
    out.print(debrief_text(scenario, result, record(result)), markup=False)
    return 0


async def prepare_drill(cfg: Config, migration: str) -> None:
    from app.backups.create import create_set
    from app.db import connect

    await create_set(cfg, "before-drill")
    conn = await connect(cfg.target)
    try:
        await conn.execute(migration)
    finally:
        await conn.close()
