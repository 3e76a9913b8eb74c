"""The manifest records a database's state and survives a JSON round trip unchanged."""

from __future__ import annotations

import json

import asyncpg

from app.backups.manifest import Manifest, capture_state, new_manifest
from app.config import CriticalQuery


async def test_state_round_trips_through_json(conn: asyncpg.Connection) -> None:
    state = await capture_state(conn, critical_queries=(CriticalQuery("q", "SELECT 1", 100),))
    manifest = new_manifest("label", state)
    assert Manifest.from_dict(json.loads(manifest.to_json())) == manifest
    assert state.tables["public.media"].rows == 2000
    assert len(state.foreign_keys) == 7
    assert state.rls["public.objects"] is True
    assert "q" in state.query_baselines_ms


async def test_checksum_changes_when_one_value_changes(conn: asyncpg.Connection) -> None:
    before = await capture_state(conn, tables=["public.objects"])
    await conn.execute("UPDATE objects SET era = era || '!' WHERE id = 1")
    after = await capture_state(conn, tables=["public.objects"])
    assert before.tables["public.objects"].rows == after.tables["public.objects"].rows
    assert before.tables["public.objects"].checksum != after.tables["public.objects"].checksum
