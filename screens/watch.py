"""Extended monitoring (the runbook's 24 hours after a rollback): the post-rollback checklist
again every interval, each item's latest status (icon and word) and its history as a trend,
and an ALERT when something that passed regresses (a notification goes to the channels, as
`validate --watch` does: the same engine, app.watch)."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Static

from app.journal import Journal
from app.validation import CHECKLIST
from app.watch import Round, sparkline, watch
from screens.base import ConsoleScreen
from screens.work import Group
from widgets.check_list import status_text

HISTORY = 30   # rounds shown in each item's trend


class WatchRound(Message):
    def __init__(self, current: Round, rounds: list[Round]):
        super().__init__()
        self.current = current
        self.rounds = rounds


class WatchScreen(ConsoleScreen[None]):
    BINDINGS = [
        Binding("s", "stop", "Stop watching"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, backup_id: str | None = None, duration_s: float = 24 * 3600,
                 interval_s: float = 300, journal: Journal | None = None):
        super().__init__()
        self.backup_id = backup_id
        self.duration_s = duration_s
        self.interval_s = interval_s
        self.journal = journal
        self.rounds: list[Round] = []
        self.alerts: list[str] = []
        self.ends_at = 0.0
        self.next_at = 0.0
        self.finished = ""

    def compose(self) -> ComposeResult:
        yield self.banner()
        yield Static("", id="watch-status", classes="panel")
        yield Static("", id="watch-alert")
        yield DataTable(id="watch-items", classes="panel", cursor_type="row",
                        zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#watch-items", DataTable)
        table.border_title = "Extended monitoring: the post-rollback checklist, again"
        table.add_column("item", key="item")
        table.add_column("now", key="now", width=10)
        table.add_column("trend (█ pass, ▁ not)", key="trend", width=24)
        table.add_column("summary", key="summary")
        for item in CHECKLIST:
            table.add_row(item.name, status_text("pending"), "", "", key=item.name)
        self.query_one("#watch-alert").display = False
        self.ends_at = time.monotonic() + self.duration_s
        self.next_at = time.monotonic()
        self.set_interval(1, self._tick)
        self._tick()
        table.focus()
        self.run_watch()

    @work(group=Group.WATCH, name="watch", exit_on_error=False, exclusive=True)
    async def run_watch(self) -> list[Round]:
        def on_round(current: Round, rounds: list[Round]) -> None:
            self.post_message(WatchRound(current, list(rounds)))

        return await watch(self.console.config, self.backup_id, self.duration_s,
                           self.interval_s, on_round)

    def on_watch_round(self, message: WatchRound) -> None:
        self.rounds = message.rounds
        self.next_at = time.monotonic() + self.interval_s
        table = self.query_one("#watch-items", DataTable)
        for item in message.current.checklist.items:
            history = [1 if any(i.name == item.name and i.status.passed
                                for i in r.checklist.items) else 0
                       for r in self.rounds[-HISTORY:]]
            table.update_cell(item.name, "now", status_text(str(item.status)))
            table.update_cell(item.name, "trend", sparkline(history, 1))
            table.update_cell(item.name, "summary", item.summary, update_width=True)
        if message.current.regressed:
            stamp = time.strftime("%H:%M:%S", time.localtime(message.current.at))
            self.alerts += [f"{stamp} {line}" for line in message.current.regressed]
            alert = self.query_one("#watch-alert", Static)
            text = Text("⚠ ALERT: REGRESSED ", style="bold reverse")
            text.append("; ".join(self.alerts[-3:]) + "  (the channels were notified)")
            alert.update(text)
            alert.display = True
            if self.journal is not None:
                self.journal.append("watch_regression", regressed=message.current.regressed)
        self._tick()

    def _tick(self) -> None:
        now = time.monotonic()
        total = len(self.rounds[-1].checklist.items) if self.rounds else len(CHECKLIST)
        passing = self.rounds[-1].passing if self.rounds else 0
        trend = sparkline([r.passing for r in self.rounds[-HISTORY:]], total)
        if self.finished:
            state = self.finished
        elif not self.rounds:
            state = "first round running (read-only)…"
        else:
            state = (f"next round in {max(0, self.next_at - now):.0f}s · ends in "
                     f"{_span(max(0.0, self.ends_at - now))}")
        self.query_one("#watch-status", Static).update(
            f"round {len(self.rounds)} · {passing}/{total} items pass {trend} · every "
            f"{_span(self.interval_s)} for {_span(self.duration_s)} · {state}")

    def work_failed(self, group: Group, line: str) -> None:
        if group is not Group.WATCH:
            super().work_failed(group, line)
            return
        self.finished = f"✖ {line}"
        self._stop_pending("not watched: see the status above")
        self._tick()

    def work_done(self, group: Group, result: Any) -> None:
        if group is Group.WATCH:
            self.finished = (f"■ FINISHED after {len(self.rounds)} round(s)"
                             + (f", {len(self.alerts)} regression(s)" if self.alerts else
                                ", no regression"))
            self._tick()

    def work_cancelled(self, group: Group) -> None:
        if group is Group.WATCH:
            self.finished = f"■ STOPPED by the operator after {len(self.rounds)} round(s)"
            self._stop_pending("stopped before this item was checked")
            self._tick()

    def _stop_pending(self, summary: str) -> None:
        """Nothing runs any more: no row may go on saying RUNNING."""
        tables = self.query("#watch-items").results(DataTable)
        table = next(tables, None)
        if self.rounds or table is None:
            return
        for item in CHECKLIST:
            table.update_cell(item.name, "now", status_text("notrun"))
            table.update_cell(item.name, "summary", summary, update_width=True)

    @property
    def watching(self) -> bool:
        return self.working(Group.WATCH)

    def action_stop(self) -> None:
        if self.watching:
            self.workers.cancel_group(self, Group.WATCH)

    def action_back(self) -> None:
        self.action_stop()
        self.dismiss(None)


def _span(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds >= 60:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:.0f}s"
