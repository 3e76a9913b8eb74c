"""`rollback-console run` and `resume` as scripts use them: dry run changes nothing, exit codes
say what happened, JSON lines stream, and a console killed (-9) at a step boundary or in the
middle of a load resumes to the same database state as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import DemoApp, DemoDb
from tests.helpers import CONSOLE, cli
from tests.test_partial_rollback import checksums, make_set


async def test_dry_run_prints_every_statement_and_changes_nothing(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    await make_set(demo_db, conn, console_config.parent / "backups")
    await conn.execute("UPDATE media SET caption = 'x'")
    before = await checksums(conn, "public.media")
    result = cli(console_config, tmp_path, "run", "--type", "partial", "--tables", "media",
                 "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "DRY RUN: nothing is changed" in out
    assert 'TRUNCATE "public"."media"' in out
    assert 'COPY "public"."media" FROM STDIN (FREEZE)' in out
    assert 'ALTER TABLE "public"."media" ADD CONSTRAINT "media_object_id_fkey" FOREIGN KEY ' \
        "(object_id) REFERENCES objects(id) ON DELETE CASCADE" in out
    assert "CREATE INDEX media_owner_id_idx ON public.media USING btree (owner_id)" in out
    assert "POINT OF NO RETURN" in out and "all 2,000 current rows replaced" in out
    assert await checksums(conn, "public.media") == before
    assert not (tmp_path / "incidents").exists() or not any((tmp_path / "incidents").iterdir())


@pytest.mark.parametrize(("args", "code", "message"), [
    (("--type", "partial", "--tables", "media", "--confirm", "yes"), 3, "type exactly"),
    (("--type", "partial"), 2, "--type partial needs --tables"),
    (("--type", "partial", "--tables", "media", "--backup", "nope"), 2, "no backup set 'nope'"),
    (("--type", "sideways",), 2, "Invalid value for '--type'"),
])
async def test_exit_codes_for_refusals_and_bad_input(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, args: tuple[str, ...], code: int, message: str) -> None:
    await make_set(demo_db, conn, console_config.parent / "backups")
    await conn.execute("UPDATE media SET caption = 'x'")
    before = await checksums(conn, "public.media")
    result = cli(console_config, tmp_path, "run", *args)
    assert result.returncode == code, result.stdout + result.stderr
    assert message in result.stdout + result.stderr
    assert await checksums(conn, "public.media") == before


async def test_json_lines_and_success(console_config: Path, demo_db: DemoDb,
                                      demo_app: DemoApp, conn: asyncpg.Connection,
                                      tmp_path: Path) -> None:
    backup = await make_set(demo_db, conn, console_config.parent / "backups")
    await conn.execute("UPDATE media SET caption = 'x'")
    result = cli(console_config, tmp_path, "run", "--type", "partial", "--tables", "media",
                 "--confirm", "ROLLBACK tea-school-sandbox", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["event"] == "RunFinished" and events[-1]["exit_code"] == 0
    assert next(e["step"] for e in events if e["event"] == "StepStarted") == "prerequisites"
    assert backup.manifest is not None
    assert await checksums(conn, "public.media") == \
        [backup.manifest.state.tables["public.media"].checksum]


async def grow_media(conn: asyncpg.Connection) -> None:
    """media times 101 (about 200,000 rows): a load long enough for a kill or a fault to land
    in its middle."""
    await conn.execute("INSERT INTO media (object_id, owner_id, url, mime_type, bytes, caption) "
                       "SELECT object_id, owner_id, url || g, mime_type, bytes, caption "
                       "FROM media, generate_series(1, 100) g")


def _wait_for(journal_root: Path, kind: str, step: str, proc: subprocess.Popen[str],
              timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for journal in journal_root.glob("incidents/*/journal.jsonl"):
            for line in journal.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if entry["kind"] == kind and entry["data"].get("step") == step:
                    return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {kind} {step}: "
                                 f"{proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.01)
    raise AssertionError(f"{kind} {step} never appeared")


@pytest.mark.parametrize(("kind", "step"), [
    ("step_started", "maintenance"),
    ("step_finished", "safety_snapshot"),
    ("action_started", "restore"),      # in the middle of the load
    ("step_started", "validation"),
])
async def test_kill_9_then_resume_ends_in_the_same_state(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, kind: str, step: str) -> None:
    # make the load take a while, so a kill can land in its middle
    await grow_media(conn)
    backup = await make_set(demo_db, conn, console_config.parent / "backups", ("media",))
    await conn.execute("UPDATE media SET caption = 'broken' WHERE id % 3 = 0")
    env = {**os.environ, "ROLLBACK_CONSOLE_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [*CONSOLE, "-c", str(console_config), "run", "--type", "partial",
         "--tables", "media", "--confirm", "ROLLBACK tea-school-sandbox", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        stdin=subprocess.DEVNULL)
    try:
        _wait_for(tmp_path, kind, step, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    journal_path = next(tmp_path.glob("incidents/*/journal.jsonl"))
    before_resume = journal_path.read_bytes()
    asked = cli(console_config, tmp_path, "resume", "--json")
    destructive_left = step != "validation"
    assert "opened" in asked.stderr and "ago" in asked.stderr and "will run:" in asked.stderr
    if destructive_left:   # past the point of no return only with the phrase again
        assert asked.returncode == 3, asked.stdout + asked.stderr
        assert "confirm again" in asked.stdout
        assert journal_path.read_bytes() == before_resume
        resumed = cli(console_config, tmp_path, "resume", "--json",
                      "--confirm", "ROLLBACK tea-school-sandbox")
    else:
        resumed = asked
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert backup.manifest is not None
    assert await checksums(conn, "public.media") == \
        [backup.manifest.state.tables["public.media"].checksum]
    journal = next(tmp_path.glob("incidents/*/journal.jsonl")).read_text().splitlines()
    entries = [json.loads(line) for line in journal]
    assert entries[-1]["kind"] == "incident_closed" and entries[-1]["data"]["exit_code"] == 0
    assert any(e["kind"] == "incident_resumed" for e in entries)
    again = cli(console_config, tmp_path, "resume")
    assert again.returncode == 2 and "nothing to resume" in again.stderr


async def test_report_from_the_journal(console_config: Path, demo_db: DemoDb,
                                       demo_app: DemoApp, conn: asyncpg.Connection,
                                       tmp_path: Path) -> None:
    await make_set(demo_db, conn, console_config.parent / "backups", ("media",))
    await conn.execute("UPDATE media SET caption = 'x'")
    ran = cli(console_config, tmp_path, "run", "--type", "partial", "--tables", "media",
              "--confirm", "ROLLBACK tea-school-sandbox")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    out = tmp_path / "report.md"
    made = cli(console_config, tmp_path, "report", "-o", str(out))
    assert made.returncode == 0, made.stderr
    text = out.read_text()
    assert text.startswith("# Incident") and "| restore | done |" in text
    assert "safety snapshot" in text and "## Post-rollback actions" in text
    assert demo_db.server.password not in text
    missing = cli(console_config, tmp_path, "report", "no-such-incident")
    assert missing.returncode == 2 and "no incident 'no-such-incident'" in missing.stderr
    journal = next(tmp_path.glob("incidents/*/journal.jsonl"))
    lines = journal.read_text().splitlines()
    edited = next(i for i, line in enumerate(lines) if '"status": "done"' in line)
    lines[edited] = lines[edited].replace('"status": "done"', '"status": "skipped"')
    journal.write_text("\n".join(lines) + "\n")
    tampered = cli(console_config, tmp_path, "report")
    assert tampered.returncode == 5 and "hash chain is broken" in tampered.stderr


async def test_a_failed_run_says_the_app_is_still_in_maintenance_and_the_switch_turns_it_off(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    """The reload is refused (a new object's media would lose their parent): exit 4, the
    database as before, and the app left in maintenance, which the run says. `maintenance`
    reads and switches it, journaled in that incident; refused in --mode assess."""
    import httpx

    await make_set(demo_db, conn, console_config.parent / "backups", ("objects",))
    owner = await conn.fetchval("SELECT owner_id FROM objects LIMIT 1")
    new = await conn.fetchval("INSERT INTO objects (owner_id, name, kind) VALUES ($1, 'n', "
                              "'chawan') RETURNING id", owner)
    await conn.execute("INSERT INTO media (object_id, owner_id, url, mime_type, bytes) "
                       "VALUES ($1, $2, 'u', 'image/png', 1)", new, owner)
    failed = cli(console_config, tmp_path, "run", "--type", "partial", "--tables", "objects",
                 "--confirm", "ROLLBACK tea-school-sandbox")
    assert failed.returncode == 4, failed.stderr
    assert "`rollback-console maintenance off`" in failed.stdout + failed.stderr
    assert httpx.get(f"{demo_app.url}/api/health").status_code == 503

    status = cli(console_config, tmp_path, "maintenance", "status")
    assert status.returncode == 10 and "maintenance mode is ON" in status.stdout
    read_only = cli(console_config, tmp_path, "--mode", "assess", "maintenance", "off")
    assert read_only.returncode == 3 and "read-only" in read_only.stderr
    assert httpx.get(f"{demo_app.url}/api/health").status_code == 503
    off = cli(console_config, tmp_path, "maintenance", "off")
    assert off.returncode == 0, off.stderr
    assert "maintenance mode off" in off.stdout and "journaled in incident" in off.stdout
    assert httpx.get(f"{demo_app.url}/api/health").status_code == 200
    assert cli(console_config, tmp_path, "maintenance", "status").returncode == 0
    journal = next((tmp_path / "incidents").glob("*/journal.jsonl")).read_text()
    assert '"action": "maintenance_off"' in journal and '"ok": true' in journal


def test_the_maintenance_switch_on_an_unreachable_app_says_so(tmp_path: Path) -> None:
    config = tmp_path / "rollback.toml"
    config.write_text('[target]\nname = "t"\nenvironment = "staging"\n'
                      'dsn = "postgresql://x@127.0.0.1:9/none"\n'
                      '[app]\nbase_url = "http://127.0.0.1:9"\ntimeout_s = 1\n')
    result = cli(config, tmp_path, "maintenance", "off")
    assert result.returncode == 1
    assert "check app.base_url and that the app is up" in result.stderr
    assert "Traceback" not in result.stderr
    config.write_text(config.read_text().split("[app]")[0])
    no_app = cli(config, tmp_path, "maintenance", "on")
    assert no_app.returncode == 2 and "no [app]" in no_app.stderr


@pytest.mark.parametrize(("given", "expected"), [
    ("media, objects", ("public.media", "public.objects")),
    ('"Odd Schema"."Line Items",auth.users', ("Odd Schema.Line Items", "auth.users")),
    ('"with ""quote"", comma"', ('public.with "quote", comma',)),
    # as the console shows names: characters taken as they are
    ("we'ird\"t, o'sch\"ema.Ta ble", ("public.we'ird\"t", "o'sch\"ema.Ta ble")),
])
def test_tables_take_quoted_names(given: str, expected: tuple[str, ...]) -> None:
    from app.commands.rollback import _tables

    assert _tables(given) == expected


@pytest.mark.parametrize("given", ['"unclosed', '"a"."b"."c"', '"schema".'])
def test_tables_refuse_what_is_not_a_name(given: str) -> None:
    from app.commands.rollback import _tables
    from app.errors import BadInput

    with pytest.raises(BadInput, match="--tables"):
        _tables(given)
