"""The target banner: which database, which environment, which mode. Always visible.

Colour is never the only signal: environment and mode are also spelled out in words.
"""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

MODE_WORDS = {"live": "LIVE", "assess": "READ-ONLY", "drill": "DRILL"}


class TargetBanner(Static):
    """One line: product, target name, environment and mode, plus the server once probed."""

    DEFAULT_CSS = """
    TargetBanner { height: auto; padding: 0 1; }
    """

    server: reactive[str] = reactive("connecting…", layout=True)   # may need a 2nd line

    def __init__(self, target_name: str, environment: str, mode: str, *, id: str | None = None):
        super().__init__(id=id)
        self.target_name = target_name
        self.environment = environment
        self.mode = mode
        self.add_class(f"env-{environment}", f"mode-{mode}")

    def on_mount(self) -> None:
        # the server line the home screen probed, shared by every screen's banner
        self.server = getattr(self.app, "server_text", self.server)

    def render(self) -> Text:
        text = Text()
        text.append("target ")
        text.append(self.target_name, style="bold")
        text.append(" │ env ")
        text.append(f" {self.environment.upper()} ", style="bold reverse")
        text.append(" │ mode ")
        text.append(f" {MODE_WORDS.get(self.mode, self.mode.upper())} ", style="bold reverse")
        text.append(f" │ {self.server}")
        return text
