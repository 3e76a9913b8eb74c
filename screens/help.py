"""`?`: every key of the screen beneath, with what it does, and that screen's ``HELP_NOTE`` (how
its parts fit together, e.g. the plan screen's two sources) when it has one."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close help")]

    def __init__(self, title: str, keys: list[tuple[str, str]], intro: str = ""):
        super().__init__()
        self.title_text = title
        self.keys = keys
        self.intro = intro

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 3))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key, description in self.keys:
            table.add_row(key, description)
        with VerticalScroll(id="help-box"):   # a long note scrolls (arrows), keys below it
            yield Static(f"Help: {self.title_text}", classes="help-title")
            if self.intro:
                yield Static(self.intro, classes="help-intro")
            note = self._note()
            if note:
                yield Static(Text(note), classes="help-intro")   # "[pitr]" is not markup
            yield Static(table)
            yield Static("escape or ? closes this help", classes="help-hint")

    def _note(self) -> str:
        """The screen beneath's own note (a class attribute ``HELP_NOTE``), if any."""
        beneath = [screen for screen in self.app.screen_stack if screen is not self]
        note = getattr(beneath[-1], "HELP_NOTE", "") if beneath else ""
        return note if isinstance(note, str) else ""
