"""Screens that later work builds, shown honestly as not available yet."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Footer, Static

from screens.base import ConsoleScreen


class PlaceholderScreen(ConsoleScreen[None]):
    BINDINGS = [Binding("escape,backspace", "app.pop_screen", "Back")]

    def __init__(self, title: str, explanation: str):
        super().__init__()
        self.title_text = title
        self.explanation = explanation

    def compose(self) -> ComposeResult:
        yield self.banner()
        with Vertical(id="placeholder"):
            yield Static(f"{self.title_text}: not available yet", classes="placeholder-title")
            yield Static(self.explanation)
            yield Static("Press escape to go back.")
        yield Footer()
