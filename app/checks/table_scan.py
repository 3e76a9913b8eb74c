"""One pass over a table: its row count, the manifest's checksum and the rows written since the
backup (by updated_at, else created_at: a hint, not row-level evidence). Read-only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from app import catalog


async def timestamp_column(conn: asyncpg.Connection, table: str) -> str | None:
    schema_name, name = catalog.split_name(table)
    return await conn.fetchval(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attname = ANY("
        "ARRAY['updated_at', 'created_at']) AND NOT attisdropped AND atttypid IN "
        "('timestamptz'::regtype, 'timestamp'::regtype) ORDER BY attname DESC LIMIT 1",
        catalog.qualified(f"{schema_name}.{name}"))


def _instant(since: str | None) -> datetime | None:
    """The backup's time as a parameter of type timestamptz: a text parameter cast in the query
    (``$1::text::timestamptz``) is parsed again for every row, 20% of a checksum scan. None
    (no backup) matches no row, as "after infinity" would."""
    return None if since is None else datetime.fromisoformat(since)


async def written_since(conn: asyncpg.Connection, table: str,
                        since: str | None) -> dict[str, Any] | None:
    """Rows whose updated_at (else created_at) is after ``since``, and the latest such time."""
    col = await timestamp_column(conn, table)
    if col is None:
        return None
    q = catalog.quote_ident(col)
    row = await catalog.one_row(
        conn, f"SELECT count(*) FILTER (WHERE {q} > $1::timestamptz) AS n, "
              f"max({q})::text AS last FROM {catalog.qualified(table)}", _instant(since))
    return {"column": col, "rows": int(row["n"]), "last_write": row["last"]}


async def scan_table(conn: asyncpg.Connection, table: str, since: str | None,
                     cols: list[str] | None = None, hashed: bool = True,
                     ) -> tuple[int, str, dict[str, Any] | None]:
    """One pass over ``table``: (rows, the manifest's checksum, writes since ``since``).

    The checksum is over the whole row (``cols`` None: equal to ``catalog.table_content``'s), or
    over the backup's columns only, so an added column does not make every row look changed;
    "" when not ``hashed``. The writes are ``written_since``'s, None without a timestamp column.
    One scan instead of three: the table is read once, as plain ``count(*)`` + a hash would."""
    col = await timestamp_column(conn, table)
    row_value = catalog.row_of(cols)
    parts = ["count(*) AS n"]
    if hashed:
        parts.append(f"{catalog.ROW_CHECKSUM.format(row=row_value)} AS sum")
    args: list[datetime | None] = []
    if col is not None:
        q = f"t.{catalog.quote_ident(col)}"
        parts += [f"count(*) FILTER (WHERE {q} > $1::timestamptz) AS w",
                  f"max({q})::text AS last"]
        args.append(_instant(since))
    row = await catalog.one_row(
        conn, f"SELECT {', '.join(parts)} FROM {catalog.qualified(table)} AS t", *args)
    rows = int(row["n"])
    written = None if col is None else {"column": col, "rows": int(row["w"]),
                                        "last_write": row["last"]}
    return rows, f"{rows}:{row['sum']}" if hashed else "", written
