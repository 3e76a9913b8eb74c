"""The demo app over real HTTP on 127.0.0.1: maintenance mode, health, objects through RLS,
login, and bad tokens rejected."""

from __future__ import annotations

import asyncpg
import httpx

from tests.conftest import DemoApp, DemoDb


def admin(app: DemoApp) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.admin_token}"}


def test_health_is_ok_on_a_healthy_database(demo_app: DemoApp) -> None:
    r = httpx.get(f"{demo_app.url}/api/health")
    assert r.status_code == 200
    assert r.json()["database"] == "ok"


def test_maintenance_mode_on_gives_503_and_off_restores(demo_app: DemoApp) -> None:
    assert httpx.get(f"{demo_app.url}/admin/maintenance-mode",
                     headers=admin(demo_app)).json()["maintenance"] is False
    on = httpx.post(f"{demo_app.url}/admin/maintenance-mode", headers=admin(demo_app),
                    json={"message": "EMERGENCY ROLLBACK IN PROGRESS"})
    assert on.status_code == 200 and on.json()["maintenance"] is True
    for path in ("/api/health", "/api/objects?limit=1"):
        r = httpx.get(demo_app.url + path)
        assert r.status_code == 503
        assert r.json() == {"maintenance": True, "since": on.json()["since"],
                            "message": "EMERGENCY ROLLBACK IN PROGRESS"}
    off = httpx.delete(f"{demo_app.url}/admin/maintenance-mode", headers=admin(demo_app))
    assert off.json()["maintenance"] is False
    assert httpx.get(f"{demo_app.url}/api/health").status_code == 200


def test_maintenance_endpoint_needs_the_admin_token(demo_app: DemoApp) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = httpx.post(f"{demo_app.url}/admin/maintenance-mode", headers=headers)
        assert r.status_code == 401
    assert httpx.get(f"{demo_app.url}/api/health").status_code == 200  # still not in maintenance


def test_objects_are_the_test_users_only(demo_app: DemoApp, demo_db: DemoDb) -> None:
    r = httpx.get(f"{demo_app.url}/api/objects?limit=50")
    assert r.status_code == 200
    owners = {o["owner_id"] for o in r.json()["objects"]}
    assert owners == {demo_db.facts.test_user_id}


def test_login_issues_a_token_that_reads_through_rls(demo_app: DemoApp, demo_db: DemoDb) -> None:
    r = httpx.post(f"{demo_app.url}/api/login",
                   json={"email": demo_db.facts.test_user_email,
                         "password": demo_db.facts.test_user_password})
    assert r.status_code == 200
    token = r.json()["access_token"]
    objs = httpx.get(f"{demo_app.url}/api/objects?limit=5",
                     headers={"Authorization": f"Bearer {token}"})
    assert objs.status_code == 200 and objs.json()["count"] > 0
    wrong = httpx.post(f"{demo_app.url}/api/login",
                       json={"email": demo_db.facts.test_user_email, "password": "nope"})
    assert wrong.status_code == 401


def test_a_bad_token_is_rejected(demo_app: DemoApp) -> None:
    r = httpx.get(f"{demo_app.url}/api/objects", headers={"Authorization": "Bearer a.b.c"})
    assert r.status_code == 401
    assert "token" in r.json()["error"]


async def test_health_fails_when_a_table_is_gone(demo_app: DemoApp,
                                                 conn: asyncpg.Connection) -> None:
    await conn.execute("ALTER TABLE media RENAME TO media_old")
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{demo_app.url}/api/health")
    assert r.status_code == 503
    assert "media" in r.json()["detail"]


async def test_broken_rls_shows_in_the_api(demo_app: DemoApp, conn: asyncpg.Connection) -> None:
    await conn.execute('DROP POLICY "objects: owner reads" ON objects')
    await conn.execute('DROP POLICY "objects: owner writes" ON objects')
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{demo_app.url}/api/objects?limit=5")
    assert r.status_code == 200 and r.json()["count"] == 0
