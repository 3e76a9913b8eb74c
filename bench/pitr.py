"""Point in time (issue 17), on the sandbox with WAL archiving switched on:

(a) "go" to a usable aside cluster with the console's code (the native engine's window and
    prepare, then ``app.pitr.aside.AsideCluster``) against the bare engine by hand: ``cp -a``
    the pg_basebackup folder, ``recovery.signal`` + ``restore_command`` +
    ``recovery_target_name``, start postgres, wait until ``pg_is_in_recovery()`` is false;
(b) the same restore with 0x, 1x, 2x and 4x the WAL between the base backup and the target
    (one pass = an UPDATE of 2M rows of the largest table, all of them up to that size, so the
    same WAL at every size; a mark after each), from the same base backup: the cost grows with
    the WAL replayed;
(c) Type 2 of the largest table from a point in time (``run --type partial --at <mark>``)
    against Type 2 from a backup set taken at the same moment (``run ... --backup``), both
    through the console's CLI; and the step before the migration: ``mark`` against
    ``backup``.

Everything runs on the sandbox's own server (archiving is switched on with ALTER SYSTEM and a
restart, and back off at the end); the console's state (marks, incidents, aside clusters) lives
in the bench's work folder.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import shutil
import statistics
import subprocess
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from app.catalog import table_content
from app.config_schema import PitrSettings
from app.pitr.model import PointTarget
from app.sandbox.manager import DATABASE, Sandbox
from app.sandbox.server import PgServer, allow_traverse, chown_tree, free_port
from bench.common import Result, psql

TABLE = "public.media"
PASSES = (0, 1, 2, 4)         # WAL between the base backup and the target, in passes
PASS_ROWS = 2_000_000         # one pass: an UPDATE of this many rows of TABLE (all, up to 2M)
PROBE_DB = "bench_pitr_probe"  # one row per mark: which mark a restored cluster stopped at
CONSOLE = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "rollback-console"
BARE = ("by hand: cp -a the base backup, recovery.signal + restore_command + "
        "recovery_target_name, start postgres, poll pg_is_in_recovery()")


@dataclass
class Mark:
    passes: int
    label: str
    lsn: str
    wal: int = 0              # bytes of WAL between the base backup's end and this mark


@dataclass
class Archive:
    archive_dir: Path
    base_dir: Path
    base: Path
    base_stop_lsn: str
    switched: bool            # the bench switched archiving on (and switches it off)
    marks: dict[int, Mark] = field(default_factory=dict)


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


async def _sql(dsn: str, statement: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(statement)
    finally:
        await conn.close()


def _pitr_section(box: Sandbox) -> dict[str, str] | None:
    """The sandbox config's own [pitr] table, when the sandbox archives WAL itself."""
    section = tomllib.loads(box.config_path.read_text()).get("pitr")
    return section if isinstance(section, dict) else None


def _archiving(box: Sandbox, work: Path) -> tuple[Path, Path, bool]:
    """(archive folder, base-backup folder, switched): the sandbox's own archive when it has
    one, else archive_mode switched on into ``work`` (ALTER SYSTEM and a restart, undone by
    ``_restore_settings``). full_page_writes on either way, as on a production server."""
    assert box.server is not None
    server = box.server
    admin = server.dsn()
    section = _pitr_section(box)
    if section and asyncio.run(_sql(admin, "SHOW archive_mode")) == "on":
        psql(admin, "-c", "ALTER SYSTEM SET full_page_writes = on", "-c",
             "SELECT pg_reload_conf()")
        return (box.dir / section["archive_dir"]).resolve(), \
            (box.dir / section["base_dir"]).resolve(), False
    archive_dir = (work / "wal-archive").resolve()
    archive_dir.mkdir(parents=True, exist_ok=True)
    if server.user:
        allow_traverse(archive_dir)
    chown_tree(archive_dir, server.user)
    target = shlex.quote(str(archive_dir))
    command = f"test ! -f {target}/%f && cp %p {target}/%f".replace("'", "''")
    psql(admin, "-c", "ALTER SYSTEM SET archive_mode = on",
         "-c", f"ALTER SYSTEM SET archive_command = '{command}'",
         "-c", "ALTER SYSTEM SET full_page_writes = on")
    server.stop()
    server.start(timeout=120)
    return archive_dir, (work / "base-backups").resolve(), True


def _restore_settings(server: PgServer, switched: bool) -> None:
    admin = server.dsn()
    psql(admin, "-c", "ALTER SYSTEM RESET full_page_writes", "-c", "SELECT pg_reload_conf()")
    if switched:
        psql(admin, "-c", "ALTER SYSTEM RESET archive_mode", "-c",
             "ALTER SYSTEM RESET archive_command")
        server.stop()
        server.start(timeout=120)


def _switch_and_wait(server: PgServer, archive_dir: Path, timeout: float = 900) -> None:
    """A WAL switch, then wait until the archive holds the segment it closed."""
    # the segment holding the byte before the switch point (a switch at a segment boundary
    # returns that boundary, which names the next, still open, segment)
    segment = str(asyncio.run(_sql(server.dsn(),
                                   "SELECT pg_walfile_name(pg_switch_wal() - 1)")))
    deadline = time.monotonic() + timeout
    while not (archive_dir / segment).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"WAL segment {segment} did not reach {archive_dir}")
        time.sleep(0.2)


async def _mark(server: PgServer, label: str, passes: int) -> str:
    """A probe row saying which mark this is, then the restore point (superuser)."""
    probe = await asyncpg.connect(server.dsn(PROBE_DB))
    try:
        await probe.execute("INSERT INTO probe VALUES ($1)", passes)
    finally:
        await probe.close()
    return str(await _sql(server.dsn(), f"SELECT pg_create_restore_point('{label}')::text"))


def _lsn_bytes(server: PgServer, a: str, b: str) -> int:
    return int(str(asyncio.run(_sql(server.dsn(), f"SELECT pg_wal_lsn_diff('{b}', '{a}')"))))


def prepare_archive(box: Sandbox, work: Path) -> Archive:
    """Archiving on, one base backup, then a mark after 0, 1, 2 and 4 passes of WAL."""
    assert box.server is not None
    server = box.server
    archive_dir, base_dir, switched = _archiving(box, work)
    asyncio.run(_sql(server.dsn(), f"CREATE DATABASE {PROBE_DB}"))
    asyncio.run(_sql(server.dsn(PROBE_DB), "CREATE TABLE probe (k int)"))
    base = server.base_backup(base_dir)
    stop_lsn = str(asyncio.run(_sql(server.dsn(), "SELECT pg_current_wal_lsn()::text")))
    archive = Archive(archive_dir, base_dir, base, stop_lsn, switched)
    tag = secrets.token_hex(3)
    done = 0
    for passes in PASSES:
        while done < passes:
            started = time.perf_counter()
            psql(server.dsn(DATABASE), "-c", f"UPDATE {TABLE} SET caption = caption WHERE id "
                 f"< (SELECT min(id) FROM {TABLE}) + {PASS_ROWS}")
            done += 1
            print(f"  pitr: WAL pass {done} (UPDATE of {PASS_ROWS:,} rows of {TABLE}) "
                  f"{time.perf_counter() - started:.1f}s", flush=True)
        label = f"bench-{tag}-{passes}x"
        lsn = asyncio.run(_mark(server, label, passes))
        archive.marks[passes] = Mark(passes, label, lsn, _lsn_bytes(server, stop_lsn, lsn))
    _switch_and_wait(server, archive_dir)
    for m in archive.marks.values():
        print(f"  pitr: mark {m.label} at {m.lsn}, {_gb(m.wal)} of WAL after the base backup",
              flush=True)
    return archive


def _target(mark: Mark) -> PointTarget:
    return PointTarget("name", mark.label, f"mark {mark.label}", lsn=mark.lsn)


async def _stopped_at(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT max(k) FROM probe"))
    finally:
        await conn.close()


async def _ours(server: PgServer, settings: PitrSettings, mark: Mark) -> tuple[float, float]:
    """(go → promoted aside cluster, of which reading the window) with the console's code."""
    from app.pitr.aside import AsideCluster
    from app.pitr.native import NativeEngine

    assert settings.aside_dir is not None
    target = _target(mark)
    started = time.perf_counter()
    engine = NativeEngine(settings, server.bins)
    window = await engine.window()
    refusal = window.refusal(target)
    assert refusal is None, refusal
    base = window.base_for(target)
    assert base is not None
    windowed = time.perf_counter()
    aside = await AsideCluster.create(settings.aside_dir, target)
    try:
        prepared = await engine.prepare(target, base, aside.data_dir, lambda _line: None)
        await aside.start(prepared, server.bins, end_lsn=target.lsn or window.latest_lsn)
        elapsed = time.perf_counter() - started
        reached = await _stopped_at(aside.dsn(PROBE_DB, server.dsn()))
        assert reached == mark.passes, f"ours stopped at mark {reached}, not {mark.passes}"
    finally:
        await aside.stop()
    return elapsed, windowed - started


def _bare(server: PgServer, archive: Archive, mark: Mark, work: Path) -> float:
    """The same restore by hand, timed from the copy to the first read-write answer."""
    folder = work / f"bare-{secrets.token_hex(3)}"
    data = folder / "pgdata"
    started = time.perf_counter()
    folder.mkdir()
    subprocess.run(["cp", "-a", str(archive.base), str(data)], check=True)
    (data / "recovery.signal").write_text("")
    with (data / "postgresql.auto.conf").open("a") as conf:
        conf.write(f"restore_command = 'cp {archive.archive_dir.resolve()}/%f %p'\n"
                   f"recovery_target_name = '{mark.label}'\n"
                   "recovery_target_action = 'promote'\narchive_mode = off\n")
    chown_tree(data / "recovery.signal", server.user)
    bare = PgServer(data, free_port(), server.password, server.bins, server.superuser)
    try:
        bare.start(timeout=3600)
        while asyncio.run(_sql(bare.dsn(), "SELECT pg_is_in_recovery()")):
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        reached = asyncio.run(_stopped_at(bare.dsn(PROBE_DB)))
        assert reached == mark.passes, f"bare stopped at mark {reached}, not {mark.passes}"
    finally:
        bare.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return elapsed


def _aside_results(box: Sandbox, archive: Archive, work: Path, runs: int) -> list[Result]:
    assert box.server is not None
    server = box.server
    aside_root = work / "aside"
    aside_root.mkdir(exist_ok=True)
    settings = PitrSettings("native", archive_dir=archive.archive_dir,
                            base_dir=archive.base_dir, bin_dir=server.bins,
                            aside_dir=aside_root)
    ours: dict[int, list[float]] = {k: [] for k in PASSES}
    window: list[float] = []
    bare: dict[int, list[float]] = {k: [] for k in PASSES}
    for i in range(runs):
        for j, k in enumerate(PASSES):
            mark = archive.marks[k]
            order = ["ours", "bare"] if (i + j) % 2 == 0 else ["bare", "ours"]
            for who in order:
                if who == "ours":
                    total, read = asyncio.run(_ours(server, settings, mark))
                    ours[k].append(total)
                    window.append(read)
                else:
                    bare[k].append(_bare(server, archive, mark, work))
            print(f"  pitr run {i + 1}, {k}x WAL ({_gb(mark.wal)}): ours {ours[k][-1]:.2f}s, "
                  f"by hand {bare[k][-1]:.2f}s", flush=True)
    bases = sum(1 for p in archive.base_dir.iterdir() if p.is_dir())
    size = int(str(asyncio.run(_sql(server.dsn(), "SELECT sum(pg_database_size(datname)) "
                                                  "FROM pg_database"))))
    common = [f"the cluster is {_gb(size)}; one base backup (pg_basebackup -Fp -X stream), "
              "WAL archived by archive_command (cp) into a local folder; full_page_writes on; "
              "the sandbox's fsync = off applies to both",
              "ours = the native engine's window() (reads the archive and the base backups) "
              "+ prepare() (lays the base backup down) + AsideCluster.start (configures, "
              "starts, follows the server log every 0.5 s until promoted); by hand polls "
              "every 0.1 s; teardown not timed for either",
              "every run checks which mark the restored cluster stopped at (a probe row "
              "written just before each mark); ours and by hand alternate in order",
              f"ours: reading the window took {statistics.median(window):.2f} s (median): "
              f"it checks each of the {bases} base backups in base_dir against its manifest "
              "(pg_verifybackup reads every file) and pg_waldumps the newest segments"]
    replay = {k: _gb(archive.marks[k].wal) for k in PASSES}
    results = [Result(f"Point in time: go → usable aside cluster, target after {k}× WAL "
                      f"({replay[k]} at this size)", ours[k], bare[k], BARE, None,
                      common if k == 1 else ["as the 1× row"])
               for k in PASSES]
    for who, times in (("ours", ours), ("by hand", bare)):
        base = statistics.median(times[0])
        growth = ", ".join(f"{k}×: {statistics.median(times[k]):.2f} s "
                           f"(replay ≈ {statistics.median(times[k]) - base:.2f} s)"
                           for k in PASSES)
        for k in (2, 4):
            results.append(Result(
                f"Point in time ({who}): the same restore with {k}× the WAL to replay",
                times[k], times[1], "1× the WAL (same base backup, same engine)", None,
                [f"WAL after the base backup: {', '.join(f'{p}×: {replay[p]}' for p in PASSES)}"
                 f"; the ratio of WAL {k}×/1× is "
                 f"{archive.marks[k].wal / max(1, archive.marks[1].wal):.2f}",
                 f"{who}: {growth} (replay = the time beyond the 0× restore, which is the "
                 "base backup's copy and start-up)"]))
    return results


def _console(cfg: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(CONSOLE), "-c", str(cfg), *args], capture_output=True,
                         text=True, env={**os.environ, "ROLLBACK_CONSOLE_HOME": str(home)},
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"rollback-console {' '.join(args)} exited {out.returncode}:\n"
                           f"{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return out


async def _checksum(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return (await table_content(conn, TABLE)).checksum
    finally:
        await conn.close()


def _type2_results(box: Sandbox, archive: Archive, work: Path, runs: int) -> list[Result]:
    """Type 2 from a point in time vs from a backup set taken at the same moment, both
    through the CLI; and mark vs backup, the step before the migration."""
    assert box.server is not None
    server = box.server
    home = work / "console-state"
    home.mkdir(exist_ok=True)
    cfg = box.config_path
    if _pitr_section(box) is None or archive.switched:   # the sandbox's config lacks [pitr]
        cfg = box.dir / "rollback-pitr.toml"
        text = box.config_path.read_text().split("\n[pitr]\n")[0]
        cfg.write_text(text + (
            f'\n[pitr]\nengine = "native"\narchive_dir = "{archive.archive_dir}"\n'
            f'base_dir = "{archive.base_dir}"\n'))
    # a fresh base backup first (what "take base backups often" means): the newest one before
    # the target is the one restored, so (b)'s WAL passes are not replayed here
    server.base_backup(archive.base_dir)
    dsn = server.dsn(DATABASE)
    marks: list[float] = []
    backups: list[float] = []
    label = ""
    backup_id = ""
    for i in range(runs):
        before = {p.name for p in (box.dir / "backups").iterdir()}
        started = time.perf_counter()
        _console(cfg, home, "backup", "--label", f"pitr{i}")
        backups.append(time.perf_counter() - started)
        backup_id = sorted({p.name for p in (box.dir / "backups").iterdir()} - before)[-1]
        label = f"bench-type2-{secrets.token_hex(3)}"
        started = time.perf_counter()
        _console(cfg, home, "mark", "--label", label)
        marks.append(time.perf_counter() - started)
    expected = asyncio.run(_checksum(dsn))
    damage = f"UPDATE {TABLE} SET caption = 'corrupted' WHERE id % 10 = 0"
    psql(dsn, "-c", damage)   # the bad migration, after the mark; the archive then holds it
    _switch_and_wait(server, archive.archive_dir)
    phrase = f"ROLLBACK {tomllib.loads(cfg.read_text())['target']['name']}"
    at: list[float] = []
    dump: list[float] = []
    for i in range(runs):
        order = [("at", ("--at", label)), ("dump", ("--backup", backup_id))]
        if i % 2:
            order.reverse()
        for who, source in order:
            psql(dsn, "-c", damage)
            started = time.perf_counter()
            _console(cfg, home, "run", "--type", "partial", "--tables", "media", *source,
                     "--confirm", phrase)
            seconds = time.perf_counter() - started
            assert asyncio.run(_checksum(dsn)) == expected, f"{who} did not restore the rows"
            (at if who == "at" else dump).append(seconds)
            print(f"  pitr Type 2 run {i + 1} {who}: {seconds:.2f}s", flush=True)
    note = ("both through `rollback-console run --type partial --tables media` (gate, "
            "maintenance on/off, safety snapshot, reload, validation), the same rows back "
            "(the table's checksum is checked after every run); --at restores the mark aside "
            "from a base backup taken just before it, captures the table as a verified set, "
            "then reloads it")
    return [
        Result("Type 2 of media from a point in time (run --at <mark>, aside restore included)",
               at, dump, "Type 2 of media from a backup set taken at the same moment "
               "(run --backup <set>)", None, [note]),
        Result("Before the migration: rollback-console mark (restore point + WAL switch)",
               marks, backups, "rollback-console backup (the runbook's dump step: schema, "
               "one file per table, full dump)", None,
               ["both as a CLI process, start-up included; the mark's cost does not grow "
                "with the database, the backup's does"]),
    ]


def run(box: Sandbox, work: Path, runs: int, type2: bool = True) -> list[Result]:
    assert box.server is not None
    work.mkdir(parents=True, exist_ok=True)
    if box.server.user:
        allow_traverse(work)
    archive = prepare_archive(box, work)
    try:
        results = _aside_results(box, archive, work, runs)
        if type2:
            try:
                results += _type2_results(box, archive, work, runs)
            except Exception as exc:   # keep (a) and (b); say why (c) is missing
                print(f"!! pitr Type 2 comparison failed: {exc}", flush=True)
        return results
    finally:
        _restore_settings(box.server, archive.switched)
