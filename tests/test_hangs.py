"""Silent hangs (issue 13, item 4): faults after which the console used to wait forever, the app
in maintenance and no exit code. Each must now end the run, within a bound, with one line that
says what happened and the way out (exit 4: returned to before; exit 5: needs the operator),
the outcome journaled where the disk allows it (and the message saying so where it does not),
and the table's data either as it was or restored, never half-loaded. Then the way out the
message names is taken, and it works.

Every fault is real: here a 1 MB tmpfs filled to the last page."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DemoApp, DemoDb
from tests.test_fault_matrix import (
    Console,
    Ended,
    admin_connect,
    console_sessions,
    maintenance_off,
    make_full_set,
    matches_manifest,
    online,
    run_args,
    settled,
    sibling_databases,
    siblings_dropped,  # noqa: F401 (a fixture, used by name)
    stray_tools,
    wait_for_row,
)
from tests.test_partial_rollback import checksums

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


async def nothing_left_running(db: DemoDb) -> None:
    assert await settled(lambda: console_sessions(db)) == [], "console sessions are left"
    assert await settled(lambda: stray_tools(db)) == [], "dump tools are still running"


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

