"""What every full screen of the console shares: the app it belongs to, the target banner, and
the one hook through which its engine work (screens/work.py) ends."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer
from textual.worker import Worker, WorkerState

from app.failure import failure_line
from screens.work import DOING, Group
from widgets.banner import TargetBanner
from widgets.footer import ConsoleFooter

if TYPE_CHECKING:
    from app.tui import RollbackConsoleApp

ResultT = TypeVar("ResultT")


# Actions that start or change something; a read-only (assess mode) session hides them from
# the footer and the help instead of offering keys that can only be refused. (The decision
# screen's Y and O are listed here: its module declares no list of its own.)
CHANGES_SOMETHING: frozenset[str] = frozenset({"accept", "override", "resume", "gate",
                                                "use_anyway"})


# Destructive keys are capitals; the same letter in lowercase, where a screen does not use
# it, says so instead of doing nothing (a tired operator presses y for Y).
CAPITALS = "ydogarsmv"


class ConsoleScreen(Screen[ResultT]):
    WRITES: ClassVar[frozenset[str]] = CHANGES_SOMETHING
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding(c, f"capital('{c.upper()}')", show=False) for c in CAPITALS]

    def action_capital(self, key: str) -> None:
        """A lowercase letter whose capital is this screen's key: name the key to press."""
        for active in self.active_bindings.values():
            binding = active.binding
            if (binding.key == key and active.node is self
                    and not binding.action.startswith("capital")):
                if not active.enabled:
                    return
                what = binding.description.split(" (shift+")[0]
                self.notify(f"{what}: press shift+{key.lower()} (capital {key}). Keys that "
                            "change something are capitals, so a lowercase one does nothing.",
                            title=f"{key.lower()} is not {key}")
                return

    def on_screen_suspend(self) -> None:
        self._note_verdict()

    def on_unmount(self) -> None:
        self._note_verdict()

    def _note_verdict(self) -> None:
        """The verdict a screen showed (the decision matrix's ``assessment``), for the drill's
        score: reading FORWARD-FIX and going back is a call too."""
        assessment = getattr(self, "assessment", None)
        decision = getattr(assessment, "decision", None)
        tier = getattr(getattr(decision, "tier", None), "label", None)
        if isinstance(tier, str):
            self.console.seen_tier = tier

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """In assess mode a key that can only be refused is not offered at all."""
        if self.console.mode == "assess" and (
                action in self.WRITES or (action == "open" and parameters == ("rollback",))):
            return False
        return True

    # --- engine work: one hook for how it ended ---------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every screen's workers end here: a failure becomes the one line (logged with its
        traceback) and goes to ``work_failed``; the others to ``work_done`` and
        ``work_cancelled``."""
        worker = event.worker
        if worker.group not in DOING:
            return
        group = Group(worker.group)
        if event.state == WorkerState.ERROR:
            self.work_failed(group, failure_line(DOING[group], worker.error,
                                                 self.console.log_path))
        elif event.state == WorkerState.SUCCESS:
            self.work_done(group, worker.result)
        elif event.state == WorkerState.CANCELLED:
            self.work_cancelled(group)

    def work_failed(self, group: Group, line: str) -> None:
        """Where a screen shows a failure of its work; by default a notification."""
        self.notify(line, title="Failed", severity="error")

    def work_done(self, group: Group, result: Any) -> None:
        """A worker of ``group`` finished; ``result`` is what it returned."""

    def work_cancelled(self, group: Group) -> None:
        """A worker of ``group`` was cancelled (the operator stopped it, or left)."""

    def working(self, group: Group) -> bool:
        """Whether work of ``group`` is pending or running on this screen."""
        return any(w.group == group and w.state in (WorkerState.PENDING, WorkerState.RUNNING)
                   for w in self.workers)

    @property
    def console(self) -> RollbackConsoleApp:
        return self.app  # type: ignore[return-value]

    async def mount_composed_widgets(self, widgets: list[Widget]) -> None:
        """Every screen's footer is the console's (Help and Quit always visible), including
        screens that yield Textual's plain ``Footer()``."""
        await super().mount_composed_widgets(
            [ConsoleFooter() if type(w) is Footer else w for w in widgets])

    def banner(self, id: str | None = None) -> TargetBanner:
        target = self.console.config.target
        return TargetBanner(target.name, target.environment, self.console.mode, id=id)
