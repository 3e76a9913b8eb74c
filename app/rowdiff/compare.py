"""The live side, and the comparison: per-bucket sums in one scan, then only the rows of the
buckets that differ; the columns of a few changed rows."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from app import catalog
from app.rowdiff.dumpfile import dump_columns
from app.rowdiff.index import BackupIndex, index_for
from app.rowdiff.record import (
    EXAMINE,
    INDEX_LOOKUPS,
    PREFIX_BITS,
    SAMPLE,
    SESSION,
    copy_field,
    copy_fields,
    key_range,
    parse_record,
    prefix20,
    record_text,
)
from app.rowdiff.shape import (
    Shape,
    shape_for,
)

# --- the live side, and the comparison ------------------------------------------------------------

@dataclass
class RowDiff:
    """What changed in one table since the backup, row by row."""

    table: str
    key: tuple[str, ...] | None
    key_kind: str
    backup_rows: int
    live_rows: int
    deleted: int = 0
    changed: int = 0
    inserted: int = 0
    sample_deleted: list[str] = field(default_factory=list)
    sample_changed: list[str] = field(default_factory=list)
    sample_inserted: list[str] = field(default_factory=list)
    changed_columns: dict[str, int] = field(default_factory=dict)   # over the examined rows
    examined: int = 0             # changed rows whose columns were compared
    columns_compared: tuple[str, ...] = ()
    columns_left_out: tuple[str, ...] = ()
    buckets_differing: int = 0
    buckets: int = 0
    index_built: bool = False

    @property
    def identical(self) -> bool:
        return not (self.deleted or self.changed or self.inserted)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "compared_by": (f"{self.key_kind} ({', '.join(self.key)})" if self.key
                            else "whole rows (no primary or unique NOT NULL key): a changed "
                                 "row counts as one deleted and one inserted"),
            "backup_rows": self.backup_rows, "live_rows": self.live_rows,
            "deleted": self.deleted, "changed": self.changed, "inserted": self.inserted}
        for kind in ("deleted", "changed", "inserted"):
            sample = getattr(self, f"sample_{kind}")
            if sample:
                out[f"sample_{kind}"] = sample
        if self.changed_columns:
            out["changed_columns"] = self.changed_columns
            out["changed_rows_examined"] = self.examined
        if self.columns_left_out:
            out["columns_not_compared"] = list(self.columns_left_out)
        out["buckets_differing"] = f"{self.buckets_differing} of {self.buckets}"
        return out


_DIGITS = re.compile(rb"(\d+)")


def _natural(key: bytes) -> tuple[Any, ...]:
    """Keys in the order a reader expects: 9 before 10."""
    return tuple(int(p) if i % 2 else p for i, p in enumerate(_DIGITS.split(key)))


def _key_display(key: bytes) -> str:
    text = key.decode("utf-8", "replace")
    return text[1:-1] if text.startswith("(") and text.endswith(")") else text


async def _bucket_sums(conn: asyncpg.Connection, shape: Shape, index: BackupIndex
                       ) -> dict[int, tuple[int, int]]:
    """One scan: per bucket, the live rows' count and sum of 64-bit row hashes. An integer key
    buckets cheaply enough for parallel workers to aggregate; otherwise the hashing is in a
    subquery kept whole (OFFSET 0), so the workers hash and the leader only adds up."""
    nhex = index.nhex
    row = f"md5({shape.row_sql()}::text)"
    table = shape.from_sql
    if shape.int_key:
        sql = (f"SELECT {index.bucket_sql(shape)} AS b, count(*) AS n, "
               f"sum(('x' || left({row}, 16))::bit(64)::bigint)::text AS s "
               f"FROM {table} AS t GROUP BY 1")
    elif shape.key is None:   # the bucket is the row's own hash: compute it once
        sql = (f"SELECT left(m, {nhex}) AS b, count(*) AS n, "
               f"sum(('x' || left(m, 16))::bit(64)::bigint)::text AS s "
               f"FROM (SELECT {row} AS m FROM {table} AS t OFFSET 0) AS x GROUP BY 1")
    else:
        sql = (f"SELECT b, count(*) AS n, sum(h)::text AS s FROM (SELECT "
               f"('x' || left({row}, 16))::bit(64)::bigint AS h, "
               f"left(md5({shape.key_sql()}::text), {nhex}) AS b "
               f"FROM {table} AS t OFFSET 0) AS x GROUP BY 1")
    rows = await conn.fetch(sql)
    return {int(r["b"]) if shape.int_key else int(r["b"], 16): (int(r["n"]), int(r["s"]))
            for r in rows}


async def _rows_of_buckets(conn: asyncpg.Connection, shape: Shape, index: BackupIndex,
                           buckets: list[int]) -> list[tuple[bytes, bytes]]:
    """(key text, row md5) of the live rows in these buckets (keyless: (row text, md5)): for
    an integer key by index range scans (a bucket is a range of keys), otherwise one scan
    that hashes the rows of those buckets only."""
    row = f"{shape.row_sql()}::text"
    key_text = row if shape.key is None else shape.key_sql() + "::text"
    if shape.int_key:
        assert shape.key is not None
        col = f"t.{catalog.quote_ident(shape.key[0])}"
        spans = [key_range(b, index.lo, index.width) for b in buckets]
        sql = (f"SELECT {key_text} AS k, md5({row}) AS h FROM {shape.from_sql} AS t "
               f"JOIN unnest($1::bigint[], $2::bigint[]) AS r(lo, hi) "
               f"ON {col} >= r.lo AND {col} < r.hi")
        rows = await conn.fetch(sql, [a for a, _ in spans], [z for _, z in spans])
    else:
        sql = (f"SELECT {key_text} AS k, md5({row}) AS h FROM {shape.from_sql} AS t "
               f"WHERE {index.bucket_sql(shape)} = ANY($1::int[])")
        rows = await conn.fetch(sql, buckets)
    return [(r["k"].encode(), bytes.fromhex(r["h"])) for r in rows]


async def _rows_by_key(conn: asyncpg.Connection, shape: Shape,
                       keys: list[bytes]) -> list[tuple[bytes, bytes]]:
    """(key text, row md5) of the live rows with these keys (single-column keys: by index)."""
    assert shape.key is not None and len(shape.key) == 1
    col = f"t.{catalog.quote_ident(shape.key[0])}"
    sql = (f"SELECT {shape.key_sql()}::text AS k, md5({shape.row_sql()}::text) AS h "
           f"FROM {shape.from_sql} AS t "
           f"WHERE {col} = ANY($1::text[]::{shape.key_types[0]}[])")
    values = [(parse_record(k)[0] or b"").decode("utf-8", "replace") for k in keys]
    rows = await conn.fetch(sql, values)
    return [(r["k"].encode(), bytes.fromhex(r["h"])) for r in rows]


async def _newest(conn: asyncpg.Connection, shape: Shape, limit: int
                  ) -> list[tuple[bytes, bytes]]:
    """(key text, row md5) of the rows with the highest keys: where a serial key puts the rows
    inserted since the backup."""
    assert shape.key is not None
    order = ", ".join(f"t.{catalog.quote_ident(k)} DESC" for k in shape.key)
    sql = (f"SELECT {shape.key_sql()}::text AS k, md5({shape.row_sql()}::text) AS h "
           f"FROM {shape.from_sql} AS t ORDER BY {order} LIMIT $1")
    rows = await conn.fetch(sql, limit)
    return [(r["k"].encode(), bytes.fromhex(r["h"])) for r in rows]


async def _live_rows(conn: asyncpg.Connection, shape: Shape, index: BackupIndex,
                     differing: list[int], live: dict[int, tuple[int, int]],
                     backup: list[tuple[bytes, bytes, int]]) -> list[tuple[bytes, bytes]]:
    """The live rows of the differing buckets. An integer key: by range (``_rows_of_buckets``).
    Another one-column key, with not too many rows to look at: the backup's keys by index
    (deleted and changed rows), and the inserted ones among the highest keys, when those
    account for every row the bucket counts say was inserted. Otherwise one more scan,
    hashing the rows of those buckets only."""
    if shape.int_key or shape.key is None or len(shape.key) != 1 or len(backup) > INDEX_LOOKUPS:
        return await _rows_of_buckets(conn, shape, index, differing)
    found = await _rows_by_key(conn, shape, [k for k, _, _ in backup])
    expected = sum(live.get(b, (0, 0))[0] for b in differing) - len(found)
    if expected <= 0:
        return found
    if expected > INDEX_LOOKUPS:
        return await _rows_of_buckets(conn, shape, index, differing)
    wanted = set(differing)
    shift = PREFIX_BITS - 4 * index.nhex
    known = {k for k, _, _ in backup}
    new = [(k, h) for k, h in await _newest(conn, shape, expected + 50)
           if k not in known and prefix20(hashlib.md5(k).digest()) >> shift in wanted]
    if len(new) == expected:
        return found + new
    return await _rows_of_buckets(conn, shape, index, differing)


async def _column_hashes(conn: asyncpg.Connection, shape: Shape,
                         keys: list[list[bytes | None]]) -> dict[bytes, list[str]]:
    """Per-column md5 of ``ROW(column)::text`` of the live rows with these keys (by key
    value, so the key's index is used)."""
    assert shape.key is not None
    q = catalog.quote_ident
    cols = ", ".join(f"md5(ROW(t.{q(c)})::text)" for c in shape.columns)
    unnest = ", ".join(f"${i + 1}::text[]" for i in range(len(shape.key)))
    picks = ", ".join(f"u.c{i}::{typ}" for i, typ in enumerate(shape.key_types))
    names = ", ".join(f"c{i}" for i in range(len(shape.key)))
    match = ", ".join(f"t.{q(k)}" for k in shape.key)
    sql = (f"SELECT {shape.key_sql()}::text AS k, ARRAY[{cols}] AS hs "
           f"FROM {shape.from_sql} AS t WHERE ({match}) IN "
           f"(SELECT {picks} FROM unnest({unnest}) AS u({names}))")
    args = [[(k[i] or b"").decode("utf-8", "replace") for k in keys]
            for i in range(len(shape.key))]
    rows = await conn.fetch(sql, *args)
    return {r["k"].encode(): list(r["hs"]) for r in rows}


def _read_lines(dump: Path, offsets: list[int]) -> dict[int, bytes]:
    out = {}
    with dump.open("rb") as f:
        for off in sorted(offsets):
            f.seek(off)
            out[off] = f.readline().rstrip(b"\n")
    return out


async def compare(conn: asyncpg.Connection, set_dir: Path, dump: Path, shape: Shape,
                  all_columns: Sequence[str], prepared: tuple[BackupIndex, bool] | None = None
                  ) -> RowDiff:
    """Compare the live table with the dump (``prepared``: ``index_for``'s answer, built now
    when not given). Runs in one read-only transaction."""
    if prepared is None:
        prepared = await asyncio.to_thread(index_for, set_dir, dump, shape)
    index, built = prepared
    diff = RowDiff(shape.table, shape.key, shape.key_kind, index.rows, 0,
                   columns_compared=shape.columns,
                   columns_left_out=tuple(c for c in all_columns if c not in shape.columns),
                   index_built=built)
    async with conn.transaction(readonly=True):
        await conn.execute(SESSION)
        live = await _bucket_sums(conn, shape, index)
        diff.live_rows = sum(n for n, _ in live.values())
        differing = sorted(b for b in set(live) | set(index.buckets)
                           if live.get(b) != index.buckets.get(b))
        diff.buckets = index.total
        diff.buckets_differing = len(differing)
        if not differing:
            return diff
        backup_rows = await asyncio.to_thread(index.rows_in, differing)
        live_rows = await _live_rows(conn, shape, index, differing, live, backup_rows)
        if shape.key is None:
            await asyncio.to_thread(_multiset, diff, dump, shape, live_rows, backup_rows)
            return diff
        then = {k: (h, off) for k, h, off in backup_rows}
        now = dict(live_rows)
        deleted = sorted((k for k in then if k not in now), key=_natural)
        inserted = sorted((k for k in now if k not in then), key=_natural)
        changed = sorted((k for k in now if k in then and then[k][0] != now[k]), key=_natural)
        diff.deleted, diff.inserted, diff.changed = len(deleted), len(inserted), len(changed)
        diff.sample_deleted = [_key_display(k) for k in deleted[:SAMPLE]]
        diff.sample_inserted = [_key_display(k) for k in inserted[:SAMPLE]]
        diff.sample_changed = [_key_display(k) for k in changed[:SAMPLE]]
        if changed:
            await _changed_columns(conn, diff, dump, shape, [then[k][1] for k in
                                                                changed[:EXAMINE]])
    return diff


def _multiset(diff: RowDiff, dump: Path, shape: Shape, live: list[tuple[bytes, bytes]],
              backup: list[tuple[bytes, bytes, int]]) -> None:
    now = Counter(h for _, h in live)
    then = Counter(h for _, h, _ in backup)
    text_now = {h: k for k, h in live}
    offset_then = {h: off for _, h, off in backup}
    gone = then - now
    new = now - then
    diff.deleted, diff.inserted = sum(gone.values()), sum(new.values())
    lines = _read_lines(dump, sorted(offset_then[h] for h in gone)[:200])
    gone_text = [record_text([fields[i] for i in shape.positions])
                 for fields in map(copy_fields, lines.values())]
    diff.sample_deleted = [_key_display(k) for k in sorted(gone_text, key=_natural)[:SAMPLE]]
    diff.sample_inserted = [_key_display(k) for k in
                            sorted((text_now[h] for h in new), key=_natural)[:SAMPLE]]


async def _changed_columns(conn: asyncpg.Connection, diff: RowDiff, dump: Path, shape: Shape,
                           offsets: list[int]) -> None:
    lines = await asyncio.to_thread(_read_lines, dump, offsets)
    backup: dict[bytes, list[bytes | None]] = {}
    for line in lines.values():
        fields = copy_fields(line)
        picked = [fields[i] for i in shape.positions]
        backup[record_text([picked[i] for i in shape.key_positions])] = picked
    keys = [[row[i] for i in shape.key_positions] for row in backup.values()]
    live = await _column_hashes(conn, shape, keys)
    counts: Counter[str] = Counter()
    for key, row in backup.items():
        hashes = live.get(key)
        if hashes is None:
            continue
        diff.examined += 1
        for col, value, now in zip(shape.columns, row, hashes, strict=True):
            if hashlib.md5(record_text([value])).hexdigest() != now:
                counts[col] += 1
    diff.changed_columns = dict(counts.most_common())


async def prebuild(conn: asyncpg.Connection, set_dir: Path,
                   dumps: dict[str, Path]) -> list[str]:
    """Build the row indexes of a set's data dumps now (e.g. right after the backup, while
    nobody waits on it), so the first assessment compares row by row at once. ``dumps``:
    {table: its data dump}. The tables indexed."""
    live = await catalog.columns(conn)
    done = []
    for table, dump in sorted(dumps.items()):
        cols = await asyncio.to_thread(dump_columns, dump, table)
        if cols is None or table not in live:
            continue
        shape = await shape_for(conn, table, cols, live[table])
        await asyncio.to_thread(index_for, set_dir, dump, shape)
        done.append(table)
    return done


__all__ = ["BackupIndex", "RowDiff", "Shape", "compare", "copy_field", "copy_fields",
           "dump_columns", "prebuild", "record_text", "shape_for"]
