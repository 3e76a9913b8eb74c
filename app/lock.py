"""The target lock: no two consoles work on one database.

Two layers: a session-level advisory lock held on a dedicated connection for the whole rollback
(it also covers consoles on other hosts), and a local lock file (flock) that says who holds it.
A second console gets a message naming the holder: host, pid, since when.
"""

from __future__ import annotations

import asyncio
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
from app.db import TargetUnreachable, connect
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
        self.lost: str | None = None      # why the database lock is gone, once it is
        self._checking = asyncio.Lock()   # the lock connection serves one query at a time

    async def acquire(self) -> None:
        self._lock_file()
        try:
            await self._acquire_db()
        except BaseException:
            await self.release()
            raise

    async def acquire_unless_unreachable(self) -> str | None:
        """Like ``acquire``, for a short operator action (the maintenance switch): when the
        database cannot be reached at all, only this machine's lock file is taken and the
        returned warning says so; a live console's lock is refused either way."""
        self._lock_file()
        try:
            await self._acquire_db()
        except TargetUnreachable as exc:
            return (f"the database lock could not be checked ({exc}); only this machine's "
                    "lock file was")
        except BaseException:
            await self.release()
            raise
        return None

    async def _acquire_db(self) -> None:
        me = f"{APP_NAME_PREFIX} {socket.gethostname()} pid={os.getpid()} incident={self.incident}"
        self.conn = await connect(self.target, server_settings={"application_name": me[:63]})
        got = await self.conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(self.target))
        if got:
            self.lost = None
            self.conn.add_termination_listener(self._on_session_end)
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

    def _on_session_end(self, _conn: object) -> None:
        """The lock's session ended without us (pg_terminate_backend, a server restart, the
        network): the advisory lock went with it, so another console may take the target."""
        self.lost = (f"the session holding the target lock on {self.target.name} ended "
                     "(terminated on the server or cut off)")

    async def verify(self) -> str | None:
        """None while this console still holds the target; otherwise what was lost. Asks the
        server (pg_locks) when the lock session is open; while it is suspended for a database
        switch, the local lock file is what holds the target."""
        if self.lost is not None:
            return self.lost
        if self.conn is None:
            return None if self.file is not None else \
                f"the target lock on {self.target.name} was released"
        async with self._checking:
            try:
                held = await self.conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = pg_backend_pid() "
                    "AND locktype = 'advisory' AND granted AND objsubid = 1 "
                    "AND ((classid::bigint << 32) | objid::bigint) = $1)",
                    lock_key(self.target), timeout=15)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError,
                    TimeoutError) as exc:
                self.lost = (f"the session holding the target lock on {self.target.name} "
                             f"does not answer ({type(exc).__name__})")
                return self.lost
        if not held:
            self.lost = f"the advisory lock on {self.target.name} is no longer held"
        return self.lost

    async def _release_db(self) -> None:
        if self.conn is None:
            return
        self.conn.remove_termination_listener(self._on_session_end)
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
