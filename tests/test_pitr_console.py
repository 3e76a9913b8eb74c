"""The console's point in time, with Pilot on real PostgreSQL: the plan screen offers "from a
point in time" only with [pitr] (disabled, with why, without it), shows the WAL archive's
window, restores a mark aside with a progress bar and builds the plan from the captured set;
the gate names the moment and the seconds of writes it replaces; a moment outside the window
is refused on the plan's failure line and the live database is not touched. The backups screen
lists the window and the marks."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from textual.widgets import Input, OptionList, ProgressBar

from app import config
from app.pitr.marks import create_mark
from app.pitr.source import aside_root
from app.rollback.context import RollbackType
from app.tui import RollbackConsoleApp
from screens.backups import BackupsScreen
from screens.gate import GateScreen
from screens.help import HelpScreen
from screens.plan import PlanScreen
from tests.conftest import wait_until
from tests.pitr_cluster import PitrCluster, start_pitr_cluster
from widgets.blast_radius import moment_words, seconds_in_words, writes_lost

TABLES = ("accounts", "objects", "media", "chakai", "local_classes")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PitrCluster]:
    """An archiving server with a base backup; a mark, then a damaging migration and more
    writes, all of it in the archive."""
    found = start_pitr_cluster(tmp_path_factory.mktemp("pitr-console"), rows=300)
    try:
        cfg = config.load(found.config)
        asyncio.run(create_mark(cfg, "before-deploy", "test"))
        asyncio.run(_execute(found, "UPDATE media SET caption = 'broken by the migration'"))
        asyncio.run(_execute(found, "UPDATE chakai SET title = title || '!' "
                                    "WHERE id % 7 = 0"))
        found.switch_wal()
        yield found
    finally:
        found.stop()


async def _execute(cluster: PitrCluster, sql: str) -> None:
    conn = await cluster.connect()
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def checksums(conn: asyncpg.Connection) -> dict[str, str]:
    return {t: await conn.fetchval(f"SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY "
                                   f"x::text), '')) FROM public.{t} x") for t in TABLES}


def text(widget: object) -> str:
    return str(widget.render())  # type: ignore[attr-defined]


async def test_without_pitr_the_point_in_time_is_offered_disabled_with_why(
        console_config: Path) -> None:
    app = RollbackConsoleApp(config.load(console_config), mode="live")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = PlanScreen(RollbackType.PARTIAL, ("media",))
        await app.push_screen(screen)
        await pilot.pause()
        source = screen.query_one("#plan-source", OptionList)
        option = source.get_option("pitr")
        assert option.disabled
        assert "no [pitr] in rollback.toml: see README" in str(option.prompt)
        assert "press b to build the plan" in text(screen.query_one("#plan-text"))
        await pilot.press("p")
        await pilot.pause()
        assert screen.source == "set"   # nothing switched; a notification says why
        assert any("no [pitr]" in n.message for n in app._notifications)
        assert screen.query_one("#plan-backups").display
        assert not screen.query_one("#plan-pitr").display


async def test_a_mark_restored_aside_becomes_the_plans_source_and_the_gate_names_it(
        cluster: PitrCluster) -> None:
    cfg = config.load(cluster.config)
    conn = await cluster.connect()
    try:
        before = await checksums(conn)
    finally:
        await conn.close()
    app = RollbackConsoleApp(cfg, mode="live")
    async with app.run_test(size=(140, 45)) as pilot:
        screen = PlanScreen(RollbackType.PARTIAL, ("media",))
        await app.push_screen(screen)
        await pilot.pause()
        assert "p: from a point in time" in text(screen.query_one("#plan-text"))
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        helped = " ".join(text(s) for s in app.screen.query("Static"))
        assert ("p", "Point in time / backup set") in app.screen.keys
        assert "restores that moment aside" in helped
        await pilot.press("escape")
        await pilot.pause()

        await pilot.press("p")
        await wait_until(lambda: screen.window is not None, pilot)
        preview = text(screen.query_one("#plan-text"))
        assert "the WAL archive's window" in preview and "window: " in preview
        assert "base backups: 1, 1 usable" in preview and "gaps: none" in preview
        assert "before-deploy" in preview
        assert screen.query_one("#plan-pitr").display
        field = screen.query_one("#pitr-at", Input)
        assert app.focused is not field   # b, shift+g and p stay live; tab goes into the field
        # the migration's time is unknown here: the newest mark, said to be unchecked
        assert field.value == "before-deploy"
        assert "it is the newest mark, not checked against the migration" in preview

        field.focus()
        field.value = "before-deploy"
        await pilot.pause()
        assert "✔ mark before-deploy is in the window" in text(screen.query_one("#pitr-hint"))
        await pilot.press("enter")   # in the field: restore aside, then build
        await pilot.pause()
        assert screen.query_one("#pitr-work").display   # the bar and the log
        await wait_until(lambda: screen.plan is not None, pilot, 60)
        assert screen.plan is not None and screen.backup is not None
        assert screen.plan.backup_id == screen.backup.id
        assert "pitr-before-deploy" in screen.backup.id
        assert screen.backup.manifest is not None and screen.backup.manifest.point_in_time
        assert screen.query_one("#pitr-progress", ProgressBar).percentage == 1.0
        assert not screen.query_one("#pitr-work").display   # room for the plan now
        log = screen.query_one("#pitr-log")
        log.flush()  # type: ignore[attr-defined]
        assert any("captured as backup set" in line
                   for line in log.history)  # type: ignore[attr-defined]
        preview = text(screen.query_one("#plan-text"))
        assert "Point in time: restoring to mark before-deploy" in preview
        assert "writes to public.media in the last" in preview

        await pilot.press("G")
        await pilot.pause()
        assert isinstance(app.screen, GateScreen)
        gate = app.screen
        moment = text(gate.query_one("#gate-moment"))
        mark = next(m for m in screen.marks if m.label == "before-deploy")
        assert f"restoring to mark before-deploy, {mark.at:%Y-%m-%d %H:%M:%S} UTC, LSN " \
               f"{mark.lsn}" in moment
        blast = text(gate.query_one("#gate-blast"))
        assert "writes to public.media in the last" in blast
        assert "s (since the moment) are replaced; exported first" in blast
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen

        # Type 3 from the same moment: captured again, whole (a Type 2 capture has one table)
        types = screen.query_one("#plan-type", OptionList)
        types.focus()
        types.highlighted = 2
        await pilot.press("enter")
        assert screen.kind == "full"
        await pilot.press("b")
        await wait_until(lambda: screen.plan is not None and screen.plan.kind == "full",
                         pilot, 60)
        await pilot.press("G")
        await pilot.pause()
        assert isinstance(app.screen, GateScreen)
        assert "mark before-deploy" in text(app.screen.query_one("#gate-moment"))
        assert f"every write to the whole database {cluster.database} in the last" in \
            text(app.screen.query_one("#gate-blast"))
        await pilot.press("escape")
    conn = await cluster.connect()
    try:
        assert await checksums(conn) == before   # restored aside: the live one only read
    finally:
        await conn.close()


async def test_a_moment_outside_the_window_is_refused_and_nothing_changes(
        cluster: PitrCluster) -> None:
    cfg = config.load(cluster.config)   # the migration's time known: the default is the mark
    cfg = replace(cfg, target=replace(cfg.target, migration_at=datetime.now(UTC)))
    conn = await cluster.connect()
    try:
        before = await checksums(conn)
    finally:
        await conn.close()
    assert cfg.pitr is not None
    aside = sorted(aside_root(cfg.pitr).iterdir())
    app = RollbackConsoleApp(cfg, mode="live")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = PlanScreen(RollbackType.FULL)
        await app.push_screen(screen)
        await pilot.pause()
        await pilot.press("p")
        await wait_until(lambda: screen.window is not None, pilot)
        field = screen.query_one("#pitr-at", Input)
        assert field.value == "before-deploy"
        assert "Default moment: mark before-deploy" in text(screen.query_one("#plan-text"))
        assert "the newest mark before the migration" in text(screen.query_one("#plan-text"))
        field.value = "2020-01-01T00:00:00Z"
        await pilot.pause()
        assert "✖" in text(screen.query_one("#pitr-hint"))   # said as it is typed
        await pilot.press("b")
        await wait_until(lambda: "✖" in text(screen.query_one("#plan-text")), pilot, 30)
        line = text(screen.query_one("#plan-text"))
        assert "could not restore the moment aside: cannot restore 2020-01-01 00:00:00 UTC" \
            in line and "before the window opens" in line and "Nothing was changed" in line, line
        assert screen.plan is None and screen.backup is None
        await pilot.press("G")   # no gate without a plan
        await pilot.pause()
        assert app.screen is screen
    conn = await cluster.connect()
    try:
        assert await checksums(conn) == before
    finally:
        await conn.close()
    assert sorted(aside_root(cfg.pitr).iterdir()) == aside   # no aside cluster was made


async def test_escape_during_the_restore_aside_leaves_no_cluster_behind(
        cluster: PitrCluster) -> None:
    cfg = config.load(cluster.config)
    assert cfg.pitr is not None
    root = aside_root(cfg.pitr)
    before = set(root.iterdir())
    app = RollbackConsoleApp(cfg, mode="live")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = PlanScreen(RollbackType.FULL)
        await app.push_screen(screen)
        await pilot.press("p")
        await wait_until(lambda: screen.window is not None, pilot)
        screen.query_one("#pitr-at", Input).value = "before-deploy"
        await pilot.press("b")
        await wait_until(lambda: set(root.iterdir()) - before, pilot)
        folder = next(iter(set(root.iterdir()) - before))
        await wait_until(lambda: (folder / "pgdata" / "postmaster.pid").exists(), pilot)
        await pilot.press("escape")   # leaves the screen: its work is cancelled
        await wait_until(lambda: not folder.exists(), pilot)
        assert not isinstance(app.screen, PlanScreen)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert str(folder) not in ps.stdout   # the aside server stopped with its folder


async def test_q_asks_while_a_moment_is_restored_aside_and_a_window_failure_says_so(
        cluster: PitrCluster, tmp_path: Path) -> None:
    """The point-in-time workers are one group (screens/work.py Group.PITR): quitting while a
    restore aside runs asks first; a failure says which of the two failed, in its own words."""
    from screens.confirm import ConfirmScreen

    cfg = config.load(cluster.config)
    assert cfg.pitr is not None
    root = aside_root(cfg.pitr)
    before = set(root.iterdir())
    app = RollbackConsoleApp(cfg, mode="live")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = PlanScreen(RollbackType.FULL)
        await app.push_screen(screen)
        await pilot.press("p")
        await wait_until(lambda: screen.window is not None, pilot)
        screen.query_one("#pitr-at", Input).value = "before-deploy"
        await pilot.press("b")
        await wait_until(lambda: set(root.iterdir()) - before, pilot)
        assert app.busy
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)   # asked, not quit
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen
        await pilot.press("escape")   # leaves the screen: the restore is stopped
        await wait_until(lambda: not app.busy, pilot)

    broken = replace(cfg, pitr=replace(cfg.pitr, archive_dir=tmp_path / "no-archive"))
    app = RollbackConsoleApp(broken, mode="live")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = PlanScreen(RollbackType.FULL)
        await app.push_screen(screen)
        await wait_until(lambda: "window not read" in
                         str(screen.query_one("#plan-source").border_subtitle), pilot)
        await pilot.press("p")
        await wait_until(lambda: "✖" in text(screen.query_one("#plan-text")), pilot)
        assert "could not read the WAL archive's window: " in \
            text(screen.query_one("#plan-text"))


async def test_a_mark_newer_than_every_set_is_pointed_out_on_the_source_list(
        cluster: PitrCluster, tmp_path: Path) -> None:
    """No set is as close to the migration as the mark: the source list says the point in time
    loses fewer writes (the default source stays the backup set)."""
    cfg = config.load(cluster.config)
    (tmp_path / "sets").mkdir()
    cfg = replace(cfg, target=replace(cfg.target, migration_at=datetime.now(UTC),
                                      backups_root=tmp_path / "sets"))
    app = RollbackConsoleApp(cfg, mode="live")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = PlanScreen(RollbackType.PARTIAL, ("media",))
        await app.push_screen(screen)
        await wait_until(lambda: screen.window is not None, pilot)
        await pilot.pause()
        source = screen.query_one("#plan-source", OptionList)
        assert source.border_subtitle == "p: the point in time"
        suggest = screen.query_one("#plan-suggest")
        assert suggest.display
        assert "⚑ From a point in time: mark before-deploy (" in text(suggest)
        assert "no backup set is that recent. A rollback from it loses fewer writes: press p " \
            "for a point in time." in text(suggest)
        assert screen.source == "set"
        assert "press b to build the plan" in text(screen.query_one("#plan-text"))


async def test_the_backups_screen_lists_the_window_and_the_marks(cluster: PitrCluster) -> None:
    app = RollbackConsoleApp(config.load(cluster.config), mode="live")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = BackupsScreen()
        await app.push_screen(screen)
        await wait_until(lambda: "window: " in text(screen.query_one("#pitr-text")), pilot)
        shown = text(screen.query_one("#pitr-text"))
        assert "native WAL archive" in shown and "base backups: 1, 1 usable" in shown
        assert "⚑ before-deploy" in shown and "LSN" in shown


def test_the_seconds_of_writes_lost_are_said_per_type() -> None:
    at = datetime(2026, 12, 2, 4, 31, 7, tzinfo=UTC)
    pit = {"kind": "name", "value": "before-deploy", "at": at.isoformat(), "lsn": "0/3000060"}
    now = at + timedelta(seconds=312)
    assert writes_lost(pit, "tables", ["public.media"], "shop", now) == (
        "!writes to public.media in the last 312 s (5 min 12 s) (since the moment) are "
        "replaced; exported first")
    assert writes_lost(pit, "database", [], "shop", now).startswith(
        "!every write to the whole database shop in the last 312 s")
    assert not writes_lost(pit, "schema", [], "shop", now).startswith("!")
    assert writes_lost(pit, "other", ["public.media"], "shop", now, loses="nothing") == \
        "the moment is 312 s (5 min 12 s) ago; this type loses nothing"
    assert seconds_in_words(45) == "45 s"
    # a restore point's unique suffix is not what the operator named the mark
    pit = {**pit, "value": "before-deploy.3f9a1c",
           "said": "mark before-deploy (2026-12-02 04:31:07 UTC, LSN 0/3000060)"}
    assert moment_words(pit).startswith(
        "restoring to mark before-deploy, 2026-12-02 04:31:07 UTC, LSN 0/3000060")
