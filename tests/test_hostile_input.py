"""Hostile input gets a plain answer, never a traceback: a DSN whose port is not a number, numeric
settings out of range (each named, exit 2, nothing changed), and tables whose names need quoting
(a quote, a double quote, mixed case with a space, a reserved word, a schema with a quote) go
through every command: backup, assess, validate, diff, run (dry and real), backups --verify."""

from __future__ import annotations

import shlex
from pathlib import Path

import asyncpg
import pytest

from app import config
from app.errors import ConfigError
from tests.conftest import DemoApp, DemoDb
from tests.helpers import cli
from tests.test_partial_rollback import checksums

PHRASE = "ROLLBACK tea-school-sandbox"

GOOD = """
[target]
name = "shop"
environment = "staging"
dsn = "postgresql://app@127.0.0.1:5432/shop"
password = "s3cret-PW"
backups_root = "backups"

[[target.critical_queries]]
name = "one"
sql = "SELECT 1"
budget_ms = 200

[app]
base_url = "http://127.0.0.1:9"
timeout_s = 5

[assess]
lock_timeout_ms = 1000

[[assess.probe_queries]]
name = "probe"
sql = "SELECT 1"
min_rows = 1
"""

BAD_SETTINGS = [
    ("127.0.0.1:5432/", "127.0.0.1:abc/",
     "target.dsn: port 'abc' is not a number: write it as postgresql://user@host:5432/database"),
    ("127.0.0.1:5432/", "127.0.0.1:99999/", "target.dsn: port 99999 is out of range (1-65535)"),
    ("timeout_s = 5", "timeout_s = -1", "app.timeout_s: expected a number above 0, got -1.0"),
    ("timeout_s = 5", "timeout_s = 0", "app.timeout_s: expected a number above 0, got 0.0"),
    ("timeout_s = 5", "timeout_s = nan", "app.timeout_s: expected a number above 0, got nan"),
    ("budget_ms = 200", "budget_ms = -200",
     "target.critical_queries[0].budget_ms: expected an integer above 0, got -200"),
    ("min_rows = 1", "min_rows = -1",
     "assess.probe_queries[0].min_rows: expected an integer at least 0, got -1"),
    ("lock_timeout_ms = 1000", "lock_timeout_ms = -5",
     "assess.lock_timeout_ms: expected an integer above 0 and at most 2147483647, got -5"),
    ("lock_timeout_ms = 1000", "lock_timeout_ms = 3000000000",
     "assess.lock_timeout_ms: expected an integer above 0 and at most 2147483647"),
    ("lock_timeout_ms = 1000", "check_timeout_s = inf",
     "assess.check_timeout_s: expected a number above 0, got inf"),
    ("5432/shop", "5432/shop?port=abc", "target.dsn: port 'abc' (in ?port=) is not a number"),
    ('backups_root = "backups"', 'backups_root = "rollback.toml"',
     "target.backups_root: {path} is a file, not a folder"),
]


def _config(tmp_path: Path, good: str, bad: str) -> Path:
    assert good in GOOD
    path = tmp_path / "rollback.toml"
    path.write_text(GOOD.replace(good, bad, 1))
    return path


def test_the_good_config_loads(tmp_path: Path) -> None:
    cfg = config.load(_config(tmp_path, "", ""))
    assert cfg.app is not None and cfg.app.timeout_s == 5.0
    assert cfg.assess.probe_queries[0].min_rows == 1


@pytest.mark.parametrize(("good", "bad", "message"), BAD_SETTINGS)
def test_each_bad_setting_is_a_config_problem_naming_its_key(
        tmp_path: Path, good: str, bad: str, message: str) -> None:
    path = _config(tmp_path, good, bad)
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    message = message.format(path=path)
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems
    assert len(caught.value.problems) == 1
    assert "s3cret-PW" not in str(caught.value)   # the DSN's password is never shown


@pytest.mark.parametrize("command", [
    ("assess",), ("validate",), ("diff",), ("backup",), ("backups",),
    ("run", "--type", "partial", "--tables", "media", "--dry-run"),
    ("run", "--type", "full", "--confirm", "CONFIRM_FULL_RESTORE shop"),
])
@pytest.mark.parametrize(("good", "bad", "message"),
                         [BAD_SETTINGS[0], BAD_SETTINGS[2], BAD_SETTINGS[7],
                          BAD_SETTINGS[-1]])
def test_every_command_answers_a_bad_setting_with_exit_2_and_changes_nothing(
        tmp_path: Path, command: tuple[str, ...], good: str, bad: str, message: str) -> None:
    path = _config(tmp_path, good, bad)
    result = cli(path, tmp_path / "home", *command)
    out = _clean(result)
    assert result.returncode == 2, out
    assert message.format(path=path) in out.replace("\n", " ")
    assert not (tmp_path / "backups").exists()
    assert not (tmp_path / "home" / "incidents").exists() or \
        not any((tmp_path / "home" / "incidents").iterdir())


# (name as typed after --tables, schema.name as the console reports it, SQL name)
HOSTILE = [
    ("we'ird\"t", "public.we'ird\"t", '"public"."we\'ird""t"'),
    ("MiXed Case", "public.MiXed Case", '"public"."MiXed Case"'),
    ("select", "public.select", '"public"."select"'),
    ("o'sch\"ema.Ta ble", "o'sch\"ema.Ta ble", '"o\'sch""ema"."Ta ble"'),
    ("sl/ash", "public.sl/ash", '"public"."sl/ash"'),   # not a file name as it stands
]


async def _hostile_tables(conn: asyncpg.Connection) -> None:
    """Tables with awkward names, rows, primary keys, a serial, timestamps, a secondary
    index and foreign keys between them (awkward names too)."""
    await conn.execute("""
        CREATE SCHEMA "o'sch""ema";
        CREATE TABLE "select" ("from" int PRIMARY KEY, "Where" text NOT NULL);
        CREATE TABLE "we'ird""t" (id int PRIMARY KEY, "n'o""te" text,
            sel int CONSTRAINT "fk'we""ird" REFERENCES "select" ("from"),
            created_at timestamptz NOT NULL DEFAULT now() - interval '2 days',
            updated_at timestamptz NOT NULL DEFAULT now() - interval '2 days');
        CREATE INDEX "ix'we""ird" ON "we'ird""t" ("n'o""te");
        CREATE TABLE "MiXed Case" ("Id" serial PRIMARY KEY, "Na me" text,
            created_at timestamptz NOT NULL DEFAULT now() - interval '2 days');
        CREATE TABLE "o'sch""ema"."Ta ble" (k text PRIMARY KEY, v numeric,
            w int REFERENCES "we'ird""t" (id));
        CREATE TABLE "sl/ash" (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL
            DEFAULT now() - interval '2 days');
        INSERT INTO "sl/ash" (id) SELECT g FROM generate_series(1, 30) g;
        INSERT INTO "select" SELECT g, 'row ' || g FROM generate_series(1, 50) g;
        INSERT INTO "we'ird""t" (id, "n'o""te", sel)
            SELECT g, E'it''s "quoted"\\t' || g, 1 + g % 50 FROM generate_series(1, 200) g;
        INSERT INTO "MiXed Case" ("Na me") SELECT 'name ' || g FROM generate_series(1, 120) g;
        INSERT INTO "o'sch""ema"."Ta ble" SELECT 'k' || g, g / 7.0, g FROM generate_series(1, 80) g;
    """)


async def _damage(conn: asyncpg.Connection) -> None:
    await conn.execute("""
        UPDATE "we'ird""t" SET "n'o""te" = 'broken', updated_at = now() WHERE id % 3 = 0;
        DELETE FROM "MiXed Case" WHERE "Id" % 4 = 0;
        INSERT INTO "MiXed Case" ("Na me", created_at) VALUES ('new since the backup', now());
        UPDATE "select" SET "Where" = 'x' WHERE "from" < 10;
        DELETE FROM "o'sch""ema"."Ta ble" WHERE v > 5;
        UPDATE "sl/ash" SET id = id + 1000, updated_at = now() WHERE id > 20;
    """)


def _clean(result: object) -> str:
    out = result.stdout + result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in out, out
    return out


async def test_hostile_table_names_work_in_every_command(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    await _hostile_tables(conn)
    sql_names = [sql for _, _, sql in HOSTILE]
    before = await checksums(conn, *[name for _, name, _ in HOSTILE])

    made = cli(console_config, tmp_path, "backup")
    assert made.returncode == 0, _clean(made)
    set_id = made.stdout.split("backup set ")[1].split()[0]
    await _damage(conn)
    damaged = await checksums(conn, *[name for _, name, _ in HOSTILE])
    assert all(b != d for b, d in zip(before, damaged, strict=True))

    verified = cli(console_config, tmp_path, "backups", "--verify", set_id)
    out = _clean(verified)
    assert verified.returncode == 0, out
    assert f"VERIFIED: set {set_id}" in out

    assessed = cli(console_config, tmp_path, "assess")
    out = _clean(assessed)
    assert assessed.returncode == 30, out   # immediate rollback
    assert "public.we'ird\"t" in out and "public.MiXed Case" in out

    validated = cli(console_config, tmp_path, "validate")
    out = _clean(validated)
    assert validated.returncode == 1, out

    tables = ",".join(typed for typed, _, _ in HOSTILE)
    dry = cli(console_config, tmp_path, "run", "--type", "partial", "--tables", tables,
              "--dry-run")
    out = _clean(dry)
    assert dry.returncode == 0, out
    assert f"TRUNCATE {', '.join(sql_names)}" in out
    for name in sql_names:
        assert f"COPY {name} FROM STDIN (FREEZE)" in out
    assert "SELECT setval('public.\"MiXed Case_Id_seq\"', greatest((SELECT max(\"Id\")" in out
    assert await checksums(conn, *[name for _, name, _ in HOSTILE]) == damaged

    real = cli(console_config, tmp_path, "run", "--type", "partial", "--tables", tables,
               "--confirm", PHRASE)
    out = _clean(real)
    assert real.returncode == 0, out
    assert await checksums(conn, *[name for _, name, _ in HOSTILE]) == before

    # then a bad migration, in awkward names: a column added, a key and an index dropped, a
    # column's type changed, a column dropped (its values only in the backup now), a table
    # added; the schema rollback takes them back and names the data rollback to follow
    await conn.execute("""
        ALTER TABLE "select" ADD COLUMN "n""ew col" text DEFAULT 'it''s';
        ALTER TABLE "we'ird""t" DROP CONSTRAINT "fk'we""ird";
        DROP INDEX "ix'we""ird";
        ALTER TABLE "o'sch""ema"."Ta ble" ALTER COLUMN v TYPE text;
        ALTER TABLE "o'sch""ema"."Ta ble" DROP COLUMN w;
        CREATE TABLE "o'sch""ema"."new'""one" (id int PRIMARY KEY);
    """)
    diffed = cli(console_config, tmp_path, "diff")
    out = _clean(diffed)
    assert diffed.returncode == 1, out   # drift
    assert 'ALTER TABLE "public"."select" DROP COLUMN "n""ew col";' in out
    assert 'DROP TABLE "o\'sch""ema"."new\'""one";' in out

    schema_dry = cli(console_config, tmp_path, "run", "--type", "schema", "--dry-run")
    out = _clean(schema_dry)
    assert schema_dry.returncode == 0, out
    assert "DRY RUN: nothing is changed" in out

    schema_real = cli(console_config, tmp_path, "run", "--type", "schema", "--confirm",
                      "ROLLBACK SCHEMA tea-school-sandbox")
    out = _clean(schema_real)
    assert schema_real.returncode == 0, out
    again = cli(console_config, tmp_path, "diff")
    assert again.returncode == 0, _clean(again)
    assert "no drift" in again.stdout
    # the follow-up the schema rollback names, typed as shown, brings the column's values back
    hint = out.split("follow with `rollback-console ")[1].split("`")[0]
    assert shlex.split(hint) == ["run", "--type", "partial", "--tables", "o'sch\"ema.Ta ble"]
    followup = cli(console_config, tmp_path, *shlex.split(hint), "--confirm", PHRASE)
    assert followup.returncode == 0, _clean(followup)
    assert await checksums(conn, *[name for _, name, _ in HOSTILE]) == before
