"""The drill's debrief: the score, what the operator did (from the journal), the ideal path."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class DebriefScreen(ModalScreen[bool]):
    BINDINGS = [Binding("q,enter", "finish", "Quit the drill"),
                Binding("escape", "back", "Back to the console")]

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="finding-box"):
            yield Static("Drill debrief", classes="help-title")
            yield Static(self.text, id="debrief-text")
            yield Static("q or enter: quit the drill (the sandbox stops) · escape: back",
                         classes="help-hint")

    def action_finish(self) -> None:
        self.dismiss(True)

    def action_back(self) -> None:
        self.dismiss(False)
