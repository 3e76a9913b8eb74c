"""A labelled status: an icon and a word (never colour alone) and a one-line summary."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from app.checks.model import mark


class _Row(Table):
    """A one-row grid whose ``str`` is its words (what tests and screen readers compare)."""

    def __str__(self) -> str:
        return " ".join(str(cell) for column in self.columns for cell in column.cells)


class StatusLine(Static):
    """``label: ✔ PASS summary`` — used for the home screen's probes and later the checklist."""

    DEFAULT_CSS = "StatusLine { height: auto; }"

    status: reactive[str] = reactive("pending", layout=True)
    summary: reactive[str] = reactive("", layout=True)   # a longer text may need more lines

    def __init__(self, label: str, *, id: str | None = None):
        super().__init__(id=id)
        self.label = label

    def render(self) -> Table:
        """Label and status in fixed columns; a long summary wraps under itself (hanging
        indent), so a path or an ID is never cut and the columns stay readable."""
        shown = mark(self.status)
        grid = _Row.grid(expand=True)
        grid.add_column(width=12, no_wrap=True)
        grid.add_column(width=9, no_wrap=True)
        grid.add_column(ratio=1, overflow="fold")
        grid.add_row(Text(self.label, style="bold"), Text(shown.text, style=shown.style),
                     Text(self.summary))
        return grid
