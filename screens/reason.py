"""Ask for a typed reason (skipping a step, overriding a recommendation): it is journaled."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static


class ReasonScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, ok_label: str = "OK"):
        super().__init__()
        self.question = question
        self.ok_label = ok_label

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(self.question, id="confirm-question")
            yield Input(placeholder="the reason (goes into the journal)", id="reason")
            yield Static("", id="reason-error")
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="no", variant="primary")
                yield Button(self.ok_label, id="yes", variant="warning")

    @on(Button.Pressed, "#no")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#yes")
    @on(Input.Submitted, "#reason")
    def ok(self) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        if not reason:
            self.query_one("#reason-error", Static).update("✖ a reason is required")
            return
        self.dismiss(reason)
