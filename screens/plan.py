"""Choose the rollback: type, tables, and its source (a backup set, or a point in time from the
WAL archive when the config has [pitr]); see the plan (every step, its SQL and commands) and the
blast radius; then the gate. Building the plan only reads the target; a point in time is
restored ASIDE first (a scratch cluster, never the live one) and captured as a verified set,
which then is the plan's source like any other."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Input, OptionList, ProgressBar, SelectionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker

from app.backups.backupset import BackupSet, list_sets
from app.catalog import qualified
from app.errors import BadInput, TakenAfterMigration
from app.events import EventChannel
from app.failure import failure_line
from app.journal import Journal, incidents_root, new_incident_id
from app.pitr.model import when
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
from screens.backups import pitr_failure, read_window, window_text
from screens.base import ConsoleScreen
from screens.gate import GateScreen
from screens.reason import ReasonScreen
from screens.rollback import RollbackScreen
from screens.work import Group
from widgets.blast_radius import (
    mark_label,
    moment_words,
    point_in_time_of,
    seconds_in_words,
    writes_lost,
)
from widgets.live_log import LiveLog

if TYPE_CHECKING:
    from app.pitr.marks import Mark
    from app.pitr.model import PointTarget, Window

ROLLBACK_TIER = "IMMEDIATE ROLLBACK"


@dataclass(frozen=True)
class Override:
    """A rollback against the assessment's verdict: the verdict, and the operator's reason."""

    verdict: str
    reason: str


class PitrLine(Message):
    """A line (and, when known, the fraction of WAL replayed) from the restore aside; posted
    from its callbacks, shown by the screen."""

    def __init__(self, fraction: float | None, line: str) -> None:
        super().__init__()
        self.fraction = fraction
        self.line = line


SET, PITR = "set", "pitr"
MOMENT_HINT = ("enter (in the field) or b: restore it aside, then build the plan; tab into "
               "the field to change it")


class PlanScreen(ConsoleScreen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("b", "build", "Build the plan"),
        Binding("G", "gate", "Go to the gate (shift+g)"),
        Binding("O", "use_anyway", "Use a set taken after the migration (shift+o)"),
        Binding("p", "switch_source", "Point in time / backup set"),
    ]
    HELP_NOTE: ClassVar[str] = (
        "The source: b builds the plan from the highlighted backup set; p switches to a point "
        "in time (needs [pitr] in the config): the WAL archive's window is shown, the field "
        "takes a mark's label, an ISO time or an LSN (default: the newest mark before the "
        "migration, else one second before it; the newest mark, said as unchecked, when the "
        "migration's time is unknown), and b (or enter in the field) restores that "
        "moment aside, a scratch cluster, never the live database, then builds the plan from "
        "it. A moment outside the window or behind a gap is refused before anything starts.")

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
        self.source = SET   # or PITR: a point in time restored aside
        self.window: Window | None = None
        self.marks: list[Mark] = []
        self.migration: tuple[datetime | None, str] = (None, "")
        self.default_target: PointTarget | None = None   # resolve_target's "auto"
        self.default_text = ""                            # what the field shows for it
        self.default_note = ""   # why there is no default, or what to check about it
        self.captured: dict[tuple[str, str, tuple[str, ...], bool], BackupSet] = {}
        self.wanted: tuple[tuple[str, str, tuple[str, ...], bool], Options] | None = None
        self.marks_note = ""
        self.tenth = -1   # the last tenth of the replay the log said

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
                yield OptionList(*self._source_options(), id="plan-source", classes="panel")
                yield OptionList(id="plan-backups", classes="panel")
            with Vertical(id="plan-right"):
                with Vertical(id="plan-pitr", classes="panel"):
                    yield Input(placeholder="a mark's label, an ISO time or an LSN",
                                id="pitr-at", compact=True)
                    yield Static(MOMENT_HINT, id="pitr-hint")
                with VerticalScroll(id="plan-preview", classes="panel"):
                    yield Static("", id="plan-suggest")
                    yield Static(self._intro(), id="plan-text")
                with Vertical(id="pitr-work", classes="panel"):
                    yield ProgressBar(id="pitr-progress", show_eta=True)
                    yield Static("", id="pitr-status")
                    yield LiveLog(id="pitr-log")
        yield Footer()

    def _source_options(self) -> list[Option]:
        cfg = self.console.config
        # Text: "[pitr]" is not markup
        if cfg.pitr is None:
            return [Option(Text("from a backup set"), id=SET),
                    Option(Text(f"from a point in time: no [pitr] in {cfg.path.name}: see "
                                "README"), id=PITR, disabled=True)]
        return [Option(Text("from a backup set"), id=SET),
                Option(Text(f"from a point in time ({cfg.pitr.engine} WAL archive)"), id=PITR)]

    def _intro(self) -> str:
        if self.source == PITR:
            return ("Choose the type and the tables (partial), and the moment in the field "
                    "above, then press b to build the plan: the moment is restored aside "
                    "first (a scratch cluster, never the live one). p: back to backup sets.")
        more = (" p: from a point in time instead (the WAL archive)."
                if self.console.config.pitr is not None else "")
        return ("Choose the type, the tables (partial) and the backup set, then press b to "
                "build the plan." + more)

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
        self.query_one("#plan-source").border_title = "Source (p switches)"
        self.query_one("#plan-pitr").border_title = "The moment to restore"
        self.query_one("#plan-source", OptionList).highlighted = 0
        self.query_one("#plan-pitr").display = False
        self.query_one("#pitr-work").display = False
        self.query_one("#pitr-work").border_title = "Restore aside"
        self.query_one("#plan-suggest").display = False
        self._show_selected()
        self.query_one("#plan-preview").border_title = "Plan"
        type_list = self.query_one("#plan-type", OptionList)
        type_list.highlighted = [t.key for t in all_types()].index(self.kind)
        self.query_one("#plan-tables").display = rollback_type(self.kind).takes_tables
        self._list_sets()
        type_list.focus()
        if self.console.config.pitr is not None:
            self.read_pitr()   # read-only: the default moment, and whether it beats the sets

    def _list_sets(self) -> None:
        """The backup sets under the backups root, newest first (a moment captured from the
        WAL archive is one of them once it is captured)."""
        self.sets = list_sets(self.console.config.target.backups_root)
        backups = self.query_one("#plan-backups", OptionList)
        backups.clear_options()
        now = time.time()
        for s in self.sets:
            age = "" if s.taken_at is None else \
                f", {(now - s.taken_at.timestamp()) / 3600:.1f} h old"
            manifest = "manifest" if s.manifest is not None else "NO manifest"
            if point_in_time_of(s) is not None:
                manifest += ", a point in time"
            backups.add_option(Option(f"{s.id} ({manifest}{age})", id=s.id))
        if not self.sets:
            backups.add_option(Option(f"no sets under {self.console.config.target.backups_root}"
                                      ": make one with `rollback-console backup`",
                                      disabled=True))
        else:
            backups.highlighted = 0

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

    # --- the source: a backup set, or a point in time ---------------------------------------

    @on(OptionList.OptionSelected, "#plan-source")
    def source_chosen(self, event: OptionList.OptionSelected) -> None:
        self._set_source(str(event.option.id))

    def action_switch_source(self) -> None:
        cfg = self.console.config
        if cfg.pitr is None:
            self.notify(f"No point in time: no [pitr] in {cfg.path.name}, so there is no WAL "
                        "archive to restore one from; see README (Point in time).",
                        title="Backup sets only", severity="warning")
            return
        self._set_source(PITR if self.source == SET else SET)

    def _set_source(self, source: str) -> None:
        if source == self.source:
            return
        if self.working(Group.BACKUP):
            self.notify("A moment is being restored aside: wait for it, or escape to stop it.",
                        severity="warning")
            return
        self.source = source
        self.plan = None   # a plan from the other source is not the one on screen any more
        pitr = source == PITR
        self.query_one("#plan-source", OptionList).highlighted = 1 if pitr else 0
        self.query_one("#plan-backups").display = not pitr
        self.query_one("#plan-pitr").display = pitr
        self.query_one("#pitr-work").display = False
        self.query_one("#plan-suggest").display = False
        text = self.query_one("#plan-text", Static)
        if not pitr:
            text.update(self._intro())
            self.query_one("#plan-backups").focus()
            self._compare_with_sets()
            return
        text.update(self._window_preview() if self.window is not None else
                    "reading the WAL archive's window (read-only)…")
        self.query_one("#plan-source").focus()   # the screen's keys stay live (b, shift+g)
        self.read_pitr()

    @work(group=Group.PROBE, name="pitr-window", exit_on_error=False, exclusive=True)
    async def read_pitr(self) -> tuple[Window, list[Mark], str, tuple[datetime | None, str]]:
        """The window, the marks and the migration's time (for the default moment), read-only."""
        from app.backups.backupset import migration_time
        from app.db import connect
        from app.errors import ConsoleError

        cfg = self.console.config
        window, marks, note = await read_window(cfg)
        migration: tuple[datetime | None, str] = (None, "")
        try:
            conn = await connect(cfg.target)
        except ConsoleError:
            return window, marks, note, migration   # the marks' note says it is unreachable
        try:
            migration = await migration_time(conn, cfg.target.migration_at)
        finally:
            await conn.close()
        return window, marks, note, migration

    def _window_read(self, result: tuple[Window, list[Mark], str,
                                         tuple[datetime | None, str]]) -> None:
        from app.pitr.source import AUTO, resolve_target

        window, marks, note, migration = result
        self.window, self.marks, self.migration = window, marks, migration
        self.marks_note = note   # why the marks could not be read, when they could not
        self.query_one("#plan-source").border_subtitle = ""
        old_default = self.default_text
        try:
            target = resolve_target(AUTO, marks, *migration)
            self.default_target, self.default_note = target, ""
            self.default_text = self._field_text(target)
        except BadInput as exc:
            why = str(exc).removeprefix("--at needs a moment: ").split(" (give ")[0]
            self.default_target, self.default_text, self.default_note = None, "", str(exc)
            if marks:   # no "before the migration" to go by: the newest mark, said as such
                self.default_target = resolve_target(marks[-1].label, marks, None)
                self.default_text = marks[-1].label
                self.default_note = (f"it is the newest mark, not checked against the "
                                     f"migration: {why}. Make sure it is from before the "
                                     "migration, or type another moment")
            else:
                self.default_note = self.default_note.removeprefix("--at needs a moment: ")
        field = self.query_one("#pitr-at", Input)
        if not field.value or field.value == old_default:
            field.value = self.default_text
        self._check_moment(field.value)
        self._compare_with_sets()
        if self.source == PITR and self.plan is None and not self.working(Group.BACKUP):
            self.query_one("#plan-text", Static).update(self._window_preview())

    @staticmethod
    def _field_text(target: PointTarget) -> str:
        """A target as the field shows it: a mark's label, else its ISO time, else its LSN."""
        if target.kind == "name":
            return mark_label(target.said, target.value)
        if target.at is None:
            return target.value
        return f"{target.at:%Y-%m-%dT%H:%M:%SZ}"

    @classmethod
    def _short(cls, target: PointTarget) -> str:
        """``mark before-deploy``, ``LSN 0/3000060`` or the ISO time."""
        if target.kind == "name":
            return f"mark {cls._field_text(target)}"
        return f"LSN {target.value}" if target.kind == "lsn" else cls._field_text(target)

    def _compare_with_sets(self) -> None:
        """When the default moment is newer than every backup set taken before the migration,
        the source list says so: a rollback from it loses fewer writes."""
        moment, cfg = self.default_target, self.console.config
        if moment is None or moment.at is None or cfg.pitr is None:
            return
        at, migration = moment.at, self.migration[0]
        if any(s.taken_at is not None and at <= s.taken_at
               and (migration is None or s.taken_at < migration) for s in self.sets):
            return   # a set is as close to the migration: no reason to say more
        older = [s.taken_at for s in self.sets if s.taken_at is not None and s.taken_at < at]
        short = self._short(moment)
        newer = (f"{seconds_in_words(int((at - max(older)).total_seconds()))} newer than the "
                 "newest backup set" if older else "no backup set is that recent")
        self.query_one("#plan-source").border_subtitle = "p: the point in time"
        suggest = self.query_one("#plan-suggest", Static)
        suggest.update(f"⚑ From a point in time: {short} ({when(at)}), {newer}. A rollback "
                       "from it loses fewer writes"
                       + ("" if migration is not None else
                          ", if it is from before the migration") + ": press p for a point "
                       "in time.")
        suggest.display = self.source == SET and self.plan is None

    def _window_preview(self) -> Text:
        assert self.window is not None
        text = Text()
        text.append("Point in time: the WAL archive's window\n", style="bold underline")
        text.append_text(window_text(self.window, self.marks, self.marks_note))
        text.append("\n\n")
        if self.default_target is not None:
            text.append("Default moment: ", style="bold")
            text.append(f"{self.default_target.said}\n")
            if self.default_note:
                text.append(f"⚠ {self.default_note}\n", style="bold")
        else:
            text.append("No default moment: ", style="bold")
            text.append(f"{self.default_note}\n")
        text.append("\nThe moment is in the field above (tab into it to type a mark's label, "
                    "an ISO time like 2026-12-02T04:31:07Z, or an LSN like 0/3000060). press b "
                    "to build the plan (enter in the field does the same): the moment is "
                    "restored aside first, into a scratch cluster on 127.0.0.1, never the live "
                    "one, and captured as a verified backup set. p: back to backup sets.",
                    style="bold")
        return text

    def _target(self, text: str) -> PointTarget:
        from app.pitr.source import resolve_target

        if self.default_target is not None and text == self.default_text:
            return self.default_target
        try:
            return resolve_target(text, self.marks, *self.migration)
        except BadInput as exc:
            raise BadInput(str(exc).replace("--at ", "the moment ", 1)) from None

    @on(Input.Changed, "#pitr-at")
    def moment_typed(self, event: Input.Changed) -> None:
        self._check_moment(event.value)

    def _check_moment(self, value: str) -> None:
        """The moment against the window as it is typed: inside, or why not (in words)."""
        hint = self.query_one("#pitr-hint", Static)
        if not value.strip() or self.window is None:
            hint.update(MOMENT_HINT)
            return
        try:
            target = self._target(value.strip())
        except BadInput as exc:
            hint.update(f"✖ {exc}")
            return
        refusal = self.window.refusal(target)
        if refusal:
            hint.update(f"✖ {refusal}")
            return
        base = self.window.base_for(target)
        short = self._short(target)
        hint.update(f"✔ {short} is in the window"
                    + (f" (base backup {base.id})" if base else "") + f". {MOMENT_HINT}")

    @on(Input.Submitted, "#pitr-at")
    def moment_submitted(self) -> None:
        self.action_build()

    def _build_from_moment(self, tables: tuple[str, ...]) -> None:
        if self.working(Group.BACKUP):
            self.notify("The moment is being restored aside already.", severity="warning")
            return
        if self.window is None and self.working(Group.PROBE):
            self.notify("Reading the WAL archive's window and the marks: press b again in a "
                        "moment.", severity="warning")
            return
        text = self.query_one("#pitr-at", Input).value.strip()
        if not text:
            self.notify("Type the moment first: a mark's label, an ISO time or an LSN.",
                        severity="warning")
            return
        self.plan = None
        try:
            target = self._target(text)
        except BadInput as exc:
            self._pitr_failed(failure_line("restore the moment aside", exc,
                                           self.console.log_path))
            return
        spec = rollback_type(self.kind)
        takes = tables if spec.takes_tables else ()
        key = (target.kind, target.value, takes, spec.restores == "database")
        options = Options(tables=tables, keep_maintenance=True)
        captured = self.captured.get(key)
        if captured is not None:   # the same moment, for the same tables: captured already
            self.query_one("#plan-text", Static).update(
                f"building the plan from {captured.id}, captured already (read-only)…")
            self.build(captured, options)
            return
        self.wanted = (key, options)
        work = self.query_one("#pitr-work")
        work.display = True
        work.border_title = f"Restore aside: {target.said}"
        self.query_one("#pitr-progress", ProgressBar).update(total=None, progress=0)
        self.query_one("#pitr-status", Static).update("starting…")
        self.tenth = -1
        self.query_one("#plan-text", Static).update(
            f"restoring {target.said} aside: a scratch cluster on 127.0.0.1, never the live "
            "one (the live database is only read); the plan is built from it when it is "
            "captured. escape stops it.")
        self.restore_aside(target, takes, key[3])

    @work(group=Group.BACKUP, name="restore-aside", exit_on_error=False, exclusive=True)
    async def restore_aside(self, target: PointTarget, tables: tuple[str, ...],
                            full: bool) -> BackupSet:
        from app.pitr.source import restore_point_in_time

        def line(text: str) -> None:   # post_message: safe from any thread
            self.post_message(PitrLine(None, text))

        def progress(fraction: float | None, text: str) -> None:
            self.post_message(PitrLine(fraction, text))

        return await restore_point_in_time(self.console.config, target, tables=tables,
                                           full=full, on_line=line, on_progress=progress)

    @on(PitrLine)
    def restore_line(self, event: PitrLine) -> None:
        log = self.query_one("#pitr-log", LiveLog)
        if event.fraction is None:
            log.append(event.line)
            return
        self.query_one("#pitr-progress", ProgressBar).update(total=100,
                                                             progress=event.fraction * 100)
        self.query_one("#pitr-status", Static).update(event.line)
        tenth = int(event.fraction * 10)
        if tenth != self.tenth:   # the log keeps one line per 10 %
            self.tenth = tenth
            log.append(f"{event.fraction:4.0%} {event.line}")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        line = pitr_failure(self, event)
        if line is None:
            return
        event.prevent_default()   # in the point in time's own words, on the plan's line
        if event.worker.name == "pitr-window" and self.source == SET:   # read on mount
            self.query_one("#plan-source").border_subtitle = "✖ window not read: p says why"
            return
        self._pitr_failed(line)

    def _pitr_failed(self, line: str) -> None:
        self.query_one("#plan-text", Static).update(f"✖ {line}")
        if self.query_one("#pitr-work").display:
            self.query_one("#pitr-status", Static).update("✖ stopped (see the plan's pane)")

    def _captured(self, backup: BackupSet) -> None:
        assert self.wanted is not None
        key, options = self.wanted
        self.captured[key] = backup
        self.query_one("#pitr-progress", ProgressBar).update(total=100, progress=100)
        self.query_one("#pitr-status", Static).update(f"✔ captured as backup set {backup.id}")
        self.query_one("#pitr-log", LiveLog).append(f"captured as backup set {backup.id}")
        self.query_one("#plan-text", Static).update(
            f"building the plan from {backup.id} (read-only)…")
        self._list_sets()   # the captured set is a backup set now, listed with the others
        self.build(backup, options)

    def action_build(self) -> None:
        if self.source == PITR:
            tables = tuple(self.query_one("#plan-tables", SelectionList).selected)
            if rollback_type(self.kind).takes_tables and not tables:
                self.notify("Choose at least one table (space toggles).", severity="warning")
                return
            self._build_from_moment(tables)
            return
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
        if group is Group.PROBE and result is not None:
            self._window_read(result)
        elif group is Group.BACKUP and result is not None:
            self._captured(result)
        elif group is Group.PLAN and result is not None:
            self.plan, self.backup, self.options = result
            self.query_one("#plan-suggest").display = False
            self.query_one("#plan-text", Static).update(self._describe(self.plan))
            if isinstance(self.focused, Input):   # shift+g must reach the screen, not the field
                self.query_one("#plan-preview").focus()
            if point_in_time_of(self.backup) is not None:   # the plan's pane says it; room
                self.query_one("#pitr-work").display = False

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
        pit = point_in_time_of(self.backup)
        if pit is not None:
            text.append(f"Point in time: {moment_words(pit)}; restored aside and captured as "
                        f"{plan.backup_id}\n", style="bold")
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
        for line in self._blast_radius(plan):
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
        pit = point_in_time_of(self.backup)
        self.app.push_screen(GateScreen(title, override + self._blast_radius(plan), phrase,
                                        moment=moment_words(pit) if pit else ""), confirmed)

    def _blast_radius(self, plan: Plan) -> list[str]:
        """The plan's blast radius; from a point in time, first the writes it replaces (now
        minus the moment: computed when shown, so the gate says it as of now)."""
        pit = point_in_time_of(self.backup)
        if pit is None:
            return plan.blast_radius
        spec = rollback_type(plan.kind)
        lost = writes_lost(pit, spec.restores, plan.tables,
                           self.console.config.target.database, loses=spec.loses)
        return [lost, *plan.blast_radius]

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
