"""Home: the target banner, what the console sees of the target, contacts, and where to go."""

from __future__ import annotations

import time
from dataclasses import replace

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from app.backups.backupset import list_sets
from app.errors import ConsoleError
from app.events import EventChannel
from app.journal import Incident, Journal
from app.probe import AppHealth, ServerFacts, app_health, server_facts
from app.rollback.context import RunContext, expected_phrase
from app.rollback.resume import Resumption, age, prepare_resume, unfinished_incident
from screens.assess import AssessScreen
from screens.backups import BackupsScreen
from screens.base import ConsoleScreen
from screens.confirm import ConfirmScreen
from screens.drills import DrillsScreen
from screens.gate import GateScreen
from screens.plan import PlanScreen
from screens.rollback import RollbackScreen
from screens.watch import WatchScreen
from screens.work import Group
from widgets.banner import TargetBanner
from widgets.contacts import ContactsPanel
from widgets.status_line import StatusLine

ENTRIES = {
    "assess": ("Assess", "read-only decision matrix: roll back, forward-fix or wait?"),
    "rollback": ("Rollback", "guided rollback: schema-only, partial data or complete restore"),
    "drill": ("Drill", "training scenarios on the sandbox, timed and scored"),
    "backups": ("Backups", "the backup sets, their age and verification"),
    "watch": ("Watch", "extended monitoring: the checklist every 5 min for 24 h, with alerts"),
}


def server_state(problem: str) -> str:
    """The banner's word for why the probe failed: a wrong password is not an unreachable
    server, and the fix differs."""
    if "password" in problem or "rejected the login" in problem:
        return "server: LOGIN REFUSED"
    if "does not exist" in problem:
        return "server: NO SUCH DATABASE"
    if "refuses every connection" in problem:
        return "server: REFUSING CONNECTIONS"
    return "server: UNREACHABLE"


class HomeScreen(ConsoleScreen[None]):
    BINDINGS = [
        Binding("a", "open('assess')", "Assess"),
        Binding("b", "open('backups')", "Backups"),
        Binding("w", "open('watch')", "Watch"),
        Binding("d", "open('drill')", "Drill"),
        Binding("R", "open('rollback')", "Rollback (shift+r)"),
        Binding("p", "probe", "Re-probe"),
        Binding("u", "resume", "Resume unfinished incident"),
        Binding("j", "cursor('down')", "Down", show=False),
        Binding("k", "cursor('up')", "Up", show=False),
    ]

    class Probed(Message):
        """The worker finished looking at the target (either part may be an error text)."""

        def __init__(self, facts: ServerFacts | str, health: AppHealth | None):
            super().__init__()
            self.facts = facts
            self.health = health


    def compose(self) -> ComposeResult:
        cfg = self.console.config
        yield self.banner(id="banner")
        with Vertical(id="target-panel", classes="panel"):
            yield Static(f"database    {cfg.target.display_dsn}", id="target-dsn")
            yield StatusLine("Database", id="probe-db")
            yield StatusLine("App health", id="probe-app")
            yield StatusLine("Backups", id="probe-backups")
            yield StatusLine("Incident", id="probe-incident")
            if self.console.briefing:
                yield Static(f"DRILL INCIDENT  {self.console.briefing}  (press a to assess)",
                             id="drill-briefing")
        with Horizontal(id="home-body"):
            yield OptionList(*[self._option(key) for key in ENTRIES], id="entries",
                             classes="panel")
            yield ContactsPanel(cfg.contacts, cfg.channels, id="contacts", classes="panel")
        yield Footer()

    def _option(self, key: str) -> Option:
        title, text = ENTRIES[key]
        disabled = key == "rollback" and self.console.mode == "assess"
        note = "  (disabled: read-only mode)" if disabled else ""
        return Option(f"{title}: {text}{note}", id=key, disabled=disabled)

    def on_mount(self) -> None:
        self.query_one("#target-panel").border_title = "Target"
        self.query_one("#entries").border_title = "What now?"
        self.query_one("#entries", OptionList).focus()
        self.action_probe()
        self._show_backups()
        self._offer_resume()

    def _show_backups(self) -> None:
        line = self.query_one("#probe-backups", StatusLine)
        sets = list_sets(self.console.config.target.backups_root)
        if not sets:
            line.status = "warn"
            line.summary = (f"no backup sets under {self.console.config.target.backups_root}: "
                            "take one before anything else (rollback-console backup)")
            return
        newest = sets[0]
        age = "" if newest.taken_at is None else \
            f", {(time.time() - newest.taken_at.timestamp()) / 3600:.1f} h old"
        line.status = "pass" if newest.manifest is not None else "warn"
        line.summary = (f"{len(sets)} set(s); newest {newest.id}{age}, "
                        + ("with manifest" if newest.manifest else "NO manifest: unverifiable"))

    @work(group=Group.INCIDENT, name="home-incident", exit_on_error=False)
    async def _offer_resume(self) -> None:
        """The unfinished incident on the target's database (bound to its identity)."""
        try:
            found: Incident | str | None = await unfinished_incident(self.console.config)
        except ConsoleError as exc:
            found = f"cannot look for unfinished incidents: {exc}"
        self.post_message(self.IncidentLooked(found))

    class IncidentLooked(Message):
        def __init__(self, found: Incident | str | None):
            super().__init__()
            self.found = found

    def on_home_screen_incident_looked(self, message: IncidentLooked) -> None:
        line = self.query_one("#probe-incident", StatusLine)
        found = message.found
        if found is None:
            line.status, line.summary = "pass", "no unfinished incident"
            return
        if isinstance(found, str):
            line.status, line.summary = "warn", found
            return
        if found.journal is None:
            line.status = "fail"
            line.summary = (f"UNFINISHED {found.id}: its journal fails verification, so it "
                            f"cannot be resumed: {found.problem}")
            return
        journal = found.journal
        where = journal.started_not_finished() or next(
            (e.data.get("step") for e in reversed(journal.entries) if e.data.get("step")), "?")
        line.status = "warn"
        line.summary = (f"UNFINISHED {journal.incident_id}: {found.opened.get('type')} rollback "
                        f"stopped at {where}, opened {age(found.opened_at)} ago; press u to "
                        "resume")
        self.unfinished = journal
        if self.console.mode == "live":
            self.app.push_screen(ConfirmScreen(
                f"Incident {journal.incident_id} ({found.opened.get('type')} rollback from "
                f"{found.opened.get('backup')}, opened {age(found.opened_at)} ago) did not "
                f"finish: it stopped at {where!r}. Review it and resume? Finished steps are not "
                "redone; going on past the point of no return asks for the phrase again.",
                yes_label="Review"),
                lambda yes: self.action_resume() if yes else None)

    unfinished: Journal | None = None

    def action_resume(self) -> None:
        if self.unfinished is None:
            self.notify("There is no unfinished incident.")
            return
        if self.console.mode != "live":
            self.notify("Resuming needs live mode.", severity="warning")
            return
        self.resume(self.unfinished)

    @work(group=Group.RESUME, name="resume-plan", exit_on_error=False, exclusive=True)
    async def resume(self, journal: Journal) -> None:
        """The engine's resume (the CLI's too): the plan the first gate approved, again."""
        self.post_message(self.ResumeReady(await prepare_resume(self.console.config, journal)))

    class ResumeReady(Message):
        def __init__(self, what: Resumption):
            super().__init__()
            self.what = what

    def on_home_screen_resume_ready(self, message: ResumeReady) -> None:
        """The same gate as a new run: what the resume will do, and the phrase again."""
        what = message.what
        plan = what.plan
        phrase = expected_phrase(plan.kind, plan.target)

        def confirmed(ok: bool | None) -> None:
            if not ok:
                self.notify("Nothing was done.", title="Cancelled")
                return
            ctx = RunContext(self.console.config, plan.kind, what.journal, EventChannel(),
                             what.source, replace(what.options, confirm=phrase))
            self.app.push_screen(RollbackScreen(plan, ctx))

        self.app.push_screen(GateScreen(f"Resume incident {what.journal.incident_id}",
                                        what.describe(), phrase), confirmed)

    def action_probe(self) -> None:
        for line in self.query(StatusLine):
            line.status, line.summary = "pending", "probing…"
        self.probe()

    @work(group=Group.PROBE, name="home-probe", exit_on_error=False, exclusive=True)
    async def probe(self) -> None:
        cfg = self.console.config
        try:
            facts: ServerFacts | str = await server_facts(cfg.target)
        except ConsoleError as exc:
            facts = str(exc)
        health = await app_health(cfg.app) if cfg.app else None
        self.post_message(self.Probed(facts, health))

    def work_failed(self, group: Group, line: str) -> None:
        """A probe or the incident lookup that failed says so on its own line."""
        where = {Group.INCIDENT: "#probe-incident", Group.PROBE: "#probe-db"}.get(group)
        if where is None:
            super().work_failed(group, line)
            return
        status = self.query_one(where, StatusLine)
        status.status, status.summary = "error", line

    def on_home_screen_probed(self, message: Probed) -> None:
        db = self.query_one("#probe-db", StatusLine)
        banner = self.query_one(TargetBanner)
        if isinstance(message.facts, str):
            db.status, db.summary = "fail", message.facts
            banner.server = self.console.server_text = server_state(message.facts)
        else:
            f = message.facts
            role = "standby (read-only)" if f.in_recovery else "primary"
            db.status = "pass"
            db.summary = (f"PostgreSQL {f.version}, {f.database} as {f.user}, {role}, "
                          f"{f.size_bytes / 1e6:.1f} MB")
            banner.server = self.console.server_text = f"PostgreSQL {f.version.split()[0]}"
        app_line = self.query_one("#probe-app", StatusLine)
        if message.health is None:
            app_line.status, app_line.summary = "warn", "no [app] in the config"
        else:
            h = message.health
            app_line.status = "pass" if h.ok else "fail"
            app_line.summary = h.summary + (f" in {h.latency_ms:.0f} ms" if h.status else "")

    @on(OptionList.OptionSelected, "#entries")
    def entry_chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.action_open(event.option.id)

    def action_open(self, key: str) -> None:
        if key == "rollback" and self.console.mode == "assess":
            self.notify("This session is read-only (--mode assess): rollbacks cannot be "
                        "started. Start the console without --mode assess to roll back.",
                        title="Read-only: assess mode", severity="warning")
            return
        if key == "rollback":
            self.app.push_screen(PlanScreen())
            return
        if key == "assess":
            self.app.push_screen(AssessScreen())
            return
        if key == "backups":
            self.app.push_screen(BackupsScreen())
            return
        if key == "watch":
            self.app.push_screen(WatchScreen())
            return
        if key == "drill":
            self.app.push_screen(DrillsScreen())

    def action_cursor(self, direction: str) -> None:
        entries = self.query_one("#entries", OptionList)
        entries.action_cursor_down() if direction == "down" else entries.action_cursor_up()
