"""The state of a database that a backup set records (manifest.json) and that checks compare
the live target against. Plain dataclasses <-> JSON; capture is read-only."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from app import __version__, catalog
from app.config import CriticalQuery
from app.errors import BadInput

MANIFEST_FORMAT = 1


@dataclass
class DatabaseState:
    """What a database looked like at one moment (inside one snapshot when captured for a
    backup): identity, per-table counts and checksums, keys, RLS, grants, query latencies."""

    captured_at: str
    identity: catalog.DatabaseIdentity
    tables: dict[str, catalog.TableContent]
    columns: dict[str, list[tuple[str, str, bool]]]
    foreign_keys: list[catalog.ForeignKey]
    rls: dict[str, bool]
    policies: list[catalog.Policy]
    grants: dict[str, dict[str, list[str]]]
    query_baselines_ms: dict[str, float] = field(default_factory=dict)
    # each table with table-inheritance children, its own rows only (SELECT ... FROM ONLY):
    # ``tables`` counts and sums the children's rows too, its dump (COPY) holds only its own
    own_content: dict[str, catalog.TableContent] = field(default_factory=dict)
    # each partitioned table, its leaves' contents ({parent: {leaf: content}}), read in the same
    # scan as the parent's figures (which are their sums)
    partitions: dict[str, dict[str, catalog.TableContent]] = field(default_factory=dict)


@dataclass
class FileEntry:
    sha256: str
    size: int


@dataclass
class Manifest:
    """manifest.json of a backup set made by the console."""

    label: str
    created_at: str
    console_version: str
    state: DatabaseState
    files: dict[str, FileEntry] = field(default_factory=dict)
    snapshot: str | None = None
    format: int = MANIFEST_FORMAT
    # a set captured from a cluster restored aside to a point in time (app.pitr.source): the
    # target (kind, value, said, at, lsn), the engine and the base backup; its state's
    # captured_at is that moment, not when the files were written
    point_in_time: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        s = data["state"]
        state = DatabaseState(
            captured_at=s["captured_at"],
            identity=catalog.DatabaseIdentity(**s["identity"]),
            tables={k: catalog.TableContent(**v) for k, v in s["tables"].items()},
            columns={k: [tuple(c) for c in v] for k, v in s["columns"].items()},
            foreign_keys=[catalog.ForeignKey(**{**fk, "columns": tuple(fk["columns"]),
                                                "referenced_columns":
                                                    tuple(fk["referenced_columns"])})
                          for fk in s["foreign_keys"]],
            rls=dict(s["rls"]),
            policies=[catalog.Policy(**{**p, "roles": tuple(p["roles"])}) for p in s["policies"]],
            grants=s["grants"],
            query_baselines_ms=dict(s.get("query_baselines_ms", {})),
            own_content={k: catalog.TableContent(**v)
                         for k, v in s.get("own_content", {}).items()},
            partitions={k: {leaf: catalog.TableContent(**c) for leaf, c in v.items()}
                        for k, v in s.get("partitions", {}).items()},
        )
        return cls(label=data["label"], created_at=data["created_at"],
                   console_version=data["console_version"], state=state,
                   files={k: FileEntry(**v) for k, v in data.get("files", {}).items()},
                   snapshot=data.get("snapshot"), format=data.get("format", MANIFEST_FORMAT),
                   point_in_time=data.get("point_in_time"))

    @classmethod
    def load(cls, path: Path) -> Manifest:
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


async def time_query(conn: asyncpg.Connection, sql: str, repeat: int = 3) -> float:
    """Best-of-``repeat`` latency of ``sql`` in milliseconds (read-only use only)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        await conn.fetch(sql)
        best = min(best, (time.perf_counter() - started) * 1000)
    return round(best, 3)


async def capture_state(conn: asyncpg.Connection, tables: list[str] | None = None,
                        critical_queries: tuple[CriticalQuery, ...] = ()) -> DatabaseState:
    """Read the state of the connected database. Run it inside a REPEATABLE READ transaction
    (or on a snapshot) when the figures must be consistent with a dump."""
    names = tables if tables is not None else await catalog.user_tables(conn)
    contents = {}
    leaves: dict[str, dict[str, catalog.TableContent]] = {}
    partitioned = set(await partitioned_tables(conn, names))
    for name in names:  # one connection: the caller's snapshot must hold for every table
        if name in partitioned:
            leaves[name] = await partition_contents(conn, name)
            contents[name] = await _summed(conn, name, leaves[name])
        else:
            contents[name] = await catalog.table_content(conn, name)
    own = {name: await own_content(conn, name)
           for name in await inheritance_parents(conn, names)}
    baselines = {q.name: await time_query(conn, q.sql) for q in critical_queries}
    return DatabaseState(
        captured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        identity=await catalog.identity(conn),
        tables=contents,
        columns=await catalog.columns(conn),
        foreign_keys=await catalog.foreign_keys(conn, catalog.PLATFORM_SCHEMAS),
        rls=await catalog.rls_flags(conn),
        policies=await catalog.policies(conn),
        grants=await catalog.table_grants(conn),
        query_baselines_ms=baselines,
        own_content=own,
        partitions=leaves,
    )


async def own_content(conn: asyncpg.Connection, table: str) -> catalog.TableContent:
    """``catalog.table_content`` of a table's own rows (FROM ONLY: without its inheritance
    children's), in the same form."""
    name = catalog.qualified(table)
    row = await catalog.one_row(conn, f"SELECT count(*) AS n, "
                                      f"{catalog.ROW_CHECKSUM.format(row='t')} AS sum "
                                      f"FROM ONLY {name} AS t")
    size = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", name)
    return catalog.TableContent(table, int(row["n"]), f"{int(row['n'])}:{row['sum']}",
                                int(size or 0))


async def partitioned_tables(conn: asyncpg.Connection, tables: list[str]) -> list[str]:
    """Those of ``tables`` that are partitioned."""
    rows = await conn.fetch(
        "SELECT t FROM unnest($1::text[]) t JOIN pg_class c ON c.oid = to_regclass(t) "
        "WHERE c.relkind = 'p'", [catalog.qualified(t) for t in tables])
    quoted = {catalog.qualified(t): t for t in tables}
    return [quoted[r["t"]] for r in rows]


async def partition_contents(conn: asyncpg.Connection, table: str
                             ) -> dict[str, catalog.TableContent]:
    """{leaf: content} of a partitioned table's leaves (at any depth), in ONE scan of the
    table: every row's checksum in the table's own row form, grouped by the leaf holding it
    (an empty leaf is 0 rows)."""
    name = catalog.qualified(table)
    sums = {r["leaf"]: (int(r["n"]), r["sum"]) for r in await conn.fetch(
        f"SELECT t.tableoid::oid AS leaf, count(*) AS n, {catalog.ROW_CHECKSUM.format(row='t')} "
        f"AS sum FROM {name} AS t GROUP BY t.tableoid")}
    out = {}
    for leaf in await conn.fetch(
            "SELECT p.relid::oid AS oid, n.nspname || '.' || c.relname AS t, "
            "pg_total_relation_size(p.relid) AS size FROM pg_partition_tree($1::regclass) p "
            "JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE p.isleaf ORDER BY 2", name):
        rows, total = sums.get(leaf["oid"], (0, "0"))
        out[leaf["t"]] = catalog.TableContent(leaf["t"], rows, f"{rows}:{total}",
                                              int(leaf["size"] or 0))
    return out


async def _summed(conn: asyncpg.Connection, table: str,
                  leaves: dict[str, catalog.TableContent]) -> catalog.TableContent:
    """A partitioned table's content from its leaves': the same figures
    ``catalog.table_content`` reads from the table (count and checksum are sums)."""
    rows = sum(c.rows for c in leaves.values())
    total = sum(int(c.checksum.partition(":")[2]) for c in leaves.values())
    size = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)",
                               catalog.qualified(table))
    return catalog.TableContent(table, rows, f"{rows}:{total}", int(size or 0))


async def inheritance_parents(conn: asyncpg.Connection, tables: list[str]) -> list[str]:
    """Those of ``tables`` that have table-inheritance children (not partitions): a SELECT
    from them returns the children's rows too, a COPY (a dump) only their own."""
    rows = await conn.fetch(
        "SELECT DISTINCT t FROM unnest($1::text[]) t JOIN pg_inherits i "
        "ON i.inhparent = to_regclass(t) JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE NOT c.relispartition ORDER BY 1", [catalog.qualified(t) for t in tables])
    quoted = {catalog.qualified(t): t for t in tables}
    return [quoted[r["t"]] for r in rows]


def check_identity(set_id: str, manifest: Manifest, ident: catalog.DatabaseIdentity) -> None:
    """A backup of another database must never be compared with, or restored over, this one."""
    taken = manifest.state.identity
    if (taken.name, taken.system_identifier) != (ident.name, ident.system_identifier):
        raise BadInput(
            f"backup {set_id!r} was taken from database {taken.name!r} (system id "
            f"{taken.system_identifier}), but the target is {ident.name!r} (system id "
            f"{ident.system_identifier}): pass --backup of a set of this target")


def new_manifest(label: str, state: DatabaseState, snapshot: str | None = None) -> Manifest:
    return Manifest(label=label, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                    console_version=__version__, state=state, snapshot=snapshot)


__all__ = ["DatabaseState", "FileEntry", "Manifest", "capture_state", "inheritance_parents",
           "new_manifest", "own_content", "partition_contents", "partitioned_tables",
           "time_query"]
