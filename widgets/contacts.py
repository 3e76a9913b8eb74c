"""The runbook's emergency contacts and communication channels, from the config."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import Static

from app.config import Contact


class ContactsPanel(Static):
    """Who to call and where to talk: the runbook's 'Emergency Contact Information'."""

    def __init__(self, contacts: Iterable[Contact], channels: dict[str, str], *,
                 id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.contacts = tuple(contacts)
        self.channels = dict(channels)

    def on_mount(self) -> None:
        self.border_title = "Contacts and channels"
        lines = Text()
        if not self.contacts:
            lines.append("(none: add [[contacts.people]] to the config)\n", style="dim")
        for c in self.contacts:
            lines.append(f"{c.role}: ", style="bold")
            lines.append(" ".join(x for x in (c.name, c.phone, c.email) if x) + "\n")
        for name, value in self.channels.items():
            lines.append(f"{name.replace('_', ' ').title()}: ", style="bold")
            lines.append(f"{value}\n")
        lines.rstrip()
        self.update(lines)
