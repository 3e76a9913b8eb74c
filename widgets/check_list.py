"""Checks (or checklist items) as they complete: an icon and a word for the status, never colour
alone, the one-line summary; enter opens the evidence."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from app.checks.model import mark


def status_text(status: str) -> Text:
    """A check's status in the one table's icon and word; a check not back yet is running
    (every check of a list starts at once)."""
    shown = mark("running" if status == "pending" else status)
    return Text(shown.text, style=shown.style)


class CheckList(DataTable[Text | str]):
    """Rows keyed by check name; ``set_result`` fills one in."""

    DEFAULT_CSS = "CheckList { height: auto; max-height: 70%; }"

    def __init__(self, names: list[tuple[str, str]], *, id: str | None = None,
                 classes: str | None = None):
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self.names = names   # (key, label)
        self.statuses: dict[str, str] = {}

    def on_mount(self) -> None:
        self.add_column("check", key="check")
        self.add_column("status", key="status", width=10)
        self.add_column("summary", key="summary")
        for key, label in self.names:
            self.add_row(label, status_text("pending"), "", key=key)
            self.statuses[key] = "pending"

    def set_result(self, key: str, status: str, summary: str) -> None:
        if key not in self.statuses:
            self.add_row(key, status_text(status), summary, key=key)
        else:
            self.update_cell(key, "status", status_text(status))
            self.update_cell(key, "summary", summary, update_width=True)
        self.statuses[key] = status

    def stop_pending(self, summary: str) -> None:
        """The run behind the list stopped: what was still running never will."""
        for key, status in list(self.statuses.items()):
            if status == "pending":
                self.set_result(key, "notrun", summary)

    @property
    def done(self) -> int:
        return sum(1 for s in self.statuses.values() if s != "pending")
