"""Silent hangs (issue 13, item 4): faults after which the console used to wait forever, the app
in maintenance and no exit code. Each must now end the run, within a bound, with one line that
says what happened and the way out (exit 4: returned to before; exit 5: needs the operator),
the outcome journaled where the disk allows it (and the message saying so where it does not),
and the table's data either as it was or restored, never half-loaded. Then the way out the
message names is taken, and it works.

Every fault is real: a server session terminated by pg_terminate_backend in the middle of the
COPY, a dump file cut in the middle of a COPY block, a 1 MB tmpfs filled to the last page."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.sandbox.server import bin_dir
from tests.conftest import DemoApp, DemoDb
from tests.helpers import make_full_set, matches_manifest
from tests.test_fault_matrix import (
    Console,
    Ended,
    admin_connect,
    bloat_media,
    console_sessions,
    console_statement,
    maintenance_off,
    online,
    run_args,
    settled,
    sibling_databases,
    siblings_dropped,  # noqa: F401 (a fixture, used by name)
    stray_tools,
    wait_for_row,
)
from tests.test_partial_rollback import checksums, make_set

WAYS_OUT = ("`rollback-console resume`", "`rollback-console maintenance off`")


def outcome_line(ended: Ended) -> str:
    """The run's last word: `STOPPED (exit 5): …` / `FAILED (exit 4): …`, on one line."""
    assert "Traceback" not in ended.output, ended.output[-3000:]
    lines = [line for line in ended.output.splitlines() if f"(exit {ended.code}):" in line]
    assert lines, f"no outcome line for exit {ended.code}:\n{ended.output[-3000:]}"
    return lines[-1]


def journal_end(home: Path) -> dict[str, object] | None:
    """The journal's last entry, if the run could write one."""
    journals = sorted(home.glob("incidents/*/journal.jsonl"))
    assert journals, "no journal at all"
    lines = [line for line in journals[-1].read_text().splitlines() if line.strip()]
    try:
        return json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None   # a torn last line: the end was not recorded


async def media(db: DemoDb) -> list[str]:
    conn = await db.connect()
    try:
        return await checksums(conn, "public.media")
    finally:
        await conn.close()


async def nothing_left_running(db: DemoDb) -> None:
    assert await settled(lambda: console_sessions(db)) == [], "console sessions are left"
    assert await settled(lambda: stray_tools(db)) == [], "dump tools are still running"


async def take_the_way_out(console: Console, ended: Ended, line: str, app: DemoApp,
                           kind: str = "partial") -> Ended:
    """Do what the message says: `resume` (exit 5) or `maintenance off` (exit 4)."""
    if ended.code == 5 and WAYS_OUT[0] in line:
        after = console.resume(kind)
        assert after.code == 0, after.output[-3000:]
    else:
        assert WAYS_OUT[1] in line, line
        after = console.run("maintenance", "off")
        assert after.code == 0, after.output[-3000:]
    assert maintenance_off(app)
    return after


def send_queue(port: int) -> int | None:
    """Bytes the console has queued towards the server on its connection from ``port``."""
    shown = subprocess.run(["ss", "-tnH", "state", "established", f"( sport = :{port} )"],
                           capture_output=True, text=True).stdout.split()
    return int(shown[1]) if len(shown) >= 2 else None


async def stalled(port: int, proc: subprocess.Popen[str]) -> None:
    """Until the console's side of the connection stops moving: its send queue full and
    steady, the transport paused by flow control (a bound of 60 s, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    seen: list[int | None] = []
    while loop.time() < deadline and proc.poll() is None:
        seen = [*seen[-5:], send_queue(port)]
        if len(seen) == 6 and seen[0] and len(set(seen)) == 1:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the console's COPY never stalled (send queue {seen})")


async def test_a_copy_whose_session_is_terminated_ends_the_run(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, tmp_path: Path) -> None:
    """(a) The server stalls in the middle of a Type 2 reload's COPY (its backend stopped, as
    an I/O stall would: the console's writes back up), and the DBA ends that session with
    pg_terminate_backend."""
    conn = await demo_db.connect()
    try:
        await bloat_media(conn)
        backup = await make_set(demo_db, conn, console_config.parent / "backups", ("media",))
        await conn.execute("UPDATE media SET caption = 'broken' WHERE id % 3 = 0")
    finally:
        await conn.close()
    assert backup.manifest is not None
    restored = [backup.manifest.state.tables["public.media"].checksum]
    damaged = await media(demo_db)
    console = Console(console_config, tmp_path / "home", tmp_path / "out")
    proc = console.start(*run_args("partial"))
    watch = await admin_connect(demo_db)
    try:
        sql, args = console_statement("COPY %FROM STDIN%")
        copying = await wait_for_row(watch, sql.replace("SELECT pid,", "SELECT pid, "
                                                        "client_port,"), *args, proc=proc,
                                     what="the reload's COPY")
        os.kill(copying["pid"], signal.SIGSTOP)
        try:
            await stalled(copying["client_port"], proc)
            assert await watch.fetchval("SELECT pg_terminate_backend($1)", copying["pid"])
        finally:
            os.kill(copying["pid"], signal.SIGCONT)
    finally:
        await watch.close()
    ended = console.finish(proc)
    assert ended.code in (4, 5), ended.output[-3000:]
    line = outcome_line(ended)
    assert "connection" in line.lower() or "terminat" in line.lower(), line
    end = journal_end(console.home)
    assert end is not None and end["data"]["exit_code"] == ended.code   # type: ignore[index]
    assert await media(demo_db) == damaged      # the transaction was rolled back: as before
    await nothing_left_running(demo_db)
    await take_the_way_out(console, ended, line, demo_app)
    if ended.code == 5:
        assert await media(demo_db) == restored


async def test_a_dump_cut_inside_its_copy_block_ends_the_run(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, tmp_path: Path) -> None:
    """(b) A hand-made set (the runbook's pg_dump, no manifest to catch it) whose table dump
    ends in the middle of the COPY block: a copy interrupted by a full disk, say. Refused up
    front (exit 2) or found by the reload (exit 4/5): never half-loaded, never a hang."""
    path = console_config.parent / "backups" / "production_migration_20261124"
    path.mkdir(parents=True)
    dump = path / "table_media_backup.sql"
    subprocess.run([str(bin_dir() / "pg_dump"), "--data-only", "--table=public.media",
                    f"--file={dump}", demo_db.dsn], check=True, capture_output=True)
    data = dump.read_bytes()
    start = data.index(b"COPY public.media ")
    end = data.index(b"\n\\.\n", start)
    dump.write_bytes(data[:(start + end) // 2])    # mid-row, mid-block
    conn = await demo_db.connect()
    try:
        await conn.execute("UPDATE media SET caption = 'broken' WHERE id % 3 = 0")
    finally:
        await conn.close()
    damaged = await media(demo_db)
    console = Console(console_config, tmp_path / "home", tmp_path / "out")
    ended = console.run(*run_args("partial"))
    assert "Traceback" not in ended.output, ended.output[-3000:]
    if ended.code == 2:
        # found while planning: refused before anything, the app never left service
        said = [line for line in ended.output.splitlines() if line.startswith("error:")]
        assert said and "truncated" in said[-1], ended.output[-3000:]
        assert await media(demo_db) == damaged
        assert maintenance_off(demo_app)
        return
    assert ended.code in (4, 5), ended.output[-3000:]
    line = outcome_line(ended)
    assert "truncated" in line, line
    end_entry = journal_end(console.home)
    assert end_entry is not None and end_entry["data"]["exit_code"] == ended.code  # type: ignore[index]
    assert await media(demo_db) == damaged      # nothing half-loaded
    await nothing_left_running(demo_db)
    assert any(way in line for way in WAYS_OUT), line
    if ended.code == 5:
        # resuming cannot load a cut file: it must end again, the same way, not hang
        again = console.resume("partial")
        assert again.code in (4, 5) and "truncated" in outcome_line(again)
        assert await media(demo_db) == damaged
    off = console.run("maintenance", "off")
    assert off.code == 0, off.output
    assert maintenance_off(demo_app)


@pytest.fixture
def tiny_home(tmp_path: Path) -> Iterator[Path]:
    """The console's state directory on a real 1 MB filesystem (a tmpfs; needs mount rights,
    skipped where the platform refuses, as tests/test_backupsets.py does)."""
    home = tmp_path / "home"
    home.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(home)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield home
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


def fill(root: Path) -> Path:
    """Fill the filesystem to its last page; returns the filler (delete it to free space)."""
    filler = root / "filler"
    fd = filler.open("wb", buffering=0)
    try:
        while True:
            fd.write(b"\0" * 4096)
    except OSError:
        pass
    finally:
        try:
            fd.close()
        except OSError:
            pass
    with pytest.raises(OSError):
        (root / "probe").write_bytes(b"x" * 4096)
    return filler


def says_the_disk_is_full(ended: Ended, line: str, home: Path) -> None:
    """Journaled where the disk allowed it; where not, the message says the journal could not
    record the end. Either way it says the disk is full and what to do."""
    text = line.lower()
    assert "no space" in text or "free space" in text, line
    assert any(way in line for way in WAYS_OUT), f"no way out named: {line}"
    end = journal_end(home)
    recorded = end is not None and end["kind"] in ("incident_closed", "incident_paused") \
        and end["data"]["exit_code"] == ended.code   # type: ignore[index]
    assert recorded or ("journal" in text and ("could not" in text or "cannot" in text)), \
        f"the end was not journaled, and the message does not say so: {line}"


async def test_resume_with_the_state_directory_on_a_full_disk_ends(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, tmp_path: Path,
        tiny_home: Path) -> None:
    """(c) A console killed before the reload; its state directory's disk then fills up, and
    the operator runs `resume`."""
    conn = await demo_db.connect()
    try:
        backup = await make_set(demo_db, conn, console_config.parent / "backups", ("media",))
        await conn.execute("UPDATE media SET caption = 'broken' WHERE id % 3 = 0")
    finally:
        await conn.close()
    assert backup.manifest is not None
    restored = [backup.manifest.state.tables["public.media"].checksum]
    damaged = await media(demo_db)
    console = Console(console_config, tiny_home, tmp_path / "out")
    killed = console.run(*run_args("partial"), kill_at="before:restore")
    assert killed.code == -9, killed.output[-3000:]
    filler = fill(tiny_home)

    ended = console.resume("partial")
    assert ended.code in (4, 5), ended.output[-3000:]
    line = outcome_line(ended)
    says_the_disk_is_full(ended, line, tiny_home)
    assert await media(demo_db) in (damaged, restored)
    await nothing_left_running(demo_db)

    filler.unlink()          # the way out: free space, resume
    after = console.resume("partial")
    assert after.code == 0, after.output[-3000:]
    assert await media(demo_db) == restored
    assert maintenance_off(demo_app)


@pytest.mark.usefixtures("siblings_dropped")
async def test_a_complete_restore_whose_state_disk_fills_up_ends(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, tmp_path: Path,
        tiny_home: Path) -> None:
    """(d) Type 3 with the state directory's disk filling up while pg_restore works: the run
    ends, the target is untouched (or restored), and after freeing space `resume` finishes."""
    conn = await demo_db.connect()
    try:
        backup = await make_full_set(demo_db, conn, console_config.parent / "backups")
        await conn.execute("UPDATE objects SET name = 'x'")
        damaged = await checksums(conn, "public.objects")
    finally:
        await conn.close()
    assert backup.manifest is not None
    console = Console(console_config, tiny_home, tmp_path / "out")
    proc = console.start(*run_args("full"))
    watch = await admin_connect(demo_db)
    try:
        await wait_for_row(watch, "SELECT pid FROM pg_stat_activity WHERE application_name = "
                           "'pg_restore' AND datname LIKE $1", demo_db.name + "\\_restored\\_%",
                           proc=proc, what="pg_restore into the new database")
        filler = fill(tiny_home)
    finally:
        await watch.close()
    ended = console.finish(proc)
    assert ended.code in (4, 5), ended.output[-3000:]
    line = outcome_line(ended)
    says_the_disk_is_full(ended, line, tiny_home)
    assert await online(demo_db)
    conn = await demo_db.connect()
    try:
        assert await checksums(conn, "public.objects") == damaged   # the switch never came
    finally:
        await conn.close()
    await nothing_left_running(demo_db)

    filler.unlink()
    after = console.resume("full")
    assert after.code == 0, after.output[-3000:]
    assert await matches_manifest(demo_db.dsn, backup.manifest)
    assert maintenance_off(demo_app)
    assert await sibling_databases(demo_db, demo_db.name + "\\_restored\\_%") == []

