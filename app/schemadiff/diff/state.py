"""What the differ knows while it walks the two models: the changes so far and the facts later
steps need (tables renamed or dropped, objects created, columns retyped, views rebuilt)."""

from __future__ import annotations

from app.schemadiff.diff.changes import Change
from app.schemadiff.diff.phases import Phase
from app.schemamodel.model import SchemaModel


class DiffState:
    def __init__(self, cur: SchemaModel, want: SchemaModel) -> None:
        self.cur, self.want = cur, want
        self.changes: list[Change] = []
        self.unsupported: list[str] = []
        self.renamed: dict[str, str] = {}        # cur table -> want table
        self.dropped_tables: set[str] = set()   # cur names
        self.created: set[str] = set()          # want names of objects created from nothing
        self.touched: set[str] = set()          # cur "table.col" whose type changes
        self.dropped_columns: dict[str, set[str]] = {}   # cur table -> its dropped columns
        self.recreated_views: set[str] = set()

    def add(self, phase: Phase, kind: str, obj: str, *sql: str, **kw: object) -> Change:
        change = Change(phase, kind, obj, tuple(sql), **kw)  # type: ignore[arg-type]
        self.changes.append(change)
        return change
