"""Row-level evidence: the live rows of a table against the rows of its backup dump, by key.

A backup set holds a table's rows as a ``pg_dump --data-only`` SQL file (one ``COPY`` block).
From it we build once, streaming, an index of the backup's rows: key -> md5 of the row's record
text, grouped in buckets by the md5 of the key's record text. The live side computes the same
two hashes in SQL: the row hash is ``md5(ROW(c1, c2, ...)::text)`` over the dump's columns, and
Python rebuilds that exact text from a COPY line (COPY's escapes undone, then ``record_out``'s
quoting). So:

1. one scan of the live table gives (count, sum of 64-bit row hashes) per bucket; equal to the
   backup's bucket for bucket means the table holds exactly the backup's rows;
2. only the buckets that differ are read again (key and row hash of their rows), and compared
   with the backup's rows of those buckets: rows deleted, changed and inserted since the backup;
3. for a few changed rows, a hash per column names the columns that changed.

The key is the table's primary key, else a unique key over NOT NULL columns; without one, rows
are compared as a multiset of row hashes (a changed row is then one deleted and one inserted).

The index is cached next to the set (``<set>/.rowindex/``), named by the dump's sha256, so a
changed dump is never read through a stale index; when the set's folder is not writable, under
the state directory. Every statement here is a read: the sessions of an assessment are
read-only (no temporary tables).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import mmap
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from app import catalog

FORMAT = 3
INT_TYPES = ("smallint", "integer", "bigint")
SAMPLE = 5                  # sample keys reported per kind of difference
EXAMINE = 1000              # changed rows whose columns are compared one by one
INDEX_LOOKUPS = 200_000     # rows looked up by key before another scan is cheaper
ROWS_PER_BUCKET = 512       # a differing bucket costs about this many rows to read again
PREFIX_BITS = 20            # the index keeps 5 hex digits of each bucket hash: up to 16**5
_NEEDS_QUOTE = re.compile(rb'[ \t\n\r\v\f"\\(),]')
_ESCAPES = {ord("b"): b"\b", ord("f"): b"\f", ord("n"): b"\n", ord("r"): b"\r",
            ord("t"): b"\t", ord("v"): b"\v"}
_OCTAL = b"01234567"
_HEX = b"0123456789abcdefABCDEF"
# The settings pg_dump's own session runs with, so values print the same on both sides.
SESSION = ("SET LOCAL DateStyle = 'ISO, MDY'; SET LOCAL IntervalStyle = 'postgres'; "
           "SET LOCAL extra_float_digits = 3; "
           # the planner cannot know a bucket key has at most 16**n values: hash them, and
           # let parallel workers hash the rows even on a table it thinks small
           "SET LOCAL enable_sort = off; SET LOCAL parallel_setup_cost = 0; "
           "SET LOCAL parallel_tuple_cost = 0; "
           # it cannot know either that a few thousand groups fit in memory: no spilling
           "SET LOCAL work_mem = '64MB'")


# --- COPY text -> record text -------------------------------------------------------------------

def copy_field(raw: bytes) -> bytes | None:
    """One field of a COPY text line, its escapes undone (``\\N`` is NULL)."""
    if b"\\" not in raw:
        return raw
    if raw == b"\\N":
        return None
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c != 0x5C:   # backslash
            out.append(c)
            i += 1
            continue
        i += 1
        if i >= n:
            break
        c = raw[i]
        if c in _OCTAL:
            j = i
            while j < n and j < i + 3 and raw[j] in _OCTAL:
                j += 1
            out.append(int(raw[i:j], 8) & 0xFF)
            i = j
        elif c == ord("x") and i + 1 < n and raw[i + 1] in _HEX:
            j = i + 1
            while j < n and j < i + 3 and raw[j] in _HEX:
                j += 1
            out.append(int(raw[i + 1:j], 16))
            i = j
        else:
            out += _ESCAPES.get(c, bytes((c,)))
            i += 1
    return bytes(out)


def copy_fields(line: bytes) -> list[bytes | None]:
    """A COPY text line (without its newline) as its fields."""
    parts = line.split(b"\t")
    if b"\\" not in line:
        return list(parts)
    return [copy_field(p) for p in parts]


def record_text(fields: Sequence[bytes | None]) -> bytes:
    """PostgreSQL's ``record_out`` of these fields' text forms: ``ROW(...)::text``."""
    parts: list[bytes] = []
    add = parts.append
    special = _NEEDS_QUOTE.search
    for f in fields:
        if f is None:
            add(b"")
        elif f and not special(f):
            add(f)
        elif b"\\" in f or b'"' in f:
            add(b'"' + f.replace(b"\\", b"\\\\").replace(b'"', b'""') + b'"')
        else:
            add(b'"' + f + b'"')
    return b"(" + b",".join(parts) + b")"


def parse_record(text: bytes) -> list[bytes | None]:
    """``record_text`` undone: the fields of a record's text form (an empty field is NULL)."""
    body = text[1:-1]
    out: list[bytes | None] = []
    i, n = 0, len(body)
    while True:
        if i < n and body[i] == 0x22:   # a quoted field
            i += 1
            buf = bytearray()
            while i < n:
                c = body[i]
                if c == 0x22 and i + 1 < n and body[i + 1] == 0x22:
                    buf.append(c)
                    i += 2
                elif c == 0x22:
                    i += 1
                    break
                elif c == 0x5C:
                    buf.append(body[i + 1])
                    i += 2
                else:
                    buf.append(c)
                    i += 1
            out.append(bytes(buf))
        else:
            j = body.find(b",", i)
            j = n if j < 0 else j
            out.append(body[i:j] if j > i else None)
            i = j
        if i >= n:
            return out
        i += 1   # the comma
        if i == n:
            out.append(None)
            return out


def hash64(digest: bytes) -> int:
    """``('x' || left(md5(..), 16))::bit(64)::bigint``: the first 8 bytes, signed."""
    return int.from_bytes(digest[:8], "big", signed=True)


def bucket_expr(int_key: bool, nhex: int) -> str:
    """The bucket of an index row (SQLite): an integer key's row stores its bucket (a range
    of keys) in ``p``; the others the top 20 bits of an md5, of which the bucket is the top
    ``4 * nhex``."""
    return "p" if int_key else f"(p >> {PREFIX_BITS - 4 * nhex})"


def tdiv(a: int, b: int) -> int:
    """Integer division truncating toward zero, as PostgreSQL's and SQLite's ``/``."""
    q = abs(a) // b
    return q if a >= 0 else -q


def key_range(bucket: int, lo: int, width: int) -> tuple[int, int]:
    """[first, last + 1) of the keys whose ``tdiv(key - lo, width)`` is ``bucket``."""
    if bucket > 0:
        return lo + bucket * width, lo + (bucket + 1) * width
    if bucket == 0:
        return lo - width + 1, lo + width
    return lo + bucket * width - width + 1, lo + bucket * width + 1


def key_prefix(int_key: bool, key: bytes) -> int:
    """``p`` of a key's record text."""
    if int_key:
        return int(key[1:-1]) % (1 << PREFIX_BITS)
    return prefix20(hashlib.md5(key).digest())


def prefix20(digest: bytes) -> int:
    """The first 5 hex digits of an md5, as a number (a bucket at any coarser size is a shift
    of it)."""
    return int.from_bytes(digest[:3], "big") >> 4


def nhex_for(rows: int) -> int:
    """Hex digits of the bucket: about ROWS_PER_BUCKET rows a bucket, 16 to 1M buckets."""
    n = 1
    while n < PREFIX_BITS // 4 and 16 ** n * ROWS_PER_BUCKET < rows:
        n += 1
    return n


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


# --- the backup's side: an index built from the dump ---------------------------------------------

_COPY_START = b"COPY "


def _copy_header(line: bytes) -> tuple[tuple[str, str], list[str]] | None:
    from app.rollback.copydata import _COPY, parse_name, split_identifiers

    m = _COPY.match(line.rstrip(b"\n"))
    if not m:
        return None
    return (parse_name(m.group("name").decode()),
            split_identifiers(m.group("cols").decode()))


def dump_table(path: Path) -> str | None:
    """``schema.table`` of the first COPY block of a dump (None: no data in it). Reads lines up
    to that block only (a data-only dump has a few dozen lines of settings before it)."""
    with path.open("rb") as f:
        for line in f:
            if line.startswith(_COPY_START):
                head = _copy_header(line)
                if head is not None:
                    return f"{head[0][0]}.{head[0][1]}"
    return None


def dump_columns(path: Path, table: str) -> list[str] | None:
    """The column list of ``table``'s COPY block in the dump; None when it has none."""
    want = catalog.split_name(table)
    with path.open("rb") as f:
        for line in f:
            if line.startswith(_COPY_START):
                head = _copy_header(line)
                if head is not None and head[0] == want:
                    return head[1]
    return None


def _dump_rows(path: Path, table: str) -> Iterator[tuple[int, bytes]]:
    """(offset, line without newline) of each row of ``table``'s COPY block."""
    want = catalog.split_name(table)
    with path.open("rb") as f:
        offset = 0
        inside = False
        for line in f:
            start = offset
            offset += len(line)
            if not inside:
                if line.startswith(_COPY_START):
                    head = _copy_header(line)
                    inside = head is not None and head[0] == want
                continue
            if line == b"\\.\n" or line == b"\\.":
                inside = False   # more blocks may name it (--load-via-partition-root)
                continue
            yield start, line[:-1] if line.endswith(b"\n") else line
    if inside:
        raise ValueError(f"{path.name}: the dump ends inside the COPY block of {table}: the "
                         "file is truncated")


def _block_ranges(path: Path, table: str) -> list[tuple[int, int]]:
    """Byte ranges of the rows of ``table``'s COPY blocks in the dump: [first row, end line)."""
    want = catalog.split_name(table)
    out: list[tuple[int, int]] = []
    with path.open("rb") as f:
        offset = 0
        for line in f:
            offset += len(line)
            if not line.startswith(_COPY_START):
                continue
            head = _copy_header(line)
            if head is None or head[0] != want:
                continue
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                end = offset if m[offset:offset + 3] in (b"\\.\n", b"\\.") else \
                    m.find(b"\n\\.\n", offset - 1) + 1
                if end <= 0 and m[-3:] == b"\n\\.":
                    end = len(m) - 2
            if end <= 0:
                raise ValueError(f"{path.name}: the dump ends inside the COPY block of "
                                 f"{table}: the file is truncated")
            out.append((offset, end))
            f.seek(end)
            offset = end
    return out


def _split(path: Path, ranges: list[tuple[int, int]], parts: int) -> list[list[tuple[int, int]]]:
    """The ranges cut into about ``parts`` pieces of equal size, at line boundaries."""
    total = sum(e - s for s, e in ranges)
    size = max(1, total // parts)
    pieces: list[list[tuple[int, int]]] = [[]]
    with path.open("rb") as f:
        for start, end in ranges:
            at = start
            while at < end:
                room = size - sum(e - s for s, e in pieces[-1])
                cut = min(end, at + max(room, 1))
                if cut < end:
                    f.seek(cut)
                    f.readline()
                    cut = min(end, f.tell())
                pieces[-1].append((at, cut))
                at = cut
                if sum(e - s for s, e in pieces[-1]) >= size and len(pieces) < parts:
                    pieces.append([])
    return [p for p in pieces if p]


def _index_part(dump: str, ranges: list[tuple[int, int]], shape: Shape, part: str,
                lo: int = 0, width: int = 1) -> dict[int, list[int]]:
    """Index the rows in ``ranges`` into the SQLite file ``part``; the sums per prefix. Runs in
    a worker process for a large dump."""
    db = sqlite3.connect(part)
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("PRAGMA synchronous = OFF")
    db.execute("CREATE TABLE IF NOT EXISTS rows (p INTEGER, k BLOB, h BLOB, off INTEGER)")
    sums: dict[int, list[int]] = {}   # prefix -> [count, sum of hash64]
    batch: list[tuple[int, bytes, bytes, int]] = []
    md5 = hashlib.md5
    keyed = shape.key is not None
    int_key = shape.int_key
    positions, key_positions = shape.positions, shape.key_positions
    whole = positions == tuple(range(len(positions)))
    first = key_positions[0] if int_key else 0
    with open(dump, "rb") as f:
        for start, end in ranges:
            f.seek(start)
            off = start
            while off < end:
                raw = f.readline()
                line = raw[:-1] if raw.endswith(b"\n") else raw
                fields = copy_fields(line)
                picked = fields if whole and len(fields) == len(positions) else \
                    [fields[i] for i in positions]
                digest = md5(record_text(picked)).digest()
                if int_key:   # "(<digits>)": no quoting, no hashing: a range of keys
                    value = picked[first] or b"0"
                    prefix = tdiv(int(value) - lo, width)
                    batch.append((prefix, b"(" + value + b")", digest, off))
                elif keyed:
                    key = record_text([picked[i] for i in key_positions])
                    prefix = key_prefix(int_key, key)
                    batch.append((prefix, key, digest, off))
                else:
                    prefix = prefix20(digest)
                    batch.append((prefix, b"", digest, off))
                h = hash64(digest)
                acc = sums.get(prefix)
                if acc is None:
                    sums[prefix] = [1, h]
                else:
                    acc[0] += 1
                    acc[1] += h
                if len(batch) >= 50_000:
                    db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?)", batch)
                    batch = []
                off += len(raw)
    db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?)", batch)
    db.commit()
    db.close()
    return sums


PARALLEL_BYTES = 16 << 20   # dumps larger than this are indexed by several processes


def _key_span(dump: Path, ranges: list[tuple[int, int]], shape: Shape) -> tuple[int, int, int]:
    """(lowest key, width, rows) of an integer key: buckets are ranges of ``width`` keys from
    the lowest, about ROWS_PER_BUCKET rows each when the keys are dense (a serial key), so a
    differing bucket is read again by an index range scan."""
    assert shape.key is not None
    column = shape.positions[shape.key_positions[0]]
    low, high, rows = None, None, 0
    with dump.open("rb") as f:
        for start, end in ranges:
            f.seek(start)
            at = start
            while at < end:
                line = f.readline()
                at += len(line)
                value = int(line.split(b"\t", column + 1)[column])
                low = value if low is None or value < low else low
                high = value if high is None or value > high else high
                rows += 1
    if low is None or high is None:
        return 0, 1, 0
    buckets = max(1, min(1 << 16, -(-rows // ROWS_PER_BUCKET)))
    return low, max(1, -(-(high - low + 1) // buckets)), rows


def _run_parts(dump: Path, pieces: list[list[tuple[int, int]]], shape: Shape,
               parts: list[str], lo: int, width: int) -> list[dict[int, list[int]]]:
    """``_index_part`` of each piece in its own Python process (``python -c``, not
    multiprocessing: that would run the console's ``__main__`` again in each child), killed if
    the parent fails; their sums."""
    jobs = []
    try:
        for piece, part in zip(pieces, parts, strict=True):
            spec = {"dump": str(dump), "ranges": piece, "part": part, "lo": lo, "width": width,
                    "shape": [shape.table, list(shape.columns), shape.key and list(shape.key),
                              list(shape.key_types), list(shape.positions), shape.key_kind]}
            job = subprocess.Popen(
                [sys.executable, "-c", "from app.rowdiff import _part_main; _part_main()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert job.stdin is not None
            job.stdin.write(json.dumps(spec).encode())
            job.stdin.close()
            jobs.append(job)
        out = []
        for job in jobs:
            assert job.stdout is not None and job.stderr is not None
            stdout, stderr = job.stdout.read(), job.stderr.read()
            job.wait()
            if job.returncode != 0:
                raise ValueError("indexing a part of the dump failed: "
                                 + stderr.decode(errors="replace").strip()[-500:])
            out.append({int(p): v for p, v in json.loads(stdout).items()})
        return out
    finally:
        for job in jobs:
            if job.poll() is None:
                job.kill()
                job.wait()


def _part_main() -> None:
    """A child of ``_run_parts``: the spec on stdin, the sums as JSON on stdout."""
    spec = json.loads(sys.stdin.read())
    table, columns, key, key_types, positions, kind = spec["shape"]
    shape = Shape(table, tuple(columns), tuple(key) if key else None, tuple(key_types),
                  tuple(positions), kind)
    sums = _index_part(spec["dump"], [tuple(r) for r in spec["ranges"]], shape, spec["part"],
                       spec["lo"], spec["width"])
    sys.stdout.write(json.dumps(sums))


def build_index(dump: Path, shape: Shape, target: Path) -> None:
    """Read the dump once and write the index (an SQLite file) atomically to ``target``: per
    row its key, row md5, bucket prefix and offset in the dump; per bucket the count and the
    sum of 64-bit row hashes. A large dump is cut at line boundaries and indexed by one process
    per core (the work is Python's, one core each)."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".build-", suffix=".sqlite")
    os.close(fd)
    parts: list[str] = []
    try:
        ranges = _block_ranges(dump, shape.table)
        size = sum(e - s for s, e in ranges)
        workers = min(os.cpu_count() or 1, 4) if size > PARALLEL_BYTES else 1
        lo, width, _rows = _key_span(dump, ranges, shape) if shape.int_key else (0, 1, 0)
        sums: dict[int, list[int]] = {}
        if workers == 1:
            sums = _index_part(str(dump), ranges, shape, tmp, lo, width)
        else:
            pieces = _split(dump, ranges, workers)
            for _ in pieces:
                pfd, part = tempfile.mkstemp(dir=target.parent, prefix=".part-",
                                             suffix=".sqlite")
                os.close(pfd)
                parts.append(part)
            for part_sums in _run_parts(dump, pieces, shape, parts, lo, width):
                for prefix, (n, h) in part_sums.items():
                    acc = sums.setdefault(prefix, [0, 0])
                    acc[0] += n
                    acc[1] += h
        db = sqlite3.connect(tmp)
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.execute("CREATE TABLE IF NOT EXISTS rows (p INTEGER, k BLOB, h BLOB, off INTEGER)")
        for part in parts:
            db.execute("ATTACH DATABASE ? AS part", (part,))
            db.execute("INSERT INTO rows SELECT * FROM part.rows")
            db.commit()
            db.execute("DETACH DATABASE part")
        total = sum(n for n, _ in sums.values())
        nhex = nhex_for(total)
        int_key = shape.int_key
        shift = PREFIX_BITS - 4 * nhex
        buckets: dict[int, list[int]] = {}
        for prefix, (n, h) in sums.items():
            acc = buckets.setdefault(prefix if int_key else prefix >> shift, [0, 0])
            acc[0] += n
            acc[1] += h
        db.execute(f"CREATE INDEX rows_b ON rows ({bucket_expr(int_key, nhex)})")
        db.execute("CREATE TABLE buckets (b INTEGER PRIMARY KEY, n INTEGER, s TEXT)")
        db.executemany("INSERT INTO buckets VALUES (?, ?, ?)",
                       [(b, n, str(h)) for b, (n, h) in buckets.items()])
        db.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT)")
        db.executemany("INSERT INTO meta VALUES (?, ?)",
                       [("format", str(FORMAT)), ("rows", str(total)), ("nhex", str(nhex)),
                        ("int_key", "1" if int_key else ""), ("lo", str(lo)),
                        ("width", str(width)),
                        ("shape", json.dumps([shape.columns, shape.key]))])
        db.commit()
        db.close()
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    finally:
        for leftover in [tmp, *parts]:
            if os.path.exists(leftover):
                os.unlink(leftover)


@dataclass
class BackupIndex:
    path: Path
    rows: int
    nhex: int
    buckets: dict[int, tuple[int, int]]    # bucket -> (count, sum of hash64)
    int_key: bool = False
    lo: int = 0          # integer keys: bucket = (key - lo) / width
    width: int = 1

    def bucket_sql(self, shape: Shape) -> str:
        return shape.bucket_sql(self.nhex, self.lo, self.width)

    @property
    def total(self) -> int:
        """How many buckets there are."""
        if self.int_key:
            return len(self.buckets)
        return 16 ** self.nhex

    @classmethod
    def open(cls, path: Path) -> BackupIndex:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            meta = dict(db.execute("SELECT k, v FROM meta"))
            if meta.get("format") != str(FORMAT):
                raise ValueError("an index of another format")
            buckets = {int(b): (int(n), int(s)) for b, n, s in
                       db.execute("SELECT b, n, s FROM buckets")}
        finally:
            db.close()
        return cls(path, int(meta["rows"]), int(meta["nhex"]), buckets, bool(meta["int_key"]),
                   int(meta["lo"]), int(meta["width"]))

    def rows_in(self, buckets: Iterable[int]) -> list[tuple[bytes, bytes, int]]:
        """(key, row md5, dump offset) of the backup's rows in these buckets."""
        expr = bucket_expr(self.int_key, self.nhex)
        wanted = sorted(set(buckets))
        out: list[tuple[bytes, bytes, int]] = []
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            for i in range(0, len(wanted), 500):
                chunk = wanted[i:i + 500]
                out += [(bytes(k), bytes(h), int(o)) for k, h, o in db.execute(
                    f"SELECT k, h, off FROM rows WHERE {expr} IN "
                    f"({','.join('?' * len(chunk))})", chunk)]
        finally:
            db.close()
        return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_sha(path: Path, cache_dir: Path) -> str:
    """The dump's sha256, remembered by (size, mtime) so a 2 GB dump is not hashed on every
    assessment; a dump that changes gets a new hash, hence a new index."""
    st = path.stat()
    memo = cache_dir / "sha256.json"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    stamp = f"{st.st_size}:{st.st_mtime_ns}"
    entry = known.get(path.name)
    if isinstance(entry, list) and entry[0] == stamp:
        return str(entry[1])
    sha = _sha256(path)
    known[path.name] = [stamp, sha]
    try:
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".sha-")
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(known))
        os.replace(tmp, memo)
    except OSError:
        pass
    return sha


def cache_dir_for(set_dir: Path) -> Path:
    """``<set>/.rowindex``, or a folder under the state directory when the set is read-only."""
    here = set_dir / ".rowindex"
    try:
        here.mkdir(mode=0o700, exist_ok=True)
        if os.access(here, os.W_OK):
            return here
    except OSError:
        pass
    from app.paths import state_dir

    tag = hashlib.sha256(str(set_dir.resolve()).encode()).hexdigest()[:16]
    there = state_dir() / "rowindex" / f"{set_dir.name}-{tag}"
    there.mkdir(parents=True, exist_ok=True, mode=0o700)
    return there


def index_for(set_dir: Path, dump: Path, shape: Shape) -> tuple[BackupIndex, bool]:
    """The dump's index for ``shape`` (built now if not cached); True when it was built."""
    from app.rollback.backupset import file_part

    cache = cache_dir_for(set_dir)
    sha = _file_sha(dump, cache)
    path = cache / f"{file_part(shape.table)}.{sha[:16]}.{shape.digest}.sqlite"
    built = False
    if not path.is_file():
        build_index(dump, shape, path)
        built = True
    try:
        return BackupIndex.open(path), built
    except (sqlite3.Error, KeyError, ValueError):
        path.unlink(missing_ok=True)   # a broken cache file: build it again
        build_index(dump, shape, path)
        return BackupIndex.open(path), True


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
