"""assess's schema check and Type 1 read the same catalog diff: the check never passes while a
schema rollback would change something, and it names each change (issue: right on any
schema)."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from app import config
from app.backups.create import create_set
from tests.conftest import DemoApp, DemoDb
from tests.test_run_cli import cli

# Changes the manifest's comparison (tables, columns, grants, indexes) does not see.
MIGRATION = """
ALTER POLICY "objects: owner reads" ON public.objects USING (true);
CREATE TYPE public.era_kind AS ENUM ('edo', 'meiji');
CREATE VIEW public.object_names AS SELECT id, name FROM public.objects;
ALTER TABLE public.media ALTER COLUMN caption SET DEFAULT 'untitled';
CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE TRIGGER media_touch BEFORE INSERT ON public.media FOR EACH ROW
    EXECUTE FUNCTION public.touch();
"""


async def test_the_schema_check_sees_what_type_1_would_change(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    await create_set(config.load(console_config), "before-migration")
    clean = cli(console_config, tmp_path, "assess", "--json")
    before = next(c for c in json.loads(clean.stdout)["findings"] if c["check"] == "schema")
    assert before["status"] == "pass" and "every object kind" in before["summary"]

    await conn.execute(MIGRATION)
    diff = cli(console_config, tmp_path, "diff", "--json")
    planned = json.loads(diff.stdout)
    assert diff.returncode == 1, diff.stdout + diff.stderr
    assessed = cli(console_config, tmp_path, "assess", "--json")
    check = next(c for c in json.loads(assessed.stdout)["findings"] if c["check"] == "schema")
    assert check["status"] != "pass", check["summary"]
    assert check["evidence"]["catalog_compared"] is True
    words = " ".join(check["evidence"]["changes"])
    for expected in ("objects: owner reads", "era_kind", "object_names", "caption",
                     "media_touch"):
        assert expected in words, (expected, words)
    assert len(check["evidence"]["changes"]) == len(planned["changes"])
    assert check["summary"].startswith(f"{len(planned['changes'])} schema change(s)")
