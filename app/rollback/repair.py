"""The repair: undo what the migration did to the rows, keep what users wrote after it.

Three states of each table, matched by its key (primary key, else a unique key over NOT NULL
columns; a table with neither is refused):

- **before** (A): the source the run restores from: a backup set, or a point in time captured
  as one (``--at``): the rows before the migration;
- **after** (B): with a second point in time (``--after``: the moment right after the
  migration committed), the rows as the migration left them; without it (a dump only) the
  console cannot tell the migration's writes from the users', and the operator names the
  classes of damage (``--damage``: deleted rows, columns set to NULL, columns set to one
  common value) that are put back;
- **live** (L): the table now.

With both moments, a row the migration touched (A ≠ B) is put back to A when nobody touched it
since (L = B): re-inserted (deleted by the migration), reverted (changed by it) or deleted
(inserted by it). When users touched it too (L ≠ B), it is a **conflict**: kept as the user left
it (the default), taken back to A, or kept and exported, as the operator chose per run. Rows the
migration did not touch are never written.

The moments are loaded into temporary tables of the repair's own session (COPY from the sets'
dumps); the plan is one statement per class; the repair is ONE transaction, in batches under
``lock_timeout`` (row locks only: the table stays online, nothing is rewritten), with user
triggers off (``session_replication_role = replica``, a superuser's right) unless asked, every
foreign key on the tables checked before COMMIT. Every guard re-checks the row: a row a user
changed between the plan and the repair is left alone and counted. The plan's rows (key,
class, expected row hash) are written to the incident folder and ``validate`` reads them back
row by row.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from app import faults
from app.backups.backupset import BackupSet
from app.backups.tools import private_dir
from app.catalog import qualified, quote_ident
from app.errors import BadInput
from app.rollback.state import StepState
from app.rowdiff import dump_columns
from app.rowdiff.shape import table_key

CONFLICT_CHOICES = ("keep", "take", "export")
DAMAGE_CLASSES = ("deleted", "nulled", "common", "inserted")   # and common:<column>
BATCH = 5000
COMMON_MIN = 10          # a value set on at least this many changed rows is "one common value"

# what each class does, in the gate's words
ACTIONS = {"reinsert": "re-insert", "revert": "revert", "delete": "delete",
           "conflict": "conflicts", "already": "already as before the migration"}


@dataclass
class RepairState(StepState):
    """What the repair's steps find and do (journaled; a resumed run reads it back)."""

    planned: dict[str, dict[str, int]] | None = None     # table -> class -> rows
    kept_user_rows: dict[str, int] | None = None          # rows users wrote after, kept
    applied: dict[str, dict[str, int]] | None = None      # table -> class -> rows written
    plan_files: dict[str, str] | None = None              # table -> the plan's CSV
    triggers: str | None = None                           # "off" | "fire"


@dataclass
class Moments:
    """The two states a repair compares the live table with."""

    before: BackupSet
    after: BackupSet | None = None            # None: dump mode (``damage`` classes)
    damage: tuple[str, ...] = ()
    conflicts: str = "keep"
    fire_triggers: bool = False


@dataclass
class TablePlan:
    table: str
    key: tuple[str, ...]
    columns: tuple[str, ...]           # the dump's columns (the live table has them all)
    counts: dict[str, int] = field(default_factory=dict)
    kept_user_rows: int = 0
    common: dict[str, str] = field(default_factory=dict)   # dump mode: column -> the value
    conflicts_sample: list[tuple[str, str, str]] = field(default_factory=list)
    trigger_columns: tuple[str, ...] = ()   # columns a BEFORE UPDATE trigger may rewrite

    @property
    def touched(self) -> int:
        return sum(n for k, n in self.counts.items() if k in ("reinsert", "revert", "delete"))


def _q(cols: Sequence[str], alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + quote_ident(c) for c in cols)


def _row(cols: Sequence[str], alias: str) -> str:
    return f"md5(ROW({_q(cols, alias)})::text)"


def _on(key: Sequence[str], left: str, right: str) -> str:
    return " AND ".join(f"{left}.{quote_ident(k)} = {right}.{quote_ident(k)}" for k in key)


def _tmp(table: str, what: str) -> str:
    """A temporary table's name for ``table``'s ``what`` (a/b/plan), unique per table."""
    return f"rc_{what}_{hashlib.md5(table.encode()).hexdigest()[:10]}"


async def shape(conn: asyncpg.Connection, table: str, before: BackupSet,
                after: BackupSet | None) -> TablePlan:
    """The key and the columns compared; refused (BadInput) for a table the repair cannot
    match row by row."""
    if await conn.fetchval("SELECT to_regclass($1)", qualified(table)) is None:
        raise BadInput(f"{table} does not exist on the target: a repair puts rows back into a "
                       "table; a dropped table needs Type 1 first")
    found = await table_key(conn, table)
    if found is None:
        raise BadInput(f"{table} has no primary key and no unique key over NOT NULL columns: "
                       "its rows cannot be matched between the moments, so the repair cannot "
                       "tell which row the migration changed. Use Type 2 (it replaces the "
                       "table's rows; later writes are exported first)")
    if await conn.fetchval("SELECT relkind = 'p' FROM pg_class WHERE oid = $1::regclass",
                           qualified(table)):
        raise BadInput(f"{table} is partitioned: the repair does not handle partitioned "
                       "tables yet; use Type 2")
    _kind, key, _types = found
    columns: tuple[str, ...] | None = None
    for moment in (before, after):
        if moment is None:
            continue
        path = moment.table_path(table)
        if not path.is_file():
            raise BadInput(f"{moment.id} holds no rows of {table} ({path.name})")
        cols = tuple(dump_columns(path, table) or ())
        if columns is not None and cols != columns:
            raise BadInput(f"{table} has other columns after the migration than before it "
                           f"({', '.join(cols)} vs {', '.join(columns)}): the migration "
                           "changed the schema; run Type 1 first, then the repair")
        columns = cols
    assert columns is not None
    live = {r["a"] for r in await conn.fetch(
        "SELECT attname::text AS a FROM pg_attribute WHERE attrelid = $1::regclass "
        "AND attnum > 0 AND NOT attisdropped AND attgenerated = ''", qualified(table))}
    missing = [c for c in columns if c not in live]
    if missing:
        raise BadInput(f"{table} lacks {', '.join(missing)} now (the migration dropped it?): "
                       "run Type 1 first, then the repair")
    if any(k not in columns for k in key):
        raise BadInput(f"the key of {table} ({', '.join(key)}) is not in its dump")
    return TablePlan(table, tuple(key), columns)


async def _load(conn: asyncpg.Connection, plan: TablePlan, moment: BackupSet,
                name: str) -> int:
    """``moment``'s rows of the table into the temporary table ``name`` (the dump's
    columns, typed as the live table's)."""
    await conn.execute(f"DROP TABLE IF EXISTS {name}")
    await conn.execute(f"CREATE TEMP TABLE {name} AS SELECT {_q(plan.columns)} FROM "
                       f"{qualified(plan.table)} WITH NO DATA")

    async def rows() -> AsyncIterator[bytes]:
        async for chunk in moment.table_rows(plan.table):
            yield chunk

    await conn.copy_to_table(name, source=rows(), columns=list(plan.columns), format="text")
    await conn.execute(f"CREATE INDEX ON {name} ({_q(plan.key)})")
    await conn.execute(f"ANALYZE {name}")
    return int(await conn.fetchval(f"SELECT count(*) FROM {name}"))


async def classify(conn: asyncpg.Connection, plan: TablePlan, m: Moments) -> TablePlan:
    """Load the moments and put every row that differs into the plan table with its class.
    Runs in the caller's session (temporary tables); writes nothing else."""
    a, b, p = _tmp(plan.table, "a"), _tmp(plan.table, "b"), _tmp(plan.table, "plan")
    t = qualified(plan.table)
    k = plan.key
    await _load(conn, plan, m.before, a)
    await conn.execute(f"DROP TABLE IF EXISTS {p}")
    if m.after is not None:
        await _load(conn, plan, m.after, b)
        # every key the migration touched (A differs from B), the live row's hash beside it
        await conn.execute(f"""
            CREATE TEMP TABLE {p} AS
            WITH ab AS (
              SELECT {", ".join(f"coalesce(a.{quote_ident(c)}, b.{quote_ident(c)}) AS "
                                f"{quote_ident(c)}" for c in k)},
                     CASE WHEN a.{quote_ident(k[0])} IS NULL THEN NULL
                          ELSE {_row(plan.columns, "a")} END AS ar,
                     CASE WHEN b.{quote_ident(k[0])} IS NULL THEN NULL
                          ELSE {_row(plan.columns, "b")} END AS br
              FROM {a} a FULL JOIN {b} b ON {_on(k, "a", "b")})
            SELECT ab.*, CASE WHEN l.{quote_ident(k[0])} IS NULL THEN NULL
                              ELSE {_row(plan.columns, "l")} END AS lr,
                   NULL::text AS cols
            FROM ab LEFT JOIN {t} l ON {_on(k, "l", "ab")}
            WHERE ab.ar IS DISTINCT FROM ab.br""")
        await conn.execute(f"""
            ALTER TABLE {p} ADD COLUMN action text;
            UPDATE {p} SET action = CASE
              WHEN lr IS NOT DISTINCT FROM ar THEN 'already'
              WHEN lr IS NOT DISTINCT FROM br THEN
                CASE WHEN br IS NULL THEN 'reinsert' WHEN ar IS NULL THEN 'delete'
                     ELSE 'revert' END
              ELSE 'conflict' END""")
        plan.kept_user_rows = int(await conn.fetchval(f"""
            SELECT count(*) FROM {t} l FULL JOIN {b} b ON {_on(k, "l", "b")}
            WHERE (CASE WHEN l.{quote_ident(k[0])} IS NULL THEN NULL
                        ELSE {_row(plan.columns, "l")} END) IS DISTINCT FROM
                  (CASE WHEN b.{quote_ident(k[0])} IS NULL THEN NULL
                        ELSE {_row(plan.columns, "b")} END)
              AND NOT EXISTS (SELECT 1 FROM {p} x WHERE {_on(k, "x", "l")}
                              OR {_on(k, "x", "b")})"""))
    else:
        await _classify_dump(conn, plan, m, a, p)
    await conn.execute(f"CREATE INDEX ON {p} ({_q(k)})")
    await conn.execute(f"ALTER TABLE {p} ADD COLUMN batch int")
    await conn.execute(f"UPDATE {p} x SET batch = n.r / {BATCH} FROM (SELECT ctid AS id, "
                       f"row_number() OVER () AS r FROM {p}) n WHERE x.ctid = n.id")
    plan.counts = {r["action"]: int(r["n"]) for r in await conn.fetch(
        f"SELECT action, count(*) AS n FROM {p} GROUP BY 1")}
    plan.trigger_columns = await _trigger_columns(conn, plan.table, plan.columns)
    if plan.counts.get("conflict"):
        rows = await conn.fetch(f"""
            SELECT ROW({_q(k, "x")})::text AS k, to_jsonb(a) AS before, to_jsonb(l) AS now
            FROM {p} x LEFT JOIN {a} a ON {_on(k, "a", "x")}
            LEFT JOIN {t} l ON {_on(k, "l", "x")}
            WHERE x.action = 'conflict' ORDER BY 1 LIMIT 5""")
        plan.conflicts_sample = [(str(r["k"]), *_versions(r["before"], r["now"],
                                                          plan.columns)) for r in rows]
    return plan


def _versions(before: str | None, now: str | None, columns: Sequence[str]) -> tuple[str, str]:
    """A conflict's two versions, as the columns where they differ (both versions whole
    when one of them is no row)."""
    import json

    a = json.loads(before) if before else None
    b = json.loads(now) if now else None

    def shown(row: dict[str, Any] | None, cols: Sequence[str]) -> str:
        if row is None:
            return "(no row)"
        return ", ".join(f"{c}={str(row.get(c))[:40]!r}" for c in cols)

    if a is None or b is None:
        return shown(a, columns), shown(b, columns)
    differ = [c for c in columns if a.get(c) != b.get(c)] or list(columns)
    return shown(a, differ), shown(b, differ)


async def _classify_dump(conn: asyncpg.Connection, plan: TablePlan, m: Moments, a: str,
                         p: str) -> None:
    """Dump mode: the differences between the dump (A) and the live rows (L), by class; the
    operator's ``damage`` classes are put back, the others left (as 'conflict': not the
    repair's to decide)."""
    t = qualified(plan.table)
    k = plan.key
    value_cols = [c for c in plan.columns if c not in k]
    await conn.execute(f"""
        CREATE TEMP TABLE {p} AS
        SELECT {", ".join(f"coalesce(a.{quote_ident(c)}, l.{quote_ident(c)}) AS "
                          f"{quote_ident(c)}" for c in k)},
               CASE WHEN a.{quote_ident(k[0])} IS NULL THEN NULL
                    ELSE {_row(plan.columns, "a")} END AS ar,
               NULL::text AS br,
               CASE WHEN l.{quote_ident(k[0])} IS NULL THEN NULL
                    ELSE {_row(plan.columns, "l")} END AS lr,
               NULL::text AS cols, NULL::text AS action
        FROM {a} a FULL JOIN {t} l ON {_on(k, "a", "l")}
        WHERE (CASE WHEN a.{quote_ident(k[0])} IS NULL THEN NULL
                    ELSE {_row(plan.columns, "a")} END) IS DISTINCT FROM
              (CASE WHEN l.{quote_ident(k[0])} IS NULL THEN NULL
                    ELSE {_row(plan.columns, "l")} END)""")
    await conn.execute(f"CREATE INDEX ON {p} ({_q(k)})")
    # one common value per column: set on many changed rows that held something else before
    for c in value_cols:
        found = await conn.fetchrow(f"""
            SELECT l.{quote_ident(c)}::text AS v, count(*) AS n FROM {p} x
            JOIN {a} a ON {_on(k, "a", "x")} JOIN {t} l ON {_on(k, "l", "x")}
            WHERE a.{quote_ident(c)} IS DISTINCT FROM l.{quote_ident(c)}
              AND l.{quote_ident(c)} IS NOT NULL
            GROUP BY 1 HAVING count(*) >= {COMMON_MIN} ORDER BY 2 DESC LIMIT 1""")
        if found is not None:
            plan.common[c] = str(found["v"])
    # the columns each changed row would get back: NULLed ones, and common-valued ones
    damaged = []
    for c in value_cols:
        conds = []
        if "nulled" in m.damage:
            conds.append(f"(l.{quote_ident(c)} IS NULL AND a.{quote_ident(c)} IS NOT NULL)")
        if c in plan.common and ("common" in m.damage or f"common:{c}" in m.damage):
            conds.append(f"(l.{quote_ident(c)}::text = {_lit(plan.common[c])} AND "
                         f"a.{quote_ident(c)} IS DISTINCT FROM l.{quote_ident(c)})")
        if conds:
            damaged.append(f"CASE WHEN {' OR '.join(conds)} THEN {_lit(c)} END")
    cols_expr = f"concat_ws(',', {', '.join(damaged)})" if damaged else "NULL"
    await conn.execute(f"""
        UPDATE {p} x SET cols = nullif({cols_expr}, '')
        FROM {a} a, {t} l WHERE {_on(k, "a", "x")} AND {_on(k, "l", "x")}""")
    deleted = "'reinsert'" if "deleted" in m.damage else "'conflict'"
    inserted = "'delete'" if "inserted" in m.damage else "'conflict'"
    await conn.execute(f"""
        UPDATE {p} SET action = CASE
          WHEN lr IS NULL THEN {deleted}
          WHEN ar IS NULL THEN {inserted}
          WHEN cols IS NOT NULL THEN 'revert'
          ELSE 'conflict' END""")


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def _trigger_columns(conn: asyncpg.Connection, table: str,
                           columns: Sequence[str]) -> tuple[str, ...]:
    """Columns a BEFORE UPDATE row trigger of the table probably rewrites (updated_at and
    the like): compared loosely when the repair lets triggers fire."""
    has = await conn.fetchval(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal "
        "AND (tgtype & 1) = 1 AND (tgtype & 2) = 2 AND (tgtype & 16) = 16", qualified(table))
    if not has:
        return ()
    return tuple(c for c in columns if c in ("updated_at", "modified_at", "updated_on",
                                            "last_modified", "changed_at"))


def plan_lines(plans: Sequence[TablePlan], m: Moments, triggers: str) -> list[str]:
    """The gate's blast radius: per table, what is re-inserted, reverted, deleted, the
    conflicts and their resolution, and the users' rows kept."""
    lines = []
    for tp in plans:
        c = tp.counts
        lines.append(
            f"!{tp.table}: re-insert {c.get('reinsert', 0):,} rows, revert "
            f"{c.get('revert', 0):,}, delete {c.get('delete', 0):,}; conflicts "
            f"{c.get('conflict', 0):,} ({_resolution(m)})")
        if m.after is not None:
            kept = tp.kept_user_rows + (c.get("conflict", 0) if m.conflicts != "take" else 0)
            lines.append(f"{tp.table}: rows written after the migration that are kept: "
                         f"{kept:,}")
        else:
            lines.append(f"{tp.table}: no moment after the migration: the classes chosen "
                         f"({', '.join(m.damage) or 'none'}) are taken as the migration's "
                         "damage; the console cannot tell them from users' edits"
                         + ("; one common value per column: " + ", ".join(
                             f"{c} = {_lit(v)}" for c, v in tp.common.items())
                            + " (--damage common:COLUMN for the migration's only)"
                            if tp.common else ""))
        if c.get("already"):
            lines.append(f"{tp.table}: {c['already']:,} rows the migration touched are "
                         "already as before it (left alone)")
        for key, before, now in tp.conflicts_sample:
            lines.append(f"{tp.table}: conflict {key}: before the migration {before} / "
                         f"now {now}")
    lines.append("triggers: " + ("off for the repair (session_replication_role = replica); "
                                 "every foreign key is checked before COMMIT"
                                 if triggers == "off" else
                                 "fire (user triggers run for every row the repair writes)"))
    return lines


def _resolution(m: Moments) -> str:
    return {"keep": "kept as the users left them", "take": "taken back to before the "
            "migration", "export": "kept as the users left them, both versions exported"}[
        m.conflicts]


async def can_disable_triggers(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))


def applies(m: Moments) -> tuple[str, ...]:
    """The classes the repair writes (conflicts only when taken back)."""
    return ("reinsert", "revert", "delete") + (("conflict",) if m.conflicts == "take" else ())


async def snapshot(conn: asyncpg.Connection, plan: TablePlan, m: Moments, folder: Path,
                   loose: Sequence[str] = ()) -> Path:
    """The live rows the repair will touch, as CSV (so the repair itself can be undone), and
    the plan the validation reads back: per key, its class and the hash of the row expected
    after the repair (empty: no row), over the columns compared (``loose``, columns a
    trigger rewrites when triggers fire, left out; listed in ``<plan>.columns``)."""
    private_dir(folder)
    a, p, t = _tmp(plan.table, "a"), _tmp(plan.table, "plan"), qualified(plan.table)
    k = plan.key
    name = plan.table.replace("/", "_")
    touched = folder / f"repair-rows-before-{name}.csv"
    with touched.open("wb") as out:
        await conn.copy_from_query(
            f"SELECT l.* FROM {t} l JOIN {p} x ON {_on(k, 'l', 'x')} "
            f"WHERE x.action = ANY($1::text[])", list(applies(m)), output=out,
            format="csv", header=True)
    touched.chmod(0o600)
    take = m.conflicts == "take"
    to_before = "x.action IN ('reinsert', 'revert')" + (
        " OR (x.action = 'conflict' AND x.ar IS NOT NULL)" if take else "")
    gone = "x.action = 'delete'" + (" OR (x.action = 'conflict' AND x.ar IS NULL)"
                                    if take else "")
    strict = [c for c in plan.columns if c not in loose]
    fields = ", ".join(
        f"CASE WHEN x.cols IS NULL OR {_lit(c)} = ANY(string_to_array(x.cols, ',')) "
        f"THEN a.{quote_ident(c)} ELSE l.{quote_ident(c)} END" for c in strict)
    plan_file = folder / f"repair-plan-{name}.csv"
    with plan_file.open("wb") as out:
        await conn.copy_from_query(
            f"SELECT ROW({_q(k, 'x')})::text AS key, x.action, CASE "
            f"WHEN {gone} THEN NULL "
            f"WHEN {to_before} THEN md5(ROW({fields})::text) "
            f"WHEN l.{quote_ident(k[0])} IS NULL THEN NULL "
            f"ELSE md5(ROW({_q(strict, 'l')})::text) END AS expected, x.cols "
            f"FROM {p} x LEFT JOIN {a} a ON {_on(k, 'a', 'x')} "
            f"LEFT JOIN {t} l ON {_on(k, 'l', 'x')}", output=out, format="csv", header=True)
    plan_file.chmod(0o600)
    plan_file.with_suffix(".columns").write_text("\n".join(strict) + "\n")
    if m.conflicts == "export" and plan.counts.get("conflict"):
        both = folder / f"repair-conflicts-{name}.csv"
        with both.open("wb") as out:
            await conn.copy_from_query(
                f"SELECT ROW({_q(k, 'x')})::text AS key, "
                f"ROW({_q(plan.columns, 'a')})::text AS before_migration, "
                f"ROW({_q(plan.columns, 'l')})::text AS now FROM {p} x "
                f"LEFT JOIN {a} a ON {_on(k, 'a', 'x')} "
                f"LEFT JOIN {t} l ON {_on(k, 'l', 'x')} WHERE x.action = 'conflict'",
                output=out, format="csv", header=True)
        both.chmod(0o600)
    return plan_file


async def apply(conn: asyncpg.Connection, plan: TablePlan, m: Moments,
                on_batch: Any = None) -> dict[str, int]:
    """The table's repair, in the caller's transaction, batch by batch. Each statement
    re-checks the live row against the plan (its hash), so a row changed since the plan is
    left alone (counted under ``changed_since_plan``)."""
    a, p, t = _tmp(plan.table, "a"), _tmp(plan.table, "plan"), qualified(plan.table)
    k, cols = plan.key, plan.columns
    value_cols = [c for c in cols if c not in k]
    take = m.conflicts == "take"
    live = _row(cols, "l")
    done = {"reinsert": 0, "revert": 0, "delete": 0, "conflict": 0, "changed_since_plan": 0}
    batches = int(await conn.fetchval(f"SELECT coalesce(max(batch), -1) + 1 FROM {p}"))
    identity = await conn.fetchval(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = $1::regclass "
        "AND attidentity = 'a'", qualified(plan.table))
    overriding = " OVERRIDING SYSTEM VALUE" if identity else ""
    for n in range(batches):
        # delete: rows the migration inserted (or, taken back, rows it inserted that users
        # changed since), only while they are still as planned
        acts = "('delete'" + (", 'conflict'" if take else "") + ")"
        status = await conn.execute(f"""
            DELETE FROM {t} l USING {p} x WHERE {_on(k, "l", "x")} AND x.batch = $1
              AND x.action IN {acts} AND x.ar IS NULL AND {live} = x.lr""", n)
        done["delete"] += int(status.split()[-1])
        # revert: the migration's changes put back (dump mode: the damaged columns only)
        if value_cols:
            if m.after is not None:
                sets = ", ".join(f"{quote_ident(c)} = a.{quote_ident(c)}" for c in value_cols)
            else:
                sets = ", ".join(
                    f"{quote_ident(c)} = CASE WHEN {_lit(c)} = ANY(string_to_array(x.cols, ',')) "
                    f"THEN a.{quote_ident(c)} ELSE l.{quote_ident(c)} END" for c in value_cols)
            acts = "('revert'" + (", 'conflict'" if take else "") + ")"
            status = await conn.execute(f"""
                UPDATE {t} l SET {sets} FROM {p} x, {a} a
                WHERE {_on(k, "l", "x")} AND {_on(k, "a", "x")} AND x.batch = $1
                  AND x.action IN {acts} AND x.ar IS NOT NULL AND {live} = x.lr""", n)
            done["revert"] += int(status.split()[-1])
        # re-insert: rows the migration deleted that nobody re-created since
        acts = "('reinsert'" + (", 'conflict'" if take else "") + ")"
        status = await conn.execute(f"""
            INSERT INTO {t} ({_q(cols)}){overriding}
            SELECT {_q(cols, "a")} FROM {a} a JOIN {p} x ON {_on(k, "a", "x")}
            WHERE x.batch = $1 AND x.action IN {acts} AND x.lr IS NULL
              AND NOT EXISTS (SELECT 1 FROM {t} l WHERE {_on(k, "l", "x")})""", n)
        done["reinsert"] += int(status.split()[-1])
        if on_batch is not None:
            on_batch(n + 1, batches)
    planned = {c: plan.counts.get(c, 0) for c in ("reinsert", "revert", "delete")}
    written = done["reinsert"] + done["revert"] + done["delete"]
    expected = sum(planned.values()) + (plan.counts.get("conflict", 0) if take else 0)
    done["changed_since_plan"] = max(0, expected - written)
    await _sequences(conn, plan.table)
    return done


async def _sequences(conn: asyncpg.Connection, table: str) -> None:
    """Identity and serial columns' sequences past every re-inserted key."""
    for r in await conn.fetch(
            "SELECT a.attname::text AS col, pg_get_serial_sequence($1, a.attname) AS seq "
            "FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 "
            "AND NOT a.attisdropped", qualified(table)):
        if r["seq"]:
            await conn.execute(
                f"SELECT setval($1, greatest((SELECT max({quote_ident(r['col'])}) FROM "
                f"{qualified(table)}), (SELECT last_value FROM {r['seq']})))", r["seq"])


async def orphans(conn: asyncpg.Connection, tables: Sequence[str]) -> list[str]:
    """Rows whose foreign key finds no parent, for every key on or into ``tables`` (checked
    before COMMIT: triggers, which enforce them, were off for the repair)."""
    found = []
    rows = await conn.fetch(
        "SELECT c.conname::text AS name, c.conrelid::regclass::text AS child, "
        "c.confrelid::regclass::text AS parent, "
        "ARRAY(SELECT attname::text FROM unnest(c.conkey) WITH ORDINALITY u(n, o) JOIN "
        "pg_attribute ON attrelid = c.conrelid AND attnum = u.n ORDER BY o) AS ccols, "
        "ARRAY(SELECT attname::text FROM unnest(c.confkey) WITH ORDINALITY u(n, o) JOIN "
        "pg_attribute ON attrelid = c.confrelid AND attnum = u.n ORDER BY o) AS pcols "
        "FROM pg_constraint c WHERE c.contype = 'f' AND (c.conrelid = ANY($1::regclass[]) "
        "OR c.confrelid = ANY($1::regclass[]))", [qualified(t) for t in tables])
    for r in rows:
        on = " AND ".join(f"p.{quote_ident(pc)} = c.{quote_ident(cc)}"
                          for cc, pc in zip(r["ccols"], r["pcols"], strict=True))
        present = " AND ".join(f"c.{quote_ident(cc)} IS NOT NULL" for cc in r["ccols"])
        n = await conn.fetchval(f"SELECT count(*) FROM {r['child']} c WHERE {present} AND "
                                f"NOT EXISTS (SELECT 1 FROM {r['parent']} p WHERE {on})")
        if n:
            found.append(f"{n:,} rows of {r['child']} have no parent in {r['parent']} "
                         f"({r['name']})")
    return found


def read_plan(plan_file: Path) -> tuple[list[dict[str, str]], list[str]]:
    """The plan's rows and the columns its hashes cover."""
    side = plan_file.with_suffix(".columns")
    if not plan_file.is_file() or not side.is_file():
        raise BadInput(f"the repair's plan {plan_file} (or its .columns) is missing: the "
                       "result cannot be checked row by row")
    rows = list(csv.DictReader(io.StringIO(plan_file.read_text())))
    return rows, [c for c in side.read_text().split("\n") if c]


async def check_rows(conn: asyncpg.Connection, table: str, plan_file: Path,
                     ) -> tuple[int, int, list[str]]:
    """The live table against the repair's plan, row by row: (rows checked, rows as
    planned, a few keys of the others). Read-only."""
    rows, cols = read_plan(plan_file)
    key = await table_key(conn, table)
    if key is None:
        raise BadInput(f"{table} has lost its key since the repair")
    kcols = key[1]
    expected = {r["key"]: (r["expected"] or None) for r in rows}
    bad: list[str] = []
    keys = list(expected)
    for i in range(0, len(keys), BATCH):
        chunk = keys[i:i + BATCH]
        found = {r["k"]: r["h"] for r in await conn.fetch(
            f"SELECT ROW({_q(kcols, 'l')})::text AS k, md5(ROW({_q(cols, 'l')})::text) AS h "
            f"FROM {qualified(table)} l WHERE ROW({_q(kcols, 'l')})::text = ANY($1::text[])",
            chunk)}
        bad += [k for k in chunk if found.get(k) != expected[k]]
    return len(rows), len(rows) - len(bad), bad[:5]


# --- the steps of a repair run ------------------------------------------------------------------

def moments(ctx: Any) -> Moments:
    """The run's moments: its source (before) and ``--after``'s set, by the options."""
    from app.backups.backupset import resolve

    o = ctx.options
    after = resolve(ctx.cfg.target.backups_root, o.after) if o.after else None
    return Moments(ctx.backup_set, after, tuple(o.damage), o.conflicts, o.fire_triggers)


async def prerequisites(ctx: Any) -> str:
    """Both moments' dumps intact (sha256 against their manifests), from this database; every
    table matched by a key, with the same columns then and now."""
    from app.backups.backupset import check_file, check_target
    from app.rollback.steps import target_conn

    m = moments(ctx)
    async with target_conn(ctx) as conn:
        for moment in (m.before, m.after):
            if moment is None:
                continue
            await check_target(moment, conn)
            for table in ctx.options.tables:
                if check_file(moment, moment.table_path(table)) is False:
                    raise BadInput(f"{moment.table_path(table).name} in {moment.id} does not "
                                   "match its manifest (sha256 differs); nothing was changed")
        for table in ctx.options.tables:
            tp = await shape(conn, table, m.before, m.after)
            ctx.log(f"{table}: matched by {', '.join(tp.key)}; {len(tp.columns)} columns")
        ctx.state(RepairState).triggers = "fire" if m.fire_triggers or not \
            await can_disable_triggers(conn) else "off"
    return (f"before: {m.before.id}; " + (f"after: {m.after.id}" if m.after else
                                          f"no moment after; damage: {', '.join(m.damage)}"))


async def repair(ctx: Any) -> str:
    """Find what the migration did (the moments loaded into this session), save the rows it
    will touch and the plan, then the repair in ONE transaction, foreign keys checked before
    COMMIT."""
    from app.rollback.context import NeedsOperator, StepFailed
    from app.rollback.steps import target_conn

    m = moments(ctx)
    state = ctx.state(RepairState)
    folder = ctx.incident_dir / "safety"
    tables = list(ctx.options.tables)
    async with target_conn(ctx) as conn:
        plans = []
        for table in tables:
            tp = await classify(conn, await shape(conn, table, m.before, m.after), m)
            ctx.log(f"{table}: " + ", ".join(f"{ACTIONS.get(k, k)} {n:,}"
                                             for k, n in sorted(tp.counts.items())))
            plans.append(tp)
        triggers_off = state.triggers == "off"
        files = {}
        for tp in plans:
            loose = () if triggers_off else tp.trigger_columns
            files[tp.table] = str(await snapshot(conn, tp, m, folder, loose))
        state.plan_files = files
        state.planned = {tp.table: tp.counts for tp in plans}
        state.kept_user_rows = {tp.table: tp.kept_user_rows for tp in plans}
        ctx.safety_snapshot = folder
        ctx.log(f"the rows the repair touches, as they are now, and its plan: {folder}")
        await ctx.ensure_lock("repair")
        applied: dict[str, dict[str, int]] = {}
        with ctx.action("repair", tables=tables, planned=state.planned):
            try:
                async with conn.transaction():
                    await conn.execute("SET LOCAL lock_timeout = '5s'")
                    if triggers_off:
                        await conn.execute("SET LOCAL session_replication_role = replica")
                    for tp in plans:
                        applied[tp.table] = await apply(
                            conn, tp, m, lambda done, total, name=tp.table: ctx.progress(
                                done, total, "batches", name))
                        faults.point("repair:applied")   # tests: a kill inside the transaction
                    lost = await orphans(conn, tables) if triggers_off else []
                    if lost:
                        raise StepFailed("the repair would leave rows without their parent: "
                                         + "; ".join(lost) + ". Rolled back: nothing changed; "
                                         "repair the parent table too (--tables parent,child)")
            except asyncpg.LockNotAvailableError as exc:
                raise StepFailed(f"a row the repair needs is locked by another session "
                                 f"({exc}); rolled back, nothing changed; retry") from None
            except asyncpg.PostgresError as exc:
                raise NeedsOperator(f"the repair failed and was rolled back ({exc}); nothing "
                                    "changed") from None
    state.applied = applied
    late = sum(a.get("changed_since_plan", 0) for a in applied.values())
    return ("; ".join(f"{t}: re-inserted {a['reinsert']:,}, reverted {a['revert']:,}, "
                      f"deleted {a['delete']:,}" for t, a in applied.items())
            + (f"; {late:,} rows changed by users since the plan were left alone" if late
               else ""))


async def validation(ctx: Any) -> str:
    """Row by row against the plan: every row the repair wrote holds what the plan said,
    every row it left (conflicts kept) is as it was."""
    from app.rollback.context import NeedsOperator
    from app.rollback.steps import target_conn

    state = ctx.state(RepairState)
    problems = []
    summary = []
    async with target_conn(ctx) as conn:
        for table, path in (state.plan_files or {}).items():
            checked, ok, bad = await check_rows(conn, table, Path(path))
            ctx.log(f"{table}: {ok:,} of {checked:,} rows as planned")
            summary.append(f"{table} {ok:,}/{checked:,}")
            if ok != checked:
                problems.append(f"{table}: {checked - ok:,} rows are not as planned "
                                f"(e.g. {', '.join(bad)}): users may have written them since "
                                "the repair")
    if problems:
        raise NeedsOperator("; ".join(problems))
    return "rows as planned: " + ", ".join(summary)
