"""The runbook's post-rollback checklist, filling in live; enter opens an item's evidence."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Static

from app.checks import CheckResult
from app.journal import Journal
from app.validation import CHECKLIST, Checklist, ItemResult, item_result, run_validation
from screens.checks_screen import ChecksScreen, Evidence
from screens.watch import WatchScreen
from screens.work import Group
from widgets.check_list import CheckList


class ValidationScreen(ChecksScreen[bool | None]):
    BINDINGS = [
        Binding("enter", "evidence", "Evidence"),
        Binding("r", "rerun", "Validate again"),
        Binding("w", "watch", "Watch for 24 h"),
        Binding("escape", "back", "Back"),
    ]
    GROUP = Group.VALIDATE
    WORKER = "validation"
    VERDICT = "#val-verdict"
    WAITING = "validating (read-only)…"
    STOPPED = "validation stopped: see the verdict"
    NOT_YET = "That item is still being checked."

    def __init__(self, backup_id: str | None = None, journal: Journal | None = None):
        super().__init__()
        self.backup_id = backup_id
        self.journal = journal
        self.items: dict[str, ItemResult] = {}
        self.checklist: Checklist | None = None

    def compose(self) -> ComposeResult:
        yield self.banner()
        yield CheckList([(i.name, f"{i.name}: {i.runbook}") for i in CHECKLIST],
                        id="val-items", classes="panel")
        yield Static(self.WAITING, id="val-verdict", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#val-items").border_title = "Post-rollback verification"

    def run_checks(self, on_result: Callable[[CheckResult], None]) -> Awaitable[Checklist]:
        return run_validation(self.console.config, self.backup_id, on_result=on_result)

    def record(self, result: CheckResult) -> None:
        """An item is shown once every check it rests on is back."""
        table = self.query_one(CheckList)
        for item in CHECKLIST:
            if item.name not in self.items and all(c in self.results for c in item.checks):
                done = item_result(item, self.results)
                self.items[item.name] = done
                table.set_result(item.name, str(done.status), done.summary)

    def finished(self, result: Any) -> None:
        self.checklist = checklist = result
        for item in checklist.items:
            self.items[item.name] = item
            self.query_one(CheckList).set_result(item.name, str(item.status), item.summary)
        failed = [i.name for i in checklist.items if not i.ok]
        text = Text()
        if not failed:
            text.append("✔ ALL ITEMS PASS", style="bold reverse")
            text.append(f" against backup {checklist.backup}")
        else:
            text.append(f"✖ {len(failed)} ITEM(S) NOT PASSING", style="bold reverse")
            text.append(": " + ", ".join(failed) + " (enter on an item: its evidence)")
        self.query_one("#val-verdict", Static).update(text)
        if self.journal is not None:
            self.journal.append("validation", **checklist.journal_fields())

    def evidence_of(self, key: str) -> Evidence | None:
        item = self.items.get(key)
        if item is None:
            return None
        return f"{item.name}: {item.status.upper()}", item.runbook, item.summary, item.evidence

    def reset(self) -> None:
        self.items.clear()
        self.checklist = None

    def action_watch(self) -> None:
        self.app.push_screen(WatchScreen(self.backup_id, journal=self.journal))

    def action_back(self) -> None:
        self.dismiss(self.checklist.passed if self.checklist else None)
