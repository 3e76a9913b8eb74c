"""Restore aside: start a data folder an engine laid down (``Prepared``) as a scratch cluster
that recovers to the target, follow its replay, and tear it down. Engine-independent.

An aside cluster is never the live one: its own folder under the aside root, its own free
port on 127.0.0.1, no unix socket, ``archive_mode = off`` (it must never write into the
archive it restores from), loopback password auth only. It runs as a child of the console
with a parent-death signal, like the sandbox's server (app/sandbox/server.py), and records
itself in ``aside.json`` so that ``sweep_orphans`` can stop and remove what a console killed
with ``kill -9`` left behind.

Layout of one aside folder (``<aside root>/aside-<UTC time>-<hex>``)::

    pgdata/         the recovering cluster       postgres.log   its server log
    aside.json      owner pid and command, postmaster pid, data dir, port, target, started_at

Use::

    aside = await AsideCluster.create(default_root(settings), target)
    prepared = await engine.prepare(target, base, aside.data_dir, on_line)
    await aside.start(prepared, bins, end_lsn=window.latest_lsn, on_progress=...)
    ... aside.dsn(database, target_dsn), aside.reached_at ...
    await aside.stop(keep=settings.keep_aside)
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from app import paths
from app.config_schema import PitrSettings
from app.pitr.model import PitrError, PointTarget, Prepared, lsn_int, lsn_text
from app.sandbox.server import (
    allow_traverse,
    as_user,
    chown_tree,
    cmdline,
    free_port,
    os_user,
    pid_alive,
    set_parent_death_signal,
    stop_pid,
)

RECORD = "aside.json"
DATA = "pgdata"
LOG = "postgres.log"
PREFIX = "aside-"

Progress = Callable[[float | None, str], None]

# What the aside cluster runs with, whatever the source's configuration says (written last
# in postgresql.auto.conf, so these win).
_FIXED = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "archive_mode": "off",
    "hot_standby": "on",
    "primary_conninfo": "",
    "primary_slot_name": "",
    "ssl": "off",
    "logging_collector": "off",
    "cluster_name": "rollback-aside",
    # the server log is how the aside is followed without credentials: stderr, UTC, LOG kept
    "log_destination": "stderr",
    "log_timezone": "UTC",
    "log_min_messages": "warning",
    # nothing the source runs at the end of recovery or on its archive runs here
    "recovery_end_command": "",
    "archive_cleanup_command": "",
}

# Server-log lines worth showing when recovery fails (the rest is noise).
_TELLING = re.compile(r"FATAL|PANIC|ERROR|recovery|consistent|redo|could not|invalid|"
                      r"requested|timeline|cannot open|denied", re.IGNORECASE)


def default_root(settings: PitrSettings | None) -> Path:
    """Where aside clusters are made: ``[pitr] aside_dir``, else the state dir's ``aside``."""
    root = settings.aside_dir if settings and settings.aside_dir else paths.state_dir() / "aside"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _conf_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _write_json(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


class AsideCluster:
    """One scratch cluster recovering to ``target`` in its own folder. Create it with
    ``AsideCluster.create`` (which records it before anything is copied), let an engine
    fill ``data_dir``, then ``start``; always ``stop`` (it is safe to call more than once).
    ``port`` is chosen free when it starts (a copy can take long), unless given."""

    def __init__(self, folder: Path, target: PointTarget,
                 user: pwd.struct_passwd | None = None, port: int | None = None):
        self.folder = folder
        self.bins: Path | None = None
        self.target = target
        self.user = user
        self._fixed_port = port
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = datetime.now(UTC)
        self.stopped_at_line = ""     # the server's "recovery stopping ..." line, once read
        self.reached_at: datetime | None = None   # the last commit replayed, once promoted
        self.promoted = False

    @classmethod
    async def create(cls, root: Path, target: PointTarget,
                     user: pwd.struct_passwd | bool | None = True) -> AsideCluster:
        """A new, empty aside folder under ``root`` with its record written. ``user``: the OS
        user the postmaster runs as (True: the sandbox's rule, ourselves or a dedicated
        unprivileged user when root); it must be able to read the WAL archive."""
        run_as = os_user() if user is True else (user or None)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        folder = root / f"{PREFIX}{stamp}-{secrets.token_hex(3)}"
        folder.mkdir(parents=True)
        (folder / DATA).mkdir(mode=0o700)
        aside = cls(folder, target, run_as)
        aside._record()
        return aside

    @property
    def data_dir(self) -> Path:
        return self.folder / DATA

    @property
    def log_path(self) -> Path:
        return self.folder / LOG

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def _record(self) -> None:
        _write_json(self.folder / RECORD, {
            "owner_pid": os.getpid(), "owner_cmd": cmdline(os.getpid()),
            "postmaster_pid": self.pid or 0, "data_dir": str(self.data_dir),
            "port": self.port, "bins": str(self.bins or ""), "target": self.target.record(),
            "started_at": self.started_at.isoformat(timespec="seconds")})

    def dsn(self, database: str, target_dsn: str) -> str:
        """The target's DSN (its user and password: the aside cluster is a copy of the
        target's, roles included) pointed at the aside cluster's ``database``."""
        parts = urlsplit(target_dsn)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = (userinfo + "@" if userinfo else "") + f"127.0.0.1:{self.port}"
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query)
                           if k not in {"host", "hostaddr", "port", "service", "passfile"}])
        return urlunsplit(parts._replace(netloc=netloc, path=f"/{database}", query=query))

    # -- laying the folder out ---------------------------------------------------------

    def _configure(self, prepared: Prepared) -> None:
        """recovery.signal, the recovery settings, loopback-only auth, owned by the server's
        user. Files a Debian-style cluster keeps in /etc are created empty when missing."""
        data = prepared.data_dir
        if data.resolve() != self.data_dir.resolve():
            raise PitrError(f"the engine prepared {data}, not the aside folder {self.data_dir}")
        if not (data / "PG_VERSION").is_file():
            raise PitrError(f"{data} holds no PostgreSQL data folder (no PG_VERSION): the "
                            "engine did not lay the base backup down")
        for stale in ("standby.signal", "postmaster.pid", "postmaster.opts"):
            (data / stale).unlink(missing_ok=True)
        (data / "recovery.signal").write_text("")
        for name in ("postgresql.conf", "pg_ident.conf"):
            if not (data / name).exists():
                (data / name).write_text("")
        (data / "pg_hba.conf").write_text(
            "# rollback-console aside cluster: loopback, password only\n"
            "host all all 127.0.0.1/32 scram-sha-256\n")
        settings = {**prepared.settings, **_FIXED, "port": str(self.port)}
        with (data / "postgresql.auto.conf").open("a") as conf:
            said = " ".join(self.target.said.split())
            conf.write(f"\n# rollback-console aside cluster, recovering to {said}\n")
            for key, value in settings.items():
                conf.write(f"{key} = {_conf_value(value)}\n")
        data.chmod(0o700)
        if self.user:
            allow_traverse(self.folder)
        chown_tree(self.folder, self.user)
        self.log_path.touch()
        chown_tree(self.log_path, self.user)

    # -- running it --------------------------------------------------------------------

    async def start(self, prepared: Prepared, bins: Path, end_lsn: str | None = None,
                    on_progress: Progress = lambda _f, _l: None, *,
                    target_dsn: str | None = None, timeout: float | None = None,
                    poll: float = 0.5) -> None:
        """Start the prepared folder with ``bins``' server, recovering, and return once it
        is promoted (``reached_at``: the last commit it replayed). Progress is WAL replayed
        between the base backup's start and ``end_lsn`` (the target's LSN when known, else
        the one passed in, e.g. the window's latest_lsn), with an ETA.

        It is followed without credentials (the startup process's title, the server log),
        or with ``pg_last_wal_replay_lsn()`` over ``target_dsn`` (the target's user and
        password, pointed at the aside port) when given and once connections are allowed.

        The postmaster is a child of the calling thread (its parent-death signal follows
        that thread): call this from the event loop's own thread, not ``to_thread``. On
        any failure the postmaster is stopped before PitrError is raised; the folder stays
        until ``stop``."""
        self.bins = bins
        self.port = self._fixed_port or free_port()
        await asyncio.to_thread(self._configure, prepared)
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(  # type: ignore[call-overload]  # noqa: ASYNC220
                [str(bins / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=lambda: set_parent_death_signal(signal.SIGINT),
                start_new_session=True, **as_user(self.user))
        finally:
            log.close()
        self._record()
        try:
            await self._follow(prepared, target_dsn, end_lsn, on_progress, timeout, poll)
        except BaseException:
            self._kill(signal.SIGQUIT)
            raise

    async def _follow(self, prepared: Prepared, target_dsn: str | None, end_lsn: str | None,
                      on_progress: Progress, timeout: float | None, poll: float) -> None:
        begin = lsn_int(prepared.base.start_lsn)
        end_text = self.target.lsn or end_lsn
        end = lsn_int(end_text) if end_text else None
        first: tuple[float, int] | None = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        conn: asyncpg.Connection | None = None
        on_progress(0.0 if end else None,
                    f"aside cluster starting on 127.0.0.1:{self.port}, recovering from base "
                    f"backup {prepared.base.id} to {self.target.said}")
        try:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise PitrError(self._failure())
                if deadline is not None and loop.time() > deadline:
                    raise PitrError(f"the aside cluster did not finish recovering within "
                                    f"{timeout:.0f}s; its log is {self.log_path}")
                if self._promoted_in_log():
                    self._promoted(on_progress)
                    return
                replayed = self._startup_position()
                if target_dsn and conn is None:
                    conn = await self._connect(target_dsn)
                if conn is not None:
                    try:
                        row = await conn.fetchrow("SELECT pg_last_wal_replay_lsn()::text")
                        if row is not None and row[0]:
                            replayed = lsn_int(row[0])
                    except (asyncpg.PostgresError, OSError):
                        await _close(conn)
                        conn = None
                if replayed is not None:
                    now = loop.time()
                    if first is None:
                        first = (now, replayed)
                    on_progress(*_progress(begin, end, replayed, first, now))
                await asyncio.sleep(poll)
        finally:
            if conn is not None:
                await _close(conn)

    def _promoted(self, on_progress: Progress) -> None:
        self.promoted = True
        lines = self._log_tail(200, everything=True)
        for ln in reversed(lines):
            m = re.search(r"last completed transaction was at log time (\S+ \S+)", ln)
            if m:
                try:
                    raw = m.group(1)
                    raw = raw + ":00" if re.search(r"[+-]\d\d$", raw) else raw
                    self.reached_at = datetime.fromisoformat(raw).astimezone(UTC)
                except ValueError:
                    pass
                break
        self.stopped_at_line = self._stop_line()
        on_progress(1.0, "aside cluster promoted: "
                    + (self.stopped_at_line or f"at {self.target.said}"))

    def _promoted_in_log(self) -> bool:
        """The server says it accepts read-write connections: recovery ended, promoted."""
        return any("ready to accept connections" in ln and "read-only" not in ln
                   for ln in self._log_tail(200, everything=True))

    async def _connect(self, target_dsn: str) -> asyncpg.Connection | None:
        """A connection once the cluster accepts them (after a consistent state); None while
        it is still starting or replaying up to consistency."""
        database = urlsplit(target_dsn).path.lstrip("/") or "postgres"
        for db in dict.fromkeys((database, "postgres")):
            try:
                return await asyncpg.connect(self.dsn(db, target_dsn), timeout=2)
            except asyncpg.InvalidCatalogNameError:
                continue       # the database did not exist yet at the target moment
            except (asyncpg.PostgresError, OSError, TimeoutError):
                return None
        return None

    def _startup_position(self) -> int | None:
        """Before connections are allowed: the segment the startup process is replaying, from
        its process title (``postgres: ... startup recovering <segment>``)."""
        if self.process is None:
            return None
        for pid in _children(self.process.pid):
            m = re.search(r"startup recovering ([0-9A-F]{24})", cmdline(pid))
            if m:
                seg = m.group(1)
                size = _segment_size(self.data_dir)
                per = 0x100000000 // size
                return (int(seg[8:16], 16) * per + int(seg[16:24], 16)) * size
        return None

    def _log_tail(self, limit: int = 20, everything: bool = False) -> list[str]:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [ln for ln in lines if everything or _TELLING.search(ln)][-limit:]

    def _stop_line(self) -> str:
        """Where recovery stopped, in the server's words ("recovery stopping at restore
        point ...", "... before commit of transaction ..., time ...")."""
        lines = self._log_tail(80)
        for needle in ("recovery stopping", "archive recovery complete"):
            for ln in reversed(lines):
                if needle in ln:
                    return ln.split("LOG:", 1)[-1].strip()
        return ""

    def _failure(self) -> str:
        """Why the postmaster exited before being promoted, in the server's own words."""
        tail = self._log_tail()
        said = "\n".join("  " + ln for ln in tail) or "  (the server log is empty)"
        hint = ""
        if any("before configured recovery target was reached" in ln for ln in tail):
            hint = ("the WAL archive ran out before the target: choose an earlier target, "
                    "or wait until the WAL holding it is archived. ")
        elif any("before consistent recovery point" in ln for ln in tail):
            hint = "the target is before the base backup ends: choose a later target. "
        return (f"the aside cluster stopped before reaching {self.target.said}. {hint}"
                f"Its server log ({self.log_path}) says:\n{said}")

    def _kill(self, sig: int) -> None:
        if self.process is not None:
            stop_pid(self.process.pid, timeout=20, sig=sig)
            try:
                self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
            self.process = None
            if (self.folder / RECORD).exists():
                self._record()

    async def stop(self, keep: bool = False) -> None:
        """Stop the postmaster (a clean fast shutdown when the folder is kept, immediate
        otherwise) and remove the folder unless ``keep``."""
        await asyncio.to_thread(self._kill, signal.SIGINT if keep else signal.SIGQUIT)
        if not keep:
            await asyncio.to_thread(_remove, self.folder)


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), timeout=2)
    except (asyncpg.PostgresError, OSError, TimeoutError):
        conn.terminate()


def _progress(begin: int, end: int | None, replayed: int, first: tuple[float, int],
              now: float) -> tuple[float | None, str]:
    """(fraction, line) for WAL replayed to ``replayed``; an ETA from the rate so far."""
    if end is None or end <= begin:
        return None, f"replayed WAL to {lsn_text(replayed)}"
    fraction = min(1.0, max(0.0, (replayed - begin) / (end - begin)))
    line = f"replayed WAL to {lsn_text(replayed)} of {lsn_text(end)} ({fraction:.0%})"
    elapsed, done = now - first[0], replayed - first[1]
    if elapsed > 0.5 and done > 0 and replayed < end:
        line += f", about {max(1, round((end - replayed) / (done / elapsed)))} s left"
    return fraction, line


def _segment_size(data_dir: Path) -> int:
    """Bytes per WAL segment: the size of a segment file in pg_wal, else the default."""
    try:
        for f in (data_dir / "pg_wal").iterdir():
            if len(f.name) == 24 and f.is_file():
                return f.stat().st_size
    except OSError:
        pass
    return 16 * 1024 * 1024


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _processes_in(folder: Path) -> list[int]:
    """Every PostgreSQL or pgBackRest process working in ``folder`` or below (a postmaster
    and its children chdir to their data folder; an engine's restore runs there). Anything
    else there (someone's shell) is left alone."""
    target = str(folder.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if (cwd == target or cwd.startswith(target + "/")) \
                and re.search(r"postgres|pgbackrest", cmdline(int(entry.name))):
            found.append(int(entry.name))
    return found


def _remove(folder: Path) -> None:
    for _ in range(20):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        time.sleep(0.1)    # a dying backend may still be writing a file


def _owner_alive(record: dict[str, object]) -> bool:
    pid = record.get("owner_pid")
    return (isinstance(pid, int) and pid > 0 and pid_alive(pid)
            and cmdline(pid) == record.get("owner_cmd"))


def sweep_orphans(aside_root: Path) -> list[str]:
    """Stop and remove every aside cluster whose owning console is gone (``kill -9`` during a
    restore): its postmaster if still running from that folder, then the folder. One line per
    aside cleaned. Asides of live consoles (this one included) are left alone."""
    cleaned: list[str] = []
    if not aside_root.is_dir():
        return cleaned
    for folder in sorted(aside_root.iterdir()):
        record_path = folder / RECORD
        if not folder.is_dir() or not folder.name.startswith(PREFIX):
            continue
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = {}
        if not isinstance(record, dict):
            record = {}
        if _owner_alive(record):
            continue
        if not record and time.time() - folder.stat().st_mtime < 60:
            continue        # being created right now by a console (record not yet written)
        data_dir = Path(str(record.get("data_dir") or folder / DATA))
        stopped: list[int] = []
        pid = record.get("postmaster_pid")
        if isinstance(pid, int) and pid > 0 and pid_alive(pid) \
                and str(data_dir) in cmdline(pid):
            stop_pid(pid, timeout=10, sig=signal.SIGQUIT)
            stopped.append(pid)
        for other in _processes_in(folder):         # whatever else of ours runs there
            if pid_alive(other):
                stop_pid(other, timeout=10, sig=signal.SIGKILL)
                stopped.append(other)
        _remove(folder)
        owner = record.get("owner_pid", "?")
        target = record.get("target")
        said = target.get("said") if isinstance(target, dict) else None
        cleaned.append(
            f"removed the aside cluster {folder.name}"
            + (f" (restoring to {said})" if said else "")
            + f" left by console pid {owner}, which is gone"
            + (f"; stopped process(es) {', '.join(map(str, stopped))}" if stopped else ""))
    return cleaned
