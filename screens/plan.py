"""Choose the rollback: type, tables, and its source (a backup set, or a point in time from the
WAL archive when the config has [pitr]); see the plan (every step, its SQL and commands) and the
blast radius; then the gate. Building the plan only reads the target; a point in time is
restored ASIDE first (a scratch cluster, never the live one) and captured as a verified set,
which then is the plan's source like any other.

The repair (Type 4, app/rollback/repair.py) takes two moments from a point in time: before the
migration and right after it (each restored aside in turn, the plan built from both), or, from
a backup set, the classes of damage to put back; and what to do with rows users changed too."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, HorizontalGroup, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Input, OptionList, ProgressBar, SelectionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

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
from screens.backups import read_window, window_text
from screens.base import ConsoleScreen
from screens.gate import GateScreen
from screens.reason import ReasonScreen
from screens.rollback import RollbackScreen
from screens.work import DOING, PITR_WORK, Group
from widgets.blast_radius import (
    mark_label,
    marked_word,
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

REPAIR = "repair"   # Type 4's key (app/rollback/types/repair.py)
REPAIR_ABOUT = (
    "Zero-loss repair: puts back only what the migration did to the chosen tables' rows "
    "(re-inserts the rows it deleted, reverts the columns it changed, deletes the rows it "
    "inserted) and keeps every row users wrote after it. Online: no maintenance, one "
    "transaction in batches, row locks only; the rows it touches are saved first. It needs a "
    "key on each table (a primary key, or a unique key over NOT NULL columns) and two moments: "
    "just before the migration and right after it committed, both restored aside (never the "
    "live database); from a backup set only, the classes of damage you check instead.")
# the damage classes from a dump (--damage), as the checkboxes say them
DAMAGE = (("deleted", "deleted rows (re-inserted)"),
          ("nulled", "NULLed columns (reverted)"),
          ("common", "one common value (reverted)"),
          ("inserted", "inserted rows (deleted)"))
DAMAGE_NOTE = ("⚠ no moment after it: users' edits cannot be told from the migration's. "
               "Check what it did:")
# rows users changed too (--conflicts)
CONFLICTS = (("keep", "keep the user's version (default)"),
             ("take", "take the version before the migration"),
             ("export", "keep the user's version and export both"))
NO_AFTER = ("make a mark right after the migration (`rollback-console mark --label after-…`), "
            "or type the moment it committed")


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
        "it. A moment outside the window or behind a gap is refused before anything starts.\n\n"
        "The repair (Type 4) asks for two moments: before the migration (the first field) and "
        "right after it committed (the second; default: the oldest mark after the migration's "
        "time): b restores both aside, one after the other, then builds the plan from them. "
        "From a backup set it asks instead which classes of damage to put back (space toggles "
        "one): without the moment after, users' edits cannot be told from the migration's. "
        "Rows users changed too (conflicts): enter on an answer chooses it (keep the user's "
        "version, the default; take the version before the migration; keep and export both). "
        "The gate shows per table the rows to re-insert, revert and delete, the conflicts and "
        "the rows written after the migration that are kept. With one common value "
        "checked, the field under the classes (only) takes the migration's column(s): the "
        "values found on other columns (a users' bulk edit) are left alone.")

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
        # the moments to restore aside for the plan wanted (the repair: before, then after),
        # each (role, target, key), and the plan's options; the sets captured for it by role
        self.wanted: tuple[list[tuple[str, PointTarget, tuple[str, str, tuple[str, ...],
                                                               bool]]], Options] | None = None
        self.moment_sets: dict[str, BackupSet] = {}
        self.restoring = ""   # the role of the moment being restored aside
        # the point-in-time workers last started (Group.PITR): which one failed is said in its
        # own words (PITR_WORK)
        self.pitr_workers: dict[str, Worker[Any]] = {}
        self.after_backup: BackupSet | None = None   # the repair's plan: the moment after
        self.after_default = ""   # the repair's second field: the oldest mark after it
        self.conflicts = "keep"
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
                    with HorizontalGroup():
                        yield Static("before ", id="pitr-at-label", classes="pitr-label")
                        yield Input(placeholder="a mark's label, an ISO time or an LSN",
                                    id="pitr-at", compact=True)
                    yield Static(MOMENT_HINT, id="pitr-hint")
                    with HorizontalGroup(id="pitr-after-row"):
                        yield Static("after  ", classes="pitr-label")
                        yield Input(placeholder="a mark's label, an ISO time or an LSN",
                                    id="pitr-after", compact=True)
                    yield Static("", id="pitr-after-hint")
                with Vertical(id="plan-repair", classes="panel"):
                    with Vertical(id="repair-damage-box"):
                        yield Static(DAMAGE_NOTE, id="repair-damage-note")
                        yield SelectionList[str](*[(label, key) for key, label in DAMAGE],
                                                 id="repair-damage", compact=True)
                        with HorizontalGroup(id="repair-common-row"):
                            yield Static("only ", classes="pitr-label")
                            yield Input(placeholder="the migration's column(s), e.g. "
                                        "mime_type; empty: every column",
                                        id="repair-common", compact=True)
                    yield Static("Conflicts (rows users changed too):",
                                 id="repair-conflicts-label")
                    yield OptionList(*[Option(label, id=key) for key, label in CONFLICTS],
                                     id="repair-conflicts", compact=True)
                with VerticalScroll(id="plan-preview", classes="panel"):
                    yield Static(REPAIR_ABOUT, id="repair-about")
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

    def _intro(self) -> Text:
        return Text(self._intro_words())   # Text: "[pitr]" is not markup

    def _intro_words(self) -> str:
        if self.kind == REPAIR:
            if self.source == PITR:
                return ("Choose the tables, the two moments in the fields above and what to do "
                        "with conflicts, then press b: both moments are restored aside, one "
                        "after the other, then the plan is built. p: from a backup set "
                        "(the damage classes) instead.")
            more = (" p: from a point in time instead (two moments: the migration's own "
                    "writes told from the users')." if self.console.config.pitr is not None
                    else f" Without [pitr] in {self.console.config.path.name} there is no "
                    "second moment: the classes you check are taken as the migration's damage.")
            return ("Choose the tables, the backup set (from before the migration), the "
                    "damage classes and what to do with conflicts (tab moves between the "
                    "lists), then press b to build the plan." + more)
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
        self.query_one("#plan-repair").border_title = "The repair's choices"
        self.query_one("#repair-conflicts", OptionList).highlighted = 0
        self._show_conflicts()
        self._show_damage()
        type_list = self.query_one("#plan-type", OptionList)
        type_list.highlighted = [t.key for t in all_types()].index(self.kind)
        self.query_one("#plan-tables").display = rollback_type(self.kind).takes_tables
        self._show_repair()
        self._list_sets()
        type_list.focus()
        if self.console.config.pitr is not None:
            self._read_window()   # read-only: the default moment, and whether it beats the sets

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
        was = self.kind
        self.kind = rollback_type(str(event.option.id)).key
        self.query_one("#plan-tables").display = rollback_type(self.kind).takes_tables
        self._show_repair()
        if REPAIR in (was, self.kind) and was != self.kind and self.plan is None \
                and not self.working(Group.PITR):
            text = self.query_one("#plan-text", Static)   # the intro says the type's fields
            text.update(self._window_preview() if self.source == PITR and self.window
                        else self._intro())

    # --- the repair's own fields ----------------------------------------------------------

    def _show_repair(self) -> None:
        """The repair's fields shown only for it: the second moment (a point in time), the
        damage classes (a backup set) and the conflicts' answer."""
        repair = self.kind == REPAIR
        self.query_one("#plan-repair").display = repair
        self.query_one("#repair-damage-box").display = repair and self.source == SET
        self.query_one("#repair-about").display = repair and self.plan is None
        self.query_one("#pitr-at-label").display = repair
        self.query_one("#pitr-after-row").display = repair
        self.query_one("#pitr-after-hint").display = repair
        self.query_one("#plan-pitr").border_title = (
            "Before and right after the migration" if repair
            else "The moment to restore")
        self.query_one("#plan-tables").border_title = (
            "Tables (the repair; space toggles)" if repair else "Tables (Type 2; space toggles)")
        self.query_one("#plan-repair").border_subtitle = (
            "space toggles a class · enter chooses" if self.source == SET else "enter chooses")
        self._check_moment(self.query_one("#pitr-at", Input).value)
        self._check_after(self.query_one("#pitr-after", Input).value)

    def _show_damage(self) -> None:
        damage = self.query_one("#repair-damage", SelectionList)
        chosen = damage.selected
        # one common value: a users' bulk edit looks the same, so the columns can be named
        self.query_one("#repair-common-row").display = "common" in chosen
        for index, (key, label) in enumerate(DAMAGE):
            damage.replace_option_prompt_at_index(
                index, Text(f"{'[x]' if key in chosen else '[ ]'} {label}"))

    def _show_conflicts(self) -> None:
        answers = self.query_one("#repair-conflicts", OptionList)
        for index, (key, label) in enumerate(CONFLICTS):
            answers.replace_option_prompt_at_index(
                index, Text(f"{'(•)' if key == self.conflicts else '( )'} {label}"))

    @on(SelectionList.SelectedChanged, "#repair-damage")
    def damage_changed(self, _event: SelectionList.SelectedChanged[str]) -> None:
        self._show_damage()

    @on(OptionList.OptionSelected, "#repair-conflicts")
    def conflicts_chosen(self, event: OptionList.OptionSelected) -> None:
        self.conflicts = str(event.option.id)
        self._show_conflicts()
        if self.plan is not None and self.plan.kind == REPAIR:   # its lines say the answer
            self.plan = None
            self.query_one("#plan-text", Static).update(
                "the conflicts' answer changed: press b to build the plan again (the moments "
                "captured already are not restored again)")

    def _damage(self) -> tuple[str, ...]:
        """The classes checked; "one common value" with columns typed: ``common:COLUMN`` for
        each (the migration's columns only: a users' bulk edit elsewhere is left alone)."""
        chosen = self.query_one("#repair-damage", SelectionList).selected
        columns = [c.strip() for c in self.query_one("#repair-common", Input).value.split(",")
                   if c.strip()]
        out: list[str] = []
        for key, _label in DAMAGE:
            if key not in chosen:
                continue
            out += [f"common:{c}" for c in columns] if key == "common" and columns else [key]
        return tuple(out)

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

    def _restoring_aside(self) -> bool:
        return any(w.name == "restore-aside" and w.state in (WorkerState.PENDING,
                                                              WorkerState.RUNNING)
                   for w in self.workers)

    def _set_source(self, source: str) -> None:
        if source == self.source:
            return
        if self._restoring_aside():
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
        self._show_repair()
        text = self.query_one("#plan-text", Static)
        if not pitr:
            text.update(self._intro())
            self.query_one("#plan-backups").focus()
            self._compare_with_sets()
            return
        text.update(self._window_preview() if self.window is not None else
                    "reading the WAL archive's window (read-only)…")
        self.query_one("#plan-source").focus()   # the screen's keys stay live (b, shift+g)
        self._read_window()

    def _read_window(self) -> None:
        self.pitr_workers["pitr-window"] = self.read_pitr()

    @work(group=Group.PITR, name="pitr-window", exit_on_error=False, exclusive=True)
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
        # the repair's second moment: the oldest mark after the migration's time
        old_after, at = self.after_default, migration[0]
        later = [m for m in marks if at is not None and m.at > at]
        self.after_default = later[0].label if later else ""
        after_field = self.query_one("#pitr-after", Input)
        if not after_field.value or after_field.value == old_after:
            after_field.value = self.after_default
        self._check_after(after_field.value)
        self._compare_with_sets()
        if self.source == PITR and self.plan is None and not self._restoring_aside():
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
        if self.kind == REPAIR:
            text.append(self._after_words())
            text.append("\nThe repair's two moments are in the fields above: before the "
                        "migration, and right after it committed (tab into them to type a "
                        "mark's label, an ISO time or an LSN). press b to build the plan (enter "
                        "in a field does the same): each moment is restored aside in turn, "
                        "into a scratch cluster on 127.0.0.1, never the live one, and captured "
                        "as a verified backup set. p: a backup set and the damage classes.",
                        style="bold")
            return text
        text.append("\nThe moment is in the field above (tab into it to type a mark's label, "
                    "an ISO time like 2026-12-02T04:31:07Z, or an LSN like 0/3000060). press b "
                    "to build the plan (enter in the field does the same): the moment is "
                    "restored aside first, into a scratch cluster on 127.0.0.1, never the live "
                    "one, and captured as a verified backup set. p: back to backup sets.",
                    style="bold")
        return text

    def _after_words(self) -> Text:
        """The repair's default second moment, or why there is none."""
        text = Text()
        if self.after_default:
            text.append("Right after the migration: ", style="bold")
            text.append(f"mark {self.after_default} (the oldest mark after the migration)\n")
        else:
            why = ("no mark after the migration's time" if self.migration[0] is not None
                   else "the migration's time is unknown")
            text.append("No moment after the migration: ", style="bold")
            text.append(f"{why}: {NO_AFTER}\n")
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

    def _check_moment(self, value: str, hint_id: str = "#pitr-hint") -> None:
        """The moment against the window as it is typed: inside, or why not (in words). The
        repair's hints are short: two fields share the panel (the preview says the keys)."""
        hint = self.query_one(hint_id, Static)
        more = "" if self.kind == REPAIR else f". {MOMENT_HINT}"
        if not value.strip() or self.window is None:
            hint.update(MOMENT_HINT if self.kind != REPAIR else
                        "the moment before the migration" if hint_id == "#pitr-hint" else
                        "✖ none: make a mark right after the migration, or type when it "
                        "committed" if self.window is not None else
                        "the moment right after the migration committed")
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
                    + (f" (base backup {base.id})" if base else "") + more)

    def _check_after(self, value: str) -> None:
        self._check_moment(value, "#pitr-after-hint")

    @on(Input.Changed, "#pitr-after")
    def after_typed(self, event: Input.Changed) -> None:
        self._check_after(event.value)

    @on(Input.Submitted, "#repair-common")
    @on(Input.Submitted, "#pitr-after")
    def after_submitted(self) -> None:
        self.action_build()

    @on(Input.Submitted, "#pitr-at")
    def moment_submitted(self) -> None:
        self.action_build()

    def _build_from_moment(self, tables: tuple[str, ...]) -> None:
        if self._restoring_aside():
            self.notify("The moment is being restored aside already.", severity="warning")
            return
        if self.window is None and self.working(Group.PITR):
            self.notify("Reading the WAL archive's window and the marks: press b again in a "
                        "moment.", severity="warning")
            return
        text = self.query_one("#pitr-at", Input).value.strip()
        if not text:
            self.notify("Type the moment first: a mark's label, an ISO time or an LSN.",
                        severity="warning")
            return
        self.plan = None
        repair = self.kind == REPAIR
        try:
            target = self._target(text)
            after = self._after_target(target) if repair else None
        except BadInput as exc:
            if repair and exc.args and str(exc.args[0]).startswith("The repair needs"):
                self._pitr_failed(str(exc))   # what to do, not a failure of the tool
                self.notify(str(exc), title="Nothing was done", severity="warning")
                return
            self._pitr_failed(failure_line("restore the moment aside", exc,
                                           self.console.log_path))
            return
        spec = rollback_type(self.kind)
        takes = tables if spec.takes_tables else ()
        full = spec.restores == "database"
        moments = [("before", target)] + ([("after", after)] if after is not None else [])
        options = Options(tables=tables, keep_maintenance=True,
                          conflicts=self.conflicts if repair else "keep")
        self.wanted = ([(role, t, (t.kind, t.value, takes, full)) for role, t in moments],
                       options)
        self.moment_sets = {}
        self._next_moment()

    def _after_target(self, before: PointTarget) -> PointTarget:
        """The repair's second moment from its field; refused (BadInput starting "The repair
        needs") when empty or not after the first, with what to do."""
        text = self.query_one("#pitr-after", Input).value.strip()
        if not text:
            raise BadInput("The repair needs the moment right after the migration (the second "
                           f"field): {NO_AFTER}; or press p for a backup set and check the "
                           "classes of damage to put back. Nothing was restored or changed.")
        try:
            after = self._target(text)
        except BadInput as exc:
            raise BadInput(str(exc).replace("the moment ", "the moment after ", 1)) from None
        if before.at is not None and after.at is not None and after.at <= before.at:
            raise BadInput(f"The repair needs the moment after ({self._short(after)}, "
                           f"{when(after.at)}) to be later than the moment before "
                           f"({self._short(before)}, {when(before.at)}): swap them, or type "
                           "the moment right after the migration committed. Nothing was "
                           "restored or changed.")
        return after

    def _next_moment(self) -> None:
        """Restore aside the next moment the wanted plan needs (the repair: before, then
        after; one captured already for the same tables is used again), then build."""
        assert self.wanted is not None
        moments, options = self.wanted
        for n, (role, target, key) in enumerate(moments, start=1):
            if role in self.moment_sets:
                continue
            captured = self.captured.get(key)
            if captured is not None:   # the same moment, for the same tables: captured already
                self.moment_sets[role] = captured
                continue
            self.restoring = role
            self.query_one("#plan-repair").display = False   # room for the bar (80x24)
            work = self.query_one("#pitr-work")
            work.display = True
            which = "" if len(moments) == 1 else (
                f" {n} of {len(moments)}, "
                + ("before the migration" if role == "before" else "right after it") + ":")
            work.border_title = f"Restore aside{which} {target.said}"
            self.query_one("#pitr-progress", ProgressBar).update(total=None, progress=0)
            self.query_one("#pitr-status", Static).update("starting…")
            self.tenth = -1
            self.query_one("#plan-text", Static).update(
                f"restoring {target.said} aside{f' ({n} of {len(moments)})' if which else ''}"
                ": a scratch cluster on 127.0.0.1, never the live one (the live database is "
                "only read); the plan is built from it when it is captured. escape stops it.")
            self.pitr_workers["restore-aside"] = self.restore_aside(target, key[2], key[3])
            return
        before, after = self.moment_sets["before"], self.moment_sets.get("after")
        if after is not None:
            options = replace(options, after=after.id)
        ids = before.id + (f" and {after.id}" if after is not None else "")
        self.query_one("#plan-text", Static).update(f"building the plan from {ids} "
                                                    "(read-only)…")
        self.after_backup = after
        self.build(before, options)

    @work(group=Group.PITR, name="restore-aside", exit_on_error=False, exclusive=True)
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

    def _pitr_failed(self, line: str) -> None:
        self.query_one("#plan-repair").display = self.kind == REPAIR
        self.query_one("#plan-text", Static).update(Text(f"✖ {line}"))
        if self.query_one("#pitr-work").display:
            self.query_one("#pitr-status", Static).update("✖ stopped (see the plan's pane)")

    def _captured(self, backup: BackupSet) -> None:
        assert self.wanted is not None
        moments, _options = self.wanted
        role, _target, key = next(m for m in moments if m[0] == self.restoring)
        self.captured[key] = backup
        self.moment_sets[role] = backup
        self.query_one("#pitr-progress", ProgressBar).update(total=100, progress=100)
        self.query_one("#pitr-status", Static).update(f"✔ captured as backup set {backup.id}")
        self.query_one("#pitr-log", LiveLog).append(f"captured as backup set {backup.id}")
        self._list_sets()   # the captured set is a backup set now, listed with the others
        self._next_moment()

    def action_build(self) -> None:
        self.query_one("#repair-about").display = False   # what b says needs the room
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
        options = Options(tables=tables, keep_maintenance=True)   # one plan, 2 phases
        if self.kind == REPAIR:
            if not self._damage():
                more = (" or press p for a point in time: the moments before and right after "
                        "the migration tell its writes from the users'"
                        if self.console.config.pitr is not None else "")
                words = ("The repair from a backup set needs the classes of damage to put "
                         "back: check at least one (tab to the list, space toggles)" + more
                         + ". Nothing was done.")
                self.plan = None
                self.query_one("#plan-text", Static).update(Text(f"✖ {words}"))
                self.notify(words, title="Nothing was done", severity="warning")
                return
            options = replace(options, damage=self._damage(), conflicts=self.conflicts)
        self.after_backup = None
        self.query_one("#plan-text", Static).update("building the plan (read-only)…")
        self.build(backup, options)

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
        if group is Group.PITR:   # in the point in time's own words, on the plan's line
            doing = next((name for name, w in self.pitr_workers.items()
                          if w.state == WorkerState.ERROR), "")
            self.pitr_workers.pop(doing, None)   # said once
            what = PITR_WORK.get(doing)
            if what:
                line = line.replace(f"could not {DOING[Group.PITR]}", f"could not {what}", 1)
            if doing == "pitr-window" and self.source == SET:   # read on mount
                self.query_one("#plan-source").border_subtitle = "✖ window not read: p says why"
                return
            self._pitr_failed(line)
            return
        if group is not Group.PLAN:
            super().work_failed(group, line)
            return
        hint = ("\n\nshift+o: use this set anyway (asks why; the reason is journaled)"
                if self.refused else "")
        self.query_one("#plan-repair").display = self.kind == REPAIR
        self.query_one("#plan-text", Static).update(Text(f"✖ {line}{hint}"))

    def work_done(self, group: Group, result: Any) -> None:
        if group is Group.PITR and isinstance(result, BackupSet):
            self._captured(result)
        elif group is Group.PITR and result is not None:
            self._window_read(result)
        elif group is Group.PLAN and result is not None:
            self.query_one("#plan-repair").display = self.kind == REPAIR
            self.plan, self.backup, self.options = result
            if not self.options.after:
                self.after_backup = None
            self.query_one("#plan-suggest").display = False
            self.query_one("#repair-about").display = False
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
        after = point_in_time_of(self.after_backup)
        if after is not None and self.after_backup is not None:
            text.append(f"Right after the migration: {moment_words(after, '')}; restored aside "
                        f"and captured as {self.after_backup.id}\n", style="bold")
        if plan.kind == REPAIR and self.options.damage:
            text.append(f"From a backup set: the damage classes checked "
                        f"({', '.join(self.options.damage)}) are taken as the migration's; "
                        "users' edits that look the same are put back too\n", style="bold")
            if "common" in self.options.damage:
                text.append("One common value, every column: the values found are below; a "
                            "users' bulk edit looks the same. Type the migration's column(s) "
                            "in the field under the classes (`only`), then b again\n",
                            style="bold")
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
                text.append(f"{marked_word(plan.kind)} ", style="bold reverse")
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
        after = point_in_time_of(self.after_backup) if self.options.after else None
        self.app.push_screen(GateScreen(title, override + self._blast_radius(plan), phrase,
                                        moment=moment_words(pit) if pit else "",
                                        after=moment_words(after, "") if after else "",
                                        kind=str(plan.kind)), confirmed)

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
