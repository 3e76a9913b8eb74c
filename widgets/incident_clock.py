"""The incident clock: time since the incident opened, against the runbook's downtime budget."""

from __future__ import annotations

import time

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static


def hms(seconds: float) -> str:
    """h:mm:ss, or m:ss under an hour (step lists must fit 80 columns)."""
    seconds = int(max(0, seconds))
    if seconds < 3600:
        return f"{seconds // 60:d}:{seconds % 60:02d}"
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class IncidentClock(Static):
    DEFAULT_CSS = "IncidentClock { height: 1; width: auto; }"

    started: reactive[float | None] = reactive(None)
    budget_s: reactive[int] = reactive(0)

    def on_mount(self) -> None:
        self.set_interval(1.0, self.refresh)

    def start(self, started: float | None = None, budget_s: int = 0) -> None:
        self.started = started if started is not None else time.time()
        self.budget_s = budget_s

    def render(self) -> Text:
        if self.started is None:
            return Text("incident clock: not started", style="dim")
        elapsed = time.time() - self.started
        text = Text("incident ")
        text.append(hms(elapsed), style="bold")
        if self.budget_s:
            over = elapsed > self.budget_s
            text.append(f" / budget {hms(self.budget_s)}")
            if over:
                text.append("  OVER BUDGET", style="bold reverse")
        return text
