"""The decision matrix: checks stream in as they complete, the findings sit under the runbook's
tiers, and each verdict offers its own path. IMMEDIATE ROLLBACK: accept the recommended type
(or override it with a typed reason). FORWARD-FIX: the suggested fix in full, a key to save it
(journaled), watch; a rollback is only an override against the verdict, with a typed reason.
MONITOR AND ASSESS: watch. HEALTHY and DATABASE UNREACHABLE: nothing destructive. Every choice
is journaled. In assess mode nothing past this screen can be started."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Static

from app.checks import ASSESS_CHECKS, Assessment, CheckResult, run_assessment
from app.decision import Decision, Tier
from app.failure import failure_line
from app.forward_fix import script, statements
from app.journal import Journal, incidents_root, new_incident_id
from app.rollback.context import RollbackType
from screens.base import CHANGES_SOMETHING
from screens.checks_screen import ChecksScreen, Evidence
from screens.finding import FixScreen
from screens.plan import Override, PlanScreen
from screens.reason import ReasonScreen
from screens.watch import WatchScreen
from screens.work import Group
from widgets.check_list import CheckList

TIER_WORDS = {Tier.HEALTHY: "✔ HEALTHY", Tier.INCONCLUSIVE: "? INCONCLUSIVE",
              Tier.MONITOR: "◆ MONITOR AND ASSESS", Tier.FORWARD_FIX: "▲ FORWARD-FIX",
              Tier.IMMEDIATE_ROLLBACK: "✖ IMMEDIATE ROLLBACK",
              Tier.UNREACHABLE: "✖ DATABASE UNREACHABLE"}
# INCONCLUSIVE is neither green (it is no bill of health) nor an alarm colour (nothing found)
TIER_COLOURS = {Tier.HEALTHY: "green", Tier.INCONCLUSIVE: "magenta", Tier.MONITOR: "yellow",
                Tier.FORWARD_FIX: "dark_orange", Tier.IMMEDIATE_ROLLBACK: "red",
                Tier.UNREACHABLE: "red"}
# Which keys each verdict offers (the rest are hidden, never offered to be refused).
OFFERS = {"accept": {Tier.IMMEDIATE_ROLLBACK}, "override": {Tier.IMMEDIATE_ROLLBACK},
          "against": {Tier.FORWARD_FIX, Tier.MONITOR, Tier.INCONCLUSIVE},
          "save_fix": {Tier.FORWARD_FIX}, "watch": {Tier.FORWARD_FIX, Tier.MONITOR}}
FIX_FILE = "suggested-fix.sql"


def _kind(key: str) -> str:
    """The plan screen's type: the registry's key, a str for every registered type (the
    repair's "repair" too); a built-in one's RollbackType member, which is that same str."""
    try:
        return RollbackType(key)
    except ValueError:
        return key


class AssessScreen(ChecksScreen[None]):
    WRITES = CHANGES_SOMETHING | {"against"}
    BINDINGS = [
        Binding("enter", "evidence", "Evidence"),
        Binding("r", "rerun", "Assess again"),
        Binding("f", "save_fix", "Save the fix"),
        Binding("w", "watch", "Watch"),
        Binding("Y", "accept", "Accept recommendation (shift+y)"),
        Binding("O", "override", "Override with a reason (shift+o)"),
        Binding("O", "against", "Override: roll back against the verdict"),
        Binding("escape", "app.pop_screen", "Back"),
        Binding("j", "cursor('down')", "Down", show=False),
        Binding("k", "cursor('up')", "Up", show=False),
    ]
    GROUP = Group.ASSESS
    WORKER = "assessment"
    VERDICT = "#assess-verdict"
    WAITING = "assessing (read-only)…"
    STOPPED = "stopped: see Recommendation"
    NOT_YET = "That check has not finished yet."

    def __init__(self) -> None:
        super().__init__()
        self.assessment: Assessment | None = None
        self.journal: Journal | None = None   # this assessment's incident, once journaled

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """A verdict's own keys only, once it is known (assess mode hides the writes)."""
        if not super().check_action(action, parameters):
            return False
        if action not in OFFERS:
            return True
        return self.assessment is not None and self.assessment.decision.tier in OFFERS[action]

    def compose(self) -> ComposeResult:
        yield self.banner()
        with Horizontal(id="assess-body"):
            yield CheckList([(c.name, c.name.replace("_", " ")) for c in ASSESS_CHECKS],
                            id="assess-checks", classes="panel")
            with Vertical(id="assess-side"):
                yield Static(self.WAITING, id="assess-verdict", classes="panel")
                with VerticalScroll(id="assess-reasons", classes="panel"):
                    yield Static("", id="assess-reasons-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#assess-checks").border_title = "Checks (enter: evidence)"
        self.query_one("#assess-verdict").border_title = "Recommendation"
        self.query_one("#assess-reasons").border_title = "Findings by tier"

    def action_capital(self, key: str) -> None:
        """y where the verdict offers no Y: say why, never nothing (a tired operator presses y
        for Y)."""
        if key != "Y" or self.assessment is None or self.check_action("accept", ()):
            super().action_capital(key)
            return
        d = self.assessment.decision
        self.notify(f"shift+y (capital Y) accepts a rollback recommendation; the verdict "
                    f"{d.tier.label} recommends none. {self._keys(d)}", title="y is not Y")

    def reset(self) -> None:
        self.assessment = None
        self.journal = None

    def run_checks(self, on_result: Callable[[CheckResult], None]) -> Awaitable[Assessment]:
        return run_assessment(self.console.config, on_result=on_result)

    def record(self, result: CheckResult) -> None:
        self.query_one(CheckList).set_result(result.check, str(result.status), result.summary)

    def finished(self, result: Any) -> None:
        self.assessment = assessment = result
        for r in assessment.results:
            self.results[r.check] = r
            self.record(r)
        self.console.seen_tier = assessment.decision.tier.label   # the drill's call
        self._show(assessment.decision)
        self.refresh_bindings()

    def _show(self, decision: Decision) -> None:
        verdict = Text()
        verdict.append(TIER_WORDS[decision.tier] + "\n",
                       style=f"bold reverse {TIER_COLOURS[decision.tier]}")
        verdict.append(decision.action + "\n")
        if decision.recommended is not None:
            r = decision.recommended
            verdict.append(f"Type {r.number}: {r.title}. Risk {r.risk}, downtime "
                           f"{r.downtime}.\n", style="bold")
            if decision.repair:
                for table, n in (decision.would_lose.get(
                        "users_rows_after_the_migration_kept") or {}).items():
                    verdict.append(f"keeps: {table}: {n} rows users wrote after the migration "
                                   "(Type 2 would replace them)\n")
            lose = decision.would_lose.get("tables") or {}
            for table, facts in lose.items():
                n = facts.get("rows_written_since_backup")
                count = f"{n} rows" if n is not None else f"unknown: {facts.get('unknown')}"
                verdict.append(f"would lose: {table}: {count} (written since the backup; "
                               "exported first)\n")
        verdict.append(self._keys(decision), style="italic")
        self.query_one("#assess-verdict", Static).update(verdict)
        text = Text()
        if decision.fix:
            text.append("SUGGESTED FIX (run or copy; nothing was run)\n",
                        style="bold underline")
            for step in decision.fix:
                text.append("\n".join(step.lines()) + "\n\n")
            self.query_one("#assess-reasons").border_title = "Suggested fix, then findings"
        if decision.tier is Tier.UNREACHABLE:
            for x in decision.reasons:
                text.append(f"{x.summary}\n", style="bold")
            text.append("Every other check needs the database: not run.\n")
            self.query_one("#assess-reasons-text", Static).update(text)
            return
        for tier in (Tier.IMMEDIATE_ROLLBACK, Tier.FORWARD_FIX, Tier.MONITOR):
            reasons = [x for x in decision.reasons if x.tier is tier]
            text.append(f"{tier.label} ({len(reasons)})\n", style="bold underline")
            for x in reasons:
                text.append(f"  • {x.runbook}: ", style="bold")
                text.append(f"{x.summary} [{x.check}]\n")
        if decision.missing:
            text.append(f"NOT RUN ({len(decision.missing)}): evidence missing\n",
                        style="bold underline")
            for m in decision.missing:
                text.append(f"  – {m.check}: {m.why}\n    get it: {m.how}\n")
        self.query_one("#assess-reasons-text", Static).update(text)

    def _keys(self, decision: Decision) -> str:
        """The verdict's own path, in words (the footer shows the same keys)."""
        if self.console.mode == "assess":
            offered = {Tier.FORWARD_FIX: " f: save the fix · w: watch.",
                       Tier.MONITOR: " w: watch."}.get(decision.tier, "")
            return "READ-ONLY session: nothing can be started from here." + offered
        return {
            Tier.IMMEDIATE_ROLLBACK: "shift+y: accept · shift+o: override with a reason",
            Tier.FORWARD_FIX: "f: save the fix to a file · w: watch · escape: back · "
                              "shift+o: override: roll back against the verdict",
            Tier.MONITOR: "w: watch · r: assess again · "
                          "shift+o: override: roll back against the verdict",
            Tier.INCONCLUSIVE: "get the missing evidence, then r: assess again · "
                               "shift+o: override: roll back against the verdict",
            Tier.UNREACHABLE: "r: assess again when the database answers",
            Tier.HEALTHY: "Nothing to do: escape goes back.",
        }[decision.tier]

    def action_cursor(self, direction: str) -> None:
        table = self.query_one(CheckList)
        table.action_cursor_down() if direction == "down" else table.action_cursor_up()

    def evidence_of(self, key: str) -> Evidence | None:
        result = self.results.get(key)
        if result is None:
            return None
        return (f"{result.check}: {result.status.upper()}", result.symptom, result.summary,
                result.evidence)

    def _incident(self) -> Journal:
        """This assessment's incident journal, opened (with the assessment) on first use."""
        assert self.assessment is not None
        if self.journal is None:
            d = self.assessment.decision
            self.journal = Journal.open(incidents_root() / new_incident_id())
            self.journal.append(
                "assessment", tier=d.tier.label, action=d.action,
                recommended=d.recommended.key if d.recommended else None, tables=d.tables,
                backup=self.assessment.backup, fix=statements(d.fix),
                findings=[{"check": x.check, "tier": x.tier.label, "summary": x.summary}
                          for x in d.reasons])
        return self.journal

    def _journal_decision(self, choice: str, reason: str, **more: object) -> Journal:
        assert self.assessment is not None
        d = self.assessment.decision
        journal = self._incident()
        journal.append("decision", choice=choice, reason=reason,
                       recommended=d.recommended.key if d.recommended else None, **more)
        return journal

    def _can_act(self) -> bool:
        if self.console.mode == "assess":
            self.notify("Read-only assessment: nothing can be started from this session.",
                        title="READ-ONLY", severity="warning")
            return False
        if self.assessment is None:
            self.notify("The assessment has not finished yet.")
            return False
        return True

    def action_accept(self) -> None:
        if not self._can_act():
            return
        assert self.assessment is not None
        d = self.assessment.decision
        if d.recommended is None:   # only offered for IMMEDIATE ROLLBACK, which has one
            return
        journal = self._journal_decision(f"accept {d.recommended.key}", "recommendation")
        if d.repair:   # the plan screen builds it; headless, the command says every option
            self.notify(f"Headless: {d.repair['command']}", title="Zero-loss repair",
                        timeout=30)
        self.app.push_screen(PlanScreen(_kind(d.recommended.key), tuple(d.tables),
                                        journal=journal))

    def action_save_fix(self) -> None:
        """Write the suggested fix into the incident folder (nothing runs it), journal it, and
        put it on the clipboard where the terminal allows."""
        if self.assessment is None or not self.assessment.decision.fix:
            return
        d = self.assessment.decision
        text = script(d.fix, self.console.config.target.name)
        try:
            journal = self._incident()
            path = journal.dir / FIX_FILE
            path.write_text(text + "\n", encoding="utf-8")
            journal.append("fix_suggested", statements=statements(d.fix), file=str(path))
        except OSError as exc:   # a full disk, a read-only state folder: say it, keep going
            self.app.copy_to_clipboard(text)
            self.notify(failure_line("save the suggested fix", exc, self.console.log_path)
                        + ". It is copied where the terminal allows; nothing was run.",
                        title="Fix not saved", severity="error", timeout=15)
            return
        self.app.copy_to_clipboard(text)
        self.app.push_screen(FixScreen(
            "Suggested fix: saved, nothing was run",
            f"Saved to {path}. Read it, then run the file with psql -f, or paste it (it is "
            "copied where the terminal allows). Then w watches.",
            "\n\n".join("\n".join(step.lines()) for step in d.fix)))

    def action_watch(self) -> None:
        """Watch the checklist (the FORWARD-FIX and MONITOR path); the choice is journaled."""
        if self.assessment is None:
            return
        d = self.assessment.decision
        journal = self._journal_decision("watch", f"{d.tier.label}: watch, no rollback")
        self.app.push_screen(WatchScreen(self.assessment.backup, journal=journal))

    def action_override(self) -> None:
        """IMMEDIATE ROLLBACK, another type or tables: a typed reason first."""
        if not self._can_act():
            return
        assert self.assessment is not None
        d = self.assessment.decision

        def answered(reason: str | None) -> None:
            if not reason:
                return
            journal = self._journal_decision("override", reason)
            kind = _kind(d.recommended.key) if d.recommended else RollbackType.PARTIAL
            self.app.push_screen(PlanScreen(kind, tuple(d.tables), journal=journal))

        self.app.push_screen(ReasonScreen(
            f"Override the recommendation ({d.tier.label}: {d.action}). Why? The reason is "
            "journaled and goes into the incident report.", "Override"), answered)

    def action_against(self) -> None:
        """A rollback where the verdict calls for none: an override, with a typed reason; the
        plan and the gate say so (a flag, not a guess from the journal)."""
        if not self._can_act():
            return
        assert self.assessment is not None
        d = self.assessment.decision
        tier = d.tier.label

        def answered(reason: str | None) -> None:
            if not reason:
                return
            kind = _kind(d.override_type.key) if d.override_type else RollbackType.SCHEMA
            journal = self._journal_decision("override", reason, against=tier,
                                             type=str(kind))
            self.app.push_screen(PlanScreen(kind, tuple(d.tables), journal=journal,
                                            override=Override(tier, reason)))

        self.app.push_screen(ReasonScreen(
            f"The verdict is {tier}: no rollback is recommended ({d.action}) Rolling back "
            "anyway is an override: it is journaled, shown on the plan and the gate, and goes "
            "into the incident report. Why?", "Override: roll back"), answered)
