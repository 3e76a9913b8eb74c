"""Choose the rollback: type, tables, backup set; see the plan (every step, its SQL and
commands) and the blast radius; then the gate. Building the plan only reads the target."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, OptionList, SelectionList, Static
from textual.widgets.option_list import Option

from app.backups.backupset import BackupSet, list_sets
from app.catalog import qualified
from app.errors import TakenAfterMigration
from app.events import EventChannel
from app.journal import Journal, incidents_root, new_incident_id
from app.rollback.context import (
    Options,
    RollbackType,
    RunContext,
    expected_phrase,
)
from app.rollback.plan import Plan
from app.rollback.plans import build_plan
from app.rollback.registry import all_types, rollback_type
from app.rollback.schema import nothing_to_do
from screens.base import ConsoleScreen
from screens.gate import GateScreen
from screens.reason import ReasonScreen
from screens.rollback import RollbackScreen
from screens.work import Group

ROLLBACK_TIER = "IMMEDIATE ROLLBACK"


@dataclass(frozen=True)
class Override:
    """A rollback against the assessment's verdict: the verdict, and the operator's reason."""

    verdict: str
    reason: str


class PlanScreen(ConsoleScreen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("b", "build", "Build the plan"),
        Binding("G", "gate", "Go to the gate (shift+g)"),
        Binding("O", "use_anyway", "Use a set taken after the migration (shift+o)"),
    ]

    def __init__(self, kind: str = RollbackType.PARTIAL,
                 tables: tuple[str, ...] = (), journal: Journal | None = None,
                 phase: tuple[int, int] | None = None, override: Override | None = None):
        super().__init__()
        self.override = override   # set by the decision screen: a rollback against its verdict
        self.phase = phase   # (n, of) when this plan is a later phase of a multi-phase one
        self.journal = journal   # the incident the decision was journaled in, if any
        self.kind = kind
        self.preselected = tables
        self.plan: Plan | None = None
        self.backup: BackupSet | None = None
        self.options = Options()
        self.sets: list[BackupSet] = []
        self.refused: tuple[BackupSet, Options] | None = None   # a set after the migration


    def compose(self) -> ComposeResult:
        cfg = self.console.config
        yield self.banner()
        with Horizontal(id="plan-body"):
            with Vertical(id="plan-choices"):
                types = [Option(self._type_label(k.key), id=k.key) for k in all_types()]
                yield OptionList(*types, id="plan-type", classes="panel")
                tables = [qualified(t).replace('"', "") for t in cfg.target.critical_tables]
                yield SelectionList[str](*[(t, t, t in self.preselected or
                                            t.split(".")[-1] in self.preselected)
                                           for t in tables], id="plan-tables", classes="panel")
                yield OptionList(id="plan-backups", classes="panel")
            with VerticalScroll(id="plan-preview", classes="panel"):
                yield Static("Choose the type, the tables (partial) and the backup set, then "
                             "press b to build the plan.", id="plan-text")
        yield Footer()

    def _show_selected(self) -> None:
        """Selection shown in words too (the list's boxes differ only by colour)."""
        tables = self.query_one("#plan-tables", SelectionList)
        chosen = tables.selected
        for index in range(tables.option_count):
            option = tables.get_option_at_index(index)
            mark = "[x]" if option.value in chosen else "[ ]"   # Text: no markup parsing
            tables.replace_option_prompt_at_index(index, Text(f"{mark} {option.value}"))
        tables.border_subtitle = ("selected: " + ", ".join(t.split(".")[-1] for t in chosen)
                                  if chosen else "none selected")

    def _type_label(self, kind: str) -> str:
        spec = rollback_type(kind)
        return f"{spec.label}: risk {spec.risk}, downtime {spec.downtime}"

    def on_mount(self) -> None:
        self.query_one("#plan-type").border_title = "Rollback type"
        self.query_one("#plan-tables").border_title = "Tables (Type 2; space toggles)"
        self.query_one("#plan-backups").border_title = "Backup set"
        self._show_selected()
        self.query_one("#plan-preview").border_title = "Plan"
        type_list = self.query_one("#plan-type", OptionList)
        type_list.highlighted = [t.key for t in all_types()].index(self.kind)
        self.query_one("#plan-tables").display = rollback_type(self.kind).takes_tables
        self.sets = list_sets(self.console.config.target.backups_root)
        backups = self.query_one("#plan-backups", OptionList)
        now = time.time()
        for s in self.sets:
            age = "" if s.taken_at is None else \
                f", {(now - s.taken_at.timestamp()) / 3600:.1f} h old"
            manifest = "manifest" if s.manifest is not None else "NO manifest"
            backups.add_option(Option(f"{s.id} ({manifest}{age})", id=s.id))
        if not self.sets:
            backups.add_option(Option(f"no sets under {self.console.config.target.backups_root}"
                                      ": make one with `rollback-console backup`",
                                      disabled=True))
        else:
            backups.highlighted = 0
        type_list.focus()

    @on(SelectionList.SelectedChanged, "#plan-tables")
    def tables_changed(self, _event: SelectionList.SelectedChanged[str]) -> None:
        self._show_selected()

    @on(OptionList.OptionSelected, "#plan-type")
    def type_chosen(self, event: OptionList.OptionSelected) -> None:
        self.kind = rollback_type(str(event.option.id)).key
        self.query_one("#plan-tables").display = rollback_type(self.kind).takes_tables

    def _chosen_backup(self) -> BackupSet | None:
        backups = self.query_one("#plan-backups", OptionList)
        if backups.highlighted is None or not self.sets:
            return None
        return self.sets[backups.highlighted]

    def action_build(self) -> None:
        backup = self._chosen_backup()
        if backup is None:
            self.notify("No backup set to roll back from.", severity="error")
            return
        tables = tuple(self.query_one("#plan-tables", SelectionList).selected)
        if rollback_type(self.kind).takes_tables and not tables:
            self.notify("Choose at least one table (space toggles).", severity="warning")
            return
        self.query_one("#plan-text", Static).update("building the plan (read-only)…")
        self.build(backup, Options(tables=tables, keep_maintenance=True))  # one plan, 2 phases

    @work(group=Group.PLAN, name="build-plan", exit_on_error=False, exclusive=True)
    async def build(self, backup: BackupSet, options: Options) -> tuple[Plan, BackupSet,
                                                                         Options]:
        self.refused = None
        try:
            plan = await build_plan(self.console.config, self.kind, backup, options)
        except TakenAfterMigration:
            self.refused = (backup, options)
            raise
        return plan, backup, options

    def work_failed(self, group: Group, line: str) -> None:
        if group is not Group.PLAN:
            super().work_failed(group, line)
            return
        hint = ("\n\nshift+o: use this set anyway (asks why; the reason is journaled)"
                if self.refused else "")
        self.query_one("#plan-text", Static).update(f"✖ {line}{hint}")

    def work_done(self, group: Group, result: Any) -> None:
        if group is Group.PLAN and result is not None:
            self.plan, self.backup, self.options = result
            self.query_one("#plan-text", Static).update(self._describe(self.plan))

    def against_verdict(self) -> tuple[str, str] | None:
        """(the verdict, the operator's reason so far) when this rollback goes against the
        verdict: the decision screen's override flag, else the tier field of the assessment
        journaled in this incident (a plan opened on an incident without the flag). None when
        the verdict was IMMEDIATE ROLLBACK or nothing was assessed."""
        if self.override is not None:
            return self.override.verdict, self.override.reason
        if self.journal is None:
            return None
        assessed = self.journal.last("assessment")
        if assessed is None or assessed.data.get("tier") in (None, ROLLBACK_TIER):
            return None
        decision = self.journal.last("decision")
        reason = ""
        if decision is not None and decision.data.get("choice") == "override":
            reason = str(decision.data.get("reason") or "")
        return str(assessed.data["tier"]), reason

    def _override_lines(self) -> list[str]:
        against = self.against_verdict()
        if against is None:
            return []
        tier, reason = against
        return [f"!OVERRIDE: the verdict was {tier}, no rollback recommended; rolling back "
                f"anyway because: {reason or '(a reason is asked at the gate)'}"]

    def _describe(self, plan: Plan) -> Text:
        text = Text()
        against = self.against_verdict()
        if against is not None:
            tier, reason = against
            text.append(f"⚠ AGAINST THE VERDICT: the assessment says {tier}; no rollback is "
                        "recommended. escape goes back (the right move for a forward-fix or "
                        "monitor verdict). Going on is an override: ", style="bold reverse")
            text.append((f"reason given: {reason}" if reason else
                         "shift+g asks for your reason (journaled, shown at the gate)")
                        + "\n\n", style="bold")
        if self.phase is not None:
            text.append(f"PHASE {self.phase[0]} OF {self.phase[1]}\n", style="bold reverse")
        text.append(f"{rollback_type(plan.kind).label} from {plan.backup_id}\n", style="bold")
        if nothing_to_do(plan):
            text.append("✔ Nothing to do: the live schema already equals the backup's. No "
                        "maintenance, no gate, nothing is changed.\n", style="bold")
            return text
        text.append(f"budget {plan.budget_s // 60} min\n")
        for i, step in enumerate(plan.steps, start=1):
            if step.point_of_no_return:
                text.append(f"⚠ POINT OF NO RETURN at step {i}: {step.title}\n", style="bold")
        text.append("shift+g: to the confirmation gate\n\n", style="bold")
        text.append("Blast radius\n", style="bold underline")
        for line in plan.blast_radius:
            if line.startswith("!"):
                text.append("LOSS ", style="bold reverse")
                text.append(line[1:] + "\n", style="bold")
            else:
                text.append(f"• {line}\n")
        for i, step in enumerate(plan.steps, start=1):
            marks = "  ⚠ POINT OF NO RETURN" if step.point_of_no_return else (
                "  ! destructive" if step.destructive else "")
            text.append(f"\n{i}. {step.title}{marks}\n", style="bold")
            text.append(f"   {step.description}\n")
            if step.undo:
                text.append(f"   undo: {step.undo}\n", style="italic")
            for statement in step.statements:
                text.append("     " + statement.replace("\n", "\n     ") + "\n", style="dim")
        text.append("\nshift+g: to the confirmation gate", style="bold")
        return text

    def action_use_anyway(self) -> None:
        """The set was refused as taken after the migration: the operator may know better
        (the migration table can be wrong); the reason goes into the journal."""
        if self.refused is None:
            self.notify("Nothing to override: the plan was not refused for its set's age.")
            return
        backup, options = self.refused

        def answered(reason: str | None) -> None:
            if not reason:
                return
            self.journal = self.journal or Journal.open(incidents_root() / new_incident_id())
            self.journal.append("decision", choice="use a set taken after the migration",
                                backup=backup.id, reason=reason)
            self.query_one("#plan-text", Static).update("building the plan (read-only)…")
            self.build(backup, replace(options, allow_after_migration=True))

        self.app.push_screen(ReasonScreen(f"Use {backup.id}, taken after the migration? It may "
                                          "hold the broken state. Say why.", "Use it"),
                             answered)

    def action_gate(self) -> None:
        if self.plan is None:
            self.notify("Build the plan first (b).", severity="warning")
            return
        plan = self.plan
        if nothing_to_do(plan):
            self.notify("The schema already equals the backup's: there is nothing to roll "
                        "back, so there is no gate.", title="Nothing to do")
            return
        against = self.against_verdict()
        if against is not None and not against[1]:
            self._ask_override(plan, against[0])
            return
        phrase = expected_phrase(plan.kind, plan.target)

        def confirmed(ok: bool | None) -> None:
            if not ok:
                self.notify("Nothing was done.", title="Cancelled")
                return
            journal = self.journal or Journal.open(incidents_root() / new_incident_id())
            assert self.backup is not None   # the plan was built from it
            ctx = RunContext(self.console.config, plan.kind, journal, EventChannel(),
                             self.backup, replace(self.options, confirm=phrase,
                                                  keep_maintenance=plan.holds_maintenance))
            self.app.push_screen(RollbackScreen(plan, ctx, phase=self.phase))

        override = self._override_lines()
        title = f"{rollback_type(plan.kind).label} of {plan.target}"
        if override:
            title = f"OVERRIDE: {title}, against the verdict {against[0] if against else ''}"
        self.app.push_screen(GateScreen(title, override + plan.blast_radius, phrase),
                             confirmed)

    def _ask_override(self, plan: Plan, tier: str) -> None:
        """A rollback against the verdict needs a typed reason before the gate."""
        def answered(reason: str | None) -> None:
            if not reason or self.journal is None:
                self.notify("Nothing was done.", title="Cancelled")
                return
            self.journal.append("decision", choice="override", reason=reason,
                                against=tier, type=str(plan.kind))
            self.override = Override(tier, reason)
            self.query_one("#plan-text", Static).update(self._describe(plan))
            self.action_gate()

        self.app.push_screen(ReasonScreen(
            f"The assessment's verdict is {tier}: no rollback is recommended. Rolling back "
            "anyway is an override; it is journaled and shown on the gate and in the report. "
            "Why?", "Override and go to the gate"), answered)
