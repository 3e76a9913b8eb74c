"""The runbook's post-rollback checklist, filling in live; enter opens an item's evidence."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerState

from app.checks import CheckResult
from app.errors import ConsoleError
from app.journal import Journal
from app.validation import CHECKLIST, Checklist, ItemResult, item_result, run_validation
from screens.base import ConsoleScreen
from screens.finding import FindingScreen
from widgets.check_list import CheckList


class ValidationCheckDone(Message):
    def __init__(self, result: CheckResult):
        super().__init__()
        self.result = result


class ValidationScreen(ConsoleScreen[bool | None]):
    BINDINGS = [
        Binding("enter", "evidence", "Evidence"),
        Binding("r", "rerun", "Validate again"),
        Binding("w", "watch", "Watch for 24 h"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, backup_id: str | None = None, journal: Journal | None = None):
        super().__init__()
        self.backup_id = backup_id
        self.journal = journal
        self.results: dict[str, CheckResult] = {}
        self.items: dict[str, ItemResult] = {}
        self.checklist: Checklist | None = None


    def compose(self) -> ComposeResult:
        yield self.banner()
        yield CheckList([(i.name, f"{i.name}: {i.runbook}") for i in CHECKLIST],
                        id="val-items", classes="panel")
        yield Static("validating (read-only)…", id="val-verdict", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#val-items").border_title = "Post-rollback verification"
        self.query_one(CheckList).focus()
        self.validate()

    @work(group="validate", name="validation", exit_on_error=False)
    async def validate(self) -> Checklist:
        def on_result(result: CheckResult) -> None:
            self.post_message(ValidationCheckDone(result))

        return await run_validation(self.console.config, self.backup_id, on_result=on_result)

    def on_validation_check_done(self, message: ValidationCheckDone) -> None:
        self.results[message.result.check] = message.result
        table = self.query_one(CheckList)
        for item in CHECKLIST:
            if item.name not in self.items and all(c in self.results for c in item.checks):
                done = item_result(item, self.results)
                self.items[item.name] = done
                table.set_result(item.name, str(done.status), done.summary)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "validate":
            return
        verdict = self.query_one("#val-verdict", Static)
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            verdict.update(f"✖ validation could not run: "
                           f"{error if isinstance(error, ConsoleError) else repr(error)}")
            self.query_one(CheckList).stop_pending("validation stopped: see the verdict")
        elif event.state == WorkerState.SUCCESS and event.worker.result is not None:
            self.checklist = event.worker.result
            for item in self.checklist.items:
                self.items[item.name] = item
                self.query_one(CheckList).set_result(item.name, str(item.status), item.summary)
            failed = [i.name for i in self.checklist.items if str(i.status) != "pass"]
            text = Text()
            if not failed:
                text.append("✔ ALL ITEMS PASS", style="bold reverse")
                text.append(f" against backup {self.checklist.backup}")
            else:
                text.append(f"✖ {len(failed)} ITEM(S) NOT PASSING", style="bold reverse")
                text.append(": " + ", ".join(failed) + " (enter on an item: its evidence)")
            verdict.update(text)
            if self.journal is not None:
                self.journal.append("validation", **self.checklist.journal_fields())

    @on(DataTable.RowSelected, "#val-items")
    def row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_evidence()

    def action_evidence(self) -> None:
        table = self.query_one(CheckList)
        if not table.row_count:
            return
        key = str(table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value)
        item = self.items.get(key)
        if item is None:
            self.notify("That item is still being checked.")
            return
        self.app.push_screen(FindingScreen(f"{item.name}: {item.status.upper()}", item.runbook,
                                           item.summary, item.evidence))

    def action_rerun(self) -> None:
        if any(w.group == "validate" and w.is_running for w in self.workers):
            return
        self.results.clear()
        self.items.clear()
        for item in CHECKLIST:
            self.query_one(CheckList).set_result(item.name, "pending", "")
        self.validate()

    def action_watch(self) -> None:
        from screens.watch import WatchScreen

        self.app.push_screen(WatchScreen(self.backup_id, journal=self.journal))

    def action_back(self) -> None:
        self.dismiss(self.checklist.passed if self.checklist else None)
