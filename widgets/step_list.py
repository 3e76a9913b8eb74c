"""The plan's steps: status as an icon and a word, elapsed time against the runbook's budget,
destructive steps and the point of no return marked."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from app.checks.model import mark
from widgets.incident_clock import hms


@dataclass
class StepRow:
    id: str
    title: str
    budget_s: int
    destructive: bool = False
    point_of_no_return: bool = False
    status: str = "pending"
    started: float | None = None
    elapsed_s: float | None = None


class StepList(OptionList):
    """One line per step; ``set_status`` as events arrive; the highlighted step is selectable."""

    DEFAULT_CSS = "StepList { height: auto; max-height: 60%; }"

    def __init__(self, steps: list[StepRow], *, id: str | None = None,
                 classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.rows = {s.id: s for s in steps}

    def on_mount(self) -> None:
        self.redraw()
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        if any(r.status == "running" for r in self.rows.values()):
            self.redraw()

    def set_status(self, step: str, status: str, elapsed_s: float | None = None) -> None:
        row = self.rows[step]
        row.status = status
        if status == "running":
            row.started = time.monotonic()
            self.highlighted = list(self.rows).index(step)   # keep the running step in view
        if elapsed_s is not None:
            row.elapsed_s = elapsed_s
        self.redraw()

    def line(self, row: StepRow) -> Text:
        shown = mark(row.status)
        text = Text()
        text.append(f"{shown.icon} {shown.word:<7} ", style=shown.style)
        text.append(row.title)
        if row.point_of_no_return:
            text.append(" ⚠ NO RETURN", style="bold")
        elif row.destructive:
            text.append(" ! destructive", style="bold")
        elapsed = row.elapsed_s
        if row.status == "running" and row.started is not None:
            elapsed = time.monotonic() - row.started
        if elapsed is not None:
            text.append(f" {hms(elapsed)}/{hms(row.budget_s)}",
                        style="bold" if elapsed > row.budget_s else "")
        else:
            text.append(f" budget {hms(row.budget_s)}", style="dim")
        return text

    def redraw(self) -> None:
        highlighted = self.highlighted
        self.clear_options()
        self.add_options([Option(self.line(r), id=r.id) for r in self.rows.values()])
        if highlighted is not None:
            self.highlighted = highlighted
            self.scroll_to_highlight()
