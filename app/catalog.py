"""Read-only catalog and content queries shared by backups (the manifest), checks and validation.

Everything here only reads. Identifiers are always quoted by the server (``format('%I')``) or
by ``quote_ident``; nothing is pasted into SQL from names.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from app.config import PLATFORM_SCHEMAS

__all__ = ["PLATFORM_SCHEMAS"]


# A name as pg_dump writes it: double-quoted ("" inside) where it must be, else bare. The one
# pattern every reader of dump text matches names with.
SQL_IDENT = r'(?:"(?:[^"]|"")+"|[^\s."(),;]+)'


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """A string constant for SQL shown to the operator (``'it''s'``); statements the console
    runs pass values as $n parameters instead."""
    return "'" + text.replace("'", "''") + "'"


def qualified(table: str) -> str:
    """``schema.table`` (default schema public) as a quoted SQL name."""
    schema, _, name = table.rpartition(".")
    return f"{quote_ident(schema or 'public')}.{quote_ident(name)}"


def split_name(table: str) -> tuple[str, str]:
    schema, _, name = table.rpartition(".")
    return schema or "public", name


@dataclass(frozen=True)
class TableContent:
    table: str        # schema.name
    rows: int
    checksum: str     # order-independent: same rows in any order give the same value
    size_bytes: int


# The sum of the first 64 bits of each row's md5, as a numeric (no overflow): it does not depend
# on physical order and changes when any value of any row changes. ``{row}`` is a row value.
ROW_CHECKSUM = ("coalesce(sum(('x' || left(md5({row}::text), 16))::bit(64)::bigint::numeric), "
                "0)::text")


def row_of(columns: list[str] | None, alias: str = "t") -> str:
    """The row value ``ROW_CHECKSUM`` hashes: the whole row (``alias``), or these columns by
    name in this order (its text form is the same as the whole row's when they are all of
    them in table order)."""
    if columns is None:
        return alias
    return "ROW(" + ", ".join(f"{alias}.{quote_ident(c)}" for c in columns) + ")"


async def one_row(conn: asyncpg.Connection, sql: str, *args: object) -> asyncpg.Record:
    """The first row of a query that scans a whole table. ``fetch``, never ``fetchrow``: asyncpg's
    fetchrow and fetchval send Execute with a row limit, and PostgreSQL never runs such a portal
    with parallel workers, which halves the speed of a full scan on two cores or more."""
    rows = await conn.fetch(sql, *args)
    return rows[0]


async def table_content(conn: asyncpg.Connection, table: str,
                        columns: list[str] | None = None) -> TableContent:
    """Exact row count and an order-independent checksum of every row's text form
    (``ROW_CHECKSUM``), in one scan. With ``columns`` (a manifest's, in the backup's order)
    the row is read by those names, so a column now elsewhere in the table sums the same."""
    name = qualified(table)
    value = row_of(columns or None)
    row = await one_row(conn, f"SELECT count(*) AS n, {ROW_CHECKSUM.format(row=value)} AS sum "
                              f"FROM {name} AS t")
    size = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", name)
    return TableContent(table, int(row["n"]), f"{int(row['n'])}:{row['sum']}", int(size or 0))


async def user_tables(conn: asyncpg.Connection,
                      exclude_schemas: tuple[str, ...] = PLATFORM_SCHEMAS) -> list[str]:
    """Ordinary and partitioned tables outside system and platform schemas, as schema.name."""
    rows = await conn.fetch(
        "SELECT n.nspname || '.' || c.relname AS t FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
        "AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> ALL($1::text[]) ORDER BY 1",
        list(exclude_schemas))
    return [r["t"] for r in rows]


@dataclass(frozen=True)
class ForeignKey:
    name: str
    table: str            # schema.name of the referencing table
    referenced: str       # schema.name of the referenced table
    columns: tuple[str, ...]
    referenced_columns: tuple[str, ...]
    definition: str
    validated: bool


async def foreign_keys(conn: asyncpg.Connection,
                       exclude_schemas: tuple[str, ...] = ()) -> list[ForeignKey]:
    rows = await conn.fetch(
        """
        SELECT c.conname, n.nspname || '.' || t.relname AS tbl,
               rn.nspname || '.' || r.relname AS ref, c.convalidated,
               pg_get_constraintdef(c.oid) AS def,
               ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n
                     ORDER BY k.i) AS cols,
               ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                     JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n
                     ORDER BY k.i) AS refcols
        FROM pg_constraint c
        JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
        JOIN pg_class r ON r.oid = c.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
        WHERE c.contype = 'f' AND n.nspname NOT LIKE 'pg\\_%'
          AND n.nspname <> ALL($1::text[])
        ORDER BY 2, 1
        """, list(exclude_schemas))
    return [ForeignKey(r["conname"], r["tbl"], r["ref"], tuple(r["cols"]), tuple(r["refcols"]),
                       r["def"], r["convalidated"]) for r in rows]


@dataclass(frozen=True)
class Policy:
    table: str
    name: str
    command: str
    roles: tuple[str, ...]
    permissive: bool
    using: str | None
    with_check: str | None


async def rls_flags(conn: asyncpg.Connection,
                    exclude_schemas: tuple[str, ...] = PLATFORM_SCHEMAS) -> dict[str, bool]:
    rows = await conn.fetch(
        "SELECT n.nspname || '.' || c.relname AS t, c.relrowsecurity FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
        "AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> ALL($1::text[]) ORDER BY 1",
        list(exclude_schemas))
    return {r["t"]: r["relrowsecurity"] for r in rows}


async def policies(conn: asyncpg.Connection,
                   exclude_schemas: tuple[str, ...] = PLATFORM_SCHEMAS) -> list[Policy]:
    rows = await conn.fetch(
        "SELECT schemaname || '.' || tablename AS t, policyname, cmd, roles::text[] AS roles, "
        "permissive = 'PERMISSIVE' AS permissive, qual, with_check FROM pg_policies "
        "WHERE schemaname <> ALL($1::text[]) ORDER BY 1, 2", list(exclude_schemas))
    return [Policy(r["t"], r["policyname"], r["cmd"], tuple(r["roles"]), r["permissive"],
                   r["qual"], r["with_check"]) for r in rows]


async def table_grants(conn: asyncpg.Connection,
                       exclude_schemas: tuple[str, ...] = PLATFORM_SCHEMAS,
                       ) -> dict[str, dict[str, list[str]]]:
    """{schema.table: {grantee: [privileges, sorted]}} for the tables outside platform schemas,
    read from the ACLs themselves (an unset ACL is the owner's defaults): information_schema
    only shows a role the grants it takes part in, so a read-only role would see privileges
    "lost" since a backup taken by another role."""
    rows = await conn.fetch(
        "SELECT n.nspname || '.' || c.relname AS t, "
        "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS grantee, "
        "array_agg(DISTINCT a.privilege_type ORDER BY a.privilege_type) AS privs "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, "
        "aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a "
        "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT LIKE 'pg\\_%' "
        "AND n.nspname <> ALL($1::text[]) GROUP BY 1, 2 ORDER BY 1, 2", list(exclude_schemas))
    out: dict[str, dict[str, list[str]]] = {}
    for r in rows:
        out.setdefault(r["t"], {})[r["grantee"]] = list(r["privs"])
    return out


@dataclass(frozen=True)
class DatabaseIdentity:
    name: str
    system_identifier: str
    oid: int
    server_version: str
    server_version_num: int


async def identity(conn: asyncpg.Connection) -> DatabaseIdentity:
    row = await conn.fetchrow(
        "SELECT current_database() AS name, "
        "(SELECT system_identifier::text FROM pg_control_system()) AS sysid, "
        "(SELECT oid::int FROM pg_database WHERE datname = current_database()) AS oid, "
        "current_setting('server_version') AS ver, "
        "current_setting('server_version_num')::int AS vernum")
    assert row is not None
    return DatabaseIdentity(row["name"], row["sysid"], row["oid"], row["ver"], row["vernum"])


async def columns(conn: asyncpg.Connection,
                  exclude_schemas: tuple[str, ...] = PLATFORM_SCHEMAS,
                  ) -> dict[str, list[tuple[str, str, bool]]]:
    """{schema.table: [(column, type, not_null), ...]} in column order."""
    rows = await conn.fetch(
        "SELECT n.nspname || '.' || c.relname AS t, a.attname, "
        "format_type(a.atttypid, a.atttypmod) AS typ, a.attnotnull FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped "
        "AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> ALL($1::text[]) "
        "ORDER BY 1, a.attnum", list(exclude_schemas))
    out: dict[str, list[tuple[str, str, bool]]] = {}
    for r in rows:
        out.setdefault(r["t"], []).append((r["attname"], r["typ"], r["attnotnull"]))
    return out
