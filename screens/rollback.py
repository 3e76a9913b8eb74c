"""The rollback: the step list beside the active step's pane (what it does, its SQL and commands,
progress, the live log). The runner works in an async worker attached to this long-lived screen;
its events come back as messages; nothing here decides anything the engine does not."""

from __future__ import annotations

import asyncio
import time

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Input, OptionList, ProgressBar, Static
from textual.worker import Worker

from app.events import Event, RunFinished, StepFinished, StepLog, StepProgress, StepStarted
from app.rollback.context import Outcome, RollbackType, RunContext
from app.rollback.plan import Plan, Step
from app.rollback.runner import execute, skip_step
from screens.confirm import ConfirmScreen
from screens.log_lines import LogLinesScreen
from screens.reason import ReasonScreen
from screens.report import ReportScreen
from screens.rollback_maintenance import MaintenanceControls
from screens.run_events import (
    PROGRESS_EVERY_S,
    TOOL_PROGRESS,
    RunnerEvents,
    thin,
    until_finished,
)
from screens.validation import ValidationScreen
from screens.work import Group
from widgets.incident_clock import IncidentClock
from widgets.live_log import LiveLog
from widgets.step_list import StepList, StepRow


class RollbackScreen(MaintenanceControls):
    BINDINGS = [
        Binding("p", "pause", "Pause after this step"),
        Binding("ctrl+c", "abort", "Abort step", priority=True),
        Binding("A", "abort", "Abort (shift+a)"),
        Binding("t", "retry", "Retry failed step"),
        Binding("S", "skip", "Skip step (shift+s)"),
        Binding("slash", "search", "Search log", key_display="/"),
        Binding("f", "follow", "Follow log"),
        Binding("o", "full_lines", "Log lines in full"),
        Binding("c", "copy_line", "Copy log line"),
        Binding("v", "validate", "Validate (when done)"),
        Binding("i", "report", "Incident report"),
        Binding("D", "data_followup", "Data rollback of what Type 1 left (shift+d)"),
        Binding("M", "maintenance_off", "Maintenance off after a failed run (shift+m)"),
        Binding("escape", "back", "Back (when finished)"),
        Binding("q", "request_quit", "Quit"),   # between phases it says what is left on
    ]

    def __init__(self, plan: Plan, ctx: RunContext, phase: tuple[int, int] | None = None):
        super().__init__()
        self.plan = plan
        self.ctx = ctx
        # (n, of): a Type 1 that brings tables back empty is phase 1 of 2 (its rows follow
        # with a Type 2, phase 2): DONE is said once, after the last phase
        self.phase = phase or ((1, plan.phases) if plan.phases > 1 else None)
        self.left_journaled = False   # stopping between phases is journaled once
        self.outcome: Outcome | None = None
        self.summary = ""
        self.failed_step: str | None = None
        self.active: Step | None = None
        self.worker: Worker[Outcome] | None = None
        self.tool_lines = 0          # the active step's condensed tool output
        self.tool_name = ""


    def compose(self) -> ComposeResult:
        yield self.banner()
        with Horizontal(id="rb-top"):
            phase = f"PHASE {self.phase[0]} OF {self.phase[1]}: " if self.phase else ""
            yield Static(f"{phase}{str(self.plan.kind).upper()} rollback from backup "
                         f"{self.plan.backup_id}", id="rb-title")
            yield IncidentClock(id="rb-clock")
        with Horizontal(id="rb-body"):
            yield StepList([StepRow(s.id, s.title, s.budget_s, s.destructive,
                                    s.point_of_no_return) for s in self.plan.steps],
                           id="rb-steps", classes="panel")
            with Vertical(id="rb-pane", classes="panel"):
                with VerticalScroll(id="rb-step-box"):
                    yield Static("", id="rb-step-title")
                    yield Static("", id="rb-step-text")
                    yield Static("", id="rb-sql")
                yield ProgressBar(id="rb-progress", show_eta=True)
                yield Static("", id="rb-tool")
                yield Input(placeholder="search the log (enter: next match, escape: close)",
                            id="rb-search")
                yield LiveLog(id="rb-log")
        yield Static("", id="rb-outcome")
        yield Footer()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Offer only what can be done now: abort and pause while a step runs; retry, skip
        and validate once it stopped; D and M only when they apply."""
        if super().check_action(action, parameters) is False:
            return False
        stopped = not self.running and self.outcome is not None
        if action in ("pause", "abort"):
            return self.running
        if action == "retry":
            return stopped and self.outcome not in (Outcome.DONE, Outcome.PHASE_VALIDATED)
        if action == "skip":
            return stopped and self.failed_step is not None
        if action == "validate":
            return stopped
        if action == "data_followup":
            return self.outcome in (Outcome.DONE, Outcome.PHASE_VALIDATED) \
                and bool(self._followup())
        if action == "maintenance_off":
            return stopped and self.outcome is not Outcome.DONE and self.ctx.cfg.app is not None
        return True

    def on_resize(self) -> None:
        self.set_class(self.size.width < 110, "narrow")  # steps above the pane on 80 columns
        self.set_class(self.size.height < 30, "short")   # 24 lines: room for the log

    def on_mount(self) -> None:
        self.query_one("#rb-steps").border_title = "Steps"
        self.query_one("#rb-search").display = False
        self.query_one("#rb-progress").display = False   # only while a step reports progress
        self.query_one("#rb-tool").display = False
        log = self.query_one(LiveLog)
        log.log_file = self.ctx.journal.dir / "console.log"
        log.border_title = "Log (o: lines in full, c: copy)"
        self.query_one(IncidentClock).start(time.time(), self.plan.budget_s)
        self.start_run()

    # --- the worker -----------------------------------------------------------------------

    def start_run(self) -> None:
        self.outcome = None
        self.query_one("#rb-outcome", Static).update("running… (p pauses after this step)")
        self.worker = self.run_worker(self._run(), group=Group.ROLLBACK,
                                      name="rollback-runner", exit_on_error=False)
        self.refresh_bindings()

    async def _run(self) -> Outcome:
        task = asyncio.create_task(execute(self.plan, self.ctx))
        pending: list[Event] = []
        last_post = 0.0
        try:
            async for event in until_finished(self.ctx.channel, task):
                pending.append(event)
                now = time.monotonic()
                urgent = not isinstance(event, StepLog | StepProgress)
                if urgent or now - last_post >= PROGRESS_EVERY_S:
                    self.post_message(RunnerEvents(thin(pending)))
                    pending, last_post = [], now
        finally:
            if pending:
                self.post_message(RunnerEvents(thin(pending)))
            if not task.done():
                task.cancel()
        return await task

    def work_failed(self, group: Group, line: str) -> None:
        if group is Group.ROLLBACK:
            self._finish(Outcome.NEEDS_OPERATOR, line)
        else:
            super().work_failed(group, line)

    def work_cancelled(self, group: Group) -> None:
        if group is Group.ROLLBACK:
            self._finish(Outcome.NEEDS_OPERATOR, "aborted by the operator; the journal "
                                                 "records where; resume or retry")

    def on_runner_events(self, message: RunnerEvents) -> None:
        steps = self.query_one(StepList)
        log = self.query_one(LiveLog)
        bar = self.query_one(ProgressBar)
        for event in message.events:
            if isinstance(event, StepStarted):
                steps.set_status(event.step, "running")
                self.active = next(s for s in self.plan.steps if s.id == event.step)
                self._show_step(self.active)
                bar.update(total=None, progress=0)
                bar.display = False
                self.tool_lines, self.tool_name = 0, ""
                log.append(f"── step {event.index}/{event.total}: {event.title}")
            elif isinstance(event, StepProgress):
                bar.display = True
                bar.update(total=event.total, progress=event.done)
            elif isinstance(event, StepLog):
                prefix = {"warning": "WARN ", "error": "ERROR "}.get(event.level, "")
                match = TOOL_PROGRESS.match(event.line) if event.level == "info" else None
                if match is None:
                    log.append(prefix + event.line)
                    continue
                log.record(event.line)
                self.tool_lines += 1
                self.tool_name = match.group(1)
                tool = self.query_one("#rb-tool", Static)
                tool.display = True
                tool.update(f"{self.tool_name}: {self.tool_lines} progress line(s); last: "
                            f"{event.line.removeprefix(self.tool_name + ': ')}")
            elif isinstance(event, StepFinished):
                if self.tool_lines:
                    log.append(f"   {self.tool_name}: {self.tool_lines} progress line(s) "
                               f"condensed; every line is in {log.log_file}")
                    self.tool_lines = 0
                self.query_one("#rb-tool").display = False
                bar.display = False
                steps.set_status(event.step, event.status, event.elapsed_s)
                word = event.status.upper()
                log.append(f"   {word}: {event.summary}")
                if event.status == "failed":
                    self.failed_step = event.step
            elif isinstance(event, RunFinished):
                self._finish(Outcome(event.outcome), event.summary)

    def _show_step(self, step: Step) -> None:
        marks = " ⚠ POINT OF NO RETURN" if step.point_of_no_return else (
            " ! destructive" if step.destructive else "")
        self.query_one("#rb-step-title", Static).update(f"{step.title}{marks}")
        undo = f"\nUndo: {step.undo}" if step.undo else ""
        self.query_one("#rb-step-text", Static).update(step.description + undo)
        sql = "\n".join(step.statements[:6]) + ("\n…" if len(step.statements) > 6 else "")
        self.query_one("#rb-sql", Static).update(sql)

    def _finish(self, outcome: Outcome, summary: str) -> None:
        self.outcome, self.summary = outcome, summary
        self.query_one("#rb-progress").display = False   # nothing runs: no animated bar
        self.query_one("#rb-tool").display = False
        log = self.query_one(LiveLog)
        if log.marked is None:
            log.follow()   # the last step's lines on screen without `f`
        words = {Outcome.DONE: "✔ DONE", Outcome.PHASE_VALIDATED: "◐ PHASE 1 OF 2 VALIDATED",
                 Outcome.FAILED_RESTORED: "✖ FAILED, database as before",
                 Outcome.NEEDS_OPERATOR: "■ STOPPED, needs you", Outcome.REFUSED: "✖ REFUSED",
                 Outcome.BAD_INPUT: "✖ BAD INPUT"}
        hint = {Outcome.DONE: "v: validate · i: report · escape: back", Outcome.NEEDS_OPERATOR:
                "t: retry · S: skip with a reason · escape: back",
                Outcome.PHASE_VALIDATED: "D: phase 2 · i: report"}.get(outcome, "escape: back")
        if self._left_in_maintenance():
            hint += " · M: maintenance off (the app is still in maintenance mode)"
        word = words[outcome]
        if outcome in (Outcome.DONE, Outcome.PHASE_VALIDATED) and self.phase is not None \
                and self.phase[0] < self.phase[1]:
            left = ", ".join(self._followup()) or "the tables it brought back"
            word = (f"◐ PHASE {self.phase[0]} OF {self.phase[1]} VALIDATED, the incident is "
                    "not over")
            summary = (f"the rows (or values) of {left} are only in the backup: press D for "
                       f"phase {self.phase[0] + 1}, the partial data rollback of {left}. "
                       + self._maintenance_between_phases())
        elif outcome is Outcome.DONE and self._followup():
            hint += (" · D: partial data rollback of " + ", ".join(self._followup())
                     + " (their rows are only in the backup)")
        self.query_one("#rb-outcome", Static).update(f"{word}: {summary}  ({hint})")
        self.refresh_bindings()

    # --- controls -------------------------------------------------------------------------

    def action_data_followup(self) -> None:
        if self.outcome not in (Outcome.DONE, Outcome.PHASE_VALIDATED) or not self._followup():
            self.notify("Nothing to follow with: no table lost its rows to this rollback.")
            return
        phase = (self.phase[0] + 1, self.phase[1]) if self.phase else (2, 2)
        self.console.open_plan(RollbackType.PARTIAL, tuple(self._followup()), phase=phase)

    def action_pause(self) -> None:
        if self.running:
            self.ctx.pause_requested = True
            self.notify("The run stops after the current step.", title="Pause requested")

    def action_abort(self) -> None:
        if not self.running:
            return

        def answered(yes: bool | None) -> None:
            if yes and self.worker is not None:
                self.worker.cancel()

        self.app.push_screen(ConfirmScreen(
            "Abort the running step? A database step in a transaction is rolled back; the "
            "journal records where the run stopped.", yes_label="Abort step"), answered)

    def action_retry(self) -> None:
        if self.running or self.outcome in (None, Outcome.DONE):
            return
        self.ctx.pause_requested = False
        self.ctx.channel = type(self.ctx.channel)()
        self.start_run()

    def action_skip(self) -> None:
        if self.running or self.failed_step is None:
            return
        step = self.failed_step

        def answered(reason: str | None) -> None:
            if not reason:
                return
            skip_step(self.ctx, step, reason)
            self.query_one(StepList).set_status(step, "skipped")
            self.failed_step = None
            self.ctx.channel = type(self.ctx.channel)()
            self.start_run()

        self.app.push_screen(ReasonScreen(f"Skip step {step!r}? Say why; the reason goes into "
                                          "the journal and the report.", "Skip step"), answered)

    def action_search(self) -> None:
        search = self.query_one("#rb-search", Input)
        search.display = True
        search.focus()

    def action_follow(self) -> None:
        self.query_one(LiveLog).follow()

    def action_full_lines(self) -> None:
        log = self.query_one(LiveLog)
        index = log.current()
        if index < 0:
            self.notify("The log is empty so far.")
            return
        self.app.push_screen(LogLinesScreen(list(log.history), index,
                                            str(log.log_file or "")))

    def action_copy_line(self) -> None:
        log = self.query_one(LiveLog)
        index = log.current()
        if index < 0:
            return
        self.app.copy_to_clipboard(log.history[index])
        self.notify(log.history[index][:200], title="Copied log line")

    @on(Input.Submitted, "#rb-search")
    def search_submitted(self, event: Input.Submitted) -> None:
        self.query_one(LiveLog).search(event.value)

    def action_validate(self) -> None:
        if self.running or self.outcome is None:
            return
        self.app.push_screen(ValidationScreen(self.plan.backup_id, self.ctx.journal))

    def action_report(self) -> None:
        self.app.push_screen(ReportScreen(self.ctx.journal))

    def action_back(self) -> None:
        search = self.query_one("#rb-search", Input)
        if search.display:
            search.display = False
            return
        if self.running:
            self.notify("A step is running: abort it first (shift+a).", severity="warning")
            return
        self.dismiss(self.outcome)

    @on(OptionList.OptionHighlighted, "#rb-steps")
    def step_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        step = next((s for s in self.plan.steps if s.id == event.option.id), None)
        if step is not None and not self.running:
            self._show_step(step)
