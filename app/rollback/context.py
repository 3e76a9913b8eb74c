"""What a step gets to work with, and how a step says it failed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from app.backups.backupset import BackupSet
from app.backups.source import RestoreSource
from app.config import Config
from app.errors import BadInput, ConsoleError
from app.events import EventChannel, StepLog, StepProgress
from app.exits import EXIT_CODES, FAILED_RESTORED, NEEDS_OPERATOR, Outcome
from app.journal import Journal, journaled
from app.rollback.registry import RollbackType, rollback_type
from app.rollback.state import FullState, PartialState, RunState, SchemaState, StepState

S = TypeVar("S", bound=StepState)

# Outcome and EXIT_CODES live in app.exits, RollbackType in app.rollback.registry; named here
# too for the steps, screens and tests that import them with RunContext.
__all__ = ["EXIT_CODES", "LockLost", "NeedsOperator", "Options", "Outcome", "RollbackType",
           "RunContext", "StepFailed", "expected_phrase"]


class StepFailed(ConsoleError):
    """The step failed and left the database as it was before the step."""

    exit_code = FAILED_RESTORED


class NeedsOperator(ConsoleError):
    """The step stopped somewhere only a person can decide what comes next."""

    exit_code = NEEDS_OPERATOR


def expected_phrase(kind: str, target_name: str) -> str:
    """The phrase the gate asks for: the type's own (``TypeSpec.phrase``)."""
    return rollback_type(kind).phrase(target_name)


class LockLost(NeedsOperator):
    """The target lock went away during the run: another console may be working on the
    target now, so this one stops before changing anything more."""

    def __init__(self, reason: str, action: str, target: str):
        super().__init__(
            f"the target lock was lost ({reason}): stopping before {action}; nothing more "
            f"will be changed by this run; resume when no other console works on {target}")
        self.reason = reason


@dataclass
class Options:
    tables: tuple[str, ...] = ()
    confirm: str = ""
    maintenance_failure: str = "stop"   # stop | continue: what to do when the toggle fails
    keep_scratch: bool = False
    allow_in_place: bool = False         # Type 3's second confirmation when renaming is impossible
    migration_at: datetime | None = None  # when the bad migration ran (else config, detection)
    allow_after_migration: bool = False   # use a set taken after the migration anyway
    # A Type 1 that leaves rows in the backup is phase 1 of 2: the app stays in maintenance
    # for phase 2 (the partial data rollback), which switches it off after validating. Always
    # so in the console; headless with --keep-maintenance.
    keep_maintenance: bool = False
    # What the approved Type 1 left in the backup, as its incident recorded it: a resumed
    # phase 1 whose apply already ran no longer shows it in the diff.
    leaves_rows_in_backup: tuple[str, ...] = ()
    # the repair (app/rollback/repair.py): the set of the moment right after the migration
    # ("" : a dump only, then ``damage`` names the classes put back), what to do with rows
    # users touched too, and whether user triggers fire for the repair's writes
    after: str = ""
    damage: tuple[str, ...] = ()
    conflicts: str = "keep"
    fire_triggers: bool = False


@dataclass
class RunContext:
    """Shared by the steps of one run. What steps find or make (paths, names, counts) is in
    typed states (``app.rollback.state``): ``run`` for every type, ``schema``, ``partial``
    and ``full`` for each type's own; journaled with each finished step, so a resumed run gets
    it back (``restore``)."""

    cfg: Config
    kind: str              # the type's key (a RollbackType for the built-in ones)
    journal: Journal
    channel: EventChannel
    backup: RestoreSource  # what it restores from (app.backups.source; a backup set today)
    options: Options
    step: str = ""
    pause_requested: bool = False   # set by the operator: stop cleanly after the current step
    lock: Any = None                # the runner's TargetLock (a database switch suspends it)
    _found: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _states: dict[type[StepState], StepState] = field(default_factory=dict, init=False,
                                                      repr=False)

    @property
    def incident_dir(self) -> Path:
        return self.journal.dir

    @property
    def backup_set(self) -> BackupSet:
        """The source as a backup set folder, for the steps that read its files by name (the
        dumps, the manifest); another kind of source is refused, saying so."""
        if not isinstance(self.backup, BackupSet):
            raise BadInput(f"this {self.kind} rollback reads a backup set's files, and "
                           f"{self.backup.id} is a {self.backup.kind}: choose a backup set")
        return self.backup

    # --- what steps record, and a resumed run reads back ------------------------------------

    def state(self, kind: type[S]) -> S:
        """This run's ``kind`` of state, made on first use from what the journal recorded."""
        found = self._states.get(kind)
        if not isinstance(found, kind):
            found = self._states[kind] = kind.load(self._found)
        return found

    def restore(self, found: dict[str, Any]) -> None:
        """A resumed run: what earlier steps recorded (``Journal.recorded``)."""
        self._found = dict(found)
        self._states.clear()

    def recorded(self) -> dict[str, Any]:
        """Everything recorded so far, under the journal's names (the runner journals what a
        step changed in it)."""
        found = dict(self._found)
        for state in self._states.values():
            found.update(state.record())
        return found

    @property
    def run(self) -> RunState:
        return self.state(RunState)

    @property
    def schema(self) -> SchemaState:
        return self.state(SchemaState)

    @property
    def partial(self) -> PartialState:
        return self.state(PartialState)

    @property
    def full(self) -> FullState:
        return self.state(FullState)

    @property
    def maintenance(self) -> str | None:
        """The app's maintenance switch as this run left it: on, off or failed (None: not
        touched)."""
        return self.run.maintenance

    @maintenance.setter
    def maintenance(self, state: str) -> None:
        self.run.maintenance = state

    @property
    def safety_snapshot(self) -> Path | None:
        """The dump of the current state taken before anything was replaced."""
        value = self.run.safety_snapshot
        return Path(value) if value else None

    @safety_snapshot.setter
    def safety_snapshot(self, path: Path) -> None:
        self.run.safety_snapshot = str(path)

    @property
    def followup_tables(self) -> list[str]:
        """Tables a Type 1 brought back without their rows: phase 2 reloads them."""
        return [str(t) for t in self.schema.followup_tables or []]

    @property
    def in_place(self) -> bool:
        """A Type 3 that restores in place (its prerequisites found renaming impossible)."""
        return bool(self.full.in_place)

    def log(self, line: str, level: str = "info") -> None:
        self.channel.emit(StepLog(self.step, line, level))

    def progress(self, done: int, total: int | None, unit: str, detail: str = "") -> None:
        self.channel.emit(StepProgress(self.step, done, total, unit, detail))

    def _refuse_without_lock(self, action: str, reason: str | None) -> None:
        if reason is not None:
            self.journal.append("lock_lost", step=self.step, before=action, reason=reason)
            raise LockLost(reason, action, self.cfg.target.name)

    @contextmanager
    def action(self, name: str, **details: Any) -> Iterator[None]:
        """Journal a destructive action before it runs and after it ends, whatever the end.
        Refuses to start it (``LockLost``) once the target lock's session is known to have
        ended: the lock notices that the moment the server drops the session."""
        if self.lock is not None:
            self._refuse_without_lock(name, getattr(self.lock, "lost", None))
        with journaled(self.journal, name, {"step": self.step}, **details):
            yield

    async def ensure_lock(self, action: str) -> None:
        """Ask the server that this run still holds the target lock (pg_locks on the lock's
        own session); ``LockLost`` when it does not. Call it right before a destructive action
        (``checked_action`` does both)."""
        if self.lock is not None:
            self._refuse_without_lock(action, await self.lock.verify())

    @asynccontextmanager
    async def checked_action(self, name: str, **details: Any) -> AsyncIterator[None]:
        """``action``, after asking the server that the target lock is still ours."""
        await self.ensure_lock(name)
        with self.action(name, **details):
            yield
