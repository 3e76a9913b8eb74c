"""What a destructive action will touch: tables, rows, sizes, the backup's age, what is lost."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import Static


class BlastRadius(Static):
    """A bordered list; lines starting with '!' are losses and are marked as such in words."""

    DEFAULT_CSS = "BlastRadius { height: auto; border: round $error; padding: 0 1; }"

    def __init__(self, lines: Iterable[str], *, id: str | None = None,
                 classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.lines = list(lines)

    def on_mount(self) -> None:
        self.border_title = "Blast radius"
        text = Text()
        for line in self.lines:
            if line.startswith("!"):
                text.append("LOSS ", style="bold reverse")
                text.append(line[1:].strip() + "\n", style="bold")
            else:
                text.append("• " + line + "\n")
        text.rstrip()
        self.update(text)
