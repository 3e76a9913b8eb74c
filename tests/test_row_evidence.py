"""Row-level evidence: the live rows against a backup's data dumps, by key, for console-made and
hand-made sets; and the one equality everything rests on: the record text Python rebuilds from
a COPY line is byte for byte PostgreSQL's ``ROW(...)::text``."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app import config as config_mod
from app import rowdiff
from app.backups.create import create_set
from app.checks import CHECKS_BY_NAME, run_assessment
from app.config import Config
from app.sandbox.server import bin_dir
from tests.conftest import DemoDb

AWKWARD = ['', ' ', 'plain', 'with "quotes"', 'back\\slash', 'comma, here', '(parens)',
           'tab\there', 'new\nline', 'carriage\rreturn', 'vertical\x0btab', 'form\x0cfeed',
           'trailing ', ' leading', '\\N', 'NULL', '"', '\\', ',', '()', 'ünïcödé ✓ 茶',
           'emoji 🍵', '{braces}', 'x' * 300, "it's", '\\\\"\\"']


def _value(rng: random.Random, pool: list[Any]) -> Any:
    return None if rng.random() < 0.15 else rng.choice(pool)


async def _awkward_table(conn: asyncpg.Connection, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    await conn.execute(
        "CREATE TABLE awkward (id int PRIMARY KEY, t text, arr text[], j jsonb, "
        "ts timestamptz, tsn timestamp, n numeric, f float8, b bytea, flag boolean, "
        "iv interval, d date, nums int[], pt point, r int4range, "
        "g text GENERATED ALWAYS AS (upper(t)) STORED)")
    stamps = ["2024-01-01 10:00:00+00", "1999-12-31 23:59:59.123456+00", "infinity",
              "2024-06-30 12:00:00.5+00"]
    for i in range(rows):
        arr = None if rng.random() < 0.2 else [_value(rng, AWKWARD)
                                                for _ in range(rng.randint(0, 4))]
        await conn.execute(
            "INSERT INTO awkward (id, t, arr, j, ts, tsn, n, f, b, flag, iv, d, nums, pt, r) "
            "VALUES ($1, $2, $3, $4::text::jsonb, $5::text::timestamptz, $6::text::timestamp, "
            "$7::text::numeric, $8::text::float8, $9, $10, $11::text::interval, $12::text::date, "
            "$13, $14::text::point, $15::text::int4range)",
            i, _value(rng, AWKWARD), arr,
            _value(rng, ['{"a": "b \\"q\\""}', '[1, 2.50, null]', '"s, (x)"', '{}',
                         '{"k": "tab\\there\\nline"}']),
            _value(rng, stamps), _value(rng, ["2024-01-01 10:00:00", "0044-03-15 12:00:00 BC"]),
            _value(rng, ["0", "-1.5000", "123456789012345678901234567890.123", "NaN"]),
            _value(rng, ["0.1", "-0", "1e308", "Infinity", "3.141592653589793"]),
            _value(rng, [b"", b"\x00\x01\\", "茶".encode(), b"\"'()"]),
            _value(rng, [True, False]),
            _value(rng, ["1 day 02:03:04", "-1 mons", "00:00:00.000001"]),
            _value(rng, ["2024-02-29", "infinity"]),
            _value(rng, [[1, 2, 3], [], [None, 4]]),
            _value(rng, ["(1,2)", "(-1.5,0)"]), _value(rng, ["[1,5)", "empty", "(,3]"]))


def _pg_dump(dsn: str, table: str, path: Path) -> Path:
    subprocess.run([str(bin_dir() / "pg_dump"), "--data-only", f"--table={table}",
                    f"--file={path}", dsn], check=True, capture_output=True)
    return path


async def test_record_text_from_a_copy_line_is_postgres_row_text(
        conn: asyncpg.Connection, demo_db: DemoDb, tmp_path: Path) -> None:
    """Property-style: 400 rows of awkward values (quotes, backslashes, commas, parens, spaces,
    tabs, newlines, empty strings, NULLs, arrays, jsonb, timestamps, numerics, bytea, unicode,
    a generated column the dump leaves out); every row's md5 rebuilt in Python from the dump
    equals the server's md5(ROW(...)::text)."""
    await _awkward_table(conn, 400, seed=14)
    dump = _pg_dump(demo_db.dsn, "public.awkward", tmp_path / "awkward.sql")
    columns = rowdiff.dump_columns(dump, "public.awkward")
    assert columns is not None and "g" not in columns   # generated: not in the dump
    row = "ROW(" + ", ".join(f"t.{c}" for c in columns) + ")"
    server = {r["id"]: r["h"] for r in await conn.fetch(
        f"SELECT id, md5({row}::text) AS h FROM awkward AS t")}
    ours = {}
    for _off, line in rowdiff.dump_rows(dump, "public.awkward"):
        fields = rowdiff.copy_fields(line)
        ours[int(fields[0] or b"")] = hashlib.md5(rowdiff.record_text(fields)).hexdigest()
    assert len(ours) == 400
    differ = [i for i in server if server[i] != ours.get(i)]
    assert differ == [], [await conn.fetchval(f"SELECT {row}::text FROM awkward t WHERE id = $1",
                                              differ[0])]


def test_copy_escapes_and_record_quoting_by_hand() -> None:
    """The rules themselves, on values a reader can check."""
    assert rowdiff.copy_fields(b"1\t\\N\ta\\tb\\\\c\t\\101\\x42") == \
        [b"1", None, b"a\tb\\c", b"AB"]
    assert rowdiff.record_text([b"1", None, b"", b'say "hi"', b"a\\b", b"x y", b"(1,2)"]) == \
        b'(1,,"","say ""hi""","a\\\\b","x y","(1,2)")'
    rng = random.Random(7)   # and back: a key's fields are read from its record text
    pool: list[bytes | None] = [None, *(a.encode() for a in AWKWARD)]
    for _ in range(500):
        fields = [rng.choice(pool) for _ in range(rng.randint(1, 4))]
        assert rowdiff.parse_record(rowdiff.record_text(fields)) == fields, fields


async def _tables(conn: asyncpg.Connection) -> None:
    await conn.execute("""
        CREATE TABLE people (id int PRIMARY KEY, name text, email text, note text,
                             updated_at timestamptz NOT NULL DEFAULT '2025-01-01');
        INSERT INTO people (id, name, email, note)
            SELECT i, 'name ' || i, 'p' || i || '@example.org', CASE WHEN i % 3 = 0 THEN
                   'note, with "quotes"' END FROM generate_series(1, 300) i;
        CREATE TABLE codes (code text NOT NULL UNIQUE, label text, qty int);
        INSERT INTO codes SELECT 'C-' || lpad(i::text, 4, '0'), 'label ' || i, i
            FROM generate_series(1, 200) i;
        CREATE TABLE bag (a text, b int);
        INSERT INTO bag SELECT 'same', i % 5 FROM generate_series(1, 100) i;
    """)


async def _damage(conn: asyncpg.Connection) -> None:
    await conn.execute("""
        DELETE FROM people WHERE id IN (7, 8);
        UPDATE people SET email = NULL, updated_at = '2026-01-01' WHERE id IN (10, 20, 30);
        INSERT INTO people (id, name) SELECT i, 'new ' || i FROM generate_series(301, 304) i;
        DELETE FROM codes WHERE code = 'C-0005';
        UPDATE codes SET label = 'relabelled' WHERE code IN ('C-0011', 'C-0012');
        INSERT INTO codes VALUES ('A-0001', 'new', 1);  -- not the highest key
        DELETE FROM bag WHERE ctid = (SELECT min(ctid) FROM bag WHERE b = 3);
        INSERT INTO bag VALUES ('other', 1), ('other', 2);
    """)


def _check_evidence(tables: dict[str, Any]) -> None:
    people = tables["public.people"]["since_backup"]
    assert (people["deleted"], people["changed"], people["inserted"]) == (2, 3, 4)
    assert people["sample_deleted"] == ["7", "8"]
    assert people["sample_changed"] == ["10", "20", "30"]
    assert people["sample_inserted"] == ["301", "302", "303", "304"]
    assert people["changed_columns"] == {"email": 3, "updated_at": 3}
    assert people["compared_by"] == "primary key (id)"
    codes = tables["public.codes"]["since_backup"]
    assert (codes["deleted"], codes["changed"], codes["inserted"]) == (1, 2, 1)
    assert codes["sample_deleted"] == ["C-0005"] and codes["sample_inserted"] == ["A-0001"]
    assert codes["sample_changed"] == ["C-0011", "C-0012"]
    assert codes["changed_columns"] == {"label": 2}
    assert codes["compared_by"] == "unique key (code)"
    bag = tables["public.bag"]["since_backup"]
    assert (bag["deleted"], bag["changed"], bag["inserted"]) == (1, 0, 2)
    assert bag["sample_deleted"] == ["same,3"]
    assert bag["sample_inserted"] == ["other,1", "other,2"]
    assert bag["compared_by"].startswith("whole rows")
    untouched = tables["public.objects"]
    assert untouched["compared"] == "row by row" and untouched["checksum_match"] is True


async def _data_integrity(cfg: Config, **kw: Any) -> dict[str, Any]:
    a = await run_assessment(cfg, checks=[CHECKS_BY_NAME["data_integrity"]], **kw)
    (result,) = a.results
    assert str(result.status) in ("pass", "warn", "fail"), result.summary
    return result.evidence


async def test_console_made_set_row_evidence(conn: asyncpg.Connection, console_config: Path,
                                             demo_db: DemoDb) -> None:
    await _tables(conn)
    cfg = config_mod.load(console_config)
    made = await create_set(cfg)

    def cached() -> list[str]:
        return sorted(p.name for p in (made.path / ".rowindex").glob("public.people.*.sqlite"))

    # the indexes can be built before anyone waits on them (right after the backup)
    dumps = {t: made.path / f"table_{t.split('.')[1]}_backup.sql"
             for t in ("public.people", "public.codes", "public.bag")}
    assert await rowdiff.prebuild(conn, made.path, dumps) == sorted(dumps)
    first = cached()
    assert len(first) == 1
    await _damage(conn)
    evidence = await _data_integrity(cfg)
    assert evidence["backup"] == made.id
    _check_evidence(evidence["tables"])
    # the index is cached next to the set, named by the dump's hash, and used again
    assert cached() == first
    again = await _data_integrity(cfg)
    _check_evidence(again["tables"])
    assert cached() == first


async def test_hand_made_set_row_evidence(conn: asyncpg.Connection, console_config: Path,
                                          demo_db: DemoDb) -> None:
    """The runbook's own set: per-table `pg_dump --data-only` files, no manifest."""
    await _tables(conn)
    cfg = config_mod.load(console_config)
    folder = cfg.target.backups_root / "production_migration_20261201"
    folder.mkdir()
    for t in ("people", "codes", "bag", "objects"):
        _pg_dump(demo_db.dsn, f"public.{t}", folder / f"table_{t}_backup.sql")
    # a set the console may not write into (root ignores a folder's mode bits, so the cache
    # folder's name is taken by a file): the index goes to the state directory
    (folder / ".rowindex").write_text("not a folder")
    await _damage(conn)
    evidence = await _data_integrity(cfg)
    assert evidence["backup"] == "production_migration_20261201"
    _check_evidence(evidence["tables"])
    assert (folder / ".rowindex").read_text() == "not a folder"
    home = Path(os.environ["ROLLBACK_CONSOLE_HOME"])
    assert list(home.glob("rowindex/production_migration_20261201-*/public.people.*.sqlite"))


async def test_changed_dump_is_indexed_again(conn: asyncpg.Connection, console_config: Path,
                                             demo_db: DemoDb) -> None:
    """The cache is named by the dump's hash: a dump replaced by another never answers from
    the first one's index."""
    await _tables(conn)
    cfg = config_mod.load(console_config)
    folder = cfg.target.backups_root / "production_migration_20261201"
    folder.mkdir()
    dump = _pg_dump(demo_db.dsn, "public.people", folder / "table_people_backup.sql")
    first = await _data_integrity(cfg)
    assert first["tables"]["public.people"]["checksum_match"] is True
    await conn.execute("DELETE FROM people WHERE id = 1")
    _pg_dump(demo_db.dsn, "public.people", dump)   # a new dump, without row 1
    await conn.execute("INSERT INTO people (id, name) VALUES (1, 'back')")
    second = (await _data_integrity(cfg))["tables"]["public.people"]["since_backup"]
    assert (second["deleted"], second["changed"], second["inserted"]) == (0, 0, 1)
    assert len(list((folder / ".rowindex").glob("public.people.*.sqlite"))) == 2


@pytest.mark.parametrize("rows", [0, 1, 5000])
def test_bucket_digits_grow_with_the_table(rows: int) -> None:
    assert 16 ** rowdiff.nhex_for(rows) * rowdiff.ROWS_PER_BUCKET >= min(rows, 16 ** 5 * 32)


async def test_a_large_dump_indexed_by_several_processes_gives_the_same_index(
        conn: asyncpg.Connection, demo_db: DemoDb, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A dump over PARALLEL_BYTES is cut at line boundaries and indexed by one process per core:
    the index is the one a single pass makes (here with the threshold at 0 bytes)."""
    await _awkward_table(conn, 300, seed=3)
    dump = _pg_dump(demo_db.dsn, "public.awkward", tmp_path / "awkward.sql")
    columns = rowdiff.dump_columns(dump, "public.awkward")
    assert columns is not None
    live = {c[0]: c for c in [(c, "", False) for c in columns]}
    shape = rowdiff.Shape("public.awkward", tuple(columns), ("id",), ("integer",),
                          tuple(range(len(live))), "primary key")
    rowdiff.build_index(dump, shape, tmp_path / "one.sqlite")
    monkeypatch.setattr(rowdiff.index, "PARALLEL_BYTES", 0)
    rowdiff.build_index(dump, shape, tmp_path / "many.sqlite")
    one = rowdiff.BackupIndex.open(tmp_path / "one.sqlite")
    many = rowdiff.BackupIndex.open(tmp_path / "many.sqlite")
    assert one.rows == many.rows == 300 and one.buckets == many.buckets
    assert sorted(one.rows_in(one.buckets)) == sorted(many.rows_in(many.buckets))


def test_integer_key_buckets_are_ranges_of_keys() -> None:
    """An integer key's bucket (key - lo) / width truncates toward zero, as PostgreSQL's and
    SQLite's `/`; each bucket is read back as a range of keys: every key falls in its own."""
    rng = random.Random(11)
    for _ in range(2000):
        lo, width = rng.randint(-1000, 1000), rng.randint(1, 700)
        key = rng.randint(-5000, 5000)
        first, end = rowdiff.key_range(rowdiff.tdiv(key - lo, width), lo, width)
        assert first <= key < end, (key, lo, width)


async def test_an_index_not_ready_in_time_falls_back_to_the_checksum(
        conn: asyncpg.Connection, console_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Building a large dump's index takes a while: past half the check's deadline the table is
    judged by count and checksum this time (the evidence says so, the check still passes), the
    build goes on, and the next assessment compares it row by row."""
    console_config.write_text(console_config.read_text() + "\n[assess]\ncheck_timeout_s = 4\n")
    cfg = config_mod.load(console_config)
    await _tables(conn)
    await create_set(cfg)
    real = rowdiff.index_for

    def slow(set_dir: Path, dump: Path, shape: rowdiff.Shape) -> Any:
        if shape.table == "public.people":
            import time
            time.sleep(3)   # a 2M-row dump, as far as the deadline can tell
        return real(set_dir, dump, shape)

    monkeypatch.setattr(rowdiff, "index_for", slow)
    first = await _data_integrity(cfg)
    people = first["tables"]["public.people"]
    assert people["compared"].startswith("count and checksum") and people["checksum_match"]
    assert any("public.people: the row index of table_people_backup.sql is still being built"
               in n for n in first["notes"])
    monkeypatch.setattr(rowdiff, "index_for", real)
    await conn.execute("DELETE FROM people WHERE id = 9")
    second = (await _data_integrity(cfg))["tables"]["public.people"]
    assert second["compared"] == "row by row"
    assert second["since_backup"]["sample_deleted"] == ["9"]
