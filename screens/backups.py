"""The backup sets: age, parts, manifest; verify one (and rehearse its restore) from here."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Footer, Static

from app.backups.backupset import BackupSet, list_sets
from app.backups.verify import Verification, rehearse, verify
from screens.base import ConsoleScreen
from screens.work import Group


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
                          else "unknown", age, "yes" if s.manifest else "NO", key=s.id)
        if not self.sets:
            self.query_one("#set-text", Static).update(
                "No backup sets yet: take one with `rollback-console backup` before anything "
                "else.")
        table.focus()

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

    def work_failed(self, group: Group, line: str) -> None:
        if group is not Group.BACKUP:
            super().work_failed(group, line)
            return
        self.query_one("#set-text", Static).update(f"✖ {line}")

    def work_done(self, group: Group, result: Any) -> None:
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
