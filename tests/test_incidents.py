"""One incident per database, bound to the database; a refused command writes into nobody's
incident; a journal that fails verification is never replayed (issue: trust under stress)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import asyncpg

from app.journal import Journal
from tests.conftest import DemoApp, DemoDb
from tests.helpers import CONSOLE, cli
from tests.test_partial_rollback import checksums, make_set
from tests.test_run_cli import _wait_for, grow_media

PHRASE = "ROLLBACK tea-school-sandbox"


def _journals(home: Path) -> list[Path]:
    return sorted(home.glob("incidents/*/journal.jsonl"))


def _break_maintenance(console_config: Path) -> str:
    """A wrong admin token: the maintenance step fails and the run stops (exit 5), leaving an
    unfinished incident with nothing changed in the database."""
    token = console_config.parent / "secrets" / "app_admin_token"
    good = token.read_text()
    token.write_text("wrong\n")
    return good


async def _stopped_run(console_config: Path, home: Path) -> Path:
    good = _break_maintenance(console_config)
    stopped = cli(console_config, home, "run", "--type", "partial", "--tables", "media",
                  "--confirm", PHRASE)
    assert stopped.returncode == 5, stopped.stdout + stopped.stderr
    (console_config.parent / "secrets" / "app_admin_token").write_text(good)
    [journal] = _journals(home)
    return journal


async def test_a_refused_confirmation_opens_no_incident(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    await make_set(demo_db, conn, console_config.parent / "backups", ("media",))
    refused = cli(console_config, tmp_path, "run", "--type", "partial", "--tables", "media",
                  "--confirm", "rollback please")
    assert refused.returncode == 3 and "type exactly" in refused.stdout
    assert _journals(tmp_path) == []


async def test_one_incident_per_database_until_resumed_or_abandoned(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    backup = await make_set(demo_db, conn, console_config.parent / "backups", ("media",))
    await conn.execute("UPDATE media SET caption = 'broken' WHERE id % 2 = 0")
    broken = await checksums(conn, "public.media")
    first = await _stopped_run(console_config, tmp_path)
    opened = json.loads(first.read_text().splitlines()[0])
    assert opened["kind"] == "incident_opened"
    assert set(opened["data"]["database"]) == {"system_identifier", "oid", "name"}

    second = cli(console_config, tmp_path, "run", "--type", "partial", "--tables", "media",
                 "--confirm", PHRASE)
    assert second.returncode == 3, second.stdout + second.stderr
    assert f"incident {first.parent.name}" in second.stdout and "is unfinished" in second.stdout
    assert "rollback-console resume" in second.stdout and "abandon" in second.stdout
    assert _journals(tmp_path) == [first], "a refused run opened an incident"
    assert await checksums(conn, "public.media") == broken

    no_reason = cli(console_config, tmp_path, "abandon", "--reason", "  ")
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    set_aside = cli(console_config, tmp_path, "abandon", "--reason", "checked media by hand")
    assert set_aside.returncode == 0, set_aside.stdout + set_aside.stderr
    closed = Journal(first).entries[-1]
    assert closed.kind == "incident_closed" and closed.data["outcome"] == "abandoned"
    assert closed.data["reason"] == "checked media by hand"

    third = cli(console_config, tmp_path, "run", "--type", "partial", "--tables", "media",
                "--confirm", PHRASE)
    assert third.returncode == 0, third.stdout + third.stderr
    assert backup.manifest is not None
    assert await checksums(conn, "public.media") == \
        [backup.manifest.state.tables["public.media"].checksum]


async def test_incidents_are_bound_to_the_database_not_the_config_label(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    """Another database under the same target name (a new sandbox, a restored copy) neither
    resumes nor journals into the first one's incident."""
    await make_set(demo_db, conn, console_config.parent / "backups", ("media",))
    first = await _stopped_run(console_config, tmp_path)
    before = first.read_bytes()
    other = f"{demo_db.name}_other"
    await conn.execute(f'CREATE DATABASE "{other}" TEMPLATE demo_template')
    try:
        text = console_config.read_text()
        assert f"/{demo_db.name}" in text
        console_config.write_text(text.replace(f"/{demo_db.name}", f"/{other}"))
        resumed = cli(console_config, tmp_path, "resume", "--confirm", PHRASE)
        assert resumed.returncode == 2 and "nothing to resume" in resumed.stderr
        cli(console_config, tmp_path, "validate")
        assert first.read_bytes() == before, "another database's command wrote the incident"
    finally:
        console_config.write_text(text)
        await conn.execute(f'DROP DATABASE "{other}" WITH (FORCE)')


async def test_a_cut_journal_is_never_replayed(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    await make_set(demo_db, conn, console_config.parent / "backups", ("media",))
    await conn.execute("UPDATE media SET caption = 'broken' WHERE id % 2 = 0")
    broken = await checksums(conn, "public.media")
    journal = await _stopped_run(console_config, tmp_path)
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:3]))   # the chain of what is left is intact

    resumed = cli(console_config, tmp_path, "resume", "--confirm", PHRASE)
    assert resumed.returncode == 5, resumed.stdout + resumed.stderr
    assert "was cut" in resumed.stderr and "abandon" in resumed.stderr
    report = cli(console_config, tmp_path, "report")
    assert report.returncode == 5 and "was cut" in report.stderr
    assert journal.read_text() == "".join(lines[:3]), "a read command rewrote the journal"
    refused = cli(console_config, tmp_path, "run", "--type", "partial", "--tables", "media",
                  "--confirm", PHRASE)
    assert refused.returncode == 3 and "fails verification" in refused.stdout
    assert await checksums(conn, "public.media") == broken

    set_aside = cli(console_config, tmp_path, "abandon", journal.parent.name,
                    "--reason", "journal cut; database checked by hand")
    assert set_aside.returncode == 0, set_aside.stdout + set_aside.stderr
    assert journal.read_text() == "".join(lines[:3]), "the evidence was changed"
    again = cli(console_config, tmp_path, "run", "--type", "partial", "--tables", "media",
                "--confirm", PHRASE)
    assert again.returncode == 0, again.stdout + again.stderr


async def test_a_refused_resume_leaves_the_live_run_alone(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    """A second shell's `resume` during a run: refused (the lock) or nothing to resume (the
    run ended meanwhile), and in no case an entry in the live run's journal."""
    await grow_media(conn)
    await make_set(demo_db, conn, console_config.parent / "backups", ("media",))
    await conn.execute("UPDATE media SET caption = 'broken' WHERE id % 3 = 0")
    env = {**os.environ, "ROLLBACK_CONSOLE_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [*CONSOLE, "-c", str(console_config), "run", "--type", "partial",
         "--tables", "media", "--confirm", PHRASE, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        stdin=subprocess.DEVNULL)
    try:
        _wait_for(tmp_path, "step_started", "safety_snapshot", proc)
        second = cli(console_config, tmp_path, "resume", "--confirm", PHRASE)
        assert second.returncode in (2, 3), second.stdout + second.stderr
        out = proc.communicate(timeout=300)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    [journal] = _journals(tmp_path)
    entries = Journal(journal).entries   # verifies: no fork, nothing cut
    kinds = [e.kind for e in entries]
    assert "incident_resumed" not in kinds and kinds.count("incident_closed") == 1
    assert entries[-1].data["exit_code"] == 0
    time.sleep(0)  # the run's own lock is released: maintenance is off again
    status = cli(console_config, tmp_path, "maintenance", "status")
    assert status.returncode == 0 and "OFF" in status.stdout


async def test_an_interrupted_run_says_how_to_go_on_and_resumes(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    """SIGTERM (or Ctrl-C) in the middle of the load: the load's transaction rolls back, the
    step is journaled as aborted, exit 5 with the way on, no traceback; resume finishes."""
    import signal

    await grow_media(conn)
    backup = await make_set(demo_db, conn, console_config.parent / "backups", ("media",))
    await conn.execute("UPDATE media SET caption = 'broken' WHERE id % 3 = 0")
    env = {**os.environ, "ROLLBACK_CONSOLE_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [*CONSOLE, "-c", str(console_config), "run", "--type", "partial",
         "--tables", "media", "--confirm", PHRASE],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        stdin=subprocess.DEVNULL)
    try:
        _wait_for(tmp_path, "action_started", "restore", proc)
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 5, out
    assert "INTERRUPTED" in out and "rollback-console resume" in out and "Traceback" not in out
    [journal] = _journals(tmp_path)
    aborted = [e for e in Journal(journal).entries if e.kind == "step_finished"]
    assert aborted[-1].data["status"] == "aborted" and aborted[-1].step == "restore"
    resumed = cli(console_config, tmp_path, "resume", "--confirm", PHRASE)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert backup.manifest is not None
    assert await checksums(conn, "public.media") == \
        [backup.manifest.state.tables["public.media"].checksum]
