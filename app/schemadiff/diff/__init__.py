"""From two schema models to the DDL that turns the first (the live target) into the second
(the backup's schema), keeping the data: columns and tables renamed back rather than dropped
and re-added, types converted in place, and each statement annotated with what it changes and
what data it destroys.

The walk is split by what it compares (``containers``, ``tables``, ``dependents``, ``grants``);
each change is put in a named ``Phase``, and the phases give the order: what must go is
dropped first, in reverse dependency order (policies, triggers, views, foreign keys,
constraints, indexes), then the structure is brought back (schemas, extensions, types,
sequences, functions, tables, columns), then what hangs on it is recreated (constraints,
foreign keys, indexes, views, triggers, RLS, policies, owners, grants), and last what no longer
exists in the backup is dropped (functions, sequences, types, extensions, schemas).
Statements keep their order within a phase.
"""

from __future__ import annotations

from app.schemadiff.diff.changes import Change, Diff, left_for_data
from app.schemadiff.diff.containers import Containers
from app.schemadiff.diff.dependents import Dependents
from app.schemadiff.diff.grants import Grants
from app.schemadiff.diff.phases import Phase
from app.schemadiff.diff.tables import Tables
from app.schemamodel.model import SchemaModel

__all__ = ["Change", "Diff", "Phase", "compare", "left_for_data"]


class _Differ(Containers, Tables, Dependents, Grants):
    def run(self) -> None:
        """The walk's order matters: types see the tables renamed or dropped, views the
        columns retyped, triggers and policies the views rebuilt, grants all of it."""
        self.schemas()
        self.extensions()
        self.tables()
        self.types()
        self.sequences()
        self.functions()
        self.constraints()
        self.indexes()
        self.views()
        self.triggers()
        self.policies()
        self.grants_and_owners()


def compare(cur: SchemaModel, want: SchemaModel) -> Diff:
    """The changes that take ``cur`` (the live target) to ``want`` (the backup), in order."""
    d = _Differ(cur, want)
    d.run()
    changes = sorted(d.changes, key=lambda c: c.phase)   # stable: order within a phase kept
    return Diff(changes, d.unsupported)
