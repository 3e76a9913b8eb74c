"""Reading a data dump's COPY blocks without loading it: which table a dump holds, its column
list, its rows with their offsets, and the byte ranges of its rows (cut into equal pieces for
parallel indexing)."""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path

from app import catalog

_COPY_START = b"COPY "


def _copy_header(line: bytes) -> tuple[tuple[str, str], list[str]] | None:
    from app.backups.copydata import _COPY, parse_name, split_identifiers

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


def dump_rows(path: Path, table: str) -> Iterator[tuple[int, bytes]]:
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


def block_ranges(path: Path, table: str) -> list[tuple[int, int]]:
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


def split_ranges(path: Path, ranges: list[tuple[int, int]],
                 parts: int) -> list[list[tuple[int, int]]]:
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
