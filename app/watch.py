"""Extended monitoring (the runbook's 24 hours): the post-rollback checklist again and again,
a trend per run, and an alert (and a notification) when something that passed regresses."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app.comms import Notifier
from app.config import Config
from app.errors import BadInput
from app.validation import Checklist, run_validation

BARS = "▁▂▃▄▅▆▇█"


def parse_duration(text: str) -> float:
    """'90', '30s', '10m', '24h' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise BadInput(f"--watch {text!r}: give a duration like 30s, 10m or 24h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def sparkline(values: list[int], top: int) -> str:
    return "".join(BARS[min(len(BARS) - 1, round(v / max(top, 1) * (len(BARS) - 1)))]
                   for v in values)


@dataclass
class Round:
    at: float
    checklist: Checklist
    regressed: list[str] = field(default_factory=list)

    @property
    def passing(self) -> int:
        return sum(1 for i in self.checklist.items if i.status.passed)


async def watch(cfg: Config, backup_id: str | None, duration_s: float, interval_s: float,
                on_round: Callable[[Round, list[Round]], None]) -> list[Round]:
    """Validate every ``interval_s`` for ``duration_s``; notify on each regression."""
    rounds: list[Round] = []
    ends = time.monotonic() + duration_s
    while True:
        checklist = await run_validation(cfg, backup_id)
        current = Round(time.time(), checklist)
        if rounds:
            before = {i.name: i.status.passed for i in rounds[-1].checklist.items}
            current.regressed = [f"{i.name}: {i.summary}" for i in checklist.items
                                 if before.get(i.name) and not i.status.passed]
        rounds.append(current)
        if current.regressed:
            notifier = Notifier(cfg.notifications, cfg.target.name)
            try:
                await notifier.send("regression", "; ".join(current.regressed))
            finally:
                await notifier.aclose()
        on_round(current, rounds)
        if time.monotonic() + interval_s > ends:
            return rounds
        await asyncio.sleep(interval_s)
