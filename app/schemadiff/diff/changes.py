"""A schema plan's parts: one ``Change`` per object (its phase, SQL and what it destroys), and
the ``Diff`` that orders them and renders the script a DBA signs off."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.schemadiff.diff.phases import Phase


@dataclass
class Change:
    phase: Phase
    kind: str                 # e.g. "drop column", "rename table"
    object: str               # what it acts on, qualified
    sql: tuple[str, ...]
    note: str = ""            # what it changes, in words
    count_sql: str = ""       # read-only count on the target for the blast radius
    count_says: str = ""      # "{n:,} non-null values lost" (n from count_sql)
    count_table: str = ""     # a large table is estimated from statistics, not counted
    count_column: str = ""    # ... counting this column's non-null values
    destroys: str = ""        # filled by measure(): data this statement destroys
    fails_if_count: str = ""  # when count_sql > 0 the statement would fail: why
    if_rows_sql: tuple[str, ...] = ()   # used instead of sql when count_sql > 0
    residual: str = ""        # drift it cannot remove without data (a Type 2 follows)
    data_tables: tuple[str, ...] = ()   # tables whose rows only the backup still has
    blocker: str = ""         # filled by measure(): this plan would fail, and why

    def describe(self) -> str:
        text = f"{self.kind} {self.object}"
        if self.note:
            text += f": {self.note}"
        if self.destroys:
            text += f" — DESTROYS {self.destroys}"
        if self.residual:
            text += f" — LEFT FOR A DATA ROLLBACK: {self.residual}"
        return text


@dataclass
class Diff:
    changes: list[Change] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.changes and not self.unsupported

    @property
    def statements(self) -> list[str]:
        return [s for c in self.changes for s in c.sql]

    @property
    def data_tables(self) -> list[str]:
        return sorted({t for c in self.changes for t in c.data_tables})

    @property
    def blockers(self) -> list[str]:
        return [f"{c.kind} {c.object}: {c.blocker}" for c in self.changes if c.blocker]

    def summary(self) -> list[str]:
        return [c.describe() for c in self.changes] + \
            [f"UNSUPPORTED: {u}" for u in self.unsupported]

    def script(self) -> str:
        """The plan as SQL a DBA reads and signs off: each change's comment, then its SQL."""
        out = []
        for c in self.changes:
            out.append(f"-- {c.describe()}")
            out += [s + ";" for s in c.sql]
        out += [f"-- UNSUPPORTED (must be done by hand): {u}" for u in self.unsupported]
        return "\n".join(out)


def left_for_data(left: Change, plan: Diff) -> bool:
    """A difference still there after ``plan`` that the plan named as left for a data rollback:
    a key it added NOT VALID on a table whose parent is empty until Type 2 reloads it shows up
    again as "validate foreign key" on the same object."""
    return any(c.residual and c.object == left.object for c in plan.changes)
