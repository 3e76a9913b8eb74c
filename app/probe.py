"""The home screen's first look at the target: server facts and the app's health. Read-only."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from app.config import AppEndpoints, Target
from app.db import connect
from app.secrets import scrub


@dataclass(frozen=True)
class ServerFacts:
    version: str
    database: str
    user: str
    in_recovery: bool
    size_bytes: int
    system_identifier: str


@dataclass(frozen=True)
class AppHealth:
    ok: bool
    status: int | None
    latency_ms: float
    summary: str


async def server_facts(target: Target) -> ServerFacts:
    conn = await connect(target)
    try:
        row = await conn.fetchrow(
            "SELECT current_setting('server_version') AS version, current_database() AS db, "
            "current_user AS usr, pg_is_in_recovery() AS rec, "
            "pg_database_size(current_database()) AS size, "
            "(SELECT system_identifier::text FROM pg_control_system()) AS sysid")
    finally:
        await conn.close()
    assert row is not None
    return ServerFacts(row["version"], row["db"], row["usr"], row["rec"], row["size"],
                       row["sysid"])


async def app_health(app: AppEndpoints) -> AppHealth:
    url = app.base_url + app.health
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=app.timeout_s) as client:
            resp = await client.get(url)
    except httpx.HTTPError as exc:
        ms = (time.perf_counter() - started) * 1000
        return AppHealth(False, None, ms, scrub(f"{url} unreachable: {type(exc).__name__}"))
    ms = (time.perf_counter() - started) * 1000
    ok = resp.status_code == 200
    return AppHealth(ok, resp.status_code, ms, f"{url} answered {resp.status_code}")
