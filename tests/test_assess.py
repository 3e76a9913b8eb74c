"""Assessment on the real sandbox: each symptom of the runbook's decision matrix, injected by SQL
or through the demo app, lands in the right tier with the right rollback type."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app import config as config_mod
from app.backups.manifest import capture_state, new_manifest
from app.checks import run_assessment
from app.checks.assessment import Assessment, open_context
from app.checks.context import APPLICATION_NAME
from app.config import Config
from app.sandbox.server import bin_dir
from tests.conftest import DemoDb

SET_ID = "production_migration_20250101"


async def make_backup(conn: asyncpg.Connection, cfg: Config, dsn: str,
                      set_id: str = SET_ID) -> Path:
    """A backup set as the console writes it: manifest.json, the runbook's schema dump and the
    schema model read at backup time (what assess's schema check compares with)."""
    from app.backups.backupset import MODEL_FILE
    from app.backups.manifest import FileEntry
    from app.schemamodel import read, to_json

    state = await capture_state(conn, critical_queries=cfg.target.critical_queries)
    directory = cfg.target.backups_root / set_id
    directory.mkdir(parents=True)
    subprocess.run([str(bin_dir() / "pg_dump"), "--schema-only", "--no-owner", "-f",
                    str(directory / "schema_only_backup.sql"), dsn], check=True,
                   capture_output=True)
    version = int(await conn.fetchval("SELECT current_setting('server_version_num')"))
    model = directory / MODEL_FILE
    model.write_text(to_json(await read(conn, cfg.target.platform_schemas),
                             cfg.target.platform_schemas, version))
    manifest = new_manifest(set_id, state)
    manifest.files = {MODEL_FILE: FileEntry(hashlib.sha256(model.read_bytes()).hexdigest(),
                                            model.stat().st_size)}
    (directory / "manifest.json").write_text(manifest.to_json())
    return directory


def with_assess(path: Path, extra: str) -> Config:
    """The test's config plus an [assess] table (or any other TOML appended)."""
    path.write_text(path.read_text() + "\n" + extra + "\n")
    return config_mod.load(path)


@pytest.fixture
async def cfg(conn: asyncpg.Connection, console_config: Path, demo_db: DemoDb) -> Config:
    config = config_mod.load(console_config)
    await make_backup(conn, config, demo_db.dsn)
    return config


async def assess(cfg: Config, **kw: Any) -> Assessment:
    return await asyncio.wait_for(run_assessment(cfg, **kw), timeout=90)


def kinds(a: Assessment) -> set[str]:
    return {str(r.kind) for r in a.decision.reasons}


async def test_healthy_database_is_healthy(cfg: Config) -> None:
    seen: list[str] = []
    a = await assess(cfg, on_result=lambda r: seen.append(r.check))
    assert a.decision.tier.label == "HEALTHY", a.decision.reasons
    assert a.decision.recommended is None and a.decision.exit_code == 0
    assert sorted(seen) == sorted(r.check for r in a.results)   # streamed, one by one
    assert {str(r.status) for r in a.results} == {"pass"}
    data = a.to_dict()
    assert set(data) >= {"tier", "recommended_type", "tables", "findings"}
    assert {"check", "status", "summary", "evidence"} <= set(data["findings"][0])


INCIDENTS = [
    pytest.param(
        "ALTER TABLE media DROP CONSTRAINT media_object_id_fkey; "
        "DELETE FROM objects WHERE id <= 10",
        # objects (a table media references) lost rows: reloading it brings the parents of
        # the orphans back; media itself lost nothing and is not reloaded
        "IMMEDIATE ROLLBACK", "partial", ["public.objects"], "fk_violation",
        id="orphans-after-dropped-fk"),
    pytest.param(
        'DROP POLICY "objects: owner reads" ON objects; '
        'DROP POLICY "objects: owner writes" ON objects',
        "IMMEDIATE ROLLBACK", "schema", [], "rls_blocking", id="policy-blocks-users"),
    pytest.param(
        "UPDATE media SET mime_type = 'application/octet-stream'",
        "IMMEDIATE ROLLBACK", "partial", ["public.media"], "data_corruption",
        id="corrupted-values"),
    pytest.param(
        "ALTER TABLE objects DISABLE TRIGGER objects_updated_at; "
        "UPDATE objects SET era = 'unknown' WHERE id % 3 = 0; "
        "UPDATE objects SET updated_at = created_at WHERE id % 3 = 0",   # the disabled
        "IMMEDIATE ROLLBACK", "schema", [], "data_corruption",   # trigger: Type 1, then Type 2
        id="values-changed-without-a-recorded-write"),
    pytest.param(
        "DELETE FROM chakai WHERE id % 2 = 0",
        "IMMEDIATE ROLLBACK", "partial", ["public.chakai"], "data_loss", id="rows-lost"),
    pytest.param(
        "REVOKE ALL ON auth.users FROM supabase_auth_admin",
        "IMMEDIATE ROLLBACK", "schema", [], "auth_failure", id="broken-auth-grant"),
    pytest.param(
        "ALTER TABLE objects RENAME COLUMN era TO period",
        "IMMEDIATE ROLLBACK", "schema", [], "critical_broken", id="failing-endpoint"),
    pytest.param(
        "ALTER TABLE objects DISABLE ROW LEVEL SECURITY",
        "IMMEDIATE ROLLBACK", "schema", [], "rls_exposure", id="rls-turned-off"),
    pytest.param(
        "DROP INDEX objects_owner_id_idx",
        "FORWARD-FIX", None, [], "performance", id="dropped-index-slows-critical-query"),
    pytest.param(
        "ALTER TABLE objects ADD COLUMN display_colour text DEFAULT 'matcha'",
        "FORWARD-FIX", None, [], "schema_drift", id="cosmetic-change"),
    pytest.param(
        "ALTER TABLE chakai DROP CONSTRAINT chakai_host_id_fkey",
        "FORWARD-FIX", None, [], "constraint_drift", id="fk-dropped-no-orphans"),
]


@pytest.mark.parametrize(("sql", "tier", "rtype", "tables", "kind"), INCIDENTS)
async def test_injected_incident_gets_tier_and_type(
        cfg: Config, conn: asyncpg.Connection, sql: str, tier: str, rtype: str | None,
        tables: list[str], kind: str) -> None:
    await conn.execute(sql)
    a = await assess(cfg)
    d = a.decision
    assert d.tier.label == tier, d.reasons
    assert kind in kinds(a)
    if rtype is None:   # FORWARD-FIX: the fix to make, never a rollback type
        assert d.recommended is None and a.to_dict()["fix"], d.to_dict()
        return
    assert d.recommended is not None and d.recommended.key == rtype
    assert d.tables == tables
    out = a.to_dict()
    assert out["tier"] == tier and out["recommended_type"] == rtype
    assert out["rollback"]["risk"] == {"schema": "Low", "partial": "Medium"}[rtype]
    if rtype == "partial":   # what the rollback would lose is spelled out per table
        assert set(out["would_lose"]["tables"]) == set(tables)


async def test_widespread_loss_recommends_full_restore(cfg: Config,
                                                       conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM media WHERE id % 2 = 0; DELETE FROM chakai WHERE id % 2 = 0;"
                       "UPDATE local_classes SET region = 'lost'")
    a = await assess(cfg)
    assert a.decision.tier.label == "IMMEDIATE ROLLBACK"
    assert a.decision.recommended is not None and a.decision.recommended.key == "full"
    assert a.decision.recommended.downtime == "2-4 hours"


async def test_a_dropped_table_recommends_type_1_then_type_2(cfg: Config,
                                                             conn: asyncpg.Connection) -> None:
    """Type 2 has nothing to reload into, and Type 3 would lose every other table's writes."""
    await conn.execute("DROP TABLE chakai")
    d = (await assess(cfg)).decision
    assert d.tier.label == "IMMEDIATE ROLLBACK"
    assert d.recommended is not None and d.recommended.key == "schema"
    assert d.then_partial == ["public.chakai"]
    assert "then Type 2 partial data rollback of public.chakai" in d.action
    out = d.to_dict()
    assert out["then"] == {"type": "partial", "tables": ["public.chakai"]}
    assert set(out["would_lose"]["tables"]) == {"public.chakai"}


async def test_elevated_error_rate_is_monitor(cfg: Config) -> None:
    """An endpoint that fails one request in three: a real server can't easily do that on cue,
    so httpx.MockTransport wraps the real transport and turns every third call into a 500."""
    real = httpx.AsyncHTTPTransport()
    calls = {"n": 0}

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/objects" and "authorization" not in request.headers:
            calls["n"] += 1
            if calls["n"] % 3 == 0:
                return httpx.Response(500, json={"error": "injected"})
        resp = await real.handle_async_request(request)
        await resp.aread()
        return httpx.Response(resp.status_code, headers=resp.headers, content=resp.content)

    a = await assess(cfg, transport=httpx.MockTransport(handler))
    assert a.decision.tier.label == "MONITOR AND ASSESS", a.decision.reasons
    assert kinds(a) == {"error_rate"}
    assert a.decision.recommended is None and a.decision.exit_code == 10
    await real.aclose()


async def test_lock_held_by_another_session_does_not_hang(cfg: Config, demo_db: DemoDb) -> None:
    """An ACCESS EXCLUSIVE lock on a critical table: every check gives up after lock_timeout and
    says who holds the lock; the assessment finishes and asks to wait, not to roll back."""
    path = cfg.path
    text = path.read_text()
    path.write_text(text[:text.index("[app]")] + text[text.index("[auth]"):])
    cfg = with_assess(path, "[assess]\nlock_timeout_ms = 200\n")
    holder = await asyncpg.connect(demo_db.dsn)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("LOCK TABLE public.objects IN ACCESS EXCLUSIVE MODE")
        pid = await holder.fetchval("SELECT pg_backend_pid()")
        a = await assess(cfg)
        await tx.rollback()
    finally:
        await holder.close()
    assert a.decision.tier.label == "MONITOR AND ASSESS", a.decision.reasons
    assert kinds(a) == {"contention"}
    by = {r.check: r for r in a.results}
    assert str(by["data_integrity"].status) == "error"
    assert f"pid {pid} holds AccessExclusiveLock on objects" in by["data_integrity"].summary
    assert str(by["locks"].status) == "warn"
    # the rows written since the backup leave objects out: the row says so, not a plain pass
    assert str(by["writes"].status) == "warn"
    assert "not counted (waited on a lock): public.objects" in by["writes"].summary


async def test_assess_sessions_are_read_only(cfg: Config) -> None:
    async with open_context(cfg) as ctx, ctx.pool.acquire() as c:
        assert await c.fetchval("SHOW default_transaction_read_only") == "on"
        assert await c.fetchval("SHOW lock_timeout") == "1s"
        assert await c.fetchval("SELECT current_setting('application_name')") == APPLICATION_NAME
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await c.execute("INSERT INTO public.local_classes (name, region) VALUES ('x', 'y')")
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await c.execute("SELECT nextval(pg_get_serial_sequence('public.media', 'id'))")


SNAPSHOT_SQL = {
    "stats": "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del, n_live_tup, n_dead_tup "
             "FROM pg_stat_user_tables WHERE schemaname = 'public' ORDER BY 1",
    "sequences": "SELECT sequencename, last_value FROM pg_sequences ORDER BY 1",
    "auth_users": "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM (SELECT id, email, "
                  "encrypted_password, role, created_at, updated_at FROM auth.users) t",
}


async def _snapshot(conn: asyncpg.Connection) -> dict[str, object]:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    out: dict[str, object] = {k: [tuple(r) for r in await conn.fetch(q)]
                              for k, q in SNAPSHOT_SQL.items()}
    from app import catalog
    for t in await catalog.user_tables(conn):
        out[t] = (await catalog.table_content(conn, t)).checksum
    return out


async def test_assess_writes_nothing(cfg: Config, conn: asyncpg.Connection) -> None:
    """Statistics, sequences and data are the same after a full assessment. (The login probe makes
    the app record the test user's last_sign_in_at, which is why that column is left out.)"""
    before = await _snapshot(conn)
    await assess(cfg)
    for _ in range(200):   # backends flush their statistics as they exit: wait for them
        if not await conn.fetchval("SELECT count(*) FROM pg_stat_activity "
                                   "WHERE application_name = $1", APPLICATION_NAME):
            break
        await asyncio.sleep(0.05)
    assert await _snapshot(conn) == before
