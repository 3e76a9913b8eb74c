"""The zero-loss repair in the console, with Pilot on a real archiving cluster: the plan screen
explains it and asks for its own fields. From two marks (before and right after the migration)
both moments are restored aside, one after the other, the gate shows per table the rows to
re-insert, revert and delete, the conflicts and "rows written after the migration that are
kept", typing the phrase runs it, and the table ends as the engine's own tests expect (rows the
migration touched and users did not: as before; users' rows as they left them). From a backup
set, the damage classes checked are put back. A missing second moment is refused with what to
do, and nothing is restored or changed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input, OptionList, SelectionList

from app import config
from app.config import Config
from app.pitr.marks import create_mark
from app.pitr.source import aside_root
from app.rollback.context import Outcome
from app.tui import RollbackConsoleApp
from screens.gate import GateScreen
from screens.help import HelpScreen
from screens.plan import PlanScreen
from screens.rollback import RollbackScreen
from tests.conftest import wait_until
from tests.helpers import cli
from tests.pitr_cluster import (
    REPAIR_MIGRATION,
    REPAIR_USERS,
    PitrCluster,
    PitrDb,
    repair_expected,
    start_pitr_cluster,
)

TARGET = "tea-school-sandbox"
PHRASE = f"ROLLBACK {TARGET}"
@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PitrCluster]:
    found = start_pitr_cluster(tmp_path_factory.mktemp("repair-console"), rows=300)
    try:
        yield found
    finally:
        found.stop()


def _cfg(db: PitrDb, migration_at: datetime | None = None) -> Config:
    cfg = config.load(db.config)
    return replace(cfg, target=replace(cfg.target, migration_at=migration_at))


def text(widget: object) -> str:
    return str(widget.render())  # type: ignore[attr-defined]


def _differ(got: dict[int, Any], want: dict[int, Any]) -> list[int]:
    return sorted(i for i in got.keys() | want.keys() if got.get(i) != want.get(i))[:10]


async def _run_from_gate(pilot: Any, app: RollbackConsoleApp) -> RollbackScreen:
    await pilot.press(*PHRASE, "enter")
    await wait_until(lambda: isinstance(app.screen, RollbackScreen)
                     and app.screen.outcome is not None, pilot, 90)
    screen = app.screen
    assert isinstance(screen, RollbackScreen)
    return screen


async def test_the_repair_from_two_marks_keeps_every_user_write(cluster: PitrCluster,
                                                                 tmp_path: Path) -> None:
    db = await asyncio.to_thread(PitrDb, cluster, tmp_path / "db", "rc")
    before = await db.amedia()
    await create_mark(_cfg(db), "pre", "test")
    await db.aexecute(REPAIR_MIGRATION)
    migrated_at = datetime.now(UTC)   # the migration's time: between the two marks
    after = await db.amedia()
    await asyncio.sleep(0.05)
    await create_mark(_cfg(db), "post", "test")
    await db.aexecute(REPAIR_USERS)
    await asyncio.to_thread(cluster.switch_wal)
    now = await db.amedia()
    want, conflicts, users = repair_expected(before, after, now)
    assert conflicts and len(users) > 30

    app = RollbackConsoleApp(_cfg(db, migrated_at), mode="live")
    async with app.run_test(size=(80, 24)) as pilot:   # the smallest size it must work at
        screen = PlanScreen("repair", ("media",))
        await app.push_screen(screen)
        await pilot.pause()
        assert screen.query_one("#plan-repair").display
        about = text(screen.query_one("#repair-about"))
        assert "keeps every row users wrote after it" in about and "two moments" in about
        answers = str(screen.query_one("#repair-conflicts", OptionList).get_option_at_index(0)
                      .prompt)
        assert answers == "(•) keep the user's version (default)"
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert "The repair (Type 4) asks for two moments" in \
            " ".join(text(s) for s in app.screen.query("Static"))
        await pilot.press("escape")

        await pilot.press("p")
        await wait_until(lambda: screen.window is not None, pilot)
        assert not screen.query_one("#repair-damage-box").display   # two moments instead
        assert screen.query_one("#pitr-at", Input).value == "pre"
        assert screen.query_one("#pitr-after", Input).value == "post"   # the oldest after it
        assert "✔ mark post is in the window" in text(screen.query_one("#pitr-after-hint"))
        assert "Right after the migration: mark post (the oldest mark after the migration)" \
            in text(screen.query_one("#plan-text"))

        await pilot.press("b")
        await wait_until(lambda: screen.query_one("#pitr-work").display, pilot)
        assert "Restore aside 1 of 2, before the migration: mark pre" in \
            str(screen.query_one("#pitr-work").border_title)
        await wait_until(lambda: screen.plan is not None, pilot, 90)
        assert screen.plan is not None and screen.plan.kind == "repair"
        assert set(screen.moment_sets) == {"before", "after"}
        assert "pitr-pre" in screen.moment_sets["before"].id
        assert "pitr-post" in screen.moment_sets["after"].id
        assert screen.options.after == screen.moment_sets["after"].id
        assert screen.options.conflicts == "keep"
        log = screen.query_one("#pitr-log")
        log.flush()  # type: ignore[attr-defined]
        assert sum("captured as backup set" in line
                   for line in log.history) == 2  # type: ignore[attr-defined]
        preview = text(screen.query_one("#plan-text"))
        assert "Point in time: restoring to mark pre" in preview
        assert "Right after the migration: mark post" in preview
        assert "WRITES public.media: re-insert" in preview

        await pilot.press("G")
        await pilot.pause()
        gate = app.screen
        assert isinstance(gate, GateScreen)
        moment = text(gate.query_one("#gate-moment"))
        assert "restoring to mark pre" in moment and "Right after the migration: mark post" \
            in moment
        blast = text(gate.query_one("#gate-blast"))
        reinsert = sum(1 for i in before if i not in after and i not in now)
        assert f"WRITES public.media: re-insert {reinsert} rows, revert" in blast, blast
        assert f"conflicts {len(conflicts)} (kept as the users left them)" in blast
        assert "public.media: rows written after the migration that are kept: " in blast
        assert "public.media: conflict " in blast and "before the migration" in blast
        assert "triggers: off for the repair" in blast
        assert "LOSS" not in blast

        rollback = await _run_from_gate(pilot, app)
        assert rollback.outcome is Outcome.DONE
    got = await db.amedia()
    assert _differ(got, want) == []
    assert all(got.get(i) == now.get(i) for i in users)   # every user write as left
    assert all(got[i] == before[i] for i in before if i % 20 == 1 and i not in users)


async def test_the_repair_from_a_backup_set_puts_back_the_damage_classes_checked(
        cluster: PitrCluster, tmp_path: Path) -> None:
    db = await asyncio.to_thread(PitrDb, cluster, tmp_path / "db", "rc")
    taken = await asyncio.to_thread(cli, db.config, None, "backup", "--label", "nightly")
    assert taken.returncode == 0, taken.stderr
    before = await db.amedia()
    await db.aexecute(REPAIR_MIGRATION)
    await db.aexecute(REPAIR_USERS)
    now = await db.amedia()

    app = RollbackConsoleApp(_cfg(db), mode="live")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = PlanScreen("repair", ("media",))
        await app.push_screen(screen)
        await pilot.pause()
        assert screen.source == "set"
        assert screen.query_one("#repair-damage-box").display
        assert "users' edits cannot be told from the migration's" in \
            text(screen.query_one("#repair-damage-note"))
        damage = screen.query_one("#repair-damage", SelectionList)
        assert str(damage.get_option_at_index(1).prompt) == "[ ] NULLed columns (reverted)"
        await pilot.press("b")   # no class checked: refused, nothing built
        await pilot.pause()
        assert screen.plan is None
        assert "needs the classes of damage to put back" in text(screen.query_one("#plan-text"))

        assert not screen.query_one("#repair-common-row").display
        damage.select("deleted")
        damage.select("nulled")
        damage.select("common")
        await pilot.pause()
        assert str(damage.get_option_at_index(1).prompt) == "[x] NULLed columns (reverted)"
        assert screen.query_one("#repair-common-row").display   # the common value's columns
        answers = screen.query_one("#repair-conflicts", OptionList)
        answers.focus()
        answers.highlighted = 2
        await pilot.press("enter")   # keep the user's version and export both
        assert str(answers.get_option_at_index(2).prompt) == \
            "(•) keep the user's version and export both"
        assert str(answers.get_option_at_index(0).prompt).startswith("( ) keep")
        await pilot.press("b")
        await wait_until(lambda: screen.plan is not None, pilot, 60)
        # every column's common value: the users' bulk retitling is one of them, said so
        shown = text(screen.query_one("#plan-text"))
        assert "'retitled'" in shown and "'application/octet-stream'" in shown
        assert "Type the migration's column(s) in the field under the classes" in shown
        field = screen.query_one("#repair-common", Input)
        field.focus()
        await pilot.press(*"mime_type", "enter")   # enter in the field builds again
        await wait_until(lambda: screen.plan is not None and "common:mime_type"
                         in screen.options.damage, pilot, 60)
        assert screen.options.damage == ("deleted", "nulled", "common:mime_type")
        assert not screen.options.after
        assert screen.options.conflicts == "export"
        assert "the damage classes checked (deleted, nulled, common:mime_type)" in \
            text(screen.query_one("#plan-text"))
        await pilot.press("G")
        await pilot.pause()
        gate = app.screen
        assert isinstance(gate, GateScreen)
        assert not gate.query("#gate-moment")   # a dump: no point in time
        blast = text(gate.query_one("#gate-blast"))
        assert "WRITES public.media: re-insert" in blast
        assert "(kept as the users left them, both versions exported)" in blast
        assert "no moment after the migration: the classes chosen (deleted, nulled, " \
            "common:mime_type) are taken as the migration's damage" in blast
        rollback = await _run_from_gate(pilot, app)
        assert rollback.outcome is Outcome.DONE
    got = await db.amedia()
    for i, row in before.items():
        if i % 20 == 1:
            assert got[i] == row                        # re-inserted
        if i % 10 == 2 and i % 100 not in (12, 22):
            assert got[i][6] == row[6]                  # the NULLed caption reverted
        if i % 20 == 3:
            assert got[i][4] == row[4]                  # the migration's common value reverted
    assert all(got[i] == now[i] for i in now if i not in before)   # users' new rows
    assert all(got[i][6] == "retitled" for i in now if i % 10 == 5)   # the users' bulk edit


async def test_a_missing_second_moment_is_refused_with_what_to_do(cluster: PitrCluster,
                                                                  tmp_path: Path) -> None:
    db = await asyncio.to_thread(PitrDb, cluster, tmp_path / "db", "rc")
    await create_mark(_cfg(db), "pre", "test")
    await db.aexecute(REPAIR_MIGRATION)
    migrated_at = datetime.now(UTC)   # and no mark after it
    await asyncio.to_thread(cluster.switch_wal)
    rows = await db.amedia()
    cfg = _cfg(db, migrated_at)
    assert cfg.pitr is not None
    aside = sorted(aside_root(cfg.pitr).iterdir())
    app = RollbackConsoleApp(cfg, mode="live")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = PlanScreen("repair", ("media",))
        await app.push_screen(screen)
        await pilot.press("p")
        await wait_until(lambda: screen.window is not None, pilot)
        assert screen.query_one("#pitr-at", Input).value == "pre"
        assert screen.query_one("#pitr-after", Input).value == ""
        assert "make a mark right after the migration" in \
            text(screen.query_one("#pitr-after-hint"))
        assert "No moment after the migration: no mark after the migration's time" in \
            text(screen.query_one("#plan-text"))
        await pilot.press("b")
        await pilot.pause()
        shown = text(screen.query_one("#plan-text"))
        assert "✖ The repair needs the moment right after the migration (the second field)" \
            in shown and "make a mark right after the migration" in shown
        assert "press p for a backup set" in shown and "Nothing was restored or changed" in shown
        assert not screen.query_one("#pitr-work").display and screen.moment_sets == {}
        assert screen.plan is None
        await pilot.press("G")   # no gate without a plan
        await pilot.pause()
        assert app.screen is screen
    assert sorted(aside_root(cfg.pitr).iterdir()) == aside   # no aside cluster was made
    assert await db.amedia() == rows
