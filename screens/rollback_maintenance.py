"""What the rollback screen does about the app's maintenance mode once a run stopped: the
operator's switch (shift+m, asking the app itself), and the stop between two phases, which
leaves the app in maintenance on purpose and must say so, with the way out, and journal it."""

from __future__ import annotations

from textual import work
from textual.worker import Worker, WorkerState

from app.comms import Maintenance, MaintenanceFailed
from app.errors import ConsoleError
from app.rollback.context import Outcome, RunContext
from app.rollback.plan import Plan
from app.rollback.runner import followed_by
from app.rollback.schema import way_out
from app.rollback.steps import operator_maintenance
from screens.base import ConsoleScreen
from screens.confirm import ConfirmScreen
from screens.work import Group
from widgets.live_log import LiveLog


class MaintenanceControls(ConsoleScreen[Outcome | None]):
    """The rollback screen's maintenance side (``RollbackScreen`` is the rest)."""

    plan: Plan
    ctx: RunContext
    outcome: Outcome | None
    summary: str
    worker: Worker[Outcome] | None
    left_journaled: bool

    def _finish(self, outcome: Outcome, summary: str) -> None:
        raise NotImplementedError

    def _followup(self) -> list[str]:
        """Tables a schema rollback brought back without their rows (or columns' values)."""
        return [t.replace('"', "") for t in self.ctx.followup_tables
                or self.plan.leaves_rows_in_backup]

    def _left_in_maintenance(self) -> bool:
        """For the outcome line's hint only: the key itself asks the app."""
        return (self.outcome not in (None, Outcome.DONE) and self.ctx.cfg.app is not None
                and self.ctx.maintenance == "on")

    # --- between phases -------------------------------------------------------------------

    def _between_phases(self) -> bool:
        """Phase 1 of 2 validated, the app held in maintenance, and no phase 2 taken up."""
        return (self.outcome is Outcome.PHASE_VALIDATED
                and self.ctx.maintenance == "on"
                and followed_by(self.ctx.journal) is None)

    def _maintenance_between_phases(self) -> str:
        """The app's state after phase 1, in the outcome line: held down on purpose, or not."""
        if self.ctx.maintenance != "on":
            return "Maintenance mode is off: phase 2 switches it on before it replaces anything"
        off = way_out(self.ctx.cfg, self.plan.leaves_rows_in_backup)[1]
        return ("The app stays in MAINTENANCE mode until phase 2 validates (to serve the "
                f"database half back instead: {off})")

    def action_request_quit(self) -> None:
        """Quitting between phases leaves the app down with the incident half over: say so,
        with the way out, before quitting; journaled."""
        if self.running or not self._between_phases():
            self.console.action_request_quit()
            return
        phase2, off = way_out(self.ctx.cfg, self.plan.leaves_rows_in_backup)

        def answered(yes: bool | None) -> None:
            if yes:
                self._journal_left("quit")
                self.console.action_request_quit()

        self.app.push_screen(ConfirmScreen(
            "Stop between phases? The app is still in MAINTENANCE mode: phase 1 of 2 kept it "
            f"on, and the rows of {', '.join(self._followup())} are only in the backup. The "
            "way out: D here for phase 2 (it reloads them and switches maintenance off after "
            f"validating), or later:\n  {phase2}\nor, to serve the database half back:\n  "
            f"{off}", yes_label="Quit, maintenance stays ON"), answered)

    def _journal_left(self, how: str) -> None:
        """The incident is not over: the journal says the operator stopped here, and how on."""
        if self.left_journaled or not self._between_phases():
            return
        self.left_journaled = True
        try:
            self.ctx.journal.append("stopped_between_phases", how=how, maintenance="on",
                                    phase=[1, 2], way_out=list(way_out(
                                        self.ctx.cfg, self.plan.leaves_rows_in_backup)))
        except OSError as exc:   # a full disk must not stop the console from closing
            self.notify(f"the journal could not record the stop: {exc}", severity="error")

    def on_unmount(self) -> None:
        self._journal_left("left the run screen")

    def action_maintenance_off(self) -> None:
        if self.ctx.cfg.app is None:
            self.notify("The config has no [app]: there is no maintenance switch to use.")
            return
        if self.running or self.outcome is None:
            self.notify("The run is still going: its recovery step switches maintenance off "
                        "(pause it first, or let it finish).")
            return
        if self.ctx.maintenance == "on":
            self._confirm_maintenance_off()   # this run left it on: the switch verifies it
        else:
            self.ask_maintenance()   # what the run remembers may be wrong: ask the app

    @work(group=Group.MAINTENANCE, name="ask-maintenance", exit_on_error=False)
    async def ask_maintenance(self) -> None:
        """Ask the app itself, not what this run remembers: a run that stopped before it
        recorded the switch, or an operator elsewhere, may have left it on."""
        assert self.ctx.cfg.app is not None
        m = Maintenance(self.ctx.cfg.app)
        try:
            on = await m.status()
        except MaintenanceFailed as exc:
            self.notify(str(exc), title="Maintenance status unknown", severity="error")
            return
        finally:
            await m.aclose()
        if on:
            self.ctx.maintenance = "on"
            if self.outcome is not None:
                self._finish(self.outcome, self.summary)
            self._confirm_maintenance_off()
            return
        self.notify(f"The app is not in maintenance mode (asked {self.ctx.cfg.app.base_url}).",
                    title="Maintenance is off")

    def _confirm_maintenance_off(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.maintenance_off()

        why = {Outcome.FAILED_RESTORED: "The rollback failed and was undone: the database is as "
               "it was before it, so users may see the incident's symptoms again.",
               Outcome.NEEDS_OPERATOR: "The rollback stopped partway and needs you: make sure "
               "the database is fit to serve; a later resume goes on from where it stopped."}
        why[Outcome.PHASE_VALIDATED] = (
            f"Only phase 1 of 2 is done: the rows of {', '.join(self._followup())} are only in "
            "the backup, so users would find them missing. Phase 2 (D) reloads them and "
            "switches maintenance off after validating.")
        self.app.push_screen(ConfirmScreen(
            "The app is in maintenance mode. Turn it off? "
            + why.get(self.outcome or Outcome.DONE, ""), yes_label="Maintenance off"), answered)

    @work(group=Group.MAINTENANCE, name="maintenance-off", exit_on_error=False)
    async def maintenance_off(self) -> None:
        assert self.ctx.cfg.app is not None
        log = self.query_one(LiveLog)
        try:
            summary = await operator_maintenance(self.ctx.cfg, False, self.ctx.journal,
                                                 "operator (console, shift+m)", warn=log.append)
        except ConsoleError as exc:   # the switch failed, or a live console holds the target
            log.append(f"✖ maintenance off failed: {exc}")
            self.notify(str(exc), title="Maintenance off failed", severity="error")
            return
        self.ctx.maintenance = "off"
        log.append(f"✔ {summary}")
        if self.outcome is not None:
            self._finish(self.outcome, self.summary)   # the hint no longer offers it
        self.notify(summary, title="Maintenance off")

    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.state in (WorkerState.PENDING,
                                                                 WorkerState.RUNNING)
