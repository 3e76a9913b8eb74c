"""The target lock: no two consoles work on one database.

Two layers: a session-level advisory lock held on a dedicated connection for the whole rollback
(it also covers consoles on other hosts), and a local lock file (flock) that says who holds it.
A second console gets a message naming the holder: host, pid, since when.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

import asyncpg

from app.config import Target
from app.db import connect
from app.errors import ConsoleError
from app.paths import state_dir

APP_NAME_PREFIX = "rollback-console"


class TargetLocked(ConsoleError):
    """Another console holds the target."""

    exit_code = 3


def lock_key(target: Target) -> int:
    """A stable signed 64-bit key per database (advisory locks are per server)."""
    digest = hashlib.sha256(f"rollback-console:{target.database}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass
class Holder:
    host: str
    pid: int
    since: str
    incident: str


class TargetLock:
    """``async with TargetLock(target, incident):`` holds both locks, or raises TargetLocked."""

    def __init__(self, target: Target, incident: str):
        self.target = target
        self.incident = incident
        self.conn: asyncpg.Connection | None = None
        self.file: IO[str] | None = None
        self.path = state_dir() / "locks" / f"{target.name}.lock"

    async def acquire(self) -> None:
        self._lock_file()
        try:
            await self._acquire_db()
        except BaseException:
            await self.release()
            raise

    async def _acquire_db(self) -> None:
        me = f"{APP_NAME_PREFIX} {socket.gethostname()} pid={os.getpid()} incident={self.incident}"
        self.conn = await connect(self.target, server_settings={"application_name": me[:63]})
        got = await self.conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(self.target))
        if got:
            return
        holder = await self.conn.fetchrow(
            "SELECT a.application_name, a.client_addr::text AS addr, a.pid, a.backend_start "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND "
            "((l.classid::bigint << 32) | l.objid::bigint) = $1", lock_key(self.target))
        who = "another session"
        if holder is not None:
            who = (f"{holder['application_name'] or 'a session'} (server pid {holder['pid']}, "
                   f"from {holder['addr'] or 'local socket'}, since "
                   f"{holder['backend_start']:%Y-%m-%d %H:%M:%S %Z})")
        raise TargetLocked(
            f"target {self.target.name} is locked by {who}; only one console may work on a "
            "database: coordinate in the incident channel, or wait for it to finish")

    def _lock_file(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            try:
                h = Holder(**json.loads(handle.read() or "{}"))
                who = f"pid {h.pid} on {h.host} since {h.since} (incident {h.incident})"
            except (TypeError, ValueError):
                who = "another console on this machine"
            handle.close()
            raise TargetLocked(f"target {self.target.name} is locked by {who}; only one "
                               f"console may work on a database (lock file {self.path})") \
                from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(Holder(socket.gethostname(), os.getpid(),
                                       datetime.now(UTC).isoformat(timespec="seconds"),
                                       self.incident).__dict__))
        handle.flush()
        self.file = handle

    async def _release_db(self) -> None:
        if self.conn is None:
            return
        try:
            await self.conn.execute("SELECT pg_advisory_unlock($1)", lock_key(self.target))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            pass  # a closed or terminated session has released its advisory locks anyway
        finally:
            await self.conn.close()
            self.conn = None

    async def suspend_db(self) -> None:
        """Let go of the database session (a database switch must end every session on the
        target); the local lock file keeps other consoles here out meanwhile."""
        await self._release_db()

    async def resume_db(self) -> None:
        """Take the advisory lock again, on whatever database now has the target's name."""
        if self.conn is None:
            self._lock_file_held_check()
            await self._acquire_db()

    def _lock_file_held_check(self) -> None:
        if self.file is None:
            raise TargetLocked("the target lock was released; start the run again")

    async def release(self) -> None:
        try:
            await self._release_db()
        finally:
            if self.file is not None:
                self.file.seek(0)
                self.file.truncate()
                fcntl.flock(self.file, fcntl.LOCK_UN)
                self.file.close()
                self.file = None

    async def __aenter__(self) -> TargetLock:
        await self.acquire()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.release()
