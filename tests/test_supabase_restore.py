"""Supabase as it really is (issue 19, second half), connected as the platform's non-superuser
`postgres` on the Supabase-shaped cluster (tests/supabase.py): Type 3 in place, schema by
schema, where no swap is possible; the app's own objects inside platform schemas (the sign-up
trigger on auth.users); a foreign key added back over orphans; the recommended path end to
end. The platform's tables, roles, default privileges, event triggers and extensions stay
checksum-identical throughout."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from app.capabilities import FULL, IN_PLACE_BY_SCHEMA, Capability
from app.checks.model import CheckResult, Finding, Kind, Status
from app.decision import decide
from tests.supabase import (
    Console,
    allows_connections,
    damage,
    databases_like,
    migrated_now,
    platform_state,
    run_as_postgres,
    take_backup,
)
from tests.test_supabase import console, sb_postgres, supabase_cluster  # noqa: F401 (fixtures)


def test_type3_in_place_by_schema_as_postgres_restores_the_app_and_leaves_the_platform(
        console: Console) -> None:  # noqa: F811
    """Type 3 as `postgres` on the project's database (no swap possible): the dry run says it
    goes in place by schema and why, and lists what the platform owns as not restored; the
    run restores schema, data, policies, grants and the sign-up trigger on auth.users (exit
    0), validate passes, the platform is identical, no `postgres_restored_*` is made (it was
    refused, exit 2)."""
    take_backup(console)
    before = asyncio.run(platform_state(console.db.admin_dsn))
    damage(console)
    migrated = migrated_now()
    code, out = console.run("run", "--type", "full", "--migration-time", migrated,
                            "--dry-run")
    assert code == 0, out
    assert "IN PLACE, schema by schema (no swap: the database is named postgres" in out
    assert "not restored: owned by the platform: schemas and their rows auth " \
           "(supabase_auth_admin)" in out
    assert "event triggers issue_graphql_placeholder" in out
    assert "on_auth_user_created" in out
    code, out = console.run("run", "--type", "full", "--migration-time", migrated,
                            "--confirm", "CONFIRM_FULL_RESTORE tea-school-sandbox")
    assert code == 0, out
    db = console.db
    assert asyncio.run(databases_like(db, "postgres_restored_")) == []
    assert asyncio.run(allows_connections(db)) is True
    assert asyncio.run(platform_state(db.admin_dsn)) == before
    code, out = console.run("validate")
    assert code == 0, out


# --- issue 19, second half: the recommended path, platform-schema objects, orphans --------

def test_a_damaging_migration_is_recovered_by_the_recommended_path_as_postgres(
        console: Console) -> None:  # noqa: F811
    """Schema, data, policies, grants and the sign-up trigger on auth.users damaged: assess
    recommends a way, it runs as `postgres` (exit 0 each), validate passes, and the platform's
    tables, roles, default privileges, event triggers and extensions are identical (the
    trigger on auth.users went unseen: validate failed after the recommended path)."""
    take_backup(console)
    before = asyncio.run(platform_state(console.db.admin_dsn))
    damage(console)
    code, out = console.run("assess", "--json")
    verdict = json.loads(out)
    assert code == 30 and verdict["tier"] == "IMMEDIATE ROLLBACK", out
    migrated = migrated_now()
    kind = verdict["recommended_type"]
    phrase = {"schema": "ROLLBACK SCHEMA", "partial": "ROLLBACK",
              "full": "CONFIRM_FULL_RESTORE"}[kind] + " tea-school-sandbox"
    tables = ["--tables", ",".join(verdict["tables"])] if kind == "partial" else []
    code, out = console.run("run", "--type", kind, *tables, "--migration-time", migrated,
                            "--confirm", phrase)
    assert code == 0, out
    if verdict["then"]:
        code, out = console.run("run", "--type", "partial", "--tables",
                                ",".join(verdict["then"]["tables"]), "--migration-time",
                                migrated, "--confirm", "ROLLBACK tea-school-sandbox")
        assert code == 0, out
    assert asyncio.run(platform_state(console.db.admin_dsn)) == before
    code, out = console.run("validate")   # (its login probe signs the test user in)
    assert code == 0, out


def test_the_signup_trigger_on_auth_users_is_seen_and_restored_by_type1(
        console: Console) -> None:  # noqa: F811
    """A migration drops the app's trigger on auth.users (a platform table): the schema check
    finds it, `diff` shows it, Type 1 creates it again; auth.users' rows and the platform's
    objects are untouched (it went unseen: no finding, nothing restored)."""
    take_backup(console)
    before = asyncio.run(platform_state(console.db.admin_dsn))
    run_as_postgres(console, "DROP TRIGGER on_auth_user_created ON auth.users")
    code, out = console.run("assess", "--json")
    schema = next(f for f in json.loads(out)["findings"] if f["check"] == "schema")
    assert schema["status"] != "pass" and "on_auth_user_created" in json.dumps(schema), schema
    code, out = console.run("diff")
    assert code == 1 and 'create trigger "auth"."users" on_auth_user_created' in out, out
    code, out = console.run("run", "--type", "schema", "--confirm",
                            "ROLLBACK SCHEMA tea-school-sandbox")
    assert code == 0, out
    assert asyncio.run(platform_state(console.db.admin_dsn)) == before


def test_a_foreign_key_added_back_over_orphans_is_planned_not_failed(
        console: Console) -> None:  # noqa: F811
    """A migration dropped media's key to objects and deleted the objects that media rows
    point at: the dry run counts the orphans and adds the key NOT VALID, leaving objects for
    phase 2 (it failed at exit 4 on the orphans, the dry run silent); Type 1 then Type 2 of
    objects ends with the key valid and validate passing."""
    take_backup(console)
    run_as_postgres(console, "ALTER TABLE public.media DROP CONSTRAINT media_object_id_fkey; "
                             "DELETE FROM public.objects WHERE id IN "
                             "(SELECT object_id FROM public.media WHERE id % 2 = 0)")
    migrated = migrated_now()
    code, out = console.run("run", "--type", "schema", "--migration-time", migrated,
                            "--dry-run")
    assert code == 0, out
    assert "have no parent in public.objects: added NOT VALID" in out, out
    assert "NOT VALID" in out and "public.objects" in out
    code, out = console.run("run", "--type", "schema", "--migration-time", migrated,
                            "--confirm", "ROLLBACK SCHEMA tea-school-sandbox")
    assert code == 0, out
    code, out = console.run("run", "--type", "partial", "--tables", "objects",
                            "--migration-time", migrated, "--confirm",
                            "ROLLBACK tea-school-sandbox")
    assert code == 0, out
    code, out = console.run("validate")
    assert code == 0, out


def test_backups_dates_each_set_as_the_plan_does(console: Console) -> None:  # noqa: F811
    """`backups` judges each set against the migration as the plan does: a set holding every
    recorded migration is not "taken AFTER the migration" (the listing said so while the
    plan did not)."""
    take_backup(console)
    code, out = console.run("backups")
    assert code == 0, out
    assert "AFTER" not in out, out
    assert "is in the set too" in out, out


def test_type3_in_place_over_orphans_killed_inside_its_transaction_resumes_to_validated(
        console: Console, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """The in-place Type 3 where a migration dropped a key and orphaned its rows: the dry run
    counts the orphans (the key comes back NOT VALID, the reload in the same transaction
    validates it). The console killed (a real SIGKILL) after the schema statements, before the
    reload: the server rolls the ONE transaction back, so the schema is as the migration left
    it (not half restored); `resume` runs it again: exit 0, validate passes, the platform
    identical."""
    take_backup(console)
    before = asyncio.run(platform_state(console.db.admin_dsn))
    damage(console)
    run_as_postgres(console, "ALTER TABLE public.media DROP CONSTRAINT media_object_id_fkey; "
                             "DELETE FROM public.objects WHERE id IN "
                             "(SELECT object_id FROM public.media WHERE id % 2 = 0)")
    migrated = migrated_now()
    code, out = console.run("run", "--type", "full", "--migration-time", migrated, "--dry-run")
    assert code == 0, out
    assert "have no parent in public.objects: added NOT VALID" in out, out
    phrase = "CONFIRM_FULL_RESTORE tea-school-sandbox"
    monkeypatch.setenv("ROLLBACK_CONSOLE_KILL_AT", "in_place:schema_applied")
    code, out = console.run("run", "--type", "full", "--migration-time", migrated,
                            "--confirm", phrase)
    monkeypatch.delenv("ROLLBACK_CONSOLE_KILL_AT")
    assert code == -9, out   # killed inside the transaction, the schema statements run
    assert "school" not in asyncio.run(_columns(console, "local_classes"))   # rolled back
    code, out = console.run("resume", "--confirm", phrase)
    assert code == 0, out
    assert "school" in asyncio.run(_columns(console, "local_classes"))
    assert asyncio.run(platform_state(console.db.admin_dsn)) == before
    code, out = console.run("validate")
    assert code == 0, out


async def _columns(on: Console, table: str) -> list[str]:
    conn = await asyncpg.connect(on.db.dsn)
    try:
        return [r[0] for r in await conn.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 "
            "AND NOT attisdropped", f"public.{table}")]
    finally:
        await conn.close()


def _most_tables_corrupted() -> tuple[list[CheckResult], list[str]]:
    tables = ["public.a", "public.b", "public.c"]
    return [CheckResult("data_integrity", Status.FAIL, "rows differ", "data corruption",
                        findings=[Finding(Kind.DATA_CORRUPTION, f"{t} differs", (t,))
                                  for t in tables])], tables


def test_a_recommended_type3_follows_the_roles_capability() -> None:
    """Most tables corrupted: the matrix recommends Type 3. As a role that can only restore in
    place by schema the action says so; as one that cannot at all, nothing is recommended
    and the action gives the capability's way instead and why (it recommended the impossible
    Type 3)."""
    results, tables = _most_tables_corrupted()
    in_place = Capability(FULL, True, "no swap", how=IN_PLACE_BY_SCHEMA)
    d = decide(results, tables, in_place)
    assert d.recommended is not None and d.recommended.key == "full"
    assert "in place, schema by schema" in d.action
    impossible = Capability(FULL, False, "Type 3 is impossible here: role x has no CREATEDB",
                            "restore through the platform: point-in-time restore to T")
    d = decide(results, tables, impossible)
    assert d.recommended is None and d.tier.label == "IMMEDIATE ROLLBACK"
    assert "Type 3 is impossible as this role" in d.action
    assert "Instead: restore through the platform: point-in-time restore to T" in d.action
    assert d.to_dict()["instead"].startswith("Type 3 is impossible as this role")
