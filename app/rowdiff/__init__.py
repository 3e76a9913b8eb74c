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

from app.rowdiff.compare import RowDiff, compare, prebuild
from app.rowdiff.dumpfile import dump_columns, dump_rows, dump_table
from app.rowdiff.index import BackupIndex, build_index, index_for
from app.rowdiff.record import (
    ROWS_PER_BUCKET,
    copy_fields,
    key_range,
    nhex_for,
    parse_record,
    record_text,
    tdiv,
)
from app.rowdiff.shape import Shape, shape_for

__all__ = [
    "ROWS_PER_BUCKET",
    "BackupIndex",
    "RowDiff",
    "Shape",
    "build_index",
    "compare",
    "copy_fields",
    "dump_columns",
    "dump_rows",
    "dump_table",
    "index_for",
    "key_range",
    "nhex_for",
    "parse_record",
    "prebuild",
    "record_text",
    "shape_for",
    "tdiv",
]
