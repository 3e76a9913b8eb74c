"""The backup sets: age, parts, manifest; verify one (and rehearse its restore) from here. With
[pitr] in the config, the WAL archive's window too (read-only): the earliest and latest moment
that can be restored, the base backups, any gap, and the marks."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerState

from app.backups.backupset import BackupSet, list_sets
from app.backups.verify import Verification, rehearse, verify
from app.failure import failure_line
from screens.base import ConsoleScreen
from screens.work import Group

if TYPE_CHECKING:
    from app.pitr.marks import Mark
    from app.pitr.model import Window


def window_text(window: Window, marks: list[Mark], marks_note: str = "") -> Text:
    """The WAL archive's window in words, as `rollback-console pitr` says it (the backups and
    the plan screens show it)."""
    from app.pitr.model import when

    out = Text()
    out.append(f"{window.engine} WAL archive: {window.where}\n", style="bold")
    if window.earliest is None:
        out.append("✖ nothing can be restored yet: no usable base backup\n", style="bold")
    else:
        out.append(f"window: {when(window.earliest)} .. "
                   + (when(window.latest) if window.latest else "latest unknown")
                   + (f" (WAL to {window.latest_lsn})" if window.latest_lsn else "") + "\n")
    usable = len(window.usable())
    out.append(f"base backups: {len(window.base_backups)}, {usable} usable\n")
    for b in window.base_backups:
        size = f", {b.size / 1e6:,.1f} MB" if b.size else ""
        out.append(f"  {'✖' if b.problem else '✔'} {b.id}: ends {when(b.stop_time)}, LSN "
                   f"{b.start_lsn}..{b.stop_lsn}{size}"
                   + (f": UNUSABLE: {b.problem}" if b.problem else "") + "\n",
                   style="bold" if b.problem else "")
    if window.gaps:
        out.append(f"✖ {len(window.gaps)} gap(s): recovery cannot pass them\n", style="bold")
        for g in window.gaps:
            out.append(f"  ✖ {g.text}\n", style="bold")
    else:
        out.append("gaps: none (every segment since the oldest usable base backup is there)\n")
    for note in (*window.notes, *([marks_note] if marks_note else [])):
        out.append(f"note: {note}\n", style="italic")
    if marks:
        out.append(f"marks: {len(marks)}\n")
        for m in marks:
            out.append(f"  ⚑ {m.label}: {when(m.at)}, LSN {m.lsn}"
                       + ("" if m.archived else " (archived when its WAL segment fills)") + "\n")
    else:
        out.append("marks: none (make one before a migration: `rollback-console mark "
                   "--label NAME`)\n")
    out.rstrip()
    return out


def _manifest_words(backup: BackupSet) -> str:
    if backup.manifest is None:
        return "NO"
    return "yes (a point in time)" if backup.manifest.point_in_time else "yes"


# Point-in-time work says its failure in its own words (its groups' words are for other work).
PITR_DOING = {"pitr-window": "read the WAL archive's window",
              "restore-aside": "restore the moment aside"}


def pitr_failure(screen: ConsoleScreen[Any], event: Worker.StateChanged) -> str | None:
    """The one failure line of a point-in-time worker that failed, else None."""
    worker = event.worker
    if event.state != WorkerState.ERROR or worker.name not in PITR_DOING:
        return None
    return failure_line(PITR_DOING[worker.name], worker.error, screen.console.log_path)


async def read_window(cfg: Any) -> tuple[Window, list[Mark], str]:
    """The window, the live database's marks (or why they could not be read), read-only."""
    from app.errors import ConsoleError
    from app.pitr.source import engine_for, live_facts

    window = await engine_for(cfg).window()
    try:
        _ident, marks = await live_facts(cfg)
    except ConsoleError as exc:
        return window, [], f"marks not read: {exc}"
    return window, marks, ""


class BackupsScreen(ConsoleScreen[None]):
    BINDINGS = [
        Binding("v", "verify(False)", "Verify"),
        Binding("V", "verify(True)", "Verify + rehearse restore (shift+v)"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sets: list[BackupSet] = []
        self.result: Verification | None = None

    def compose(self) -> ComposeResult:
        yield self.banner()
        yield DataTable(id="sets", cursor_type="row", classes="panel")
        with VerticalScroll(id="set-result", classes="panel"):
            yield Static("v: verify the highlighted set (read-only) · shift+v: also rehearse "
                         "its restore in a scratch database", id="set-text")
        if self.console.config.pitr is not None:
            with VerticalScroll(id="pitr-window", classes="panel"):
                yield Static("reading the WAL archive's window (read-only)…", id="pitr-text")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#sets", DataTable)
        table.border_title = f"Backup sets under {self.console.config.target.backups_root}"
        table.add_columns("set", "taken at", "age", "manifest")
        self.sets = list_sets(self.console.config.target.backups_root)
        for s in self.sets:
            age = "?" if s.taken_at is None else \
                f"{(time.time() - s.taken_at.timestamp()) / 3600:.1f} h"
            table.add_row(s.id, s.taken_at.isoformat(timespec="minutes") if s.taken_at
                          else "unknown", age, _manifest_words(s), key=s.id)
        if not self.sets:
            self.query_one("#set-text", Static).update(
                "No backup sets yet: take one with `rollback-console backup` before anything "
                "else." + (" With the WAL archive below, `rollback-console mark --label NAME` "
                           "before a migration marks a moment to roll back to instead."
                           if self.console.config.pitr is not None else ""))
        table.focus()
        if self.console.config.pitr is not None:
            self.query_one("#pitr-window").border_title = "Point in time (read-only)"
            self.window()

    @work(group=Group.PROBE, name="pitr-window", exit_on_error=False)
    async def window(self) -> tuple[Window, list[Mark], str]:
        return await read_window(self.console.config)

    def action_verify(self, with_rehearsal: bool) -> None:
        table = self.query_one("#sets", DataTable)
        if not self.sets or self.working(Group.BACKUP):
            return
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        chosen = next(s for s in self.sets if s.id == key)
        self.query_one("#set-text", Static).update(f"verifying {chosen.id}…")
        self.check(chosen, with_rehearsal)

    @work(group=Group.BACKUP, name="verify-set", exit_on_error=False)
    async def check(self, chosen: BackupSet, with_rehearsal: bool) -> Verification:
        cfg = self.console.config
        result = await verify(cfg, chosen)
        if with_rehearsal and result.ok:
            more = await rehearse(cfg, chosen)
            result.checked += more.checked
            result.problems += more.problems
            result.not_verifiable += more.not_verifiable
            result.ok = result.ok and more.ok
        return result

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        line = pitr_failure(self, event)
        if line is not None:
            event.prevent_default()   # said here, in the section's own words
            self.query_one("#pitr-text", Static).update(f"✖ {line}")

    def work_failed(self, group: Group, line: str) -> None:
        if group is not Group.BACKUP:
            super().work_failed(group, line)
            return
        self.query_one("#set-text", Static).update(f"✖ {line}")

    def work_done(self, group: Group, result: Any) -> None:
        if group is Group.PROBE and result is not None:
            self.query_one("#pitr-text", Static).update(window_text(*result))
            return
        if group is Group.BACKUP and result is not None:
            r: Verification = result
            out = Text()
            out.append("✔ VERIFIED\n" if r.ok else "✖ NOT VERIFIED\n", style="bold reverse")
            for line in r.checked:
                out.append(f"✔ {line}\n")
            for line in r.not_verifiable:
                out.append(f"– NOT VERIFIABLE: {line}\n", style="italic")
            for line in r.problems:
                out.append(f"✖ PROBLEM: {line}\n", style="bold")
            self.query_one("#set-text", Static).update(out)
