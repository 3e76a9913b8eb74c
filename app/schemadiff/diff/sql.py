"""SQL text for one object of a schema model: column definitions, literals, grants, types and
sequences, and the small name helpers the differ shares."""

from __future__ import annotations

from collections.abc import Iterable

from app.catalog import quote_ident
from app.schemamodel.model import (
    Column,
    Function,
    Sequence,
    Table,
    Type,
)

RELKIND = {"v": "VIEW", "m": "MATERIALIZED VIEW"}


def column_ref(table: str, column: str) -> str:
    return f"{table}.{quote_ident(column)}"


def column_sql(c: Column) -> str:
    parts = [quote_ident(c.name), c.type]
    if c.collation:
        parts.append(f"COLLATE {c.collation}")
    if c.generated:
        parts.append(f"GENERATED ALWAYS AS ({c.default}) "
                     + ("STORED" if c.generated == "s" else "VIRTUAL"))
    elif c.default is not None:
        parts.append(f"DEFAULT {c.default}")
    if c.identity:
        how = "ALWAYS" if c.identity == "a" else "BY DEFAULT"
        seq = f" (SEQUENCE NAME {c.identity_seq})" if c.identity_seq else ""
        parts.append(f"GENERATED {how} AS IDENTITY{seq}")
    if c.not_null:
        parts.append("NOT NULL")
    return " ".join(parts)


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def acl_sql(target: str, current: Iterable[str], wanted: Iterable[str]) -> list[str]:
    """REVOKE what only ``current`` has, then GRANT what only ``wanted`` has; one statement
    per grantee (and grant option)."""
    cur, want = set(current), set(wanted)
    revoke: dict[str, list[str]] = {}
    grant: dict[tuple[str, bool], list[str]] = {}
    for entry in sorted(cur - want):
        grantee, _, priv = entry.partition(":")
        revoke.setdefault(grantee, []).append(priv.rstrip("*"))
    for entry in sorted(want - cur):
        grantee, _, priv = entry.partition(":")
        grant.setdefault((grantee, priv.endswith("*")), []).append(priv.rstrip("*"))
    out = [f"REVOKE {', '.join(privs)} ON {target} FROM {grantee}"
           for grantee, privs in revoke.items()]
    out += [f"GRANT {', '.join(privs)} ON {target} TO {grantee}"
            + (" WITH GRANT OPTION" if option else "")
            for (grantee, option), privs in grant.items()]
    return out



def any_row(table: str) -> str:
    return f"SELECT count(*) FROM (SELECT FROM {table} LIMIT 1) AS any_row"


def routine(f: Function) -> str:
    return "PROCEDURE" if f.kind == "p" else "FUNCTION"


def unquoted(name: str) -> str:
    return name.replace('"', "")


def owner_table(s: Sequence) -> str:
    return s.owned_by.rsplit(".", 1)[0] if s.owned_by else ""


def column_anchors(columns: tuple[Column, ...], c: Column, common: set[str]) -> tuple[str, str]:
    """The nearest columns before and after ``c`` that both sides share: where it sits."""
    before = [x.name for x in columns if x.position < c.position and x.name in common]
    after = [x.name for x in columns if x.position > c.position and x.name in common]
    return (before[-1] if before else "", after[0] if after else "")


def create_type(t: Type) -> str:
    if t.kind == "e":
        return f"CREATE TYPE {t.name} AS ENUM ({', '.join(literal(x) for x in t.labels)})"
    if t.kind == "c":
        return f"CREATE TYPE {t.name} AS ({', '.join(t.definition)})"
    base, not_null, default, checks = t.definition
    sql = f"CREATE DOMAIN {t.name} AS {base}"
    if default is not None:
        sql += f" DEFAULT {default}"
    if not_null:
        sql += " NOT NULL"
    return sql + "".join(f" {c}" for c in checks)


def sequence_options(s: Sequence) -> str:
    typ, start, inc, lo, hi, cache, cycle = s.options
    return (f"AS {typ} INCREMENT BY {inc} MINVALUE {lo} MAXVALUE {hi} START WITH {start} "
            f"CACHE {cache} {'CYCLE' if cycle else 'NO CYCLE'}")


def create_sequence(s: Sequence) -> str:
    return f"CREATE SEQUENCE {s.name} {sequence_options(s)}"


def alter_sequence(s: Sequence) -> str:
    return f"ALTER SEQUENCE {s.name} {sequence_options(s)}"


def parents_first(tables: dict[str, Table]) -> list[tuple[str, Table]]:
    """The tables in their order, but an inheritance parent before its children (a child is
    created with INHERITS, so its parent must exist)."""
    out: list[tuple[str, Table]] = []
    seen: set[str] = set()

    def visit(name: str, trail: frozenset[str] = frozenset()) -> None:
        if name in seen or name in trail or name not in tables:
            return
        for parent in tables[name].inherits:
            visit(parent, trail | {name})
        seen.add(name)
        out.append((name, tables[name]))

    for name in tables:
        visit(name)
    return out
