"""What the assessment and the post-rollback validation share: a list of checks filling in as
each completes (the engine streams them), a verdict panel, r to run them again, and enter for a
row's evidence. A subclass says which engine call runs, how a result fills its rows, what a
row's evidence is, and what the finished run means."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from textual import on
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable, Static

from app.checks import CheckResult
from screens.base import ConsoleScreen
from screens.finding import FindingScreen
from screens.work import Group
from widgets.check_list import CheckList

ResultT = TypeVar("ResultT")
# (title, what the runbook asks, summary, evidence): what enter on a row opens
Evidence = tuple[str, str, str, dict[str, Any]]


class CheckCompleted(Message):
    """One check finished (posted by the worker; the screen fills its row)."""

    def __init__(self, result: CheckResult):
        super().__init__()
        self.result = result


class ChecksScreen(ConsoleScreen[ResultT]):
    GROUP: ClassVar[Group]
    WORKER: ClassVar[str]       # the worker's name
    VERDICT: ClassVar[str]      # the verdict panel's selector
    WAITING: ClassVar[str]      # the verdict panel while the checks run
    STOPPED: ClassVar[str]      # a row the failed run never reached
    NOT_YET: ClassVar[str]      # enter on a row still being checked

    def __init__(self) -> None:
        super().__init__()
        self.results: dict[str, CheckResult] = {}

    # --- what a subclass says -------------------------------------------------------------

    def run_checks(self, on_result: Callable[[CheckResult], None]) -> Awaitable[Any]:
        """The engine call: runs the checks, calls ``on_result`` as each completes."""
        raise NotImplementedError

    def record(self, result: CheckResult) -> None:
        """One check's result: fill in the rows it completes."""
        raise NotImplementedError

    def evidence_of(self, key: str) -> Evidence | None:
        """What enter on row ``key`` opens; None while it is still being checked."""
        raise NotImplementedError

    def finished(self, result: Any) -> None:
        """The run's outcome (the engine call's return value): the verdict panel."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the last run (r runs the checks again)."""

    # --- shared -----------------------------------------------------------------------------

    def on_mount(self) -> None:
        """Runs after the subclass's own on_mount (Textual calls each class's handler)."""
        self.query_one(CheckList).focus()
        self.start()

    def start(self) -> None:
        self.run_worker(self._checks(), group=self.GROUP, name=self.WORKER,
                        exit_on_error=False)

    async def _checks(self) -> Any:
        def on_result(result: CheckResult) -> None:
            self.post_message(CheckCompleted(result))

        return await self.run_checks(on_result)

    def on_check_completed(self, message: CheckCompleted) -> None:
        self.results[message.result.check] = message.result
        self.record(message.result)

    def work_failed(self, group: Group, line: str) -> None:
        if group is not self.GROUP:
            super().work_failed(group, line)
            return
        self.query_one(self.VERDICT, Static).update(f"✖ {line}")
        self.query_one(CheckList).stop_pending(self.STOPPED)

    def work_done(self, group: Group, result: Any) -> None:
        if group is self.GROUP and result is not None:
            self.finished(result)

    def action_rerun(self) -> None:
        if self.working(self.GROUP):
            return
        self.results.clear()
        self.reset()
        self.refresh_bindings()
        checks = self.query_one(CheckList)
        for key in list(checks.statuses):
            checks.set_result(key, "pending", "")
        self.query_one(self.VERDICT, Static).update(self.WAITING)
        self.start()

    @on(DataTable.RowSelected)
    def row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_evidence()

    def action_evidence(self) -> None:
        table = self.query_one(CheckList)
        if table.cursor_row is None or not table.row_count:
            return
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        shown = self.evidence_of(str(key))
        if shown is None:
            self.notify(self.NOT_YET)
            return
        self.app.push_screen(FindingScreen(*shown))
