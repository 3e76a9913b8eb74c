"""The zero-loss repair with the real CLI on a real archiving cluster: a migration deletes 5 %
of media's rows, NULLs the caption of 10 % and rewrites the mime type of 5 %, while users keep
writing (new rows, edits of damaged and undamaged rows). After `run --type repair`: every row
the migration touched and no user touched since is as before the migration; every row users
wrote after it is as they left it; the conflicts are exactly the rows both touched, resolved
as chosen; a Type 2 of the same table would have lost the users' writes (counted). With two
points in time (`--at` before, `--after` after) and with a dump only (`--damage`)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.sandbox.load import WriteLoad
from app.sandbox.manager import info_app_url, start_demo_app
from app.sandbox.server import stop_pid
from tests.helpers import CONSOLE
from tests.pitr_cluster import (
    MEDIA_COLUMNS,
    REPAIR_MIGRATION,
    REPAIR_USERS,
    PitrCluster,
    PitrDb,
    repair_expected,
    start_pitr_cluster,
)

TARGET = "tea-school-sandbox"
PHRASE = f"ROLLBACK {TARGET}"
MIGRATION, USERS = REPAIR_MIGRATION, REPAIR_USERS


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PitrCluster]:
    c = start_pitr_cluster(tmp_path_factory.mktemp("repair"), rows=600)
    yield c
    c.stop()


def _mark(db: PitrDb, label: str) -> None:
    out = db.cli("mark", "--label", label)
    assert out.returncode == 0, out.stderr


def _story(db: PitrDb) -> tuple[dict[int, Any], dict[int, Any], dict[int, Any]]:
    """(before the migration, as it left them, after the users' writes)."""
    before = db.media()
    _mark(db, "pre")
    db.execute(MIGRATION)
    after = db.media()
    _mark(db, "post")
    db.execute(USERS)
    db.cluster.switch_wal()
    return before, after, db.media()


def _expect(before: dict[int, Any], after: dict[int, Any], now: dict[int, Any],
            take: bool = False) -> tuple[dict[int, Any], set[int], int]:
    """What the repair must leave, the conflicts, and the users' writes a Type 2 loses."""
    want, conflicts, users = repair_expected(before, after, now, take)
    return want, conflicts, len([i for i in users if now.get(i) != before.get(i)])


def _same(got: dict[int, Any], want: dict[int, Any]) -> list[int]:
    return sorted(i for i in got.keys() | want.keys() if got.get(i) != want.get(i))[:10]


def test_repair_from_two_points_in_time_keeps_every_user_write(cluster: PitrCluster,
                                                                tmp_path: Path) -> None:
    db = PitrDb(cluster, tmp_path / "db", "r")
    before, after, now = _story(db)
    want, conflicts, lost = _expect(before, after, now)
    assert len(conflicts) > 0 and lost > 50

    dry = db.cli("run", "--type", "repair", "--tables", "media", "--at", "pre", "--after",
                 "post", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"conflicts {len(conflicts)}" in dry.stdout, dry.stdout
    assert "rows written after the migration that are kept" in dry.stdout
    # a conflict shows the columns where its two versions differ, not a cut row
    assert "now caption='edited by its owner'" in dry.stdout, dry.stdout
    assert db.media() == now                                  # a dry run changes nothing

    run = db.cli("run", "--type", "repair", "--tables", "media", "--at", "pre", "--after",
                 "post", "--confirm", PHRASE, "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    assert _same(db.media(), want) == []
    # the conflicts were kept as the users left them, and listed
    assert all(db.media().get(i) == now.get(i) for i in conflicts)
    # the rows touched are saved first; the plan is in the incident folder
    safety = next((db.home / "incidents").glob("*/safety"))
    assert (safety / "repair-rows-before-public.media.csv").is_file()
    assert (safety / "repair-plan-public.media.csv").is_file()
    # validate checks the repaired table row by row against the plan, not the backup
    checked = db.cli("validate", "--json")
    data = next(i for i in json.loads(checked.stdout)["items"]
                if i["item"] == "Data Integrity")
    assert data["status"] == "pass", data
    assert "public.media repaired" in data["summary"] and "as the repair planned" in \
        data["summary"]
    db.execute("UPDATE public.media SET caption = 'touched after' WHERE id = 2")   # off plan
    checked = db.cli("validate", "--json")
    data = next(i for i in json.loads(checked.stdout)["items"]
                if i["item"] == "Data Integrity")
    assert checked.returncode == 1 and data["status"] == "fail", data
    assert "not as the repair planned" in data["summary"]


def test_conflicts_taken_back_to_before_the_migration(cluster: PitrCluster,
                                                       tmp_path: Path) -> None:
    db = PitrDb(cluster, tmp_path / "db", "r")
    before, after, now = _story(db)
    want, _conflicts, _lost = _expect(before, after, now, take=True)
    run = db.cli("run", "--type", "repair", "--tables", "media", "--at", "pre", "--after",
                 "post", "--conflicts", "take", "--confirm", PHRASE)
    assert run.returncode == 0, run.stdout + run.stderr
    assert _same(db.media(), want) == []
    opened = [json.loads(line) for p in (db.home / "incidents").glob("*/journal.jsonl")
              for line in p.read_text().splitlines() if '"incident_opened"' in line]
    assert opened[-1]["data"]["conflicts"] == "take"


def test_repair_from_a_dump_puts_back_the_classes_chosen(cluster: PitrCluster,
                                                         tmp_path: Path) -> None:
    db = PitrDb(cluster, tmp_path / "db", "r")
    taken = db.cli("backup", "--label", "nightly")
    assert taken.returncode == 0, taken.stderr
    before = db.media()
    db.execute(MIGRATION)
    db.execute(USERS)
    now = db.media()
    dry = db.cli("run", "--type", "repair", "--tables", "media", "--damage",
                 "deleted,nulled,common", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    # the plan shows the common values it found: the users' bulk retitling is one of them,
    # so the operator names the column the migration rewrote
    assert "'retitled'" in dry.stdout and "'application/octet-stream'" in dry.stdout
    run = db.cli("run", "--type", "repair", "--tables", "media", "--damage",
                 "deleted,nulled,common:mime_type", "--confirm", PHRASE)
    assert run.returncode == 0, run.stdout + run.stderr
    got = db.media()
    # deleted rows are back, NULLed captions and the one common mime type reverted
    for i, row in before.items():
        if i % 20 == 1:
            assert got[i] == row
        if i % 10 == 2 and i % 100 not in (12, 22):
            assert got[i][6] == row[6]
        if i % 20 == 3:
            assert got[i][4] == row[4]
    # what users wrote is kept: their new rows, and edits that set no NULL / common value
    assert all(got[i] == now[i] for i in now if i not in before)
    assert all(got[i][6] == "retitled" for i in now if i % 10 == 5)


def test_a_table_without_a_key_is_refused_with_what_to_do(cluster: PitrCluster,
                                                          tmp_path: Path) -> None:
    db = PitrDb(cluster, tmp_path / "db", "r")
    db.execute("CREATE TABLE public.events (at timestamptz, what text); "
               "INSERT INTO public.events VALUES (now(), 'a')")
    assert db.cli("backup").returncode == 0
    run = db.cli("run", "--type", "repair", "--tables", "events", "--damage", "deleted",
                 "--confirm", PHRASE)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "no primary key and no unique key" in run.stderr and "Type 2" in run.stderr


def test_under_a_write_load_through_the_app_every_user_write_survives(
        cluster: PitrCluster, tmp_path: Path) -> None:
    """The issue's story with the demo app: users insert and edit media through its API
    before the migration and after it (some edits land on rows the migration damaged)."""
    db = PitrDb(cluster, tmp_path / "db", "r")
    db.execute("ALTER ROLE authenticator PASSWORD 'repair-load'")
    proc, port = start_demo_app(cluster.server.dsn(db.name, "authenticator", "repair-load"),
                                "token", cluster.facts.test_user_id, tmp_path / "app.log")
    try:
        url = info_app_url(port)

        async def load(n: int, update_ids: list[int], seed: int) -> WriteLoad:
            w = WriteLoad(url, update_ids=update_ids, seed=seed, tag=f"load{seed}")
            await w.run(n)
            return w

        mine = sorted(i for i, r in db.media().items()
                      if str(r[2]) == cluster.facts.test_user_id)
        asyncio.run(load(30, mine[:10], 1))                  # users before the migration
        before = db.media()
        _mark(db, "pre")
        db.execute(MIGRATION)
        after = db.media()
        _mark(db, "post")
        damaged = [i for i in mine if before.get(i) != after.get(i) and i in after]
        users = asyncio.run(load(60, damaged[:4] + mine[-6:], 2))   # and after it
        cluster.switch_wal()
        now = db.media()
    finally:
        stop_pid(proc.pid, timeout=5, sig=signal.SIGTERM)
    want, conflicts, lost = _expect(before, after, now)
    assert users.errors == 0 and users.inserted and users.updated
    assert conflicts == set(damaged[:4]) & set(users.updated)
    run = db.cli("run", "--type", "repair", "--tables", "media", "--at", "pre", "--after",
                 "post", "--confirm", PHRASE)
    assert run.returncode == 0, run.stdout + run.stderr
    got = db.media()
    assert _same(got, want) == []
    for i, values in users.inserted.items():        # exactly as the load left them
        assert got[i][6] == values["caption"] and got[i][3] == values["url"]
    for i, values in users.updated.items():
        assert got[i][6] == values["caption"]
    # a Type 2 of media from the mark would have lost every one of these rows
    assert lost >= len(users.inserted) + len(users.updated) - len(conflicts)


def test_killed_inside_the_repair_then_resumed(cluster: PitrCluster, tmp_path: Path) -> None:
    db = PitrDb(cluster, tmp_path / "db", "r")
    before, after, now = _story(db)
    want, _conflicts, _lost = _expect(before, after, now)
    env = {**os.environ, "ROLLBACK_CONSOLE_HOME": str(db.home),
           "ROLLBACK_CONSOLE_KILL_AT": "repair:applied"}
    killed = subprocess.run([*CONSOLE, "-c", str(db.config), "run", "--type", "repair",
                             "--tables", "media", "--at", "pre", "--after", "post",
                             "--confirm", PHRASE], env=env, capture_output=True, text=True,
                            timeout=300, stdin=subprocess.DEVNULL)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert db.media() == now                        # the transaction died with the console
    resumed = db.cli("resume", "--confirm", PHRASE)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _same(db.media(), want) == []


ODD = """
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."Line Items" (
    "Item No" bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "Qty" int NOT NULL,
    "Unit Price" numeric(10, 2) NOT NULL,
    "Total" numeric(12, 2) GENERATED ALWAYS AS ("Qty" * "Unit Price") STORED,
    note text
);
CREATE TABLE "Odd Schema".audit (at timestamptz DEFAULT clock_timestamp(), what text);
CREATE FUNCTION "Odd Schema".audit_it() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO "Odd Schema".audit (what) VALUES (TG_OP); RETURN NEW; END$$;
CREATE TRIGGER audit_it AFTER INSERT OR UPDATE OR DELETE ON "Odd Schema"."Line Items"
  FOR EACH ROW EXECUTE FUNCTION "Odd Schema".audit_it();
INSERT INTO "Odd Schema"."Line Items" ("Qty", "Unit Price", note)
  SELECT g, g * 1.5, 'line ' || g FROM generate_series(1, 200) g;
"""


def test_generated_identity_odd_names_audit_triggers_and_cascaded_children(
        cluster: PitrCluster, tmp_path: Path) -> None:
    """A table from the corpus's traits (identity ALWAYS key, a generated column, names that
    need quoting, no updated_at, an audit trigger), and a parent whose delete cascaded into
    its children, repaired together from two marks."""
    db = PitrDb(cluster, tmp_path / "db", "r")
    db.execute(ODD)

    async def state() -> tuple[list[Any], list[Any], list[Any], int]:
        conn = await asyncpg.connect(cluster.server.dsn(db.name))
        try:
            return (await conn.fetch('SELECT * FROM "Odd Schema"."Line Items" ORDER BY 1'),
                    await conn.fetch("SELECT * FROM public.objects ORDER BY id"),
                    await conn.fetch(f"SELECT {MEDIA_COLUMNS} FROM public.media ORDER BY id"),
                    await conn.fetchval('SELECT count(*) FROM "Odd Schema".audit'))
        finally:
            await conn.close()

    before = asyncio.run(state())
    _mark(db, "pre-odd")
    db.execute('DELETE FROM "Odd Schema"."Line Items" WHERE "Item No" % 10 = 0;'
               'UPDATE "Odd Schema"."Line Items" SET note = NULL WHERE "Item No" % 10 = 1;'
               "DELETE FROM public.objects WHERE id % 25 = 0")   # cascades into media
    _mark(db, "post-odd")
    db.execute('INSERT INTO "Odd Schema"."Line Items" ("Qty", "Unit Price", note) '
               "VALUES (7, 2.5, 'after')")
    cluster.switch_wal()
    audit_before = asyncio.run(state())[3]
    run = db.cli("run", "--type", "repair", "--tables",
                 '"Odd Schema"."Line Items",media,objects', "--at", "pre-odd", "--after",
                 "post-odd", "--confirm", PHRASE)
    assert run.returncode == 0, run.stdout + run.stderr
    items, objects, media, audit = asyncio.run(state())
    assert items[:200] == before[0] and items[200]["note"] == "after"   # kept
    assert items[200]["Total"] == 17.5                                  # generated, recomputed
    assert objects == before[1] and media == before[2]                  # parents and children
    assert audit == audit_before               # the audit trigger did not fire for the repair


def test_a_type_2_in_the_same_situation_loses_the_users_writes(cluster: PitrCluster,
                                                               tmp_path: Path) -> None:
    """The comparison the repair exists for: the same story, a Type 2 of media from the
    moment before the migration: every row users wrote after it is gone (counted)."""
    db = PitrDb(cluster, tmp_path / "db", "r")
    before, after, now = _story(db)
    _want, _conflicts, lost = _expect(before, after, now)
    run = db.cli("run", "--type", "partial", "--tables", "media", "--at", "pre", "--confirm",
                 PHRASE)
    assert run.returncode == 0, run.stdout + run.stderr
    got = db.media()
    users = {i for i in now.keys() | after.keys() if now.get(i) != after.get(i)}
    lost_rows = [i for i in users if got.get(i) != now.get(i)]
    assert got == before                             # the table as before the migration ...
    assert len(lost_rows) == lost > 50               # ... and every user write since is gone
