"""The Textual App. The only module in app/ that imports Textual; it drives the same engine
as the headless CLI and owns no rollback logic itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.theme import Theme
from textual.worker import WorkerState

from app.checks.context import checks_read_only, read_only_checks
from app.config import Config
from app.db import read_only_sessions, sessions_read_only
from app.drill_score import debrief_text, record, score
from app.drills import Scenario
from app.paths import stylesheet
from app.rollback.context import RollbackType
from screens.confirm import ConfirmScreen
from screens.debrief import DebriefScreen
from screens.help import HelpScreen
from screens.home import HomeScreen
from screens.plan import PlanScreen
from screens.work import WORK_GROUPS

MODE_INTRO = {
    "live": "Live mode: the console can change the target after a typed confirmation.",
    "assess": "Read-only assessment: nothing can be changed from this session.",
    "drill": "Drill: a sandbox database with an injected incident; safe to break.",
}


@dataclass(frozen=True)
class DrillRun:
    scenario: Scenario
    started: float       # epoch seconds: journals written after this belong to the drill
    operator: str


HIGH_CONTRAST = Theme(
    name="high-contrast", primary="#ffff00", secondary="#00ffff", accent="#ffffff",
    foreground="#ffffff", background="#000000", surface="#000000", panel="#1a1a1a",
    success="#00ff00", warning="#ffff00", error="#ff5555", dark=True, text_alpha=1.0)
THEMES = {"default": "textual-dark", "high-contrast": "high-contrast"}


class RollbackConsoleApp(App[int]):
    """The incident console. ``mode`` is live, assess or drill."""

    CSS_PATH = str(stylesheet())
    TITLE = "rollback-console"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "request_quit", "Quit"),
        Binding("ctrl+q", "request_quit", "Quit", show=False, priority=True),
        Binding("ctrl+t", "toggle_contrast", "High contrast on/off"),
        Binding("j", "vim('down')", "Down", show=False),
        Binding("k", "vim('up')", "Up", show=False),
    ]

    def __init__(self, config: Config, mode: str = "live", log_path: Path | None = None,
                 theme: str = "default", briefing: str = "", drill: DrillRun | None = None):
        super().__init__()
        self.briefing = briefing   # a drill's incident, as the on-call engineer hears it
        self.drill = drill
        self.debrief = ""          # the drill's debrief, printed again after the screen closes
        self.register_theme(HIGH_CONTRAST)
        self.theme = THEMES.get(theme, "textual-dark")
        self.config = config
        self.mode = mode
        self.log_path = log_path
        self.server_text = "connecting…"   # what the home screen's probe found, for banners
        self._read_only_before: tuple[bool, bool] | None = None
        self.seen_tier: str | None = None   # the last verdict an assessment screen showed

    def on_mount(self) -> None:
        self.title = f"rollback-console: {self.config.target.name}"
        if self.mode == "assess":   # read-only at the server, and no check that would write
            self._read_only_before = (sessions_read_only(), checks_read_only())
            read_only_sessions(True)
            read_only_checks(True)
        self.push_screen(HomeScreen())

    def on_unmount(self) -> None:
        if self._read_only_before is not None:
            sessions, checks = self._read_only_before
            read_only_sessions(sessions)
            read_only_checks(checks)

    @property
    def busy(self) -> bool:
        return any(w.group in WORK_GROUPS and w.state in (WorkerState.PENDING,
                                                          WorkerState.RUNNING)
                   for w in self.workers)

    def open_plan(self, kind: RollbackType, tables: tuple[str, ...] = (),
                  phase: tuple[int, int] | None = None) -> None:
        """The plan screen for a screen it imports (the rollback's phase 2 follow-up): the
        app opens it, so screens.rollback does not import screens.plan back."""
        self.push_screen(PlanScreen(kind, tables, phase=phase))

    def _debrief(self) -> None:
        assert self.drill is not None
        result = score(self.drill.scenario, self.drill.started, self.drill.operator,
                       seen_tier=self.seen_tier)
        history = record(result, run=self.drill.started)
        self.debrief = debrief_text(self.drill.scenario, result, history)

        def closed(quit_now: bool | None) -> None:
            if quit_now:
                self.exit(return_code=0)

        self.push_screen(DebriefScreen(self.debrief), closed)

    def action_toggle_contrast(self) -> None:
        self.theme = "textual-dark" if self.theme == "high-contrast" else "high-contrast"

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        keys: list[tuple[str, str]] = []
        seen: set[str] = set()
        for _key, active in self.screen.active_bindings.items():
            binding = active.binding
            if active.node not in (self, self.screen):
                continue  # widget internals (scrolling, copy) are listed below in one line
            if not binding.show or not binding.description or binding.description in seen:
                continue
            seen.add(binding.description)
            keys.append((binding.key_display or self.get_key_display(binding), binding.description))
        keys.append(("↑ ↓ / j k, enter", "move in lists, choose"))
        title = type(self.screen).__name__.removesuffix("Screen") or "Screen"
        self.push_screen(HelpScreen(title, keys, MODE_INTRO.get(self.mode, "")))

    def action_vim(self, direction: str) -> None:
        """j/k on every screen: move the focused list's cursor, or scroll the focused view
        (a text field takes the letters before this binding is reached)."""
        focused = self.screen.focused
        for name in (f"action_cursor_{direction}", f"action_scroll_{direction}"):
            action = getattr(focused, name, None)
            if action is not None:
                action()
                return

    def action_request_quit(self) -> None:
        if self.drill is not None and not self.busy and not isinstance(self.screen,
                                                                        DebriefScreen):
            self._debrief()
            return
        if not self.busy:
            self.exit(return_code=0)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.exit(return_code=1)

        self.push_screen(ConfirmScreen("Work is still running. Quit anyway? Running steps are "
                                       "stopped and the journal records where.",
                                       yes_label="Quit"), answered)
