"""The decision matrix recommends the zero-loss repair (Type 4) where Type 2 would replace rows
users wrote after the migration: a table the migration damaged (row by row against the backup's
dump) that users kept writing to, and that has a key to match rows by. The same damage with no
later writes stays Type 2, and a table without a key stays Type 2 with the reason."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import asyncpg

from app import config as config_mod
from app.backups.create import create_set
from app.checks import run_assessment
from app.checks.model import Kind
from app.config import Config
from app.decision import Decision, Tier
from tests.test_decisions import cli

MEDIA = "public.media"
# the migration: deletes 10 % of media's rows and blanks 10 % of the captions in ONE transaction
# (media's update trigger stamps the blanked rows with the migration's own now())
MIGRATION = ("BEGIN; DELETE FROM public.media WHERE id % 10 = 1; "
             "UPDATE public.media SET caption = NULL WHERE id % 10 = 2; COMMIT;")


async def _migrate(cfg: Config, conn: asyncpg.Connection) -> tuple[Config, datetime]:
    """The backup, then the migration; the config knows when it ran (target.migration_at)."""
    await create_set(cfg)
    at: datetime = await conn.fetchval("SELECT clock_timestamp()")
    await conn.execute(MIGRATION)
    return replace(cfg, target=replace(cfg.target, migration_at=at)), at


async def _users_write(conn: asyncpg.Connection) -> int:
    """Users after the migration: new uploads (one transaction), then edits of rows the
    migration did not touch (another). The rows written."""
    inserted = await conn.fetch(
        "INSERT INTO public.media (object_id, owner_id, url, mime_type, bytes, caption) "
        "SELECT object_id, owner_id, url || '?later', mime_type, bytes, 'later upload' "
        "FROM public.media WHERE id % 40 = 3 RETURNING id")
    edited = await conn.fetch("UPDATE public.media SET caption = 'edited by its owner' "
                              "WHERE id % 50 = 7 RETURNING id")
    assert inserted and edited
    return len({r["id"] for r in inserted} | {r["id"] for r in edited})   # a new row edited too


async def _decide(cfg: Config) -> Decision:
    return (await run_assessment(cfg, read_only=False)).decision


async def test_damage_and_later_writes_recommend_the_repair(
        console_config: Path, conn: asyncpg.Connection) -> None:
    """IMMEDIATE ROLLBACK with the repair of media: the reason counts exactly the rows users
    wrote after the migration (the rows the migration stamped itself left out), says what it
    needs (no [pitr] here: the set's dump with --damage) and names the command; the JSON and
    the text output say the same."""
    cfg, at = await _migrate(config_mod.load(console_config), conn)
    written = await _users_write(conn)
    d = await _decide(cfg)
    assert d.tier is Tier.IMMEDIATE_ROLLBACK, d.reasons
    assert d.recommended is not None and d.recommended.key == "repair", d.action
    assert d.tables == [MEDIA]
    assert (f"Type 2 would replace {written} rows users wrote after the migration "
            f"({MEDIA} ({written})); the repair keeps them") in d.action
    assert "No [pitr] is configured here, so: the dump" in d.action
    assert f"Run: `rollback-console run --type repair --tables {MEDIA} --backup " in d.action
    assert d.repair["source"] == "dump" and d.repair["pitr"] is None
    assert d.repair["command"].endswith("--damage deleted,nulled --confirm 'ROLLBACK "
                                        f"{cfg.target.name}'")
    loss = next(r for r in d.reasons if r.kind is Kind.DATA_LOSS)
    later = loss.evidence["after_migration"]
    assert later["rows"] == written and later["migration_at"] == at.isoformat()
    assert later["migration_stamped"] == await conn.fetchval(
        "SELECT count(*) FROM public.media WHERE id % 10 = 2 AND url NOT LIKE '%?later'")
    assert d.would_lose["users_rows_after_the_migration_kept"] == {MEDIA: written}
    # Type 2 instead would lose them (and the backup's count says at least as many)
    assert d.would_lose["type_2_instead_would_lose"][MEDIA]["rows_written_since_backup"] \
        >= written

    # the same through the CLI: the config file names the migration's time
    path = console_config
    text = path.read_text().replace("[target]\n", f'[target]\nmigration_at = '
                                    f'"{at.isoformat()}"\n', 1)
    assert text != path.read_text()
    path.write_text(text)
    out = cli(path, "assess", "--json")
    assert out.returncode == 30, out.stderr
    verdict = json.loads(out.stdout)
    assert verdict["recommended_type"] == "repair" and verdict["tables"] == [MEDIA]
    assert verdict["repair"]["tables"][MEDIA]["rows"] == written
    shown = cli(path, "assess")
    assert shown.returncode == 30, shown.stderr
    flat = " ".join(shown.stdout.split())
    assert f"rollback-console run --type repair --tables {MEDIA}" in flat, shown.stdout
    assert "Zero-loss repair" in flat


async def test_the_same_damage_with_no_later_writes_stays_type_2(
        console_config: Path, conn: asyncpg.Connection) -> None:
    """Nobody wrote to media after the migration (its own stamped rows are not users'
    writes): Type 2 of media as before, no repair."""
    cfg, _ = await _migrate(config_mod.load(console_config), conn)
    d = await _decide(cfg)
    assert d.tier is Tier.IMMEDIATE_ROLLBACK, d.reasons
    assert d.recommended is not None and d.recommended.key == "partial", d.action
    assert d.tables == [MEDIA] and not d.repair and d.notes == []
    loss = next(r for r in d.reasons if r.kind is Kind.DATA_LOSS)
    assert loss.evidence["after_migration"]["rows"] == 0
    assert d.to_dict()["recommended_type"] == "partial"


async def test_a_keyless_table_with_damage_and_later_writes_stays_type_2_and_says_why(
        console_config: Path, conn: asyncpg.Connection) -> None:
    """A table with no primary or unique key: its rows cannot be matched, so the repair cannot
    run; Type 2, and the action says why and what it replaces."""
    await conn.execute(
        "CREATE TABLE public.guestbook (body text NOT NULL, "
        "updated_at timestamptz NOT NULL DEFAULT now());"
        "INSERT INTO public.guestbook (body) SELECT 'visit ' || g FROM generate_series(1, 200) g")
    cfg = config_mod.load(console_config)
    await create_set(cfg)
    at: datetime = await conn.fetchval("SELECT clock_timestamp()")
    await conn.execute("DELETE FROM public.guestbook WHERE body LIKE '%5'")   # 20 rows
    await conn.execute("INSERT INTO public.guestbook (body) "
                       "SELECT 'later visit ' || g FROM generate_series(1, 7) g")
    cfg = replace(cfg, target=replace(cfg.target, migration_at=at))
    d = await _decide(cfg)
    assert d.tier is Tier.IMMEDIATE_ROLLBACK, d.reasons
    assert d.recommended is not None and d.recommended.key == "partial", d.action
    assert d.tables == ["public.guestbook"] and not d.repair
    loss = next(r for r in d.reasons if r.kind is Kind.DATA_LOSS)
    assert loss.evidence["keyed"] is False and loss.evidence["after_migration"]["rows"] == 7
    assert ("The zero-loss repair cannot run on public.guestbook: it has no primary key or "
            "unique NOT NULL key to match its rows by, so Type 2 instead; it replaces the 7 "
            "rows users wrote after the migration") in d.action
    assert d.to_dict()["notes"] == d.notes and len(d.notes) == 1


async def test_the_console_accepts_the_repair_into_the_plan_screen(
        console_config: Path, conn: asyncpg.Connection) -> None:
    """The decision screen shows the rows the repair keeps; shift+y opens the plan screen on
    the repair (the registry's key, not a built-in type's) with media chosen, and says the
    headless command; the choice is journaled."""
    from app.journal import Journal, incidents_root
    from app.tui import RollbackConsoleApp
    from screens.plan import PlanScreen
    from tests.test_assess_screen import _open

    cfg, _ = await _migrate(config_mod.load(console_config), conn)
    written = await _users_write(conn)
    app = RollbackConsoleApp(cfg, mode="live")
    async with app.run_test(size=(160, 50)) as pilot:
        screen = await _open(app, pilot)
        verdict = " ".join(str(screen.query_one("#assess-verdict").render()).split())
        assert "IMMEDIATE ROLLBACK" in verdict and "Zero-loss repair" in verdict, verdict
        assert (f"keeps: {MEDIA}: {written} rows users wrote after the migration (Type 2 "
                "would replace them)") in verdict
        await pilot.press("Y")
        await pilot.pause()
        assert isinstance(app.screen, PlanScreen)
        assert app.screen.kind == "repair" and app.screen.preselected == (MEDIA,)
    decisions = [Journal(p).last("decision") for p in incidents_root().glob("*/journal.jsonl")]
    assert any(d is not None and d.data["choice"] == "accept repair" for d in decisions)


def test_what_the_repair_needs_names_the_operators_marks() -> None:
    """With [pitr] and marks on both sides of the migration the command takes them (--at the
    newest before, --after the oldest after); with [pitr] and no mark it says to give times or
    LSNs; and any non-repairable table among the damaged ones makes it Type 2 of all, saying
    which tables the repair could have kept the writes of."""
    from datetime import UTC, timedelta

    from app.checks.model import CheckResult, Finding, Status
    from app.decision import RepairSources, decide

    at = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
    later = {"rows": 12, "basis": "after the migration", "migration_at": at.isoformat(),
             "counted": "updated_at later than the migration's time"}

    def damaged(table: str, keyed: bool = True) -> Finding:
        return Finding(Kind.DATA_LOSS, f"{table}: rows deleted", (table,),
                       {"deleted": 5, "changed": 0, "keyed": keyed, "after_migration": later})

    tables = ["public.a", "public.b", "public.c", "public.d", "public.e"]
    marks = (("before-migration", at - timedelta(minutes=1)),
             ("after-migration", at + timedelta(minutes=1)))
    one = [CheckResult("data_integrity", Status.FAIL, "", "", {}, [damaged("public.a")])]
    d = decide(one, tables, None, RepairSources("shop", "pgbackrest", marks, "set1"))
    assert d.recommended is not None and d.recommended.key == "repair"
    assert d.repair["command"] == ("rollback-console run --type repair --tables public.a --at "
                                   "before-migration --after after-migration --confirm "
                                   "'ROLLBACK shop'")
    assert "[pitr] is configured (pgbackrest) and 2 mark(s)" in d.action
    assert d.repair["dump_command"].endswith("--backup set1 --damage deleted --confirm "
                                             "'ROLLBACK shop'")
    bare = decide(one, tables, None, RepairSources("shop", "native", (), "set1"))
    assert "--at <before> --after <after>" in bare.repair["command"]
    assert "no mark is on this database: give times or LSNs" in bare.action
    two = [CheckResult("data_integrity", Status.FAIL, "", "", {},
                       [damaged("public.a"), damaged("public.b", keyed=False)])]
    mixed = decide(two, tables, None, RepairSources("shop"))
    assert mixed.recommended is not None and mixed.recommended.key == "partial"
    assert mixed.tables == ["public.a", "public.b"] and not mixed.repair
    assert any("cannot run on public.b" in n for n in mixed.notes)
    assert any("would keep users' writes after the migration on public.a" in n
               for n in mixed.notes)


async def test_damage_and_writes_with_the_migrations_time_unknown_stay_type_2(
        console_config: Path, conn: asyncpg.Connection) -> None:
    """Without the migration's time the writes since the backup cannot be put before or after
    it (a Type 2 from a point in time before it keeps those before): Type 2, and a note says
    what to give for the repair to be weighed."""
    cfg = config_mod.load(console_config)
    await create_set(cfg)
    await conn.execute(MIGRATION)
    await _users_write(conn)
    d = await _decide(cfg)
    assert d.recommended is not None and d.recommended.key == "partial", d.action
    assert d.tables == [MEDIA] and not d.repair
    loss = next(r for r in d.reasons if r.kind is Kind.DATA_LOSS)
    assert loss.evidence["after_migration"]["rows"] is None
    assert f"Users wrote to {MEDIA} since the backup" in d.action
    assert "set target.migration_at and assess again" in d.action
