"""Stream one table's rows out of a pg_dump script (plain SQL file, or pg_restore's output for a
custom-format archive) straight into COPY, without executing anything else in the script.

A dump's data for a table is a ``COPY schema.table (cols) FROM stdin;`` line followed by rows in
COPY text format and a ``\\.`` line. Streaming in 1 MiB chunks keeps the event loop free: a
multi-gigabyte table never sits in memory, and the screen stays responsive.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from app.catalog import SQL_IDENT

CHUNK = 1 << 20
_IDENT = SQL_IDENT.encode()   # pg_dump quotes a name only where needed
_COPY = re.compile(rb"^COPY (?P<name>" + _IDENT + rb"(?:\." + _IDENT + rb")?) "
                   rb"\((?P<cols>.*)\) FROM stdin;$")
_END = b"\\.\n"


class Reader(Protocol):
    async def read(self, n: int) -> bytes: ...


class FileReader:
    """Reads a file in a worker thread, so a slow disk never blocks the loop."""

    def __init__(self, path: Path):
        self.file: BinaryIO = path.open("rb")

    async def read(self, n: int) -> bytes:
        return await asyncio.to_thread(self.file.read, n)

    def close(self) -> None:
        self.file.close()


def split_identifiers(text: str) -> list[str]:
    """``a, "B c", "d""e"`` -> ['a', 'B c', 'd"e'] (pg_dump quotes only where needed)."""
    out: list[str] = []
    current, quoted, i = "", False, 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == '"' and text[i + 1:i + 2] == '"':
                current += '"'
                i += 1
            elif ch == '"':
                quoted = False
            else:
                current += ch
        elif ch == '"':
            quoted = True
        elif ch == ",":
            out.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1
    if current.strip():
        out.append(current.strip())
    return out


def parse_name(text: str) -> tuple[str, str]:
    """``public.media`` or ``"My Schema"."T"`` -> (schema, table); no schema means public."""
    parts, current, quoted = [], "", False
    for ch in text:
        if ch == '"':
            quoted = not quoted
            current += ch
        elif ch == "." and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    names = [split_identifiers(p)[0] for p in parts]
    return ("public", names[0]) if len(names) == 1 else (names[0], names[1])


@dataclass
class CopyHeader:
    schema: str
    table: str
    columns: list[str]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"


class CopyStream:
    """Finds the COPY block of one table in a dump stream and yields its rows' bytes."""

    def __init__(self, reader: Reader, on_bytes: Callable[[int, int], None] | None = None):
        self.reader = reader
        self.buffer = b""
        self.eof = False
        self.on_bytes = on_bytes or (lambda _b, _r: None)

    async def _fill(self) -> bool:
        if self.eof:
            return False
        chunk = await self.reader.read(CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    async def next_block(self) -> CopyHeader | None:
        """Skip to the next COPY line, of any table; None at the end of the stream. A dump of a
        partitioned table holds one block per leaf (named after the leaf, or after the root
        with ``--load-via-partition-root``)."""
        while True:
            while b"\n" not in self.buffer:
                if not await self._fill():
                    return None
            line, _, self.buffer = self.buffer.partition(b"\n")
            m = _COPY.match(line)
            if m:
                s, t = parse_name(m.group("name").decode())
                return CopyHeader(s, t, split_identifiers(m.group("cols").decode()))

    async def find(self, schema: str, table: str) -> CopyHeader | None:
        """Skip to the COPY line of ``schema.table``; None if the stream has no data for it."""
        while (header := await self.next_block()) is not None:
            if (header.schema, header.table) == (schema, table):
                return header
            await self.skip()
        return None

    async def skip(self) -> None:
        """Pass over the current block's rows (another table's), reporting no progress."""
        report, self.on_bytes = self.on_bytes, lambda _b, _r: None
        try:
            async for _ in self.rows():
                pass
        finally:
            self.on_bytes = report

    async def rows(self) -> AsyncIterator[bytes]:
        """The data after ``find``: whole lines, up to (not including) the ``\\.`` line."""
        sent = rows = 0
        while True:  # the buffer always starts at the beginning of a line here
            if self.buffer.startswith(_END):
                self.buffer = self.buffer[len(_END):]
                return
            end = self.buffer.find(b"\n" + _END)
            if end >= 0:
                data, self.buffer = self.buffer[:end + 1], self.buffer[end + 1 + len(_END):]
                if data:
                    sent += len(data)
                    rows += data.count(b"\n")
                    self.on_bytes(sent, rows)
                    yield data
                return
            cut = self.buffer.rfind(b"\n")
            if cut >= 0 and len(self.buffer) >= CHUNK // 2:
                data, self.buffer = self.buffer[:cut + 1], self.buffer[cut + 1:]
                sent += len(data)
                rows += data.count(b"\n")
                self.on_bytes(sent, rows)
                yield data
                continue
            if not await self._fill():
                raise ValueError("the dump ends inside a COPY block: the file is truncated")


async def count_rows(reader: Reader) -> dict[str, int]:
    """Rows per table (``schema.name``) in a dump: the data lines of its COPY blocks, summed
    over every block naming the table (one COPY text line is one row: newlines inside values
    are written ``\\n``). A table without a block is absent; one with an empty block is 0."""
    stream = CopyStream(reader)
    counts: dict[str, int] = {}
    while (header := await stream.next_block()) is not None:
        counts.setdefault(header.qualified, 0)
        async for data in stream.rows():
            counts[header.qualified] += data.count(b"\n")
    return counts


async def count_file_rows(path: Path) -> dict[str, int]:
    """``count_rows`` of a dump file, read in a worker thread."""
    reader = FileReader(path)
    try:
        return await count_rows(reader)
    finally:
        reader.close()
