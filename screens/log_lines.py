"""The run's log lines in full, wrapped (the live log cuts long lines at the pane's width): the
safety snapshot's path and the applied SQL can be read and selected here. `c` copies the line
the view was opened at to the terminal's clipboard."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

SHOWN = 400   # lines around the chosen one (the run's log file has every line)


class LogLinesScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q,o", "dismiss", "Close"),
                Binding("c", "copy", "Copy the line")]

    def __init__(self, lines: list[str], index: int, log_file: str = ""):
        super().__init__()
        self.lines = lines
        self.index = max(0, min(index, len(lines) - 1))
        self.log_file = log_file

    def compose(self) -> ComposeResult:
        start = max(0, self.index - SHOWN + 20)
        shown = self.lines[start: self.index + 20]
        text = Text()
        for n, line in enumerate(shown, start=start):
            marker = "▶ " if n == self.index else "  "
            text.append(f"{marker}{line}\n", style="bold reverse" if n == self.index else "")
        with VerticalScroll(id="log-lines-box"):
            yield Static(f"The log in full (line {self.index + 1} of {len(self.lines)})",
                         classes="help-title")
            yield Static(text, id="log-lines-text")
            yield Static("c: copy the marked line · escape closes"
                         + (f" · every line: {self.log_file}" if self.log_file else ""),
                         classes="help-hint")

    def on_mount(self) -> None:
        box = self.query_one("#log-lines-box", VerticalScroll)
        box.scroll_end(animate=False)

    def action_copy(self) -> None:
        if self.lines:
            self.app.copy_to_clipboard(self.lines[self.index])
            self.notify("Copied to the clipboard (your terminal must allow OSC 52).",
                        title="Copied")
