"""COPY text to PostgreSQL's record text, the row and key hashes, and the bucket arithmetic
both sides of the comparison share."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

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
