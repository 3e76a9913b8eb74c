"""The table as compared: its key, the dump's columns and how the live side reads them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from app import catalog
from app.rowdiff.record import (
    FORMAT,
    INT_TYPES,
)

# --- the table as compared ----------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    """What is compared: the dump's columns that the live table still has (same type), and the
    key (None: a multiset of rows). Part of the index's name."""

    table: str
    columns: tuple[str, ...]
    key: tuple[str, ...] | None
    key_types: tuple[str, ...] = ()
    positions: tuple[int, ...] = ()      # of ``columns`` in the dump's column list
    key_kind: str = "none"               # primary key | unique key | none
    only: bool = True   # the table's own rows (a dump of an inheritance parent holds only
                        # those); False for a partitioned table, whose rows are its partitions'

    @property
    def from_sql(self) -> str:
        return ("ONLY " if self.only else "") + catalog.qualified(self.table)

    @property
    def digest(self) -> str:
        text = json.dumps([FORMAT, self.columns, self.key, self.positions, self.int_key])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def row_sql(self, alias: str = "t") -> str:
        return "ROW(" + ", ".join(f"{alias}.{catalog.quote_ident(c)}" for c in self.columns) + ")"

    def key_sql(self, alias: str = "t") -> str:
        cols = self.key or self.columns
        return "ROW(" + ", ".join(f"{alias}.{catalog.quote_ident(c)}" for c in cols) + ")"

    @property
    def int_key(self) -> bool:
        """A one-column integer key: buckets are ``key mod 16**n`` (cheap enough in SQL for
        parallel workers to aggregate), not a hash of the key's text."""
        return self.key is not None and len(self.key) == 1 and self.key_types[0] in INT_TYPES

    def bucket_sql(self, nhex: int, lo: int = 0, width: int = 1) -> str:
        """The bucket of a live row: for an integer key, its range of keys (``lo``, ``width``:
        the index's); otherwise the first ``nhex`` hex digits of an md5, as a number."""
        if self.int_key:
            assert self.key is not None
            return f"(t.{catalog.quote_ident(self.key[0])}::bigint - ({lo})) / {width}"
        source = self.row_sql() if self.key is None else self.key_sql()
        return f"('x' || lpad(left(md5({source}::text), {nhex}), 8, '0'))::bit(32)::int"

    @property
    def key_positions(self) -> tuple[int, ...]:
        """Where the key's fields are among ``columns``."""
        if self.key is None:
            return ()
        return tuple(self.columns.index(k) for k in self.key)


async def table_key(conn: asyncpg.Connection, table: str
                    ) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
    """(kind, columns, types) of the primary key, else of the narrowest valid unique index over
    NOT NULL columns (no expression, no predicate); None when there is neither."""
    row = await conn.fetchrow(
        "SELECT i.indisprimary AS pk, array_agg(a.attname::text ORDER BY k.ord) AS cols, "
        "array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord) AS types "
        "FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indisvalid "
        "AND i.indpred IS NULL AND i.indexprs IS NULL AND k.ord <= i.indnkeyatts "
        "GROUP BY i.indexrelid, i.indisprimary HAVING bool_and(a.attnotnull) "
        "ORDER BY i.indisprimary DESC, count(*), i.indexrelid LIMIT 1", catalog.qualified(table))
    if row is None:
        return None
    return ("primary key" if row["pk"] else "unique key", tuple(row["cols"]),
            tuple(row["types"]))


async def shape_for(conn: asyncpg.Connection, table: str, dump_columns: Sequence[str],
                    live: Sequence[tuple[str, str, bool]],
                    then: Sequence[tuple[str, str, bool]] | None = None) -> Shape:
    """The columns both sides have (a column retyped since the backup is left out: its text
    would differ on every row), and the key, if every key column is among them."""
    live_types = {c[0]: c[1] for c in live}
    then_types = {c[0]: c[1] for c in then} if then else {}
    keep = [(i, c) for i, c in enumerate(dump_columns)
            if c in live_types and then_types.get(c, live_types[c]) == live_types[c]]
    columns = tuple(c for _, c in keep)
    key = await table_key(conn, table)
    only = await conn.fetchval("SELECT relkind <> 'p' FROM pg_class WHERE oid = $1::regclass",
                               catalog.qualified(table))
    if key is not None and set(key[1]) <= set(columns):
        return Shape(table, columns, key[1], key[2], tuple(i for i, _ in keep), key[0],
                     bool(only))
    return Shape(table, columns, None, (), tuple(i for i, _ in keep), only=bool(only))
