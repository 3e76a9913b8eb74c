"""One table's data against the backup: row by row against its data dump, else by count and
checksum against the manifest; and which differences are loss or corruption, not traffic."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from app import catalog
from app.checks.context import CheckContext
from app.checks.model import Finding, Kind
from app.checks.runner import LOCKED
from app.checks.table_scan import scan_table, timestamp_column

if TYPE_CHECKING:
    from app.rowdiff import BackupIndex, RowDiff, Shape

# A column an application keeps its rows' last write time in: a row that changed while this
# column did not was rewritten behind the app's back (a hint; the rows themselves are evidence).
TRACKING_COLUMNS = ("updated_at", "last_update", "last_updated", "modified_at", "last_modified",
                    "updated", "modified")


@dataclass
class Scan:
    """What data_integrity learned about one table."""

    info: dict[str, Any]
    findings: list[Finding]
    notes: list[str]


def tolerance(rows: int, pct: float) -> int:
    return max(1, math.ceil(rows * pct / 100))


def _deletions(table: str, deleted: int, rows: int, tol: int, critical: bool,
               sample: list[str], evidence: dict[str, Any],
               what: str = "deleted") -> Finding | None:
    """Deleted rows are data loss beyond the tolerance, and at any count in a critical table."""
    if not deleted or (deleted <= tol and not critical):
        return None
    why = ("a critical table (configured, or referenced by a foreign key): no deletion is "
           "tolerated" if critical and deleted <= tol else f"tolerance {tol}")
    keys = f"; e.g. keys {', '.join(sample[:3])}" if sample else ""
    return Finding(Kind.DATA_LOSS, f"{table}: {deleted} of {rows} rows {what} since the backup "
                   f"({why}){keys}", (table,), evidence)


class IndexPending(Exception):
    """The backup's row index of a table was not ready in time (see ``by_rows``)."""


async def by_rows(ctx: CheckContext, conn: asyncpg.Connection, table: str, dump: Path,
                   base_cols: list[tuple[Any, ...]], now_cols: list[tuple[str, str, bool]],
                   critical: bool, deadline: float) -> Scan:
    """Row-level evidence from the set's data dump of ``table``."""
    from app import rowdiff

    assert ctx.rows_from is not None
    cols = await asyncio.to_thread(rowdiff.dump_columns, dump, table)
    if cols is None:
        raise ValueError(f"{dump.name} holds no rows of {table}")
    shape = await rowdiff.shape_for(conn, table, cols, now_cols,
                                    [(str(c[0]), str(c[1]), bool(c[2])) for c in base_cols])
    index = await _row_index(ctx.rows_from.directory, table, dump, shape, deadline)
    diff = await rowdiff.compare(conn, ctx.rows_from.directory, dump, shape, cols, index)
    same_cols = bool(base_cols) and base_cols == [tuple(c) for c in now_cols]
    ctx.offer_scan(table, {"column": None, "rows": diff.changed + diff.inserted,
                           "last_write": None, "row_level": True},
                   unchanged=same_cols and diff.identical and not diff.columns_left_out)
    n = diff.backup_rows
    tol = tolerance(n, ctx.settings.row_tolerance_pct)
    rows_ev = diff.to_dict()
    info: dict[str, Any] = {
        "rows": diff.live_rows, "baseline_rows": n, "delta": diff.live_rows - n,
        "tolerance": tol, "critical": critical, "compared": "row by row",
        "checksum_match": diff.identical, "since_backup": rows_ev,
        "written_since_backup": diff.changed + diff.inserted, "last_write": None}
    evidence = {"table": table, **rows_ev}
    findings: list[Finding] = []
    notes: list[str] = []
    what = "deleted" if shape.key is not None else \
        "deleted or changed (no key to tell which)"
    lost = _deletions(table, diff.deleted, n, tol, critical, diff.sample_deleted, evidence, what)
    if lost is not None:
        findings.append(lost)
    elif diff.deleted:
        notes.append(f"{table}: {diff.deleted} rows deleted (within tolerance {tol})")
    if diff.changed:
        finding, note = _changes(table, diff, shape.columns, tol, ctx.settings.mass_change_pct,
                                 evidence)
        findings += [finding] if finding else []
        notes += [note] if note else []
    if any(f.kind in (Kind.DATA_LOSS, Kind.DATA_CORRUPTION) for f in findings):
        # damage: what the repair (Type 4) needs to be weighed against Type 2
        evidence["keyed"] = shape.key is not None
        evidence["after_migration"] = await later_writes(ctx, conn, table, diff)
    growth = diff.live_rows - n
    if growth > tol:
        findings.append(Finding(Kind.UNEXPECTED_GROWTH, f"{table} grew by {growth} rows since "
                                f"the backup (tolerance {tol}; {diff.inserted} inserted)",
                                (), evidence))
    if diff.columns_left_out:
        notes.append(f"{table}: columns not compared (dropped or retyped since the backup): "
                     + ", ".join(diff.columns_left_out))
    return Scan(info, findings, notes)


async def later_writes(ctx: CheckContext, conn: asyncpg.Connection, table: str,
                       diff: RowDiff) -> dict[str, Any]:
    """The rows users wrote to a damaged table after the migration: what a Type 2 of it would
    replace and the repair keeps (app/decision.py weighs the two).

    With the migration's time known (target.migration_at, or Supabase's migrations table) and
    an updated_at/created_at column: the rows stamped later than that time, less the rows of
    the earliest such stamp when the migration changed rows (a migration runs in one
    transaction, so every row it stamped carries one and the same now(), the first after its
    time; an update trigger stamps the rows it damaged) and that stamp holds no more rows than
    the rows changed since the backup. With the migration's time known and no such column:
    the rows inserted since the backup (keys the backup does not have; updates are then not
    counted). With its time unknown: ``rows`` is None (writes since the backup cannot be put
    before or after it), and ``inserted_since_backup`` says whether users wrote at all."""
    at, source = await ctx.migration_moment(conn)
    col = await timestamp_column(conn, table)
    out: dict[str, Any] = {"migration_at": at.isoformat() if at else None,
                           "migration_time_from": source or ("given" if at else "unknown")}
    if at is not None and col is not None:
        q = catalog.quote_ident(col)
        t = catalog.qualified(table)
        try:
            row = await catalog.one_row(
                conn, f"SELECT count(*) FILTER (WHERE {q} > $1::timestamptz) AS n, "
                      f"min({q}) FILTER (WHERE {q} > $1::timestamptz) AS first, "
                      f"max({q})::text AS last "
                      f"FROM {t}", at)
            first = row["first"]
            stamped = 0 if first is None else int((await catalog.one_row(
                conn, f"SELECT count(*) AS n FROM {t} WHERE {q} = $1", first))["n"])
        except LOCKED:
            return {**out, "rows": None, "counted": "another session's lock stopped the count"}
        n = int(row["n"])
        own = stamped if diff.changed and 0 < stamped <= diff.changed else 0
        return {**out, "rows": n - own, "basis": "after the migration", "column": col,
                "last_write": row["last"],
                "migration_stamped": own,
                "counted": f"{col} later than the migration's time"
                           + (f" ({own} rows of its own stamp left out)" if own else "")}
    if at is None:
        return {**out, "rows": None, "inserted_since_backup": diff.inserted, "column": col,
                "counted": "not counted: the migration's time is unknown (give "
                           "target.migration_at)"}
    return {**out, "rows": diff.inserted, "basis": "since the backup", "column": col,
            "counted": f"rows inserted since the backup, row by row ({table} has no "
                       "updated_at/created_at column: updates after the migration are not "
                       "counted)"}


async def _row_index(directory: Path, table: str, dump: Path, shape: Shape,
                     deadline: float) -> tuple[BackupIndex, bool]:
    """The backup's row index: read from the cache, or built from the dump once (a large dump
    takes a while: past ``deadline`` the table is judged by count and checksum this time,
    and the build goes on, so the next assessment has it)."""
    from app import rowdiff

    building = asyncio.ensure_future(asyncio.to_thread(rowdiff.index_for, directory, dump,
                                                       shape))
    try:
        async with asyncio.timeout_at(deadline):
            return await asyncio.shield(building)
    except TimeoutError:
        raise IndexPending(f"{table}: the row index of {dump.name} is still being built; "
                           "compared by count and checksum this time, row by row on the "
                           "next assessment") from None


def _changes(table: str, diff: RowDiff, columns: Sequence[str], tol: int, mass_change_pct: float,
             evidence: dict[str, Any]) -> tuple[Finding | None, str | None]:
    """Changed rows: corruption (a finding) or the app's traffic (a note). Corruption when
    any examined row changed without its tracking column moving, when a mass of the table
    changed, or, with no tracking column, beyond the row tolerance."""
    n = diff.backup_rows
    cols_text = ", ".join(f"{c} ({k})" for c, k in diff.changed_columns.items())
    tracked = next((c for c in TRACKING_COLUMNS if c in columns), None)
    unrecorded = (diff.examined - diff.changed_columns.get(tracked, 0)) if tracked else 0
    pct = diff.changed * 100 / n if n else 100.0
    keys = f"; e.g. keys {', '.join(diff.sample_changed[:3])}"
    if unrecorded:
        return Finding(
            Kind.DATA_CORRUPTION, f"{table}: {diff.changed} rows changed since the backup, "
            f"{unrecorded} of the {diff.examined} examined without their {tracked} moving "
            f"(rewritten behind the app's back); columns changed: {cols_text}{keys}",
            (table,), evidence), None
    if pct >= mass_change_pct:
        return Finding(
            Kind.DATA_CORRUPTION, f"{table}: {diff.changed} of {n} rows ({pct:.0f}%) changed "
            f"since the backup (assess.mass_change_pct = {mass_change_pct:g}); columns "
            f"changed: {cols_text}{keys}", (table,), evidence), None
    if tracked is None and diff.changed > tol:
        # nothing records the app's writes here: beyond the row tolerance, changes are
        # not taken for traffic
        return Finding(
            Kind.DATA_CORRUPTION, f"{table}: {diff.changed} of {n} rows ({pct:.0f}%) changed "
            f"since the backup, beyond the tolerance ({tol}) of a table with no updated_at "
            f"to show they were the app's writes; columns changed: {cols_text}{keys}",
            (table,), evidence), None
    return None, (f"{table}: {diff.changed} rows changed ({pct:.1f}%, under "
                  "assess.mass_change_pct" + (f", recorded in {tracked}" if tracked
                                              else f", within tolerance {tol}")
                  + f"), columns: {cols_text}")

async def by_checksum(ctx: CheckContext, conn: asyncpg.Connection, table: str,
                       then: catalog.TableContent, since: str | None,
                       base_cols: list[tuple[Any, ...]], now_cols: list[tuple[str, str, bool]],
                       critical: bool, partitioned: bool) -> Scan:
    """No data dump of ``table`` in the set: count and checksum against the manifest, and
    updated_at/created_at to tell writes from corruption (a hint, not row-level evidence)."""
    s = ctx.settings
    same_cols = base_cols == [tuple(c) for c in now_cols]
    comparable = same_cols or all(c in [tuple(n) for n in now_cols] for c in base_cols)
    rows, checksum, written = await scan_table(
        conn, table, since, None if same_cols else [str(c[0]) for c in base_cols],
        hashed=comparable)
    ctx.offer_scan(table, written, unchanged=same_cols and checksum == then.checksum)
    tol = tolerance(then.rows, s.row_tolerance_pct)
    delta = rows - then.rows
    info: dict[str, Any] = {
        "rows": rows, "baseline_rows": then.rows, "delta": delta, "tolerance": tol,
        "critical": critical, "compared": "count and checksum (no data dump of it in the set)",
        "checksum_match": checksum == then.checksum if comparable else None,
        "written_since_backup": written["rows"] if written else None,
        "last_write": written["last_write"] if written else None}
    findings: list[Finding] = []
    notes: list[str] = []
    if partitioned:
        info["compared"] = "its partitions are compared, each on its own"
        return Scan(info, findings, notes)
    evidence = {"table": table, "rows": rows, "baseline_rows": then.rows}
    lost = _deletions(table, -delta if delta < 0 else 0, then.rows, tol, critical, [], evidence)
    if lost is not None:
        findings.append(Finding(lost.kind, lost.summary.replace(" deleted since", " fewer since")
                                + " (by count: no data dump to compare rows)", lost.tables,
                                evidence))
    elif delta > tol:
        findings.append(Finding(Kind.UNEXPECTED_GROWTH, f"{table} grew by {delta} rows "
                                f"since the backup (tolerance {tol})"))
    if info["checksum_match"] is not False:
        if not comparable:
            notes.append(f"{table}: column types changed, content not comparable")
        return Scan(info, findings, notes)
    if written is None:
        notes.append(f"{table}: content changed (no data dump in the set and no updated_at to "
                     "tell writes from corruption)")
    elif written["rows"] == 0 and delta == 0:
        findings.append(Finding(
            Kind.DATA_CORRUPTION, f"{table}: values changed but no row was written since "
            "the backup (updated_at unchanged): rewritten behind the app's back",
            (table,), evidence))
    elif (then.rows and written["rows"] * 100 / then.rows >= s.mass_change_pct
          and same_cols):
        pct = written["rows"] * 100 / then.rows
        findings.append(Finding(
            Kind.DATA_CORRUPTION, f"{table}: {written['rows']} of {then.rows} rows "
            f"({pct:.0f}%) rewritten since the backup with no schema change to explain "
            f"it (assess.mass_change_pct = {s.mass_change_pct:g})", (table,), evidence))
    return Scan(info, findings, notes)
