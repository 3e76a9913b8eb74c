"""Drills from the home screen (`d`): which scenarios exist and how to start one, or, in a
drill, what this one is and how it ends. The right answers stay for the debrief."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from app.drills import SCENARIOS
from screens.base import ConsoleScreen


class DrillsScreen(ConsoleScreen[None]):
    BINDINGS = [Binding("escape,backspace", "app.pop_screen", "Back")]

    def compose(self) -> ComposeResult:
        yield self.banner()
        with VerticalScroll(id="drills", classes="panel"):
            yield Static(self._text(), id="drills-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#drills").border_title = "Drills"

    def _text(self) -> Text:
        text = Text()
        drill = self.console.drill
        if drill is not None:
            text.append(f"You are in drill {drill.scenario.name!r}: {drill.scenario.title}\n",
                        style="bold")
            text.append("Press escape, then a to assess and follow the screen. q ends the "
                        "drill: your score out of 100 and the debrief.\n\n")
        text.append("Drills run on a throwaway sandbox, never on this target. Start one from "
                    "a shell:\n", style="bold")
        text.append("  rollback-console drill                    the next scenario (or "
                    "make drill)\n"
                    "  rollback-console drill --scenario NAME    a given one\n"
                    "  rollback-console drill --list             the catalogue\n\n")
        text.append("Scenarios\n", style="bold underline")
        width = max(len(s.name) for s in SCENARIOS)
        for s in SCENARIOS:
            text.append(f"  {s.name:<{width}}  {s.difficulty:<6}  {s.title}"
                        + (f"  (not playable: {s.needs})" if s.needs else "") + "\n")
        text.append("\nPress escape to go back.", style="italic")
        return text
