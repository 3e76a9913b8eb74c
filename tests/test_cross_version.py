"""Version skew, for real: the machine's own older PostgreSQL server (Debian's, under
/usr/lib/postgresql/*/bin) backed up with the bundled pg_dump 18, whose output (plain or custom)
starts with `SET transaction_timeout`, unknown before 17. Verification says so, and the
console's restores (rehearsal, Type 3) stream the dump through a filter so they still work."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from app.sandbox.demo_data import load_demo
from app.sandbox.manager import write_config, write_secrets
from app.sandbox.server import PgServer
from tests.helpers import cli

OLDER = sorted(p for p in Path("/usr/lib/postgresql").glob("*/bin")
               if p.parent.name.isdigit() and int(p.parent.name) < 17
               and (p / "postgres").exists()) if Path("/usr/lib/postgresql").is_dir() else []

pytestmark = pytest.mark.skipif(
    not OLDER, reason="no PostgreSQL server older than 17 under /usr/lib/postgresql on this "
                      "machine (apt-get install postgresql-15 to run the cross-version test)")


@pytest.fixture(scope="module")
def old_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    server = PgServer.create(tmp_path_factory.mktemp("old") / "pgdata", bins=OLDER[0])
    server.start()

    async def load() -> None:
        conn = await asyncpg.connect(server.dsn())
        await conn.execute("CREATE DATABASE tea_school")
        await conn.close()
        conn = await asyncpg.connect(server.dsn("tea_school"))
        await load_demo(conn, rows=300, seed=1)
        await conn.close()

    asyncio.run(load())
    yield server
    server.stop()


def test_backup_of_an_older_server_verifies_and_rehearses(old_server: PgServer,
                                                          tmp_path: Path) -> None:
    write_secrets(tmp_path, old_server.port, old_server.password, "token", "pw")
    (tmp_path / "backups").mkdir()
    facts = type("Facts", (), {"test_user_id": "00000000-0000-0000-0000-000000000000",
                               "test_user_email": "x@example.com"})()
    config = write_config(tmp_path, old_server.port, "tea_school", "http://127.0.0.1:9",
                          facts)  # type: ignore[arg-type]
    made = cli(config, None, "backup")
    assert made.returncode == 0, made.stderr
    set_dir = next((tmp_path / "backups").iterdir())
    checked = cli(config, None, "backups", "--verify", set_dir.name, "--rehearse", "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    result = json.loads(checked.stdout)
    assert any("public.media: 300 rows, checksum equal" in line for line in result["checked"])
    assert any("restored through the console's filter" in line
               for line in result["not_verifiable"])

    (set_dir / "full_database_backup.dump").unlink()  # only the plain SQL dumps are left
    manifest = json.loads((set_dir / "manifest.json").read_text())
    del manifest["files"]["full_database_backup.dump"]
    (set_dir / "manifest.json").write_text(json.dumps(manifest))
    plain = cli(config, None, "backups", "--verify", set_dir.name, "--rehearse")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "SET transaction_timeout` line fails there" in plain.stdout
    assert "public.media: 300 rows, checksum equal to the manifest" in plain.stdout
