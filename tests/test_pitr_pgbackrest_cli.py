"""The console's point-in-time rollbacks with the pgBackRest engine, end to end with the real
CLI: a PostgreSQL 15 cluster (/usr/lib/postgresql/15/bin; Debian's pgBackRest 2.45 reads 9.0
to 15) holding the demo database, WAL archived by `pgbackrest archive-push`, one full backup.
The issue's story: users write → `mark` → a damaging migration → more writes; Type 2 `--at`
the mark gives the damaged tables exactly their state at the mark while another table keeps
its later writes; Type 3 `--at` the mark gives every table its state at the mark.
tests/test_pitr_pgbackrest.py tests the engine itself (window, gaps, corrupt backups)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from app.catalog import table_content, user_tables
from app.sandbox.demo_data import load_demo
from app.sandbox.manager import write_config, write_secrets
from app.sandbox.server import PgServer
from tests.helpers import cli
from tests.pgbackrest_cluster import PG15, pgbackrest, require_pgbackrest, start_pgbackrest_cluster

STANZA = "shop"
DATABASE = "tea_school"
TARGET = "tea-school-sandbox"


@dataclass
class Cluster:
    server: PgServer
    conf: Path
    config: Path
    home: Path

    def pgbackrest(self, *args: str) -> str:
        return pgbackrest(self.server, self.conf, STANZA, *args)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return cli(self.config, self.home, *args)

    def execute(self, sql: str) -> None:
        async def go() -> None:
            conn = await asyncpg.connect(self.server.dsn(DATABASE))
            try:
                await conn.execute(sql)
            finally:
                await conn.close()
        asyncio.run(go())

    def contents(self) -> dict[str, str]:
        async def go() -> dict[str, str]:
            conn = await asyncpg.connect(self.server.dsn(DATABASE))
            try:
                return {t: (await table_content(conn, t)).checksum
                        for t in await user_tables(conn)}
            finally:
                await conn.close()
        return asyncio.run(go())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_pgbackrest()
    root = tmp_path_factory.mktemp("pgbackrest-cli")
    server, conf, _repo = start_pgbackrest_cluster(root, STANZA)
    try:
        async def load() -> object:
            conn = await asyncpg.connect(server.dsn())
            await conn.execute(f"CREATE DATABASE {DATABASE}")
            await conn.close()
            conn = await asyncpg.connect(server.dsn(DATABASE))
            try:
                return await load_demo(conn, rows=600, seed=7)
            finally:
                await conn.close()
        facts = asyncio.run(load())
        console = root / "console"
        console.mkdir()
        (console / "backups").mkdir()
        write_secrets(console, server.port, server.password, "no-token",
                      facts.test_user_password)  # type: ignore[attr-defined]
        config = write_config(console, server.port, DATABASE, "http://127.0.0.1:9",
                              facts)  # type: ignore[arg-type]
        text = config.read_text()
        text = text[:text.index("\n[app]")] + text[text.index("\n[auth]"):]   # no app here
        config.write_text(text + f'\n[pitr]\nengine = "pgbackrest"\nstanza = "{STANZA}"\n'
                          f'pgbackrest_config = "{conf}"\nbin_dir = "{PG15}"\n')
        c = Cluster(server, conf, config, root / "home")
        c.pgbackrest("stanza-create")
        c.pgbackrest("backup", "--type=full")
        yield c
    finally:
        server.stop()


BEFORE_MARK = ("INSERT INTO public.local_classes (name, region) "
               "SELECT 'before the mark ' || g, 'Nara' FROM generate_series(1, 5) g")
MIGRATION = ("UPDATE public.media SET caption = NULL, mime_type = 'x/broken' WHERE id % 2 = 0;"
             "DELETE FROM public.chakai WHERE id % 3 = 0")
AFTER = "UPDATE public.objects SET name = name || ' (later)' WHERE id % 7 = 0"


def test_type_2_then_type_3_at_a_mark_with_pgbackrest(cluster: Cluster) -> None:
    cluster.execute(BEFORE_MARK)
    at_mark = cluster.contents()
    marked = cluster.cli("mark", "--label", "before-deploy", "--json")
    assert marked.returncode == 0, marked.stderr
    cluster.execute(MIGRATION)
    cluster.execute(AFTER)
    cluster.pgbackrest("check")        # switches WAL and waits until the repository has it
    damaged = cluster.contents()

    window = cluster.cli("pitr", "--json")
    assert window.returncode == 0, window.stdout + window.stderr
    listed = json.loads(window.stdout)
    assert listed["engine"] == "pgbackrest" and listed["gaps"] == []
    assert [m["label"] for m in listed["marks"]] == ["before-deploy"]

    run = cluster.cli("run", "--type", "partial", "--tables", "media,chakai", "--at",
                      "before-deploy", "--confirm", f"ROLLBACK {TARGET}")
    assert run.returncode == 0, run.stdout + run.stderr
    after = cluster.contents()
    assert after["public.media"] == at_mark["public.media"]
    assert after["public.chakai"] == at_mark["public.chakai"]
    assert after["public.objects"] == damaged["public.objects"] != at_mark["public.objects"]

    full = cluster.cli("run", "--type", "full", "--at", "before-deploy", "--confirm",
                       f"CONFIRM_FULL_RESTORE {TARGET}")
    assert full.returncode == 0, full.stdout + full.stderr
    assert cluster.contents() == at_mark
