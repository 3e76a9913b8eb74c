"""Connecting to the target, with errors that name the problem and the fix (never the password)."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from app.catalog import quote_ident
from app.config import Target
from app.errors import ConsoleError
from app.secrets import Secret, scrub

READ_ONLY_SETTING = "default_transaction_read_only"
READ_ONLY_PGOPTIONS = f"-c {READ_ONLY_SETTING}=on"
_read_only = False


def read_only_sessions(on: bool = True) -> None:
    """The process-wide read-only switch (--mode assess, the console in assess mode, and the
    `assess` and `validate` commands): while it is on, every session ``connect`` and
    ``create_pool`` open has ``default_transaction_read_only = on``, so the server refuses any
    write in it, and the dump tools started from this process get the same setting through
    PGOPTIONS (their environment is a copy of ours)."""
    global _read_only
    _read_only = on
    options = os.environ.get("PGOPTIONS", "").replace(READ_ONLY_PGOPTIONS, "").split()
    if on:
        options.append(READ_ONLY_PGOPTIONS)
    if options:
        os.environ["PGOPTIONS"] = " ".join(options)
    else:
        os.environ.pop("PGOPTIONS", None)


def sessions_read_only() -> bool:
    return _read_only


def read_only_pgoptions() -> str:
    """What a dump tool's PGOPTIONS must hold for the switch ('' while it is off)."""
    return READ_ONLY_PGOPTIONS if _read_only else ""


def _session(kwargs: dict[str, Any]) -> dict[str, Any]:
    """asyncpg's keyword arguments with the read-only setting added while the switch is on;
    a caller's own server_settings cannot turn it off."""
    if _read_only:
        kwargs["server_settings"] = {**(kwargs.get("server_settings") or {}),
                                     READ_ONLY_SETTING: "on"}
    return kwargs


class TargetUnreachable(ConsoleError):
    """The target database could not be reached or refused us. ``down``: nothing answered
    (refused, timed out, not accepting connections now), as opposed to a wrong password or
    database name, which is bad input."""

    exit_code = 2

    def __init__(self, message: str, *, down: bool = False):
        super().__init__(message)
        self.down = down


def explain_connect_error(target: Target, exc: BaseException) -> TargetUnreachable:
    where = target.display_dsn
    if isinstance(exc, asyncpg.InvalidPasswordError):
        msg = (f"the server refused the password for {where}: check target.password_file / "
               "the DSN's password")
    elif isinstance(exc, asyncpg.InvalidCatalogNameError):
        msg = (f"database {target.database!r} does not exist on the server of {where}: "
               "check the database name at the end of target.dsn")
    elif isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        msg = f"the server rejected the login for {where}: {scrub(str(exc))}"
    elif "not currently accepting connections" in str(exc):
        msg = (f"database {target.database!r} at {where} refuses every connection "
               "(ALLOW_CONNECTIONS is off): a complete restore may have stopped inside its "
               "switch. `rollback-console resume` opens it again and goes on; by hand, from "
               f"another database: ALTER DATABASE {quote_ident(target.database)} WITH "
               "ALLOW_CONNECTIONS true")
    elif isinstance(exc, ConnectionRefusedError):
        msg = (f"nothing is listening at {where} (connection refused): is the server up, "
               "and are host and port in target.dsn right?")
    elif isinstance(exc, socket.gaierror):
        msg = f"the host in {where} cannot be resolved: check target.dsn"
    elif isinstance(exc, asyncio.TimeoutError | TimeoutError):
        msg = f"no answer from {where} within the connect timeout: check network and host"
    elif isinstance(exc, ValueError):
        msg = f"target.dsn is not a valid PostgreSQL URL ({where}): {scrub(str(exc))}"
    else:
        msg = f"cannot connect to {where}: {type(exc).__name__}: {scrub(str(exc))}"
    down = isinstance(exc, OSError | TimeoutError | asyncpg.CannotConnectNowError
                      | asyncpg.TooManyConnectionsError) and not isinstance(exc, socket.gaierror)
    return TargetUnreachable(msg, down=down)


def on_database(target: Target, database: str) -> Target:
    """The same server and credentials, another database (scratch, maintenance, aside)."""
    parts = urlsplit(target.dsn.reveal())
    return replace(target, dsn=Secret(urlunsplit(parts._replace(path=f"/{database}"))))


async def connect(target: Target, timeout: float = 10.0, database: str | None = None,
                  **kwargs: Any) -> asyncpg.Connection:
    """One connection to the target (or another database on its server); every failure
    becomes a ``TargetUnreachable``. Read-only while ``read_only_sessions`` is on."""
    if database is not None:
        target = on_database(target, database)
    try:
        return await asyncpg.connect(target.dsn.reveal(), timeout=timeout,
                                     **_session(kwargs))
    except (TimeoutError, OSError, asyncpg.PostgresError, ValueError) as exc:
        raise explain_connect_error(target, exc) from None


async def create_pool(target: Target, *, min_size: int = 1, max_size: int = 8,
                      timeout: float = 10.0, **kwargs: Any) -> asyncpg.Pool:
    """A pool on the target; read-only sessions while ``read_only_sessions`` is on."""
    try:
        return await asyncpg.create_pool(target.dsn.reveal(), min_size=min_size,
                                         max_size=max_size, timeout=timeout,
                                         **_session(kwargs))
    except (TimeoutError, OSError, asyncpg.PostgresError, ValueError) as exc:
        raise explain_connect_error(target, exc) from None
