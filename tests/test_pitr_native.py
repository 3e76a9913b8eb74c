"""The native point-in-time engine and restore aside, on a real archiving PostgreSQL: the
window read from the base backups and the archive, restores to a mark, an LSN and a time
(each holding exactly the rows of that moment, promoted), refusals for a missing segment, a
corrupt base backup and targets outside the window, a failed recovery leaving nothing
running, and orphaned aside clusters swept."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from app.config import load as load_config
from app.pitr.aside import AsideCluster, sweep_orphans
from app.pitr.model import PitrError, PointTarget, Window, lsn_int, lsn_text
from app.pitr.native import NativeEngine, segment_of
from app.sandbox.server import cmdline, pid_alive
from tests.pitr_cluster import PitrCluster, start_pitr_cluster

CHECK = ("SELECT count(*)::int AS n, md5(coalesce(string_agg(id || ':' || v, ',' ORDER BY id), "
         "'')) AS sum FROM pitr_probe")


@dataclass
class State:
    n: int
    sum: str


@dataclass
class History:
    """The cluster and what ``pitr_probe`` held at each target moment."""

    cluster: PitrCluster
    engine: NativeEngine
    mark: str
    at_mark: State
    moment: datetime          # after phase B committed, before phase C
    at_moment: State
    lsn: str                  # after phase C committed, before phase D
    at_lsn: State
    now: State


def _state(cluster: PitrCluster, dsn: str | None = None) -> State:
    async def go() -> State:
        conn = await asyncpg.connect(dsn or cluster.dsn)
        try:
            row = await conn.fetchrow(CHECK)
            assert row is not None
            return State(row["n"], row["sum"])
        finally:
            await conn.close()
    return asyncio.run(go())


def _sql(cluster: PitrCluster, query: str) -> object:
    if ";" in query:
        cluster.execute(query)
        return None
    return cluster.sql(query)


async def _live(dsn: str) -> State:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(CHECK)
        assert row is not None
        return State(row["n"], row["sum"])
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    """Phase A → mark → B → (moment) → C → (LSN) → D, all archived, each phase in WAL
    segments of its own (so one can go missing)."""
    cluster = start_pitr_cluster(tmp_path_factory.mktemp("pitr"))
    try:
        _sql(cluster, "CREATE TABLE pitr_probe (id int PRIMARY KEY, v text NOT NULL);"
                      "INSERT INTO pitr_probe SELECT g, 'a' || g FROM generate_series(1, 100) g")
        at_mark = _state(cluster)
        _sql(cluster, "SELECT pg_create_restore_point('before-deploy')")
        cluster.switch_wal()
        _sql(cluster, "INSERT INTO pitr_probe SELECT g, 'b' || g FROM generate_series(101, 150) g;"
                      "UPDATE pitr_probe SET v = v || '!' WHERE id <= 10")
        at_moment = _state(cluster)
        cluster.switch_wal()
        time.sleep(0.05)      # commit timestamps on either side of the moment differ
        moment = datetime.now(UTC)
        time.sleep(0.05)
        _sql(cluster, "DELETE FROM pitr_probe WHERE id BETWEEN 20 AND 39")
        at_lsn = _state(cluster)
        # the insert position (pg_current_wal_lsn is where WAL is written to so far, which
        # lags behind the last commit with synchronous_commit = off)
        lsn = str(_sql(cluster, "SELECT pg_current_wal_insert_lsn()::text"))
        cluster.switch_wal()
        _sql(cluster, "INSERT INTO pitr_probe SELECT g, 'd' || g FROM generate_series(151, 400) g")
        now = _state(cluster)
        cluster.switch_wal()
        cfg = load_config(cluster.config)
        assert cfg.pitr is not None
        yield History(cluster, NativeEngine(cfg.pitr, cluster.server.bins), "before-deploy",
                      at_mark, moment, at_moment, lsn, at_lsn, now)
    finally:
        cluster.stop()


def _engine(h: History, **paths: Path) -> NativeEngine:
    return NativeEngine(replace(h.engine.settings, **paths), h.cluster.server.bins)


def _time_target(moment: datetime) -> PointTarget:
    value = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    return PointTarget("time", value, f"time {value}", at=moment)


async def _restore(h: History, target: PointTarget, root: Path,
                   window: Window | None = None) -> tuple[AsideCluster, list[str]]:
    """Restore ``target`` aside (running; the caller stops it) and the progress lines."""
    window = window or await h.engine.window()
    assert window.refusal(target) is None
    base = window.base_for(target)
    assert base is not None
    aside = await AsideCluster.create(root, target)
    lines: list[str] = []
    try:
        prepared = await h.engine.prepare(target, base, aside.data_dir, lines.append)
        await aside.start(prepared, h.cluster.server.bins, end_lsn=window.latest_lsn,
                          on_progress=lambda _f, line: lines.append(line),
                          target_dsn=h.cluster.dsn)
    except BaseException:
        await aside.stop()
        raise
    return aside, lines


async def _aside_state(h: History, aside: AsideCluster) -> tuple[State, bool]:
    conn = await asyncpg.connect(aside.dsn(h.cluster.database, h.cluster.dsn))
    try:
        row = await conn.fetchrow(CHECK)
        recovering = await conn.fetchval("SELECT pg_is_in_recovery()")
        assert row is not None
        return State(row["n"], row["sum"]), bool(recovering)
    finally:
        await conn.close()


# -- the window ------------------------------------------------------------------------


async def test_window_lists_the_base_backup_and_a_sane_range(history: History) -> None:
    window = await history.engine.window()
    assert window.engine == "native" and window.where == str(history.cluster.archive_dir)
    [base] = window.base_backups
    assert not base.problem and base.timeline == 1 and (base.size or 0) > 0
    assert lsn_int(base.start_lsn) <= lsn_int(base.stop_lsn)
    assert base.start_time <= base.stop_time
    assert window.earliest == base.stop_time
    assert window.latest is not None and window.latest >= history.moment
    assert window.latest_lsn is not None
    assert lsn_int(window.latest_lsn) >= lsn_int(history.lsn)
    assert window.gaps == () and window.notes == ()
    mark = PointTarget("name", history.mark, f"mark {history.mark}")
    assert window.refusal(mark) is None and window.base_for(mark) == base


# -- restoring aside -------------------------------------------------------------------


async def test_restore_aside_to_a_mark(history: History, tmp_path: Path) -> None:
    target = PointTarget("name", history.mark, f"mark {history.mark}")
    aside, lines = await _restore(history, target, tmp_path / "aside")
    try:
        assert aside.promoted and "before-deploy" in aside.stopped_at_line
        state, recovering = await _aside_state(history, aside)
        assert state == history.at_mark and not recovering
        assert any("replayed WAL to" in ln for ln in lines) or "promoted" in lines[-1]
        record = json.loads((aside.folder / "aside.json").read_text())
        assert record["owner_pid"] == os.getpid() and record["postmaster_pid"] == aside.pid
        assert record["target"]["value"] == history.mark
    finally:
        await aside.stop()
    assert not aside.folder.exists()
    assert await _live(history.cluster.dsn) == history.now      # the live one untouched


async def test_restore_aside_to_an_lsn(history: History, tmp_path: Path) -> None:
    target = PointTarget("lsn", history.lsn, f"LSN {history.lsn}", lsn=history.lsn)
    aside, lines = await _restore(history, target, tmp_path / "aside")
    try:
        state, recovering = await _aside_state(history, aside)
        assert state == history.at_lsn and not recovering
        assert "promoted" in lines[-1]
    finally:
        await aside.stop(keep=True)
    assert (aside.data_dir / "PG_VERSION").is_file()     # kept on request, stopped
    assert aside.pid is None


async def test_restore_aside_to_a_time(history: History, tmp_path: Path) -> None:
    aside, _ = await _restore(history, _time_target(history.moment), tmp_path / "aside")
    try:
        state, recovering = await _aside_state(history, aside)
        assert state == history.at_moment and not recovering
        assert aside.reached_at is not None and aside.reached_at <= history.moment
    finally:
        await aside.stop()


async def test_a_recovery_that_stops_short_is_said_and_leaves_nothing_running(
        history: History, tmp_path: Path) -> None:
    # Past the window on purpose (refusal would stop it first): the server must give up.
    window = await history.engine.window()
    assert window.latest is not None
    target = _time_target(window.latest + timedelta(hours=1))
    base = window.base_for(target)
    assert base is not None
    aside = await AsideCluster.create(tmp_path / "aside", target)
    prepared = await history.engine.prepare(target, base, aside.data_dir, lambda _l: None)
    with pytest.raises(PitrError) as err:
        await aside.start(prepared, history.cluster.server.bins)
    said = str(err.value)
    assert "recovery target" in said and "choose an earlier target" in said
    assert aside.pid is None
    record = json.loads((aside.folder / "aside.json").read_text())
    assert not pid_alive(record["postmaster_pid"])
    await aside.stop()
    assert not aside.folder.exists()


# -- refusals --------------------------------------------------------------------------


async def test_a_missing_segment_is_a_gap_and_refused(history: History,
                                                      tmp_path: Path) -> None:
    archive = history.cluster.copy_archive(tmp_path / "archive")
    window = await history.engine.window()
    [base] = window.base_backups
    size = 16 << 20
    segments = sorted(p.name for p in archive.iterdir() if len(p.name) == 24)
    # the second segment after the base backup's (phase B's), WAL on both sides of it
    lost = [s for s in segments if segment_of(s, size)[1] > lsn_int(base.stop_lsn) // size][1]
    assert lost != segments[-1]
    (archive / lost).unlink()
    damaged = await _engine(history, archive_dir=archive).window()
    [gap] = damaged.gaps
    assert lost in gap.text and "missing" in gap.text
    assert lsn_int(gap.from_lsn) == segment_of(lost, size)[1] * size
    assert gap.before_time is not None               # the newest commit before it, read
    target = PointTarget("lsn", history.lsn, f"LSN {history.lsn}", lsn=history.lsn)
    refusal = damaged.refusal(target)
    assert refusal is not None and lost in refusal and "gap" in refusal
    later = damaged.refusal(_time_target(history.moment))    # phase B is in the lost segment
    assert later is not None and lost in later


async def test_a_corrupt_base_backup_is_unusable(history: History, tmp_path: Path) -> None:
    base_dir = history.cluster.copy_base(tmp_path / "bases")
    [folder] = list(base_dir.iterdir())
    victim = max((p for p in (folder / "base").rglob("*") if p.is_file()),
                 key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF                    # same size, one byte flipped
    victim.write_bytes(bytes(data))
    window = await _engine(history, base_dir=base_dir).window()
    [base] = window.base_backups
    assert base.problem.startswith("corrupt:") and "pg_verifybackup" in base.problem
    assert victim.name in base.problem and "take a new base backup" in base.problem
    refusal = window.refusal(PointTarget("name", history.mark, "mark before-deploy"))
    assert refusal is not None and "no usable base backup" in refusal and "corrupt" in refusal


async def test_an_incomplete_base_backup_is_unusable(history: History,
                                                     tmp_path: Path) -> None:
    base_dir = history.cluster.copy_base(tmp_path / "bases")
    [folder] = list(base_dir.iterdir())
    (folder / "backup_manifest").unlink()
    [base] = (await _engine(history, base_dir=base_dir).window()).base_backups
    assert base.problem.startswith("incomplete:") and "backup_manifest" in base.problem


async def test_targets_outside_the_window_are_refused(history: History) -> None:
    window = await history.engine.window()
    assert window.latest_lsn is not None and window.earliest and window.latest
    beyond = lsn_text(lsn_int(window.latest_lsn) + (16 << 20))
    refusal = window.refusal(PointTarget("lsn", beyond, f"LSN {beyond}", lsn=beyond))
    assert refusal is not None and "after the newest archived WAL" in refusal
    later = window.refusal(_time_target(window.latest + timedelta(minutes=5)))
    assert later is not None and "after the newest moment" in later
    earlier = window.refusal(_time_target(window.earliest - timedelta(minutes=5)))
    assert earlier is not None and "before the window opens" in earlier


# -- orphans ---------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


async def test_sweep_orphans_stops_and_removes_an_aside_whose_owner_died(
        history: History, tmp_path: Path) -> None:
    root = tmp_path / "aside"
    target = PointTarget("name", history.mark, f"mark {history.mark}")
    aside, _ = await _restore(history, target, root)
    postmaster = aside.pid
    assert postmaster is not None and pid_alive(postmaster)
    # The owner that died: its record names a pid that no longer runs (a fake owner, the
    # one thing a real part cannot give us without killing this test process).
    record_path = aside.folder / "aside.json"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "owner_pid": _dead_pid(),
                                       "owner_cmd": "rollback-console run (killed)"}))
    alive = await AsideCluster.create(root, target)     # ours: must be left alone
    bystander = subprocess.Popen(["sleep", "60"], cwd=aside.folder)   # not PostgreSQL
    try:
        cleaned = sweep_orphans(root)
        assert bystander.poll() is None
        assert len(cleaned) == 1 and aside.folder.name in cleaned[0]
        assert str(postmaster) in cleaned[0]
        assert not pid_alive(postmaster)
        assert not aside.folder.exists()
        assert not any(str(aside.data_dir) in cmdline(int(p.name))
                       for p in Path("/proc").iterdir() if p.name.isdigit())
        assert alive.folder.is_dir() and sweep_orphans(root) == []
    finally:
        bystander.kill()
        bystander.wait()
        await alive.stop()
        await aside.stop()


async def test_aside_dsn_keeps_the_credentials_and_points_at_the_aside_port(
        history: History, tmp_path: Path) -> None:
    aside = await AsideCluster.create(tmp_path / "aside", PointTarget("lsn", "0/1", "x",
                                                                      lsn="0/1"))
    try:
        dsn = aside.dsn("shop", "postgresql://app:s3cret@db.example:6543/live?sslmode=require"
                                "&host=/tmp")
        assert dsn == f"postgresql://app:s3cret@127.0.0.1:{aside.port}/shop?sslmode=require"
    finally:
        await aside.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="as root only: the aside runs as another user")
async def test_an_archive_the_aside_user_cannot_read_is_refused_before_copying(
        history: History, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    shutil.copytree(history.cluster.archive_dir, archive)      # root's, mode 600 files
    archive.chmod(0o700)
    engine = _engine(history, archive_dir=archive)
    window = await engine.window()
    target = PointTarget("name", history.mark, f"mark {history.mark}")
    base = window.base_for(target)
    assert base is not None
    data_dir = tmp_path / "pgdata"
    with pytest.raises(PitrError) as err:
        await engine.prepare(target, base, data_dir, lambda _l: None)
    assert "cannot read" in str(err.value) and str(archive) in str(err.value)
    assert not data_dir.exists()


async def test_a_timeline_switch_is_followed_and_one_without_history_is_a_gap(
        history: History, tmp_path: Path) -> None:
    # Injected: the newest segment moved to timeline 2, as after a promotion (a real switch
    # would need a second primary); first with its history file, then without.
    archive = history.cluster.copy_archive(tmp_path / "archive")
    size = 16 << 20
    newest = sorted(p.name for p in archive.iterdir() if len(p.name) == 24)[-1]
    (archive / newest).rename(archive / ("00000002" + newest[8:]))
    switch = lsn_text(segment_of(newest, size)[1] * size)
    (archive / "00000002.history").write_text(f"1\t{switch}\tno recovery target specified\n")
    engine = _engine(history, archive_dir=archive)
    followed = await engine.window()
    assert followed.timeline == 2 and followed.gaps == ()
    assert followed.latest_lsn is not None and lsn_int(followed.latest_lsn) >= lsn_int(switch)
    (archive / "00000002.history").unlink()
    broken = await engine.window()
    [gap] = broken.gaps
    assert "timeline 2" in gap.text and "00000002.history" in gap.text
    # the archive ends, for recovery, where timeline 1 ends
    assert broken.timeline == 2 and broken.latest_lsn is not None
    assert lsn_int(broken.latest_lsn) < lsn_int(switch)
    lsn = followed.latest_lsn
    refusal = broken.refusal(PointTarget("lsn", lsn, f"LSN {lsn}", lsn=lsn))
    assert refusal is not None and "after the newest archived WAL" in refusal


OWNER = """
import asyncio, sys
from pathlib import Path
from app.config import load
from app.pitr.aside import AsideCluster
from app.pitr.model import PointTarget
from app.pitr.native import NativeEngine

async def main():
    cfg = load(sys.argv[1])
    engine = NativeEngine(cfg.pitr, Path(sys.argv[3]))
    window = await engine.window()
    target = PointTarget("name", sys.argv[4], "mark")
    aside = await AsideCluster.create(Path(sys.argv[2]), target)
    prepared = await engine.prepare(target, window.base_for(target), aside.data_dir, print)
    await aside.start(prepared, Path(sys.argv[3]))
    print("postmaster", aside.pid, flush=True)
    await asyncio.sleep(300)

asyncio.run(main())
"""


async def test_a_console_killed_mid_restore_takes_its_aside_server_down(
        history: History, tmp_path: Path) -> None:
    """kill -9 of the owning console: the parent-death signal stops the postmaster, and
    sweep_orphans removes what is left (the folder)."""
    root = tmp_path / "aside"
    owner = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OWNER, str(history.cluster.config), str(root),
        str(history.cluster.server.bins), history.mark, stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parent.parent)
    assert owner.stdout is not None
    line = b""
    while not line.startswith(b"postmaster"):
        line = await asyncio.wait_for(owner.stdout.readline(), timeout=60)
        assert line, "the owner exited before its aside cluster was up"
    postmaster = int(line.split()[1])
    assert pid_alive(postmaster)
    owner.kill()
    await owner.wait()
    for _ in range(200):                 # a condition, not a timing: wait until it is gone
        if not pid_alive(postmaster):
            break
        await asyncio.sleep(0.05)
    assert not pid_alive(postmaster)
    [folder] = list(root.iterdir())
    [cleaned] = sweep_orphans(root)
    assert folder.name in cleaned and "which is gone" in cleaned
    assert not folder.exists()
