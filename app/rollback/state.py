"""What a run's steps find or make, typed: one small dataclass per rollback type, and one for
what every type records. A field's name is its key in the journal's ``step_finished`` result
(the runner journals what a step changed; a resumed run reads them back from the journal), so
the names are the journal's and must not change. None: no step has recorded it yet.

A new rollback type declares its own ``StepState`` in its module and reaches it with
``ctx.state(ItsState)``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Self


@dataclass
class StepState:
    """Base: recorded to and read back from the journal under the fields' names."""

    def record(self) -> dict[str, Any]:
        """The fields a step has set, as the journal keeps them."""
        return {f.name: value for f in fields(self)
                if (value := getattr(self, f.name)) is not None}

    @classmethod
    def load(cls, found: Mapping[str, Any]) -> Self:
        """Back from what the journal's finished steps recorded (``Journal.recorded``)."""
        return cls(**{f.name: found[f.name] for f in fields(cls) if f.name in found})


@dataclass
class RunState(StepState):
    """What every type records."""

    maintenance: str | None = None       # the app's switch as this run left it: on, off, failed
    safety_snapshot: str | None = None   # the dump of the current state, taken before replacing


@dataclass
class SchemaState(StepState):
    """Type 1's (and the in-place Type 3's, which runs Type 1's plan)."""

    schema_changes: int | None = None
    followup_tables: list[str] | None = None   # brought back without their rows: phase 2 reloads
    residual: list[str] | None = None          # what only the data rollback brings back
    residual_objects: list[str] | None = None  # the objects those are on


@dataclass
class PartialState(StepState):
    """Type 2's."""

    counts_before: dict[str, int] | None = None
    changed_since_backup: dict[str, int] | None = None   # rows written since, per table
    exported_since_backup: list[str] | None = None       # CSV files of those rows
    rows_loaded: dict[str, int] | None = None


@dataclass
class FullState(StepState):
    """Type 3's."""

    full_dump: str | None = None
    in_place: bool | None = None              # the whole dump restored in place (no rename)
    databases: dict[str, str] | None = None   # target, restored, aside: their names
    deferred_foreign_keys: list[list[str]] | None = None   # [table, name] added NOT VALID
    aside_database: str | None = None         # the database as it was, after the switch
    in_place_by_schema: bool | None = None    # the app's schemas restored in place

    @property
    def names(self) -> dict[str, str]:
        """The databases the prerequisites named (target, restored, aside)."""
        if self.databases is None:
            raise RuntimeError("the databases are named by the prerequisites step, not run yet")
        return self.databases

    @property
    def dump(self) -> Path:
        """The full dump the prerequisites verified."""
        if self.full_dump is None:
            raise RuntimeError("the full dump is found by the prerequisites step, not run yet")
        return Path(self.full_dump)
