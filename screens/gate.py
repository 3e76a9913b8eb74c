"""The confirmation gate: the blast radius (and, from a point in time, which moment; the
repair's two), and the exact phrase to type. Cancel has the focus (enter there cancels); typing
a letter moves into the phrase field, so an operator can just type the phrase and press enter.
Anything but the exact phrase keeps the gate shut and says what is expected."""

from __future__ import annotations

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from widgets.blast_radius import BlastRadius, marked_word


class GateScreen(ModalScreen[bool]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, blast_radius: list[str], phrase: str, moment: str = "",
                 after: str = "", kind: str = ""):
        super().__init__()
        self.title_text = title
        self.moment = moment   # a point-in-time source: which moment (widgets.blast_radius)
        self.after = after     # the repair's second moment: right after the migration
        self.kind = kind       # the rollback type's key: how its '!' lines are marked
        self.blast_radius = blast_radius
        self.phrase = phrase
        self.attempts = 0

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="gate-box"):
            yield Static(self.title_text, id="gate-title")
            if self.moment:
                yield Static(f"Point in time: {self.moment}"
                             + (f"\nRight after the migration: {self.after}" if self.after
                                else ""), id="gate-moment")
            yield BlastRadius(self.blast_radius, marked=marked_word(self.kind), id="gate-blast")
            yield Static(f"To go ahead, type exactly:  {self.phrase}", id="gate-phrase")
            yield Input(placeholder="type the phrase here", id="gate-input",
                        select_on_focus=False)   # the first letter typed stays
            yield Static("", id="gate-error")
            with Horizontal(id="gate-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button("Confirm", id="confirm", variant="error")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_key(self, event: events.Key) -> None:
        # The field stops every printable key it gets: one that reaches the screen was sent
        # to another widget (keys typed fast, before the field's focus lands, were queued for
        # Cancel), so it belongs in the field whoever has the focus now (asking "is the field
        # focused?" dropped every key queued before the focus moved: "ROLLBA")
        field = self.query_one("#gate-input", Input)
        if not event.character or not event.is_printable:
            return
        if event.character.isspace() and not field.value:
            return   # a phrase never starts with a space; once typing has begun, spaces count
        field.focus()
        field.insert_text_at_cursor(event.character)
        event.stop()
        event.prevent_default()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#confirm")
    @on(Input.Submitted, "#gate-input")
    def confirm(self) -> None:
        typed = self.query_one("#gate-input", Input).value
        if typed == self.phrase:
            self.dismiss(True)
            return
        self.attempts += 1
        self.query_one("#gate-error", Static).update(
            f"✖ WRONG PHRASE: expected {self.phrase!r}, got {typed!r}. Nothing was done.")
