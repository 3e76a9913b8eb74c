"""The pgBackRest engine against the real tool (Debian's pgBackRest 2.45) and a real PostgreSQL
15 cluster (/usr/lib/postgresql/15/bin, running as the sandbox's OS user when we are root): a
stanza with WAL archived by ``archive-push`` and one full backup, then writes, a restore point,
more writes and damage. Restored aside (app.pitr.aside) to the mark, to an LSN and to a time,
the aside cluster holds exactly the rows of that moment; a target outside the window, a WAL
segment deleted from the repository and a damaged backup set are refused before anything is
restored. The repository is copied for the destructive cases. One cluster for the module."""

from __future__ import annotations

import asyncio
import json
import pwd
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from app.config_schema import PitrSettings
from app.pitr.aside import AsideCluster
from app.pitr.model import PitrError, PointTarget, Window, lsn_int
from app.pitr.pgbackrest import PgBackRestEngine, explain
from app.sandbox.server import PgServer, chown_tree
from tests.pgbackrest_cluster import PG15, pgbackrest, require_pgbackrest, start_pgbackrest_cluster

STANZA = "tea"


@dataclass
class Facts:
    """The cluster, its stanza and what was written when."""

    server: PgServer
    root: Path
    conf: Path
    repo: Path
    label: str             # the full backup, before every target
    diff_label: str        # a diff backup on it, after the damage
    backup_began: datetime
    backup_ended: datetime
    mark_lsn: str          # pg_create_restore_point('m1'): 150 rows
    time_175: datetime     # between the commits of rows 175 and 176
    lsn_200: str           # after the commit of row 200
    segment_200: str       # the WAL segment holding rows 151..200
    final_lsn: str         # after the damage

    def engine(self, conf: Path | None = None, stanza: str = STANZA) -> PgBackRestEngine:
        return PgBackRestEngine(PitrSettings(engine="pgbackrest", stanza=stanza,
                                             pgbackrest_config=conf or self.conf), PG15)


def _pgbackrest(server: PgServer, conf: Path, *args: str) -> str:
    return pgbackrest(server, conf, STANZA, *args)


async def _sql(server: PgServer, *statements: str) -> list[object]:
    conn = await asyncpg.connect(server.dsn())
    try:
        return [await conn.fetchval(s) for s in statements]
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Facts]:
    require_pgbackrest()
    root = tmp_path_factory.mktemp("pgbackrest")
    server, conf, repo = start_pgbackrest_cluster(root, STANZA, retention_full=2)
    try:
        asyncio.run(_sql(server, "CREATE TABLE t (id int PRIMARY KEY, note text NOT NULL)",
                         "INSERT INTO t SELECT g, 'before backup' FROM generate_series(1, 100) g"))
        _pgbackrest(server, conf, "stanza-create")
        began = datetime.now(UTC)
        _pgbackrest(server, conf, "backup", "--type=full")
        ended = datetime.now(UTC)
        # pgBackRest records whole seconds, so the window opens at the next second: write
        # the history after it
        while datetime.now(UTC) < ended.replace(microsecond=0) + timedelta(seconds=1):
            time.sleep(0.05)

        async def history() -> list[object]:
            conn = await asyncpg.connect(server.dsn())
            try:
                await conn.execute("INSERT INTO t SELECT g, 'after backup' "
                                   "FROM generate_series(101, 150) g")
                mark = await conn.fetchval("SELECT pg_create_restore_point('m1')::text")
                await conn.execute("SELECT pg_switch_wal()")
                await conn.execute("INSERT INTO t SELECT g, 'after mark' "
                                   "FROM generate_series(151, 175) g")
                at = await conn.fetchval("SELECT clock_timestamp()")
                await conn.execute("SELECT pg_sleep(0.05)")   # the next commit is later
                await conn.execute("INSERT INTO t SELECT g, 'after time' "
                                   "FROM generate_series(176, 200) g")
                # insert, not write, position: the sandbox runs with synchronous_commit off
                lsn = await conn.fetchval("SELECT pg_current_wal_insert_lsn()::text")
                segment = await conn.fetchval("SELECT pg_walfile_name($1::text::pg_lsn)", lsn)
                # the bad migration and the writes after it, in the next segment
                await conn.execute("SELECT pg_switch_wal()")
                await conn.execute("UPDATE t SET note = 'damaged'")
                await conn.execute("DELETE FROM t WHERE id > 190")
                await conn.execute("INSERT INTO t SELECT g, 'later' "
                                   "FROM generate_series(1000, 1010) g")
                final = await conn.fetchval("SELECT pg_current_wal_insert_lsn()::text")
                return [mark, at, lsn, segment, final]
            finally:
                await conn.close()

        mark, at, lsn, segment, final = asyncio.run(history())
        _pgbackrest(server, conf, "check")   # switches WAL and waits until it is archived
        _pgbackrest(server, conf, "backup", "--type=diff")
        label, diff = (b["label"] for b in json.loads(
            _pgbackrest(server, conf, "info", "--output=json"))[0]["backup"])
        yield Facts(server, root, conf, repo, label, diff, began, ended, str(mark),
                    at.astimezone(UTC), str(lsn), str(segment), str(final))  # type: ignore[attr-defined]
    finally:
        server.stop()


def _copy_repo(facts: Facts, name: str) -> tuple[Path, Path]:
    """A copy of the repository (ownership kept) and a config file pointing at it."""
    repo = facts.root / name
    subprocess.run(["cp", "-a", str(facts.repo), str(repo)], check=True)
    conf = facts.root / f"{name}.conf"
    conf.write_text(facts.conf.read_text().replace(f"repo1-path={facts.repo}\n",
                                                   f"repo1-path={repo}\n"))
    return repo, conf


def _mark(facts: Facts) -> PointTarget:
    return PointTarget("name", "m1", "mark m1", lsn=facts.mark_lsn)


def _at(moment: datetime) -> PointTarget:
    return PointTarget("time", moment.strftime("%Y-%m-%d %H:%M:%S.%f+00"),
                       moment.isoformat(), at=moment)


async def _restored_rows(facts: Facts, window: Window, target: PointTarget,
                         root: Path) -> list[tuple[int, str]]:
    """Restore ``target`` aside with the engine + AsideCluster; the table's rows there."""
    assert window.refusal(target) is None, window.refusal(target)
    base = window.base_for(target)
    assert base is not None and base.id == facts.label
    aside = await AsideCluster.create(root, target)
    lines: list[str] = []
    try:
        prepared = await facts.engine().prepare(target, base, aside.data_dir, lines.append)
        assert (prepared.data_dir / "recovery.signal").exists()
        auto = (prepared.data_dir / "postgresql.auto.conf").read_text()
        assert f"recovery_target_{target.kind} = '{target.value}'" in auto
        await aside.start(prepared, PG15, end_lsn=window.latest_lsn, timeout=120)
        assert aside.promoted
        conn = await asyncpg.connect(aside.dsn("postgres", facts.server.dsn()))
        try:
            rows = await conn.fetch("SELECT id, note FROM t ORDER BY id")
        finally:
            await conn.close()
    finally:
        await aside.stop()
    assert any(f"restoring backup {facts.label}" in line for line in lines), lines
    return [(r["id"], r["note"]) for r in rows]


def _expected(upto: int) -> list[tuple[int, str]]:
    def note(i: int) -> str:
        return ("before backup" if i <= 100 else "after backup" if i <= 150
                else "after mark" if i <= 175 else "after time")
    return [(i, note(i)) for i in range(1, upto + 1)]


async def test_window_lists_the_backup_and_the_archive(facts: Facts) -> None:
    window = await facts.engine().window()
    assert window.engine == "pgbackrest" and STANZA in window.where
    assert [b.id for b in window.base_backups] == [facts.label, facts.diff_label]
    assert facts.diff_label.startswith(facts.label + "_") and facts.diff_label.endswith("D")
    backup, diff = window.base_backups
    assert diff.problem == "" and lsn_int(diff.start_lsn) > lsn_int(facts.final_lsn)
    assert backup.problem == "" and backup.timeline == 1 and (backup.size or 0) > 0
    assert lsn_int(backup.start_lsn) < lsn_int(backup.stop_lsn) < lsn_int(facts.mark_lsn)
    assert facts.backup_began - timedelta(seconds=1) <= backup.start_time <= backup.stop_time
    assert backup.stop_time <= facts.backup_ended + timedelta(seconds=1)
    assert window.earliest == backup.stop_time
    # the newest commit read from the archive is the damage's, after every target
    assert window.latest is not None and window.latest > facts.time_175
    assert window.latest_lsn is not None
    assert lsn_int(window.latest_lsn) >= lsn_int(facts.final_lsn)
    assert window.timeline == 1 and window.gaps == () and window.notes == ()


async def test_restore_to_the_mark(facts: Facts, tmp_path: Path) -> None:
    window = await facts.engine().window()
    assert await _restored_rows(facts, window, _mark(facts), tmp_path) == _expected(150)


async def test_restore_to_an_lsn(facts: Facts, tmp_path: Path) -> None:
    window = await facts.engine().window()
    target = PointTarget("lsn", facts.lsn_200, f"LSN {facts.lsn_200}", lsn=facts.lsn_200)
    assert await _restored_rows(facts, window, target, tmp_path) == _expected(200)


async def test_restore_to_a_time(facts: Facts, tmp_path: Path) -> None:
    window = await facts.engine().window()
    rows = await _restored_rows(facts, window, _at(facts.time_175), tmp_path)
    assert rows == _expected(175)


async def test_a_target_outside_the_window_is_refused(facts: Facts) -> None:
    window = await facts.engine().window()
    early = window.refusal(_at(facts.backup_began - timedelta(hours=1)))
    assert early is not None and "before the window opens" in early
    late = window.refusal(_at(datetime.now(UTC) + timedelta(days=1)))
    assert late is not None and "after the newest moment the archive holds" in late
    ahead = window.refusal(PointTarget("lsn", "FF/0", "LSN FF/0", lsn="FF/0"))
    assert ahead is not None and "after the newest archived WAL" in ahead


async def test_a_missing_wal_segment_is_a_gap(facts: Facts) -> None:
    repo, conf = _copy_repo(facts, "repo-gap")
    doomed = [p for p in (repo / "archive").rglob(f"{facts.segment_200}-*")]
    assert len(doomed) == 1
    doomed[0].unlink()
    window = await facts.engine(conf).window()
    assert len(window.gaps) == 1
    gap = window.gaps[0]
    assert facts.segment_200 in gap.text and "missing" in gap.text
    assert lsn_int(facts.mark_lsn) < lsn_int(gap.from_lsn) <= lsn_int(facts.lsn_200)
    assert gap.before_time is not None and gap.before_time < facts.time_175
    # the mark is before the gap; the LSN and the time after it cannot be reached
    assert window.refusal(_mark(facts)) is None
    lsn = PointTarget("lsn", facts.lsn_200, f"LSN {facts.lsn_200}", lsn=facts.lsn_200)
    for target in (lsn, _at(facts.time_175)):
        refused = window.refusal(target)
        assert refused is not None and "gap" in refused and facts.segment_200 in refused


async def test_a_corrupt_backup_is_refused_before_anything_is_restored(
        facts: Facts, tmp_path: Path) -> None:
    repo, conf = _copy_repo(facts, "repo-corrupt")
    victim = max((repo / "backup" / STANZA / facts.label / "pg_data" / "base").rglob("*.gz"),
                 key=lambda p: p.stat().st_size)
    with victim.open("r+b") as f:
        f.seek(64)
        f.write(b"not what the manifest says")
    engine = facts.engine(conf)
    window = await engine.window()
    full, diff = window.base_backups
    assert window.base_for(_mark(facts)) == full
    # verify finds the diff invalid too (it reads the full's files it refers to); were it
    # not, the engine would refuse it as building on an invalid full
    for base, says in ((full, f"pgbackrest verify finds backup {facts.label} invalid"),
                       (diff, f"backup {facts.diff_label} ")):
        data_dir = tmp_path / base.id
        with pytest.raises(PitrError) as refused:
            await engine.prepare(_mark(facts), base, data_dir, lambda _line: None)
        said = str(refused.value)
        assert says in said and "invalid" in said and "nothing was restored" in said, said
        assert "checksum invalid: 1" in said
        assert not data_dir.exists() or not any(data_dir.iterdir())


async def test_stanza_and_config_problems_are_said_in_words(facts: Facts) -> None:
    with pytest.raises(PitrError, match=r"stanza 'nope'.*stanza-create"):
        await facts.engine(stanza="nope").window()
    with pytest.raises(PitrError, match=r"exit 55, its config file is missing.*pgbackrest_config"):
        await facts.engine(facts.root / "absent.conf").window()
    # the aside cluster's binaries are another major version: every backup says so
    from app.sandbox.server import bin_dir

    bundled = PgBackRestEngine(PitrSettings(engine="pgbackrest", stanza=STANZA,
                                            pgbackrest_config=facts.conf), bin_dir())
    window = await bundled.window()
    assert window.usable() == []
    assert all("/usr/lib/postgresql/15/bin" in b.problem for b in window.base_backups)
    refused = window.refusal(_mark(facts))
    assert refused is not None and "set [pitr] bin_dir" in refused
    assert any("set [pitr] bin_dir" in n for n in window.notes)
    # no stanza can exist for PostgreSQL 18 with pgBackRest 2.45: the console says why
    with pytest.raises(PitrError, match=r"stanza 'nope'.*not PostgreSQL 18.*native"):
        await PgBackRestEngine(PitrSettings(engine="pgbackrest", stanza="nope",
                                            pgbackrest_config=facts.conf), bin_dir()).window()
    # what pgBackRest 2.45 says of the bundled PostgreSQL 18 (seen on stanza-create)
    said = explain("check", 56, "WARN: unable to check pg1: [VersionNotSupportedError] "
                   "unexpected control version = 1800 and catalog version = 202506291\n"
                   "ERROR: [056]: unable to find primary cluster - cannot proceed", "", "2.45")
    assert "PostgreSQL version not supported" in said and "9.0 to 15" in said


async def test_a_repository_the_aside_user_cannot_read_is_refused(facts: Facts,
                                                                  tmp_path: Path) -> None:
    if facts.server.user is None:
        pytest.skip("not root: the aside cluster runs as this user, who reads the repository")
    repo, conf = _copy_repo(facts, "repo-private")
    chown_tree(repo, pwd.getpwuid(0))
    repo.chmod(0o700)
    engine = facts.engine(conf)
    window = await engine.window()          # the console (root) reads it
    base = window.base_for(_mark(facts))
    assert base is not None
    data_dir = tmp_path / "pgdata"
    with pytest.raises(PitrError) as refused:
        await engine.prepare(_mark(facts), base, data_dir, lambda _line: None)
    said = str(refused.value)
    assert f"OS user {facts.server.user.pw_name}" in said and "read access" in said
    assert "nothing was restored" in said
    assert not data_dir.exists() or not any(data_dir.iterdir())


async def test_a_failed_restore_is_said_in_words(facts: Facts, tmp_path: Path) -> None:
    engine = facts.engine()
    window = await engine.window()
    base = window.base_for(_mark(facts))
    assert base is not None
    data_dir = tmp_path / "pgdata"
    data_dir.mkdir()
    (data_dir / "notes.txt").write_text("not a PostgreSQL data folder")
    with pytest.raises(PitrError) as refused:
        await engine.prepare(_mark(facts), base, data_dir, lambda _line: None)
    said = str(refused.value)
    assert "pgbackrest restore failed (exit 40, the restore folder is not empty)" in said
    assert "restore into an empty folder" in said and "live database was not touched" in said
