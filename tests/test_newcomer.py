"""The console for a tired newcomer (issue 15): what the screen and the CLI say must never lead
the wrong way. Each test plays what a newcomer would do and asserts what they would notice."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import asyncpg
import pytest

from app import config
from app.backups.create import create_set
from tests.conftest import DemoApp, DemoDb, wait_until
from tests.helpers import CONSOLE, cli, run_context
from tests.test_partial_rollback import checksums, make_set

PHRASE_SCHEMA = "ROLLBACK SCHEMA tea-school-sandbox"


# item 3: a schema rollback with nothing to change must not take the app down

async def test_a_schema_rollback_with_nothing_to_change_says_so_and_never_touches_the_app(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, tmp_path: Path) -> None:
    await create_set(config.load(console_config), "before-migration")   # no migration after
    home = tmp_path / "home"
    dry = cli(console_config, home, "run", "--type", "schema", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "NOTHING TO DO" in dry.stdout
    result = cli(console_config, home, "run", "--type", "schema", "--confirm", PHRASE_SCHEMA)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "NOTHING TO DO" in result.stdout and "nothing was changed" in result.stdout
    assert "Set maintenance mode" not in result.stdout   # no step ran: the app never went down
    assert not (home / "incidents").exists() or not any((home / "incidents").iterdir())
    as_json = cli(console_config, home, "run", "--type", "schema", "--confirm", PHRASE_SCHEMA,
                  "--json")
    last = json.loads(as_json.stdout.splitlines()[-1])
    assert as_json.returncode == 0
    assert last["event"] == "RunFinished" and last["outcome"] == "nothing_to_do"


async def test_the_console_offers_no_gate_for_a_schema_plan_with_nothing_to_change(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from app.rollback.context import RollbackType
    from app.tui import RollbackConsoleApp
    from screens.gate import GateScreen
    from screens.plan import PlanScreen

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    cfg = config.load(console_config)
    await create_set(cfg, "before-migration")
    app = RollbackConsoleApp(cfg, mode="live")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        app.push_screen(PlanScreen(RollbackType.SCHEMA))
        await pilot.pause()
        await pilot.press("b")
        await wait_until(lambda: getattr(app.screen, "plan", None) is not None, pilot, 60)
        shown = str(app.screen.query_one("#plan-text").render())
        assert "Nothing to do" in shown and "shift+g" not in shown
        await pilot.press("G")
        await pilot.pause()
        assert not isinstance(app.screen, GateScreen)


# item 5: a dry run exits with the code the run would

async def test_a_dry_run_of_a_table_not_on_the_target_exits_2_like_the_run(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path) -> None:
    await make_set(demo_db, conn, console_config.parent / "backups")
    before = await checksums(conn, "public.media")
    home = tmp_path / "home"
    dry = cli(console_config, home, "run", "--type", "partial", "--tables", "medias",
              "--dry-run")
    run = cli(console_config, home, "run", "--type", "partial", "--tables", "medias",
              "--confirm", "ROLLBACK tea-school-sandbox")
    assert run.returncode == 2, run.stdout + run.stderr
    assert dry.returncode == run.returncode, dry.stdout + dry.stderr
    assert "the run would be refused (exit 2)" in dry.stderr
    assert "medias" in dry.stderr
    as_json = cli(console_config, home, "run", "--type", "partial", "--tables", "medias",
                  "--dry-run", "--json")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["exit_code"] == 2
    assert await checksums(conn, "public.media") == before


# item 4: assess mode says what it is and offers only what it can do

def _footer_keys(app: object) -> set[str]:
    screen = app.screen  # type: ignore[attr-defined]
    return {active.binding.key for active in screen.active_bindings.values()
            if active.binding.show and active.enabled}


async def test_assess_mode_offers_no_key_that_can_only_be_refused(
        console_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.tui import RollbackConsoleApp
    from screens.assess import AssessScreen

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    app = RollbackConsoleApp(config.load(console_config), mode="assess")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        home_keys = _footer_keys(app)
        assert "R" not in home_keys and "u" not in home_keys and "a" in home_keys
        app.screen.action_open("rollback")     # the disabled entry chosen anyway
        await pilot.pause()
        toast = next(iter(app._notifications))
        assert "Not in assess mode" not in toast.title
        assert "read-only" in toast.title.lower()
        await pilot.press("a")
        await wait_until(lambda: isinstance(app.screen, AssessScreen), pilot, 30)
        await wait_until(lambda: getattr(app.screen, "assessment", None) is not None, pilot, 90)
        keys = _footer_keys(app)
        assert "Y" not in keys and "O" not in keys and "r" in keys


async def test_live_mode_still_offers_the_rollback_keys(console_config: Path) -> None:
    from app.tui import RollbackConsoleApp

    app = RollbackConsoleApp(config.load(console_config), mode="live")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "R" in _footer_keys(app)


async def test_watch_that_cannot_start_leaves_no_row_running(console_config: Path,
                                                             demo_app: DemoApp) -> None:
    from app.tui import RollbackConsoleApp
    from screens.watch import WatchScreen

    app = RollbackConsoleApp(config.load(console_config), mode="assess")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("w")
        screen = app.screen
        assert isinstance(screen, WatchScreen)
        await wait_until(lambda: bool(screen.finished), pilot, 30)
        await pilot.pause()
        assert "could not watch" in screen.finished
        rows = [str(screen.query_one("#watch-items").get_row_at(i)[1])  # type: ignore[attr-defined]
                for i in range(screen.query_one("#watch-items").row_count)]  # type: ignore[attr-defined]
        assert rows and not any("RUNNING" in r for r in rows), rows
        assert all("NOT RUN" in r for r in rows)


# item 7 (part): Help and Quit stay on the footer of a narrow terminal

async def test_help_and_quit_stay_on_the_footer_at_80_columns(console_config: Path) -> None:
    from app.tui import RollbackConsoleApp
    from widgets.footer import ConsoleFooter

    app = RollbackConsoleApp(config.load(console_config), mode="live")
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        footer = app.screen.query_one(ConsoleFooter)
        pinned = footer.query(".footer-pinned").last()
        shown = [k.description for k in pinned.children]  # type: ignore[attr-defined]
        assert shown == ["Help", "Quit"]                            # home has no escape
        assert pinned.region.right <= 80 and pinned.region.width > 0
        assert pinned.region.y == 23                               # on the last line


# item 9 (part): a wrong password is not "unreachable", and its row is not cut

async def test_a_wrong_password_says_so_on_the_banner_and_the_whole_error_is_shown(
        tmp_path: Path, demo_db: DemoDb) -> None:
    from app.tui import RollbackConsoleApp
    from widgets.banner import TargetBanner
    from widgets.status_line import StatusLine

    path = tmp_path / "rollback.toml"
    path.write_text('[target]\nname = "shop"\nenvironment = "staging"\n'
                    f'dsn = "postgresql://postgres:wrong-pw@127.0.0.1:{demo_db.server.port}/'
                    f'{demo_db.name}"\n')
    app = RollbackConsoleApp(config.load(path), mode="live")
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        banner = str(app.screen.query_one(TargetBanner).render())
        assert "LOGIN REFUSED" in banner and "unreachable" not in banner.lower()
        line = app.screen.query_one("#probe-db", StatusLine)
        assert line.status == "fail" and "password" in line.summary
        # the summary (about 110 characters) wraps under itself instead of being cut
        assert line.region.height >= 2, line.region


# item 11: drills

async def test_a_lowercase_y_names_the_key_to_press(console_config: Path, demo_db: DemoDb,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from app.tui import RollbackConsoleApp

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    app = RollbackConsoleApp(config.load(console_config), mode="drill")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("r")          # home: Rollback is R
        await pilot.pause()
        titles = [n.title for n in app._notifications]
        assert "r is not R" in titles
        await pilot.press("a")
        await wait_until(lambda: getattr(app.screen, "assessment", None) is not None, pilot, 90)
        await pilot.press("y")
        await pilot.pause()
        toast = [n for n in app._notifications if n.title == "y is not Y"]
        assert toast and "shift+y" in toast[0].message


def test_a_score_is_recorded_once_however_often_the_debrief_is_shown(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app import drills
    from app.drill_score import record, score, scores_path

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    scenario = drills.BY_NAME["dropped-index"]
    started = 1_700_000_000.0
    first = record(score(scenario, started, "aiko"), run=started)     # q
    again = record(score(scenario, started, "aiko"), run=started)     # escape, then q
    assert len(first) == len(again) == 1
    assert len(json.loads(scores_path().read_text())) == 1
    other = record(score(scenario, started + 60, "aiko"), run=started + 60)   # the next drill
    assert len(other) == 2


async def test_selected_tables_are_marked_in_words_without_colour(
        console_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from textual.widgets import SelectionList

    from app.rollback.context import RollbackType
    from app.tui import RollbackConsoleApp
    from screens.plan import PlanScreen

    monkeypatch.setenv("NO_COLOR", "1")
    app = RollbackConsoleApp(config.load(console_config), mode="live")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        app.push_screen(PlanScreen(RollbackType.PARTIAL, ("media",)))
        await pilot.pause()
        tables = app.screen.query_one("#plan-tables", SelectionList)
        prompts = {str(tables.get_option_at_index(i).value):
                   str(tables.get_option_at_index(i).prompt)
                   for i in range(tables.option_count)}
        assert prompts["public.media"].startswith("[x]")
        assert all(p.startswith("[ ]") for v, p in prompts.items() if v != "public.media")
        tables.focus()
        tables.highlighted = list(prompts).index("public.objects")
        await pilot.press("space")
        await pilot.pause()
        assert str(tables.get_option_at_index(tables.highlighted).prompt).startswith("[x]")


# item 12: the stop hint works as printed

def test_sandbox_up_with_dir_prints_a_stop_command_that_stops_it(tmp_path: Path) -> None:
    import re
    import shlex

    directory = tmp_path / "my sandbox"
    proc = subprocess.Popen([*CONSOLE, "sandbox", "up", "--rows", "100",
                             "--dir", str(directory)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        hint = next(line for line in proc.stdout if "to stop it" in line)
        command = re.search(r"`rollback-console (.*?)`", hint)
        assert command is not None, hint
        down = subprocess.run([*CONSOLE, *shlex.split(command.group(1))],
                              capture_output=True, text=True, timeout=60)
        assert down.returncode == 0 and "stopped" in down.stdout, down.stdout + down.stderr
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run([*CONSOLE, "sandbox", "down", "--dir",
                            str(directory)], capture_output=True, timeout=60)
    again = subprocess.run([*CONSOLE, "sandbox", "down", "--dir",
                            str(directory)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "nothing was stopped" in again.stderr


# item 6: the run screen can be read at 80x24

LONG_PATH = "/var/lib/rollback-console/incidents/20261124-020000-ab12/safety/" + "x" * 120 \
    + "/schema-before-rollback.dump"


async def _restore_like(ctx) -> str:  # type: ignore[no-untyped-def]
    for i in range(300):
        ctx.log(f"pg_restore: processing item {i} TABLE DATA public media")
        ctx.progress(i + 1, 300, "objects")
    ctx.log("pg_restore: warning: errors ignored on restore: 1")
    ctx.log(f"saved the current schema to {LONG_PATH}")
    return "restored"


async def _quick(_ctx) -> str:  # type: ignore[no-untyped-def]
    return "ok"


async def test_the_run_screen_at_80x24_shows_the_end_condenses_tools_and_stops_animating(
        console_config: Path, tmp_path: Path) -> None:
    from textual.widgets import ProgressBar

    from app.rollback.context import Outcome, RollbackType
    from app.rollback.plan import Plan, Step
    from app.tui import RollbackConsoleApp
    from screens.log_lines import LogLinesScreen
    from screens.rollback import RollbackScreen
    from widgets.live_log import LiveLog
    from widgets.step_list import StepList

    ctx = run_context(console_config, RollbackType.FULL, tmp_path / "inc", None)
    cfg, journal = ctx.cfg, ctx.journal
    steps = [Step("restore", "Restore into a new database", "pg_restore", 60, _restore_like)]
    steps += [Step(f"s{i}", f"Step number {i}", "quick", 10, _quick) for i in range(8)]
    plan = Plan(RollbackType.FULL, cfg.target.name, "production_migration_20261124", (),
                steps)
    app = RollbackConsoleApp(cfg, mode="drill")
    screen = RollbackScreen(plan, ctx)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.push_screen(screen)
        await wait_until(lambda: screen.outcome is not None, pilot)
        await pilot.pause(0.3)
        assert screen.outcome is Outcome.DONE
        assert not screen.query_one(ProgressBar).display       # no "--% --:--:--" after DONE
        log = screen.query_one(LiveLog)
        log.flush()
        assert not any("processing item" in line for line in log.history)
        assert "pg_restore: warning: errors ignored on restore: 1" in log.history
        condensed = next(line for line in log.history if "condensed" in line)
        assert "300 progress line(s)" in condensed
        on_disk = (journal.dir / "console.log").read_text()
        assert on_disk.count("pg_restore: processing item") == 300
        # the last lines are on screen without `f`, and the log has room for more than one
        assert log.size.height >= 3
        assert log.scroll_offset.y + log.size.height >= log.line_count
        # the last step is in view in the step list
        step_list = screen.query_one(StepList)
        assert step_list.scroll_offset.y + step_list.scrollable_content_region.height \
            >= len(steps)
        # the backup set's ID in the title is whole
        assert "production_migration_20261124" in str(screen.query_one("#rb-title").render())
        # a long line can be read in full and copied
        search_for = "saved the current schema"
        log.search(search_for)
        await pilot.press("o")
        await pilot.pause()
        assert isinstance(app.screen, LogLinesScreen)
        assert LONG_PATH in str(app.screen.query_one("#log-lines-text").render())
        await pilot.press("c")
        await pilot.pause()
        assert app.clipboard == f"saved the current schema to {LONG_PATH}"


# item 1 (the screens' side): a rollback against a forward-fix verdict is an override

async def _plan_after_verdict(console_config: Path, conn: asyncpg.Connection, tmp_path: Path,
                              tier: str):  # type: ignore[no-untyped-def]
    from app import drills
    from app.journal import Journal
    from app.rollback.context import RollbackType
    from app.tui import RollbackConsoleApp
    from screens.plan import PlanScreen

    cfg = config.load(console_config)
    await create_set(cfg, "before-migration")
    await conn.execute(drills.BY_NAME["dropped-index"].migration)
    journal = Journal.open(tmp_path / "home" / "incidents" / "20261124-020000-ab12")
    journal.append("assessment", tier=tier, action="recreate the index", recommended="schema",
                   tables=[], backup=None, findings=[])
    journal.append("decision", choice="accept schema", reason="recommendation",
                   recommended="schema")
    app = RollbackConsoleApp(cfg, mode="drill")
    return app, PlanScreen(RollbackType.SCHEMA, journal=journal), journal


async def test_a_rollback_against_a_forward_fix_verdict_needs_a_reason_shown_at_the_gate(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from screens.gate import GateScreen
    from screens.reason import ReasonScreen

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    app, plan_screen, journal = await _plan_after_verdict(console_config, conn, tmp_path,
                                                          "FORWARD-FIX")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await app.push_screen(plan_screen)
        await pilot.press("b")
        await wait_until(lambda: plan_screen.plan is not None, pilot, 60)
        shown = str(plan_screen.query_one("#plan-text").render())
        assert "AGAINST THE VERDICT" in shown and "FORWARD-FIX" in shown
        await pilot.press("G")
        await pilot.pause()
        assert isinstance(app.screen, ReasonScreen)          # no gate without a reason
        await pilot.press(*"users cannot wait for the index build")
        await pilot.press("enter")
        await wait_until(lambda: isinstance(app.screen, GateScreen), pilot, 10)
        gate = app.screen
        assert "OVERRIDE" in gate.title_text                  # type: ignore[attr-defined]
        assert any("OVERRIDE" in line and "users cannot wait for the index build" in line
                   for line in gate.blast_radius)            # type: ignore[attr-defined]
    decision = journal.last("decision")
    assert decision is not None and decision.data["choice"] == "override"
    assert decision.data["against"] == "FORWARD-FIX"


async def test_a_rollback_the_verdict_called_for_goes_straight_to_the_gate(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from screens.gate import GateScreen

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    app, plan_screen, _journal = await _plan_after_verdict(console_config, conn, tmp_path,
                                                           "IMMEDIATE ROLLBACK")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await app.push_screen(plan_screen)
        await pilot.press("b")
        await wait_until(lambda: plan_screen.plan is not None, pilot, 60)
        assert "AGAINST" not in str(plan_screen.query_one("#plan-text").render())
        await pilot.press("G")
        await pilot.pause()
        assert isinstance(app.screen, GateScreen)
        assert not any("OVERRIDE" in line for line in app.screen.blast_radius)


# item 2 (the screens' side): a table brought back empty is phase 1 of 2, not DONE

async def test_a_schema_rollback_that_leaves_a_table_empty_is_phase_1_of_2(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app import drills
    from app.rollback.context import RollbackType
    from app.tui import RollbackConsoleApp
    from screens.plan import PlanScreen

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    cfg = config.load(console_config)
    await create_set(cfg, "before-migration")
    await conn.execute(drills.BY_NAME["dropped-table"].migration)
    app = RollbackConsoleApp(cfg, mode="drill")
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await app.push_screen(PlanScreen(RollbackType.SCHEMA))
        await pilot.press("b")
        await wait_until(lambda: getattr(app.screen, "plan", None) is not None, pilot, 60)
        await pilot.press("G")
        await pilot.pause()
        await pilot.press(*PHRASE_SCHEMA)
        await pilot.press("enter")
        await wait_until(lambda: getattr(app.screen, "outcome", None) is not None, pilot, 60)
        title = str(app.screen.query_one("#rb-title").render())
        outcome = str(app.screen.query_one("#rb-outcome").render())
        assert title.startswith("PHASE 1 OF 2")
        assert "PHASE 1 OF 2 VALIDATED, the incident is not over" in outcome
        assert "✔ DONE" not in outcome and "press D for phase 2" in outcome
        await pilot.press("D")
        await pilot.pause()
        assert isinstance(app.screen, PlanScreen) and app.screen.phase == (2, 2)
