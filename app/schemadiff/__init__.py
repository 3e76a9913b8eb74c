"""Schema diff, a pure library: two schema models in (``app.schemamodel``: the live target and
the backup's), the ordered, annotated DDL that takes the first to the second out (Type 1).

Reading the models (from a database, a scratch restore of a backup, or the copy a backup set
keeps) and counting what a change destroys happen outside: ``app.scratch`` and ``app.drift``.
"""

from __future__ import annotations

from app.schemadiff.diff import Change, Diff, Phase, compare, left_for_data

__all__ = ["Change", "Diff", "Phase", "compare", "left_for_data"]
