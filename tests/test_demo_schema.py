"""The demo database behaves like the runbook's application: keys hold, RLS filters, auth.uid()
follows the JWT claims, and the same seed gives the same data."""

from __future__ import annotations

import json

import asyncpg
import pytest

from app.catalog import table_content
from app.sandbox.demo_data import DEMO_TABLES, load_demo, sizes


async def test_tables_have_the_sizes_asked_for(conn: asyncpg.Connection) -> None:
    expected = sizes(2000)
    for table in DEMO_TABLES:
        assert await conn.fetchval(f"SELECT count(*) FROM public.{table}") == expected[table]


async def test_foreign_keys_hold_and_reject_orphans(conn: asyncpg.Connection) -> None:
    fks = await conn.fetchval("SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
                              "AND connamespace = 'public'::regnamespace")
    assert fks == 7
    orphans = await conn.fetchval("SELECT count(*) FROM media m LEFT JOIN objects o "
                                  "ON o.id = m.object_id WHERE o.id IS NULL")
    assert orphans == 0
    owner = await conn.fetchval("SELECT owner_id FROM objects LIMIT 1")
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await conn.execute("INSERT INTO media (object_id, owner_id, url, mime_type, bytes) "
                           "VALUES (999999999, $1, 'x', 'image/png', 1)", owner)


async def _as_role(conn: asyncpg.Connection, role: str, sub: str | None, sql: str) -> object:
    async with conn.transaction():
        await conn.execute(f"SET LOCAL ROLE {role}")
        if sub is not None:
            await conn.execute("SELECT set_config('request.jwt.claims', $1, true)",
                               json.dumps({"sub": sub, "role": role}))
        value = await conn.fetchval(sql)
        await conn.execute("RESET ROLE")
    return value


async def test_rls_shows_a_user_only_their_rows(conn: asyncpg.Connection, demo_db) -> None:
    uid = demo_db.facts.test_user_id
    own = await conn.fetchval("SELECT count(*) FROM objects WHERE owner_id = $1", uid)
    assert own > 0
    seen = await _as_role(conn, "authenticated", uid, "SELECT count(*) FROM objects")
    assert seen == own
    foreign = await _as_role(conn, "authenticated", uid,
                             f"SELECT count(*) FROM objects WHERE owner_id <> '{uid}'")
    assert foreign == 0
    other = await conn.fetchval("SELECT id::text FROM accounts WHERE id <> $1 LIMIT 1", uid)
    other_own = await conn.fetchval("SELECT count(*) FROM objects WHERE owner_id = $1::uuid",
                                    other)
    assert await _as_role(conn, "authenticated", other, "SELECT count(*) FROM objects") \
        == other_own


async def test_anon_sees_nothing(conn: asyncpg.Connection) -> None:
    for table in DEMO_TABLES:
        assert await _as_role(conn, "anon", None, f"SELECT count(*) FROM public.{table}") == 0


async def test_auth_uid_follows_the_claims(conn: asyncpg.Connection, demo_db) -> None:
    uid = demo_db.facts.test_user_id
    assert str(await _as_role(conn, "authenticated", uid, "SELECT auth.uid()")) == uid
    assert await _as_role(conn, "authenticated", None, "SELECT auth.uid()") is None


async def test_same_seed_same_data_other_seed_other_data(pg) -> None:
    admin = await asyncpg.connect(pg.dsn())
    checksums = {}
    try:
        for name, seed in (("seed_a", 7), ("seed_b", 7), ("seed_c", 8)):
            await admin.execute(f"DROP DATABASE IF EXISTS {name}")
            await admin.execute(f"CREATE DATABASE {name}")
            c = await asyncpg.connect(pg.dsn(name))
            try:
                await load_demo(c, rows=300, seed=seed)
                checksums[name] = [await table_content(c, f"public.{t}") for t in DEMO_TABLES]
            finally:
                await c.close()
    finally:
        for name in ("seed_a", "seed_b", "seed_c"):
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
    assert [t.checksum for t in checksums["seed_a"]] == [t.checksum for t in checksums["seed_b"]]
    assert [t.checksum for t in checksums["seed_a"]] != [t.checksum for t in checksums["seed_c"]]
