"""The demo application the console talks to in drills and tests (Starlette, on 127.0.0.1).

It reads the sandbox database through RLS as a logged-in user, so its health and API really fail
when a migration broke something; it also writes media rows (POST /api/media, PATCH
/api/media/{id}) for the load generator of app/sandbox/load.py. Settings come from the
environment (see ``Settings``).

    python -m app.sandbox.demo_app --port 8123
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.sandbox.demo_data import DEMO_TABLES, check_password


@dataclass
class Settings:
    dsn: str
    admin_token: str
    jwt_secret: str
    default_user_id: str

    @classmethod
    def from_env(cls) -> Settings:
        return cls(dsn=os.environ["ROLLBACK_DEMO_DSN"],
                   admin_token=os.environ["ROLLBACK_DEMO_ADMIN_TOKEN"],
                   jwt_secret=os.environ["ROLLBACK_DEMO_JWT_SECRET"],
                   default_user_id=os.environ["ROLLBACK_DEMO_USER_ID"])


@dataclass
class State:
    settings: Settings
    pool: asyncpg.Pool | None = None
    maintenance: dict[str, Any] | None = None
    counts: Counter[str] = field(default_factory=Counter)
    notifications: list[dict[str, Any]] = field(default_factory=list)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_token(secret: str, claims: dict[str, Any]) -> str:
    """An HS256 JWT, as Supabase's auth would issue."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def read_token(secret: str, token: str) -> dict[str, Any] | None:
    try:
        head, body, sig = token.split(".")
        expected = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(_b64(expected), sig):
            return None
        claims: dict[str, Any] = json.loads(
            base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, json.JSONDecodeError):
        return None
    if claims.get("exp", 0) < time.time():
        return None
    return claims


def _state(request: Request) -> State:
    state: State = request.app.state.demo
    return state


async def _pool(state: State) -> asyncpg.Pool:
    if state.pool is None:
        state.pool = await asyncpg.create_pool(state.settings.dsn, min_size=1, max_size=5,
                                               timeout=5, command_timeout=10)
    return state.pool


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def _error(code: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=code)


async def maintenance(request: Request) -> Response:
    state = _state(request)
    if _bearer(request) != state.settings.admin_token:
        return _error(401, "admin token required")
    if request.method == "POST":
        body: dict[str, Any] = {}
        if await request.body():
            try:
                body = await request.json()
            except json.JSONDecodeError:
                return _error(400, "body must be JSON")
        state.maintenance = {"since": datetime.now(UTC).isoformat(),
                             "message": body.get("message", "Database maintenance underway")}
    elif request.method == "DELETE":
        state.maintenance = None
    return JSONResponse({"maintenance": state.maintenance is not None,
                         **(state.maintenance or {})})


async def stats(request: Request) -> Response:
    state = _state(request)
    if _bearer(request) != state.settings.admin_token:
        return _error(401, "admin token required")
    return JSONResponse({"requests": state.counts["requests"],
                         "errors_5xx": state.counts["errors_5xx"],
                         "by_status": {k: v for k, v in state.counts.items()
                                       if k.isdigit()}})


async def livez(_request: Request) -> Response:
    return JSONResponse({"alive": True})


async def health(request: Request) -> Response:
    state = _state(request)
    started = time.perf_counter()
    try:
        pool = await _pool(state)
        async with pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute("SET LOCAL ROLE service_role")
            for table in DEMO_TABLES:
                await conn.fetchval(f"SELECT 1 FROM public.{table} LIMIT 1")
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return _error(503, "database check failed", status="error",
                      detail=f"{type(exc).__name__}: {exc}")
    return JSONResponse({"status": "ok", "database": "ok",
                         "latency_ms": round((time.perf_counter() - started) * 1000, 1)})


async def login(request: Request) -> Response:
    state = _state(request)
    try:
        body = await request.json()
        email, password = str(body["email"]), str(body["password"])
    except (json.JSONDecodeError, KeyError, TypeError):
        return _error(400, "send JSON with email and password")
    try:
        pool = await _pool(state)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL ROLE supabase_auth_admin")
            row = await conn.fetchrow(
                "SELECT id, email, encrypted_password, role FROM auth.users WHERE email = $1",
                email)
            if row is not None and check_password(password, row["encrypted_password"]):
                await conn.execute("UPDATE auth.users SET last_sign_in_at = now() WHERE id = $1",
                                   row["id"])
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return _error(500, "authentication backend failed", detail=f"{type(exc).__name__}: {exc}")
    if row is None or not check_password(password, row["encrypted_password"]):
        return _error(401, "invalid email or password")
    claims = {"sub": str(row["id"]), "email": row["email"], "role": row["role"],
              "exp": int(time.time()) + 3600}
    return JSONResponse({"access_token": make_token(state.settings.jwt_secret, claims),
                         "token_type": "bearer", "user": {"id": str(row["id"]),
                                                          "email": row["email"]}})


def _claims(request: Request) -> dict[str, Any] | None:
    """Who is asking: the bearer token's claims, or without a token the app's own logged-in
    session (the default user, as the runbook's curl probe sees it); None for a bad token."""
    state = _state(request)
    token = _bearer(request)
    if token is None:
        return {"sub": state.settings.default_user_id, "role": "authenticated"}
    return read_token(state.settings.jwt_secret, token)


@asynccontextmanager
async def _as_user(state: State, claims: dict[str, Any],
                   readonly: bool = False) -> AsyncIterator[asyncpg.Connection]:
    """A transaction as the ``authenticated`` role with the request's JWT claims: RLS decides."""
    pool = await _pool(state)
    async with pool.acquire() as conn, conn.transaction(readonly=readonly):
        await conn.execute("SET LOCAL ROLE authenticated")
        await conn.execute("SELECT set_config('request.jwt.claims', $1, true)",
                           json.dumps(claims))
        yield conn


async def objects(request: Request) -> Response:
    state = _state(request)
    claims = _claims(request)
    if claims is None:
        return _error(401, "invalid or expired token")
    try:
        limit = max(1, min(1000, int(request.query_params.get("limit", "20"))))
    except ValueError:
        return _error(400, "limit must be an integer")
    try:
        async with _as_user(state, claims, readonly=True) as conn:
            rows = await conn.fetch(
                "SELECT id, name, kind, era, owner_id FROM public.objects ORDER BY id LIMIT $1",
                limit)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return _error(500, "query failed", detail=f"{type(exc).__name__}: {exc}")
    return JSONResponse({"count": len(rows),
                         "objects": [{**dict(r), "owner_id": str(r["owner_id"])} for r in rows]})


MEDIA_COLUMNS = "id, object_id, owner_id, url, mime_type, bytes, caption, created_at, updated_at"
INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1


def _media_json(row: asyncpg.Record) -> dict[str, Any]:
    return {**dict(row), "owner_id": str(row["owner_id"]),
            "created_at": row["created_at"].isoformat(),
            "updated_at": row["updated_at"].isoformat()}


async def _json_object(request: Request) -> dict[str, Any] | Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "body must be JSON")
    if not isinstance(body, dict):
        return _error(400, "body must be a JSON object")
    return body


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _bad_fields(body: dict[str, Any], allowed: tuple[str, ...]) -> Response | None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        return _error(400, f"unknown field(s): {', '.join(unknown)}; allowed: "
                           f"{', '.join(allowed)}")
    return None


def _write_failed(exc: Exception) -> Response:
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError | asyncpg.DataError):
        return _error(422, "the database refused the row", detail=f"{type(exc).__name__}: {exc}")
    return _error(500, "write failed", detail=f"{type(exc).__name__}: {exc}")


MEDIA_INSERT_FIELDS = ("object_id", "url", "mime_type", "bytes", "caption")
MEDIA_UPDATE_FIELDS = ("caption", "mime_type")


async def create_media(request: Request) -> Response:
    """POST /api/media {object_id, url, mime_type, bytes, caption?}: a media row owned by the
    caller (the owner is never taken from the body), on one of the caller's objects."""
    state = _state(request)
    claims = _claims(request)
    if claims is None:
        return _error(401, "invalid or expired token")
    body = await _json_object(request)
    if isinstance(body, Response):
        return body
    if (bad := _bad_fields(body, MEDIA_INSERT_FIELDS)) is not None:
        return bad
    problems = []
    if not _is_int(body.get("object_id"), 1, INT8_MAX):
        problems.append("object_id must be a positive integer")
    for name in ("url", "mime_type"):
        if not _is_text(body.get(name)):
            problems.append(f"{name} must be a non-empty string")
    if not _is_int(body.get("bytes"), 1, INT4_MAX):
        problems.append(f"bytes must be an integer from 1 to {INT4_MAX}")
    if body.get("caption") is not None and not isinstance(body["caption"], str):
        problems.append("caption must be a string or null")
    if problems:
        return _error(400, "; ".join(problems))
    try:
        async with _as_user(state, claims) as conn:
            row = await conn.fetchrow(
                "INSERT INTO public.media (object_id, owner_id, url, mime_type, bytes, caption) "
                "SELECT o.id, auth.uid(), $2, $3, $4, $5 FROM public.objects o WHERE o.id = $1 "
                f"RETURNING {MEDIA_COLUMNS}",
                body["object_id"], body["url"], body["mime_type"], body["bytes"],
                body.get("caption"))
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return _write_failed(exc)
    if row is None:  # RLS hides other users' objects: theirs and missing ones look the same
        return _error(404, f"object {body['object_id']} not found")
    return JSONResponse(_media_json(row), status_code=201)


async def update_media(request: Request) -> Response:
    """PATCH /api/media/{id} {caption?, mime_type?}: the caller's own row only (RLS)."""
    state = _state(request)
    claims = _claims(request)
    if claims is None:
        return _error(401, "invalid or expired token")
    media_id: int = request.path_params["id"]
    body = await _json_object(request)
    if isinstance(body, Response):
        return body
    if (bad := _bad_fields(body, MEDIA_UPDATE_FIELDS)) is not None:
        return bad
    if not body:
        return _error(400, f"nothing to update; send {' and/or '.join(MEDIA_UPDATE_FIELDS)}")
    if "caption" in body and body["caption"] is not None and not isinstance(body["caption"], str):
        return _error(400, "caption must be a string or null")
    if "mime_type" in body and not _is_text(body["mime_type"]):
        return _error(400, "mime_type must be a non-empty string")
    if not 1 <= media_id <= INT8_MAX:
        return _error(404, f"media {media_id} not found")
    names = [n for n in MEDIA_UPDATE_FIELDS if n in body]  # column names from the fixed list
    sets = ", ".join(f"{n} = ${i}" for i, n in enumerate(names, start=2))
    try:
        async with _as_user(state, claims) as conn:
            row = await conn.fetchrow(
                f"UPDATE public.media SET {sets} WHERE id = $1 RETURNING {MEDIA_COLUMNS}",
                media_id, *(body[n] for n in names))
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return _write_failed(exc)
    if row is None:
        return _error(404, f"media {media_id} not found")
    return JSONResponse(_media_json(row))


async def receive_notification(request: Request) -> Response:
    """A receiving endpoint for the console's webhooks (Slack-like, status page, generic)."""
    state = _state(request)
    try:
        payload = await request.json()
    except json.JSONDecodeError:
        return _error(400, "body must be JSON")
    state.notifications.append({"channel": request.path_params["channel"], "payload": payload,
                                "received_at": datetime.now(UTC).isoformat()})
    return JSONResponse({"ok": True})


async def list_notifications(request: Request) -> Response:
    return JSONResponse({"notifications": _state(request).notifications})


def create_app(settings: Settings) -> Starlette:
    state = State(settings)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        if state.pool is not None:
            await state.pool.close()

    async def gate(request: Request,
                   call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Maintenance mode answers 503 for the API; counts requests and server errors."""
        path = request.url.path
        if state.maintenance is not None and path.startswith("/api/"):
            return JSONResponse({"maintenance": True, **state.maintenance}, status_code=503,
                                headers={"Retry-After": "60"})
        response = await call_next(request)
        if path.startswith("/api/"):
            state.counts["requests"] += 1
            state.counts[str(response.status_code)] += 1
            if response.status_code >= 500:
                state.counts["errors_5xx"] += 1
        return response

    app = Starlette(routes=[
        Route("/livez", livez),
        Route("/admin/maintenance-mode", maintenance, methods=["GET", "POST", "DELETE"]),
        Route("/admin/stats", stats),
        Route("/api/health", health),
        Route("/api/login", login, methods=["POST"]),
        Route("/api/objects", objects),
        Route("/api/media", create_media, methods=["POST"]),
        Route("/api/media/{id:int}", update_media, methods=["PATCH"]),
        Route("/hooks/{channel}", receive_notification, methods=["POST"]),
        Route("/hooks", list_notifications),
    ], middleware=[Middleware(BaseHTTPMiddleware, dispatch=gate)], lifespan=lifespan)
    app.state.demo = state
    return app


def main() -> None:
    import uvicorn

    from app.sandbox.server import set_parent_death_signal

    parser = argparse.ArgumentParser(description="rollback-console demo app")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    set_parent_death_signal()
    uvicorn.run(create_app(Settings.from_env()), host="127.0.0.1", port=args.port,
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
