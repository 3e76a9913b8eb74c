"""The fault-injection matrix: the console killed with SIGKILL at every step boundary of Types
1, 2 and 3 (``before:X`` and ``after:X`` for every step X) and inside the long steps (a lock
wait or the load, the index rebuild and the foreign-key validation of Type 2's reload; the DDL
of Type 1's apply; pg_restore into the new database and the switch of Type 3), then `resume`
until it exits 0 (two resumes at most). Every case must end where an uninterrupted run ends:
the backup's content (Type 1: zero schema drift), every constraint valid, the target online,
the app out of maintenance, no scratch database or stray table, no console session on the
server and no pg_dump / pg_restore / psql left running.

Kills inside a step are real: the test watches the server (pg_stat_activity, pg_database)
every few milliseconds and sends SIGKILL the moment the console's statement shows; where a
step would be too short to catch, a lock held by the test makes it wait (a real condition),
or the table is made larger."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from app import config
from app.faults import ENV as KILL_ENV
from tests.conftest import DemoApp, DemoDb
from tests.helpers import CONSOLE, make_full_set, matches_manifest
from tests.test_partial_rollback import checksums, make_set

TARGET = "tea-school-sandbox"
PHRASES = {"schema": f"ROLLBACK SCHEMA {TARGET}", "partial": f"ROLLBACK {TARGET}",
           "full": f"CONFIRM_FULL_RESTORE {TARGET}"}
STEPS = {
    "schema": ("prerequisites", "assessment", "maintenance", "safety_snapshot", "restore",
               "validation", "recovery"),
    "partial": ("prerequisites", "assessment", "maintenance", "safety_snapshot", "restore",
                "validation", "recovery"),
    "full": ("prerequisites", "assessment", "maintenance", "restore_new", "validate_new",
             "switch", "validation", "recovery"),
}
TOOLS = ("pg_dump", "pg_restore", "psql")
RUN_TIMEOUT_S = 120      # a bound for "did not hang", never a timing assertion
POLL_S = 0.002


# ---------------------------------------------------------------------------------------------
# Driving the console as a separate process (so SIGKILL is a real kill -9)


@dataclass
class Ended:
    code: int
    output: str


@functools.cache
def resume_takes_confirm() -> bool:
    """`resume` may ask for the phrase again past the point of no return (being added)."""
    shown = subprocess.run([*CONSOLE, "resume", "--help"],
                           capture_output=True, text=True, timeout=60)
    return "--confirm" in shown.stdout


@dataclass
class Console:
    config: Path
    home: Path
    outputs: Path

    def start(self, *args: str, kill_at: str | None = None) -> subprocess.Popen[str]:
        env = {**os.environ, "ROLLBACK_CONSOLE_HOME": str(self.home)}
        env.pop(KILL_ENV, None)
        if kill_at is not None:
            env[KILL_ENV] = kill_at
        self.outputs.mkdir(parents=True, exist_ok=True)
        out = (self.outputs / f"{uuid.uuid4().hex[:8]}.txt").open("w")
        proc = subprocess.Popen([*CONSOLE, "-c", str(self.config), *args],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, text=True)
        proc.output_file = out  # type: ignore[attr-defined]
        return proc

    def finish(self, proc: subprocess.Popen[str], timeout: float = RUN_TIMEOUT_S) -> Ended:
        out = proc.output_file  # type: ignore[attr-defined]
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
            out.close()
            text = Path(out.name).read_text()
            raise AssertionError(f"the console hung (no exit within {timeout:g}s); it said:\n"
                                 + text[-3000:]) from None
        out.close()
        return Ended(proc.returncode, Path(out.name).read_text())

    def run(self, *args: str, kill_at: str | None = None,
            timeout: float = RUN_TIMEOUT_S) -> Ended:
        return self.finish(self.start(*args, kill_at=kill_at), timeout)

    def resume(self, kind: str, timeout: float = RUN_TIMEOUT_S) -> Ended:
        extra = ("--confirm", PHRASES[kind]) if resume_takes_confirm() else ()
        return self.run("resume", *extra, timeout=timeout)


def run_args(kind: str) -> tuple[str, ...]:
    tables = ("--tables", "media") if kind == "partial" else ()
    return ("run", "--type", kind, *tables, "--confirm", PHRASES[kind])


# ---------------------------------------------------------------------------------------------
# What the user would see afterwards


async def admin_connect(db: DemoDb) -> asyncpg.Connection:
    return await asyncpg.connect(db.server.dsn())


async def sibling_databases(db: DemoDb, pattern: str) -> list[str]:
    admin = await admin_connect(db)
    try:
        return [r["datname"] for r in await admin.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY 1", pattern)]
    finally:
        await admin.close()


async def console_sessions(db: DemoDb) -> list[str]:
    """Server sessions of the console or its tools on the target (or its copies)."""
    admin = await admin_connect(db)
    try:
        rows = await admin.fetch(
            "SELECT pid, datname, application_name, state, left(query, 80) AS q "
            "FROM pg_stat_activity WHERE (datname = $1 OR datname LIKE $2) "
            "AND (application_name LIKE 'rollback-console%' "
            "OR application_name = ANY($3::text[]))",
            db.name, db.name + "\\_%", list(TOOLS))
        return [f"{r['pid']} {r['datname']} {r['application_name']} {r['state']}: {r['q']}"
                for r in rows]
    finally:
        await admin.close()


def stray_tools(db: DemoDb) -> list[str]:
    """pg_dump / pg_restore / psql processes still working on this test's databases."""
    found = []
    for p in psutil.process_iter(["name", "cmdline", "status"]):
        try:
            if p.info["name"] in TOOLS and p.info["status"] != psutil.STATUS_ZOMBIE \
                    and any(db.name in arg for arg in p.info["cmdline"] or ()):
                found.append(f"{p.pid} {' '.join(p.info['cmdline'])[:160]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


async def settled(probe: Callable[[], Awaitable[list[str]]] | Callable[[], list[str]],
                  bound_s: float = 15.0) -> list[str]:
    """What ``probe`` still finds once leftovers had a moment to go (a server session ends a
    little after its client; an orphaned tool after its database is dropped). A bound, not a
    timing assertion: what is still there after it is a leftover."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound_s
    while True:
        found = probe()
        if asyncio.iscoroutine(found):
            found = await found
        assert isinstance(found, list)
        if not found or loop.time() > deadline:
            return found
        await asyncio.sleep(0.1)


async def invalid_constraints(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [f"{r['rel']} {r['conname']}" for r in await conn.fetch(
            "SELECT conrelid::regclass::text AS rel, conname FROM pg_constraint "
            "WHERE NOT convalidated ORDER BY 1, 2")]
    finally:
        await conn.close()


async def user_tables_of(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r["t"] for r in await conn.fetch(
            "SELECT n.nspname || '.' || c.relname AS t FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1")]
    finally:
        await conn.close()


async def online(db: DemoDb) -> bool:
    """The target accepts connections (and is not marked to refuse them)."""
    conn = await asyncpg.connect(db.dsn, timeout=10)
    try:
        return bool(await conn.fetchval(
            "SELECT datallowconn FROM pg_database WHERE datname = current_database()"))
    finally:
        await conn.close()


def maintenance_off(app: DemoApp) -> bool:
    return httpx.get(f"{app.url}/api/health", timeout=10).status_code == 200


async def assert_clean_end(db: DemoDb, app: DemoApp, tables_before: list[str]) -> None:
    """Everything but the data itself: online, out of maintenance, no scratch, nothing left."""
    assert await online(db), "the target refuses connections"
    assert maintenance_off(app), "the app is still in maintenance mode"
    assert await invalid_constraints(db.dsn) == [], "NOT VALID constraints are left"
    assert await sibling_databases(db, db.name + "\\_restored\\_%") == [], \
        "a restored copy was left behind"
    assert await sibling_databases(db, "rollback\\_%") == [], "a scratch database was left"
    assert await user_tables_of(db.dsn) == tables_before, "tables appeared or went missing"
    assert await settled(lambda: console_sessions(db)) == [], "console sessions are left"
    assert await settled(lambda: stray_tools(db)) == [], "dump tools are still running"


# ---------------------------------------------------------------------------------------------
# Watching the server, to kill inside a step


async def wait_for_row(watch: asyncpg.Connection, sql: str, *args: object,
                       proc: subprocess.Popen[str], what: str,
                       timeout: float = RUN_TIMEOUT_S) -> asyncpg.Record:
    """Poll ``sql`` every few ms until it returns a row; fail if the console ends first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        row = await watch.fetchrow(sql, *args)
        if row is not None:
            return row
        if proc.poll() is not None:
            raise AssertionError(f"the console ended (exit {proc.returncode}) before {what}")
        if loop.time() > deadline:
            raise AssertionError(f"{what} never showed")
        await asyncio.sleep(POLL_S)


def console_statement(pattern: str, datname: str | None = None) -> tuple[str, tuple[object, ...]]:
    """A console (or tool) session running a statement like ``pattern``."""
    sql = ("SELECT pid, query, wait_event_type FROM pg_stat_activity WHERE state = 'active' "
           "AND (application_name LIKE 'rollback-console%' OR application_name = 'pg_restore') "
           "AND query ILIKE $1")
    if datname is None:
        return sql, (pattern,)
    return sql + " AND datname = $2", (pattern, datname)


def open_step(home: Path) -> str | None:
    """The step the journal shows started and not finished (where a kill landed)."""
    current = None
    for journal in home.glob("incidents/*/journal.jsonl"):
        for line in journal.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            step = (entry.get("data") or {}).get("step")
            if entry.get("kind") == "step_started":
                current = step
            elif entry.get("kind") == "step_finished" and step == current:
                current = None
    return current


def kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)


@pytest.fixture
def siblings_dropped(demo_db: DemoDb) -> Iterator[None]:
    """A Type 3 run leaves the old database aside (its undo), and a failing test may leave a
    restored copy: drop them with the test's database, the server is shared."""
    yield

    async def drop() -> None:
        for name in await sibling_databases(demo_db, demo_db.name + "\\_%"):
            admin = await admin_connect(demo_db)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()

    asyncio.run(drop())


# ---------------------------------------------------------------------------------------------
# The incident of each type, and how to tell that it was rolled back


@dataclass
class Prepared:
    tables_before: list[str]
    check: Callable[[], Awaitable[None]]


async def bloat_media(conn: asyncpg.Connection) -> None:
    """50,000 media rows: a load, index build and key check long enough to be caught (added
    without per-row key checks and triggers: the copies reference the same parents)."""
    await conn.execute("SET session_replication_role = replica")
    await conn.execute("INSERT INTO media (object_id, owner_id, url, mime_type, bytes, caption) "
                       "SELECT object_id, owner_id, url || g, mime_type, bytes, caption "
                       "FROM media, generate_series(1, 25) g")
    await conn.execute("RESET session_replication_role; ANALYZE media")


async def prepare_partial(db: DemoDb, console_config: Path, big: bool) -> Prepared:
    conn = await db.connect()
    try:
        if big:
            await bloat_media(conn)
        backup = await make_set(db, conn, console_config.parent / "backups", ("media",))
        await conn.execute("UPDATE media SET caption = 'broken' WHERE id % 97 = 0; "
                           "DELETE FROM media WHERE id % 89 = 0")
    finally:
        await conn.close()
    assert backup.manifest is not None
    expected = [backup.manifest.state.tables["public.media"].checksum]

    async def check() -> None:
        c = await db.connect()
        try:
            assert await checksums(c, "public.media") == expected, "media is not the backup's"
        finally:
            await c.close()

    return Prepared(await user_tables_of(db.dsn), check)


async def prepare_schema(db: DemoDb, console_config: Path, big: bool) -> Prepared:
    from app.backups.create import create_set
    from app.drift import drift
    from tests.test_schema_rollback import CATALOGUE, content

    cfg = config.load(console_config)
    backup = await create_set(cfg, "before-migration")
    tables = await user_tables_of(db.dsn)
    conn = await db.connect()
    try:
        objects = await content(conn, "objects")
        await conn.execute(CATALOGUE[-1].sql)   # the consolidation: several changes at once
    finally:
        await conn.close()

    async def check() -> None:
        found = await drift(cfg, backup)
        assert found.diff.empty, f"schema drift is left: {found.diff.summary()}"
        c = await db.connect()
        try:
            assert await content(c, "objects") == objects, "objects' rows changed"
        finally:
            await c.close()

    return Prepared(tables, check)


async def prepare_full(db: DemoDb, console_config: Path, big: bool) -> Prepared:
    conn = await db.connect()
    try:
        if big:
            await bloat_media(conn)
        backup = await make_full_set(db, conn, console_config.parent / "backups")
        tables = await user_tables_of(db.dsn)
        await conn.execute("DROP TABLE chakai; UPDATE objects SET name = 'x'; "
                           "UPDATE accounts SET display_name = '?'")
    finally:
        await conn.close()
    manifest = backup.manifest
    assert manifest is not None

    async def check() -> None:
        assert await matches_manifest(db.dsn, manifest), "the target is not the backup's"
        aside = await sibling_databases(db, db.name + "\\_aside\\_%")
        assert len(aside) == 1, f"the old database should be kept aside once: {aside}"

    return Prepared(tables, check)


PREPARE = {"partial": prepare_partial, "schema": prepare_schema, "full": prepare_full}


# ---------------------------------------------------------------------------------------------
# Kills inside a step: each waits for its moment, sends SIGKILL, and undoes its own set-up

Inside = Callable[[subprocess.Popen[str], DemoDb, Path], Awaitable[None]]


async def _kill_on(proc: subprocess.Popen[str], db: DemoDb, what: str, sql: str,
                   *args: object) -> None:
    watch = await admin_connect(db)
    try:
        await wait_for_row(watch, sql, *args, proc=proc, what=what)
        kill(proc)
    finally:
        await watch.close()


async def _kill_while_locked(proc: subprocess.Popen[str], db: DemoDb, table: str,
                             pattern: str) -> None:
    """The test holds ACCESS SHARE on ``table`` (a reader in a long transaction); the console's
    statement ``pattern`` waits for it, and is killed waiting."""
    holder = await db.connect()
    tx = holder.transaction()
    await tx.start()
    try:
        await holder.execute(f"LOCK TABLE {table} IN ACCESS SHARE MODE")
        sql, args = console_statement(pattern)
        await _kill_on(proc, db, f"a statement like {pattern!r} waiting for the lock on {table}",
                       sql + " AND wait_event_type = 'Lock'", *args)
    finally:
        await tx.rollback()
        await holder.close()


async def partial_lock_wait(proc: subprocess.Popen[str], db: DemoDb, _home: Path) -> None:
    await _kill_while_locked(proc, db, "public.media", "LOCK TABLE%")


def _statement(pattern: str, datname: str | None = None) -> Inside:
    async def inside(proc: subprocess.Popen[str], db: DemoDb, _home: Path) -> None:
        sql, args = console_statement(pattern, datname)
        await _kill_on(proc, db, f"a console statement like {pattern!r}", sql, *args)
    return inside


async def schema_first_statement(proc: subprocess.Popen[str], db: DemoDb, _home: Path) -> None:
    """The way back's first statement (DROP TABLE tags) waits: nothing applied yet."""
    await _kill_while_locked(proc, db, "public.tags", "DROP TABLE%")


async def schema_later_statement(proc: subprocess.Popen[str], db: DemoDb, _home: Path) -> None:
    """Five statements applied in the open transaction; the sixth (on chakai) waits."""
    await _kill_while_locked(proc, db, "public.chakai", "CREATE POLICY%")


async def full_restore_connected(proc: subprocess.Popen[str], db: DemoDb, _home: Path) -> None:
    await _kill_on(proc, db, "pg_restore connected to the new database",
                   "SELECT pid FROM pg_stat_activity WHERE application_name = 'pg_restore' "
                   "AND datname LIKE $1", db.name + "\\_restored\\_%")


async def full_restore_copy(proc: subprocess.Popen[str], db: DemoDb, _home: Path) -> None:
    await _kill_on(proc, db, "pg_restore loading media into the new database",
                   "SELECT pid FROM pg_stat_activity WHERE application_name = 'pg_restore' "
                   "AND state = 'active' AND query ILIKE 'COPY public.media %' "
                   "AND datname LIKE $1", db.name + "\\_restored\\_%")


async def full_switch_renamed(proc: subprocess.Popen[str], db: DemoDb, _home: Path) -> None:
    """Killed the moment the renames are committed (the step is not journaled done yet)."""
    await _kill_on(proc, db, "the old database renamed aside",
                   "SELECT 1 FROM pg_database WHERE datname LIKE $1", db.name + "\\_aside\\_%")


INSIDE: dict[tuple[str, str], tuple[Inside, bool]] = {   # (kind, name) -> (trigger, big)
    ("partial", "restore-lock-wait"): (partial_lock_wait, False),
    ("partial", "restore-copy"): (_statement("COPY %FROM STDIN%"), True),
    ("partial", "restore-index-rebuild"): (_statement("CREATE INDEX%"), True),
    ("partial", "restore-fk-validation"): (
        _statement("ALTER TABLE%ADD CONSTRAINT%FOREIGN KEY%"), True),
    ("schema", "restore-first-ddl"): (schema_first_statement, False),
    ("schema", "restore-later-ddl"): (schema_later_statement, False),
    ("full", "restore_new-pg_restore-connected"): (full_restore_connected, False),
    ("full", "restore_new-pg_restore-copy"): (full_restore_copy, True),
    # killed while the target refuses connections: tests/test_switch_window.py, at the
    # deterministic kill point switch:connections_refused (polling for it raced a window of a
    # few milliseconds and missed it under load)
    ("full", "switch-renamed"): (full_switch_renamed, False),
    ("full", "validation-fk-validate"): (_statement("ALTER TABLE%VALIDATE CONSTRAINT%"), True),
}


@dataclass(frozen=True)
class Case:
    kind: str
    point: str

    def __str__(self) -> str:
        return f"{self.kind}-{self.point}"


CASES = [Case(kind, f"{when}:{step}") for kind, steps in STEPS.items() for step in steps
         for when in ("before", "after")] + [Case(kind, f"inside:{name}")
                                             for kind, name in INSIDE]


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_killed_anywhere_then_resumed_ends_like_an_uninterrupted_run(
        case: Case, console_config: Path, demo_db: DemoDb, demo_app: DemoApp, tmp_path: Path,
        siblings_dropped: None) -> None:
    inside = INSIDE.get((case.kind, case.point.removeprefix("inside:")))
    prepared = await PREPARE[case.kind](demo_db, console_config, bool(inside and inside[1]))
    console = Console(console_config, tmp_path / "home", tmp_path / "out")
    if inside is not None:
        proc = console.start(*run_args(case.kind))
        try:
            await inside[0](proc, demo_db, console.home)
        finally:
            kill(proc)
        first = console.finish(proc)
    else:
        first = console.run(*run_args(case.kind), kill_at=case.point)
    assert first.code == -signal.SIGKILL, \
        f"the console was not killed at {case.point} (exit {first.code}):\n{first.output[-2000:]}"
    if inside is not None:
        step = case.point.removeprefix("inside:").split("-")[0]
        assert open_step(console.home) == step, f"the kill did not land inside {step}"

    resumed = [console.resume(case.kind)]
    if resumed[-1].code != 0:
        resumed.append(console.resume(case.kind))
    said = "\n---\n".join(r.output[-1500:] for r in resumed)
    assert resumed[-1].code == 0, f"resume exits {[r.code for r in resumed]}:\n{said}"
    assert all("Traceback" not in r.output for r in resumed), said
    await prepared.check()
    await assert_clean_end(demo_db, demo_app, prepared.tables_before)
