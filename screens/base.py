"""What every full screen of the console shares: the app it belongs to and the target banner."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from textual.screen import Screen

from widgets.banner import TargetBanner

if TYPE_CHECKING:
    from app.tui import RollbackConsoleApp

ResultT = TypeVar("ResultT")


class ConsoleScreen(Screen[ResultT]):
    @property
    def console(self) -> RollbackConsoleApp:
        return self.app  # type: ignore[return-value]

    def banner(self, id: str | None = None) -> TargetBanner:
        target = self.console.config.target
        return TargetBanner(target.name, target.environment, self.console.mode, id=id)
