"""The demo tea-school database: schema and deterministic data (same seed, same rows)."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib.resources import files
from typing import Any

import asyncpg

DEMO_TABLES = ("local_classes", "accounts", "objects", "media", "chakai")
TEST_USER_EMAIL = "drill.user@tea.example"
_BASE = datetime(2025, 1, 1, tzinfo=UTC)
_KINDS = ("chawan", "natsume", "chashaku", "chasen", "mizusashi", "kama", "futaoki",
          "kensui", "kakemono", "hanaire")
_ERAS = ("Momoyama", "Edo", "Meiji", "Taisho", "Showa", "Heisei", "Reiwa")
_MAKERS = ("Raku Kichizaemon", "Ohi Chozaemon", "Eiraku Zengoro", "Nakamura Sotetsu",
           "Kuroda Shochiku", "unknown")
_REGIONS = ("Kyoto", "Tokyo", "Kanazawa", "Osaka", "Nara", "Hagi", "Seto", "Karatsu")
_SEASONS = ("spring", "summer", "autumn", "winter")
_MIME = (("image/jpeg", ".jpg"), ("image/png", ".png"), ("video/mp4", ".mp4"))
CHUNK = 50_000


@dataclass(frozen=True)
class DemoFacts:
    """What a drill or test needs to know about the data it loaded."""

    rows: int
    seed: int
    test_user_id: str
    test_user_email: str
    test_user_password: str
    counts: dict[str, int]


def schema_sql() -> str:
    return files("app.sandbox").joinpath("demo_schema.sql").read_text(encoding="utf-8")


def sizes(rows: int) -> dict[str, int]:
    """Table sizes for ``rows``, the size of the largest table (media)."""
    return {
        "local_classes": min(200, max(5, rows // 5000)),
        "accounts": max(20, rows // 50),
        "objects": max(10, rows // 2),
        "media": max(10, rows),
        "chakai": max(5, rows // 10),
    }


def hash_password(password: str, salt: str, iterations: int = 10_000) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations).hex()
    return f"pbkdf2_sha256${iterations}${salt}${digest}"


def check_password(password: str, stored: str) -> bool:
    try:
        algo, iterations, salt, _ = stored.split("$")
    except ValueError:
        return False
    return algo == "pbkdf2_sha256" and hash_password(password, salt, int(iterations)) == stored


def _ts(rng: random.Random) -> datetime:
    return _BASE + timedelta(seconds=rng.randrange(0, 300 * 86400))


def _chunks(total: int, make: Callable[[int], tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    for start in range(0, total, CHUNK):
        yield [make(i) for i in range(start, min(total, start + CHUNK))]


async def load_demo(conn: asyncpg.Connection, rows: int = 2000, seed: int = 42) -> DemoFacts:
    """Create the schema and load deterministic data into the connected (empty) database.
    One random generator feeds every table in a fixed order, so a seed always gives the same
    rows."""
    await conn.execute(schema_sql())
    n = sizes(rows)
    rng = random.Random(seed)
    password = f"matcha-{rng.getrandbits(48):012x}"

    account_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4))
                   for _ in range(n["accounts"])]
    account_class = [1 + (i % n["local_classes"]) for i in range(n["accounts"])]
    await _load_people(conn, rng, n, account_ids, account_class,
                       hash_password(password, f"salt{seed}"))
    owners = [rng.randrange(n["accounts"]) if i % 7 else 0 for i in range(n["objects"])]
    await _load_objects(conn, rng, n, account_ids, owners)
    await _load_media(conn, rng, n, account_ids, owners)
    await _load_chakai(conn, rng, n, account_ids, account_class)

    for table in ("local_classes", "objects", "media", "chakai"):
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('public.{table}', 'id'), "
            f"(SELECT max(id) FROM public.{table}))")
    await conn.execute("ANALYZE")
    return DemoFacts(rows=rows, seed=seed, test_user_id=account_ids[0],
                     test_user_email=TEST_USER_EMAIL, test_user_password=password,
                     counts=n)


async def _load_people(conn: asyncpg.Connection, rng: random.Random, n: dict[str, int],
                       account_ids: list[str], account_class: list[int],
                       test_hash: str) -> None:
    """The local classes, then each account's login (auth.users) and profile; the first
    account is the drill's test user, the only one that can log in."""
    classes = [(i + 1, f"{_REGIONS[i % len(_REGIONS)]} class {i + 1}",
                _REGIONS[i % len(_REGIONS)], "Urasenke", _BASE, _BASE)
               for i in range(n["local_classes"])]
    await conn.copy_records_to_table(
        "local_classes", schema_name="public", records=classes,
        columns=["id", "name", "region", "school", "created_at", "updated_at"])

    users = []
    accounts = []
    for i, uid in enumerate(account_ids):
        email = TEST_USER_EMAIL if i == 0 else f"member{i:06d}@tea.example"
        created = _ts(rng)
        users.append((uuid.UUID(uid), email, test_hash if i == 0 else "!locked",
                      "authenticated", created, created))
        role = "teacher" if i % 25 == 1 else ("admin" if i == 2 else "student")
        accounts.append((uuid.UUID(uid), email, f"Member {i:06d}" if i else "Drill User", role,
                         account_class[i], created, created))
    await conn.copy_records_to_table(
        "users", schema_name="auth", records=users,
        columns=["id", "email", "encrypted_password", "role", "created_at", "updated_at"])
    await conn.copy_records_to_table(
        "accounts", schema_name="public", records=accounts,
        columns=["id", "email", "display_name", "role", "local_class_id", "created_at",
                 "updated_at"])


async def _load_objects(conn: asyncpg.Connection, rng: random.Random, n: dict[str, int],
                        account_ids: list[str], owners: list[int]) -> None:
    def make_object(i: int) -> tuple[Any, ...]:
        kind = _KINDS[rng.randrange(len(_KINDS))]
        created = _ts(rng)
        return (i + 1, uuid.UUID(account_ids[owners[i]]), f"{kind} no. {i + 1}", kind,
                _ERAS[rng.randrange(len(_ERAS))], _MAKERS[rng.randrange(len(_MAKERS))],
                f"A {kind} used for {_SEASONS[i % 4]} gatherings", rng.random() < 0.2,
                created, created)

    for chunk in _chunks(n["objects"], make_object):
        await conn.copy_records_to_table(
            "objects", schema_name="public", records=chunk,
            columns=["id", "owner_id", "name", "kind", "era", "maker", "description",
                     "is_public", "created_at", "updated_at"])


async def _load_media(conn: asyncpg.Connection, rng: random.Random, n: dict[str, int],
                      account_ids: list[str], owners: list[int]) -> None:
    def make_media(i: int) -> tuple[Any, ...]:
        obj = rng.randrange(n["objects"])
        mime, ext = _MIME[rng.randrange(len(_MIME))]
        created = _ts(rng)
        return (i + 1, obj + 1, uuid.UUID(account_ids[owners[obj]]),
                f"https://media.tea.example/{obj + 1}/{i + 1}{ext}", mime,
                rng.randrange(10_000, 5_000_000), f"view {i % 5 + 1}", created, created)

    for chunk in _chunks(n["media"], make_media):
        await conn.copy_records_to_table(
            "media", schema_name="public", records=chunk,
            columns=["id", "object_id", "owner_id", "url", "mime_type", "bytes", "caption",
                     "created_at", "updated_at"])


async def _load_chakai(conn: asyncpg.Connection, rng: random.Random, n: dict[str, int],
                       account_ids: list[str], account_class: list[int]) -> None:
    def make_chakai(i: int) -> tuple[Any, ...]:
        host = rng.randrange(n["accounts"]) if i % 5 else 0
        held = date(2025, 1, 1) + timedelta(days=rng.randrange(0, 365))
        created = _ts(rng)
        return (i + 1, uuid.UUID(account_ids[host]), account_class[host],
                f"{_SEASONS[(held.month - 1) // 3]} chakai {i + 1}", held,
                _SEASONS[(held.month - 1) // 3], rng.randrange(2, 30), created, created)

    for chunk in _chunks(n["chakai"], make_chakai):
        await conn.copy_records_to_table(
            "chakai", schema_name="public", records=chunk,
            columns=["id", "host_id", "local_class_id", "title", "held_on", "season", "guests",
                     "created_at", "updated_at"])
