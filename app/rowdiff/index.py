"""The backup's side: an index of the dump's rows, built once (streamed, in parallel for a
large dump) and cached next to the set, named by the dump's sha256."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from app.backups.tools import die_with_parent
from app.paths import file_part
from app.rowdiff.dumpfile import block_ranges, split_ranges
from app.rowdiff.record import (
    FORMAT,
    PREFIX_BITS,
    ROWS_PER_BUCKET,
    bucket_expr,
    copy_fields,
    hash64,
    key_prefix,
    nhex_for,
    prefix20,
    record_text,
    tdiv,
)
from app.rowdiff.shape import (
    Shape,
)

# --- the backup's side: an index built from the dump ---------------------------------------------

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
                [sys.executable, "-c", "from app.rowdiff.index import _part_main; _part_main()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                preexec_fn=die_with_parent())   # a console killed -9 takes its indexers along
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


def _write_index(tmp: str, parts: list[str], sums: dict[int, list[int]], shape: Shape,
                 lo: int, width: int) -> None:
    """The rows of every part in one SQLite file, with the per-bucket sums and the meta data."""
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
        ranges = block_ranges(dump, shape.table)
        size = sum(e - s for s, e in ranges)
        workers = min(os.cpu_count() or 1, 4) if size > PARALLEL_BYTES else 1
        lo, width, _rows = _key_span(dump, ranges, shape) if shape.int_key else (0, 1, 0)
        sums: dict[int, list[int]] = {}
        if workers == 1:
            sums = _index_part(str(dump), ranges, shape, tmp, lo, width)
        else:
            pieces = split_ranges(dump, ranges, workers)
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
        _write_index(tmp, parts, sums, shape, lo, width)
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
        db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)   # % in names
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
        db = sqlite3.connect(f"file:{quote(str(self.path))}?mode=ro", uri=True)
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
