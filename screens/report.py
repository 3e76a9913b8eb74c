"""The incident summary: timeline, decisions, durations, results; written from the journal."""

from __future__ import annotations

from pathlib import Path

from rich.markdown import Markdown
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from app.journal import Journal
from app.report import render_markdown
from screens.base import ConsoleScreen


class ReportScreen(ConsoleScreen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"),
                Binding("e", "export", "Export Markdown")]

    def __init__(self, journal: Journal):
        super().__init__()
        self.journal = Journal(journal.path)  # re-read: the run may have appended since
        self.markdown = render_markdown(self.journal)

    def compose(self) -> ComposeResult:
        yield self.banner()
        with VerticalScroll(id="report-box"):
            yield Static(Markdown(self.markdown), id="report-text")
        yield Footer()

    def action_export(self) -> Path:
        path = self.journal.dir / "report.md"
        path.write_text(self.markdown, encoding="utf-8")
        self.notify(f"written to {path}", title="Report exported")
        return path
