"""A small, steady write load on the demo app's API, recording exactly what it wrote.

It inserts media rows (POST /api/media) and updates captions (PATCH /api/media/{id}) as one
user, one request at a time, so the record is exact: ``inserted`` holds each row it created
with the values it last left there, ``updated`` each row it changed with the values it wrote
(last write wins). Refused writes (503 in maintenance mode, 404 for a row a migration deleted,
a 500 while the database is away) are counted in ``errors``, never raised; a write whose
outcome is unknown (the connection broke after the request was sent) is counted too and listed
in ``uncertain``, so a test can tell "exact" from "probably".

    async with WriteLoad(app_url, update_ids=damaged_ids, rate=20) as load:
        ...                         # the scenario runs while the load writes
        load.stop()                 # or leave the block: it stops after the write in flight
    load.inserted, load.updated, load.errors

    await WriteLoad(app_url, update_ids=[...]).run(50)   # exactly 50 writes, unpaced
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

MIME_TYPES = ("image/jpeg", "image/png", "image/webp", "video/mp4")


@dataclass
class Write:
    """One write the load attempted: ``kind`` "insert" or "update", the row's id (None for an
    insert that failed), the values sent, the HTTP status (None when no answer came) and the
    wall-clock time the answer came (``time.time()``)."""

    kind: str
    id: int | None
    values: dict[str, Any]
    status: int | None
    at: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in (200, 201)


@dataclass
class WriteLoad:
    """A write load against the demo app at ``base_url``.

    ``token``: a bearer token from /api/login; or ``email`` and ``password`` to log in first;
    with neither, the app's own session (its default user) writes. ``object_ids``: the
    objects new media rows belong to (default: the user's objects, read from /api/objects).
    ``update_ids``: the media rows whose captions it updates (e.g. rows a migration damaged);
    when empty it updates the rows it inserted itself. ``update_share``: the share of writes
    that are updates (0..1). ``rate``: writes per second in the background (``async with``).
    ``seed`` makes the choices and values repeatable; ``tag`` marks every value it writes.
    """

    base_url: str
    token: str | None = None
    email: str | None = None
    password: str | None = None
    object_ids: Sequence[int] | None = None
    update_ids: Sequence[int] = ()
    update_share: float = 0.5
    rate: float = 20.0
    seed: int = 0
    tag: str = "load"
    timeout: float = 5.0

    inserted: dict[int, dict[str, Any]] = field(default_factory=dict, init=False)
    updated: dict[int, dict[str, Any]] = field(default_factory=dict, init=False)
    errors: int = field(default=0, init=False)
    failures: Counter[str] = field(default_factory=Counter, init=False)
    uncertain: list[Write] = field(default_factory=list, init=False)
    history: list[Write] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.update_share <= 1.0:
            raise ValueError("update_share must be between 0 and 1")
        if self.rate <= 0:
            raise ValueError("rate must be positive")
        if (self.email is None) != (self.password is None):
            raise ValueError("give both email and password, or neither")
        self._rng = random.Random(self.seed)
        self._seq = 0
        self._client: httpx.AsyncClient | None = None
        self._headers: dict[str, str] = {}
        self._objects: list[int] = list(self.object_ids or ())
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> WriteLoad:
        await self._open()
        self._stop.clear()
        self._task = asyncio.create_task(self._paced(), name=f"write-load {self.tag}")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
        try:
            await self.wait_stopped()
        finally:
            await self._close()

    def stop(self) -> None:
        """Ask the background load to stop; it finishes the write in flight (so the record stays
        exact). ``await wait_stopped()`` to know it has; leaving ``async with`` waits too."""
        self._stop.set()

    async def wait_stopped(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run(self, n: int) -> None:
        """Exactly ``n`` writes now, one after another, unpaced (for deterministic tests). Not
        while the background load runs."""
        if self.running:
            raise RuntimeError("the background load is running; stop() it first")
        own = self._client is None
        await self._open()
        try:
            for _ in range(n):
                await self._one()
        finally:
            if own:
                await self._close()

    # -- the writes --------------------------------------------------------------------------

    @property
    def ops(self) -> int:
        return len(self.history)

    def touched(self) -> set[int]:
        """Every media id it wrote successfully."""
        return set(self.inserted) | set(self.updated)

    async def _open(self) -> None:
        if self._client is not None:
            return
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout)
        try:
            if self.email is not None:
                r = await self._client.post("/api/login", json={"email": self.email,
                                                                "password": self.password})
                r.raise_for_status()
                self.token = r.json()["access_token"]
            if self.token is not None:
                self._headers = {"Authorization": f"Bearer {self.token}"}
            if not self._objects:
                r = await self._client.get("/api/objects", params={"limit": 100},
                                           headers=self._headers)
                r.raise_for_status()
                self._objects = [o["id"] for o in r.json()["objects"]]
            if not self._objects:
                raise RuntimeError("the user owns no objects to attach media to")
        except BaseException:
            await self._close()
            raise

    async def _close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def _paced(self) -> None:
        interval = 1.0 / self.rate
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self._stop.is_set():
            await self._one()
            next_at = max(next_at + interval, loop.time())  # steady; no bursts to catch up
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=max(0.0, next_at - loop.time()))
            except TimeoutError:
                pass

    async def _one(self) -> None:
        self._seq += 1
        targets = list(self.update_ids) or sorted(self.inserted)
        if targets and self._rng.random() < self.update_share:
            media_id = self._rng.choice(targets)
            await self._update(media_id, {"caption": f"{self.tag} update #{self._seq}"})
        else:
            await self._insert({
                "object_id": self._rng.choice(self._objects),
                "url": f"https://cdn.example.test/{self.tag}/{self._seq}.bin",
                "mime_type": self._rng.choice(MIME_TYPES),
                "bytes": self._rng.randint(1_000, 5_000_000),
                "caption": f"{self.tag} insert #{self._seq}",
            })

    async def _send(self, kind: str, media_id: int | None, method: str, path: str,
                    values: dict[str, Any]) -> tuple[Write, dict[str, Any] | None]:
        assert self._client is not None
        try:
            r = await self._client.request(method, path, json=values, headers=self._headers)
        except httpx.HTTPError as exc:
            write = Write(kind, media_id, values, None, time.time(),
                          f"{type(exc).__name__}: {exc}")
            self.history.append(write)
            self.errors += 1
            self.failures[type(exc).__name__] += 1
            # A request that never left cannot have written; one that did may have.
            if not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
                self.uncertain.append(write)
            return write, None
        body: dict[str, Any] | None = None
        try:
            body = r.json()
        except ValueError:
            pass
        write = Write(kind, media_id, values, r.status_code, time.time(),
                      None if r.is_success else str((body or {}).get("error", r.text[:200])))
        self.history.append(write)
        if not write.ok:
            self.errors += 1
            self.failures[str(r.status_code)] += 1
            return write, None
        return write, body

    async def _insert(self, values: dict[str, Any]) -> None:
        write, row = await self._send("insert", None, "POST", "/api/media", values)
        if row is not None:
            write.id = int(row["id"])
            self.inserted[write.id] = dict(values)

    async def _update(self, media_id: int, values: dict[str, Any]) -> None:
        _write, row = await self._send("update", media_id, "PATCH", f"/api/media/{media_id}",
                                       values)
        if row is not None:
            self.updated.setdefault(media_id, {}).update(values)
            if media_id in self.inserted:
                self.inserted[media_id].update(values)
