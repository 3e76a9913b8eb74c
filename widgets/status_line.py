"""A labelled status: an icon and a word (never colour alone) and a one-line summary."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

STATUS_STYLE = {
    "pending": ("…", "PENDING", "dim"),
    "pass": ("✔", "PASS", "green"),
    "warn": ("▲", "WARN", "yellow"),
    "fail": ("✖", "FAIL", "red"),
    "error": ("✖", "ERROR", "red"),
}


class StatusLine(Static):
    """``label: ✔ PASS summary`` — used for the home screen's probes and later the checklist."""

    DEFAULT_CSS = "StatusLine { height: auto; }"

    status: reactive[str] = reactive("pending")
    summary: reactive[str] = reactive("")

    def __init__(self, label: str, *, id: str | None = None):
        super().__init__(id=id)
        self.label = label

    def render(self) -> Text:
        icon, word, style = STATUS_STYLE.get(self.status, ("?", self.status.upper(), ""))
        text = Text()
        text.append(f"{self.label:<12}", style="bold")
        text.append(f"{icon} {word:<7}", style=style)
        text.append(self.summary)
        return text
