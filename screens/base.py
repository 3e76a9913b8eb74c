"""What every full screen of the console shares: the app it belongs to and the target banner."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, TypeVar

from textual.screen import Screen

from widgets.banner import TargetBanner

if TYPE_CHECKING:
    from app.tui import RollbackConsoleApp

ResultT = TypeVar("ResultT")


# Actions that start or change something; a read-only (assess mode) session hides them from
# the footer and the help instead of offering keys that can only be refused. (The decision
# screen's Y and O are listed here: its module declares no list of its own.)
CHANGES_SOMETHING: frozenset[str] = frozenset({"accept", "override", "resume", "gate",
                                                "use_anyway"})


class ConsoleScreen(Screen[ResultT]):
    WRITES: ClassVar[frozenset[str]] = CHANGES_SOMETHING

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """In assess mode a key that can only be refused is not offered at all."""
        if self.console.mode == "assess" and (
                action in self.WRITES or (action == "open" and parameters == ("rollback",))):
            return False
        return True

    @property
    def console(self) -> RollbackConsoleApp:
        return self.app  # type: ignore[return-value]

    def banner(self, id: str | None = None) -> TargetBanner:
        target = self.console.config.target
        return TargetBanner(target.name, target.environment, self.console.mode, id=id)
