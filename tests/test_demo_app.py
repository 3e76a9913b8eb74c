"""The demo app over real HTTP on 127.0.0.1: maintenance mode, health, objects through RLS,
login, bad tokens rejected, and media written through RLS (POST /api/media, PATCH
/api/media/{id}), refused in maintenance mode and on bad input."""

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


# -- writes: POST /api/media, PATCH /api/media/{id} ------------------------------------------

MEDIA = {"url": "https://cdn.example.test/new.jpg", "mime_type": "image/jpeg", "bytes": 1234,
         "caption": "a new chawan photo"}


async def own_object(conn: asyncpg.Connection, db: DemoDb) -> int:
    value: int = await conn.fetchval("SELECT min(id) FROM objects WHERE owner_id = $1",
                                     db.facts.test_user_id)
    return value


async def media_row(conn: asyncpg.Connection, media_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM media WHERE id = $1", media_id)


async def test_post_media_inserts_a_row_owned_by_the_caller(
        demo_app: DemoApp, demo_db: DemoDb, conn: asyncpg.Connection) -> None:
    object_id = await own_object(conn, demo_db)
    async with httpx.AsyncClient(base_url=demo_app.url) as client:
        r = await client.post("/api/media", json={"object_id": object_id, **MEDIA})
    assert r.status_code == 201
    body = r.json()
    row = await media_row(conn, body["id"])
    assert row is not None
    assert {k: row[k] for k in MEDIA} == MEDIA and row["object_id"] == object_id
    assert str(row["owner_id"]) == body["owner_id"] == demo_db.facts.test_user_id
    assert body["updated_at"] == row["updated_at"].isoformat()
    # A caption may be left out (NULL).
    async with httpx.AsyncClient(base_url=demo_app.url) as client:
        r = await client.post("/api/media", json={"object_id": object_id, **MEDIA,
                                                  "caption": None})
    assert r.status_code == 201 and r.json()["caption"] is None


async def test_post_media_with_a_login_token(demo_app: DemoApp, demo_db: DemoDb,
                                             conn: asyncpg.Connection) -> None:
    async with httpx.AsyncClient(base_url=demo_app.url) as client:
        token = (await client.post("/api/login", json={
            "email": demo_db.facts.test_user_email,
            "password": demo_db.facts.test_user_password})).json()["access_token"]
        r = await client.post("/api/media", headers={"Authorization": f"Bearer {token}"},
                              json={"object_id": await own_object(conn, demo_db), **MEDIA})
        assert r.status_code == 201
        bad = await client.post("/api/media", headers={"Authorization": "Bearer a.b.c"},
                                json={"object_id": await own_object(conn, demo_db), **MEDIA})
    assert bad.status_code == 401
    assert await conn.fetchval("SELECT count(*) FROM media WHERE url = $1", MEDIA["url"]) == 1


async def test_patch_media_updates_caption_and_mime_type(
        demo_app: DemoApp, demo_db: DemoDb, conn: asyncpg.Connection) -> None:
    media_id = await conn.fetchval("SELECT min(id) FROM media WHERE owner_id = $1",
                                   demo_db.facts.test_user_id)
    before = await media_row(conn, media_id)
    assert before is not None
    async with httpx.AsyncClient(base_url=demo_app.url) as client:
        r = await client.patch(f"/api/media/{media_id}", json={"caption": "re-captioned"})
        assert r.status_code == 200 and r.json()["caption"] == "re-captioned"
        r2 = await client.patch(f"/api/media/{media_id}",
                                json={"mime_type": "image/webp", "caption": None})
    assert r2.status_code == 200
    after = await media_row(conn, media_id)
    assert after is not None
    assert after["caption"] is None and after["mime_type"] == "image/webp"
    assert r2.json()["id"] == media_id and r2.json()["caption"] is None
    assert after["updated_at"] > before["updated_at"]  # the table's trigger ran
    assert {k: after[k] for k in ("url", "bytes", "object_id", "owner_id")} == \
        {k: before[k] for k in ("url", "bytes", "object_id", "owner_id")}


async def test_rls_keeps_other_users_rows_out_of_reach(
        demo_app: DemoApp, demo_db: DemoDb, conn: asyncpg.Connection) -> None:
    user = demo_db.facts.test_user_id
    theirs = await conn.fetchrow("SELECT id, caption FROM media WHERE owner_id <> $1 LIMIT 1",
                                 user)
    their_object = await conn.fetchval("SELECT id FROM objects WHERE owner_id <> $1 LIMIT 1",
                                       user)
    count = await conn.fetchval("SELECT count(*) FROM media")
    async with httpx.AsyncClient(base_url=demo_app.url) as client:
        r = await client.patch(f"/api/media/{theirs['id']}", json={"caption": "mine now"})
        assert r.status_code == 404 and "not found" in r.json()["error"]
        r = await client.post("/api/media", json={"object_id": their_object, **MEDIA})
        assert r.status_code == 404 and "not found" in r.json()["error"]
        r = await client.patch("/api/media/999999999", json={"caption": "x"})
        assert r.status_code == 404
    assert await conn.fetchval("SELECT caption FROM media WHERE id = $1",
                               theirs["id"]) == theirs["caption"]
    assert await conn.fetchval("SELECT count(*) FROM media") == count


async def test_writes_in_maintenance_mode_answer_503_and_change_nothing(
        demo_app: DemoApp, demo_db: DemoDb, conn: asyncpg.Connection) -> None:
    object_id = await own_object(conn, demo_db)
    media_id = await conn.fetchval("SELECT min(id) FROM media WHERE owner_id = $1",
                                   demo_db.facts.test_user_id)
    before = await media_row(conn, media_id)
    count = await conn.fetchval("SELECT count(*) FROM media")
    async with httpx.AsyncClient(base_url=demo_app.url) as client:
        on = await client.post("/admin/maintenance-mode", headers=admin(demo_app))
        assert on.status_code == 200
        post = await client.post("/api/media", json={"object_id": object_id, **MEDIA})
        patch = await client.patch(f"/api/media/{media_id}", json={"caption": "during"})
        for r in (post, patch):
            assert r.status_code == 503 and r.json()["maintenance"] is True
            assert r.headers["retry-after"] == "60"
        assert await conn.fetchval("SELECT count(*) FROM media") == count
        assert await media_row(conn, media_id) == before
        await client.delete("/admin/maintenance-mode", headers=admin(demo_app))
        assert (await client.patch(f"/api/media/{media_id}",
                                   json={"caption": "after"})).status_code == 200
    assert await conn.fetchval("SELECT caption FROM media WHERE id = $1", media_id) == "after"


async def test_bad_writes_are_4xx_with_a_message_and_write_nothing(
        demo_app: DemoApp, demo_db: DemoDb, conn: asyncpg.Connection) -> None:
    object_id = await own_object(conn, demo_db)
    media_id = await conn.fetchval("SELECT min(id) FROM media WHERE owner_id = $1",
                                   demo_db.facts.test_user_id)
    good = {"object_id": object_id, **MEDIA}
    posts: list[tuple[object, str]] = [
        ([good], "JSON object"),
        ({k: v for k, v in good.items() if k != "url"}, "url"),
        ({**good, "bytes": 0}, "bytes"),
        ({**good, "bytes": "12"}, "bytes"),
        ({**good, "bytes": 2**31}, "bytes"),
        ({**good, "object_id": True}, "object_id"),
        ({**good, "mime_type": "  "}, "mime_type"),
        ({**good, "caption": 5}, "caption"),
        ({**good, "owner_id": demo_db.facts.test_user_id}, "owner_id"),
    ]
    patches: list[tuple[object, str]] = [
        ({}, "nothing to update"),
        ({"url": "https://elsewhere"}, "url"),
        ({"mime_type": None}, "mime_type"),
        ({"caption": ["x"]}, "caption"),
        ("caption", "JSON object"),
    ]
    before_row = await media_row(conn, media_id)
    count = await conn.fetchval("SELECT count(*) FROM media")
    async with httpx.AsyncClient(base_url=demo_app.url) as client:
        for body, word in posts:
            r = await client.post("/api/media", json=body)
            assert r.status_code == 400 and word in r.json()["error"], (body, r.text)
        for body, word in patches:
            r = await client.patch(f"/api/media/{media_id}", json=body)
            assert r.status_code == 400 and word in r.json()["error"], (body, r.text)
        for path in ("/api/media", f"/api/media/{media_id}"):
            r = await client.request("POST" if path == "/api/media" else "PATCH", path,
                                     content=b"not json{")
            assert r.status_code == 400 and r.json()["error"] == "body must be JSON"
        assert (await client.patch("/api/media/abc", json={"caption": "x"})).status_code == 404
    assert await conn.fetchval("SELECT count(*) FROM media") == count
    assert await media_row(conn, media_id) == before_row
