"""Each verdict has its own path, in the console and in headless `assess` alike (issue 15, items
1, 9, 10): FORWARD-FIX carries the fix to make (the statements that repair each finding) and no
rollback type; the console shows it in full, saves it (journaled) and offers watch, and a
rollback is only an override against the verdict; a database that does not answer is the
verdict DATABASE UNREACHABLE with its own advice, not "bad input"; the drill scores the path the
screen offers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from app import config, drills
from app.backups.create import create_set
from app.checks.assessment import Assessment
from app.checks.model import CheckResult, Finding, Kind, Status
from app.decision import Tier, decide, unreachable_results
from app.journal import Journal, incidents_root
from tests.conftest import DemoApp, DemoDb, wait_until
from tests.test_tmux import COMMAND, Tmux, tmux  # noqa: F401  (the fixture)

INDEX_SQL = "CREATE INDEX objects_owner_id_idx ON public.objects USING btree (owner_id)"


def cli(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", "-c", str(config_path), *args],
                          capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "COLUMNS": "80"})


def _drift(*findings: Finding) -> list[CheckResult]:
    return [CheckResult("schema", Status.WARN, "drift", "Schema changes", {}, list(findings))]


# --- the decision ------------------------------------------------------------------------------

def test_forward_fix_carries_the_fix_and_no_rollback_type() -> None:
    d = decide(_drift(
        Finding(Kind.SCHEMA_DRIFT, "Type 1 would create index public.objects_owner_id_idx",
                evidence={"change": "create index", "sql": [INDEX_SQL]}),
        Finding(Kind.SCHEMA_DRIFT, "index objects_owner_id_idx on public.objects dropped"),
        Finding(Kind.SCHEMA_DRIFT, "Type 1 would add foreign key public.chakai chakai_fk",
                evidence={"change": "add foreign key", "sql": [
                    'ALTER TABLE public.chakai ADD CONSTRAINT "chakai fk" FOREIGN KEY '
                    "(host_id) REFERENCES public.accounts(id)"]})))
    assert d.tier is Tier.FORWARD_FIX and d.exit_code == 20
    out = d.to_dict()
    assert out["recommended_type"] is None and out["rollback"] is None
    assert out["fix"] == [
        "CREATE INDEX CONCURRENTLY objects_owner_id_idx ON public.objects USING btree "
        "(owner_id);",
        'ALTER TABLE public.chakai ADD CONSTRAINT "chakai fk" FOREIGN KEY (host_id) '
        "REFERENCES public.accounts(id) NOT VALID;",
        'ALTER TABLE public.chakai VALIDATE CONSTRAINT "chakai fk";']
    assert "roll back" not in d.action.replace("Do not roll back", "")
    assert d.override_type is not None and d.override_type.key == "schema"   # not recommended


def test_a_finding_with_no_statement_says_what_to_look_at() -> None:
    d = decide([CheckResult("critical_queries", Status.WARN, "slow", "perf", {}, [
        Finding(Kind.PERFORMANCE, "critical query 'objects' is 9.0x slower")])])
    assert d.tier is Tier.FORWARD_FIX
    (only,) = d.to_dict()["fix"]
    assert only.startswith("-- look at: its plan (EXPLAIN") and "9.0x slower" in only


def test_monitor_and_healthy_carry_no_type_and_no_fix() -> None:
    monitor = decide([CheckResult("locks", Status.WARN, "x", "s", {}, [
        Finding(Kind.CONTENTION, "a long transaction")])])
    assert monitor.tier is Tier.MONITOR and monitor.recommended is None
    assert monitor.offers_watch and monitor.to_dict()["fix"] is None
    healthy = decide([CheckResult("locks", Status.PASS, "x", "s")])
    assert healthy.tier is Tier.HEALTHY and not healthy.offers_watch and not healthy.fix


def test_rows_a_rollback_would_lose_that_cannot_be_counted_say_why() -> None:
    results = [
        CheckResult("data_integrity", Status.FAIL, "x", "s", {}, [
            Finding(Kind.DATA_CORRUPTION, "tags rewritten", ("public.tags",))]),
        CheckResult("writes", Status.PASS, "x", "s",
                    {"since": "2026-01-01T00:00:00+00:00", "tables": {"public.tags": {}}}),
    ]
    lose = decide(results, ["public.a", "public.b", "public.tags"]).would_lose["tables"]
    assert lose["public.tags"]["rows_written_since_backup"] is None
    assert "no updated_at/created_at column" in lose["public.tags"]["unknown"]


def test_headless_text_says_unknown_and_why_never_none(capsys: pytest.CaptureFixture[str]) -> None:
    from app.commands.assess import _render_assessment

    results = [
        CheckResult("data_integrity", Status.FAIL, "tags rewritten", "s", {}, [
            Finding(Kind.DATA_CORRUPTION, "tags rewritten", ("public.tags",))]),
        CheckResult("writes", Status.ERROR, "did not finish", "s")]
    _render_assessment(Assessment("t", "b", "now", results,
                                  decide(results, ["public.a", "public.b", "public.tags"])))
    out = " ".join(capsys.readouterr().out.split())
    assert "rows written since backup: unknown" in out
    assert "unknown: the writes check did not run" in out and '{"' not in out


def test_an_unreachable_database_is_its_own_verdict() -> None:
    d = decide(unreachable_results([("connectivity", "Complete system failure"),
                                    ("schema", "Schema changes")],
                                   "nothing is listening at 127.0.0.1:1 (connection refused)"))
    assert d.tier is Tier.UNREACHABLE and d.exit_code == 50
    assert d.recommended is None and not d.fix
    assert "pooler" in d.action and "cannot run while it is down" in d.action
    assert [m.how for m in d.missing] == ["assess again when the database answers"]


# --- headless assess ----------------------------------------------------------------------------

async def test_headless_forward_fix_prints_the_fix_not_a_rollback(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp,
        conn: asyncpg.Connection) -> None:
    cfg = config.load(console_config)
    await create_set(cfg, "before-drill")
    await conn.execute(drills.BY_NAME["dropped-index"].migration)
    text = cli(console_config, "assess")
    assert text.returncode == 20, text.stderr
    assert "FORWARD-FIX" in text.stdout and "Recommended: Type" not in text.stdout
    assert "Suggested fix (run or copy; nothing was run):" in text.stdout
    # the statement is printed whole (never cut at 80 columns), ready to copy
    assert ("CREATE INDEX CONCURRENTLY objects_owner_id_idx ON public.objects USING btree "
            "(owner_id);") in text.stdout
    assert "validate --watch" in " ".join(text.stdout.split())
    data = json.loads(cli(console_config, "assess", "--json").stdout)
    assert data["tier"] == "FORWARD-FIX" and data["recommended_type"] is None
    assert any(s.startswith("CREATE INDEX CONCURRENTLY objects_owner_id_idx")
               for s in data["fix"])
    assert await conn.fetchval("SELECT count(*) FROM pg_indexes "   # nothing was run
                               "WHERE indexname = 'objects_owner_id_idx'") == 0


def test_a_database_that_is_down_is_an_incident_finding(console_config: Path) -> None:
    text = console_config.read_text()
    port = text.split("127.0.0.1:")[1].split("/")[0]
    console_config.write_text(text.replace(f"127.0.0.1:{port}/", "127.0.0.1:1/"))
    proc = cli(console_config, "assess", "--json")
    assert proc.returncode == 50, proc.stderr
    data = json.loads(proc.stdout)
    assert data["tier"] == "DATABASE UNREACHABLE" and data["recommended_type"] is None
    assert any(r["kind"] == "db_unreachable" and "connection refused" in r["summary"]
               for r in data["reasons"])
    shown = cli(console_config, "assess")
    assert shown.returncode == 50
    flat = " ".join(shown.stdout.split())
    assert "DATABASE UNREACHABLE" in flat and "pooler" in flat


def test_a_wrong_password_stays_bad_input(console_config: Path) -> None:
    (console_config.parent / "secrets" / "db_password").write_text("not-the-password")
    proc = cli(console_config, "assess", "--json")
    assert proc.returncode == 2
    assert "refused the password" in proc.stderr and proc.stdout == ""


# --- the console --------------------------------------------------------------------------------

async def _forward_fix_console(console_config: Path, conn: asyncpg.Connection, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from app.tui import DrillRun, RollbackConsoleApp

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    scenario = drills.BY_NAME["dropped-index"]
    cfg = config.load(console_config)
    await create_set(cfg, "before-drill")
    await conn.execute(scenario.migration)
    return RollbackConsoleApp(cfg, mode="drill", briefing=scenario.briefing,
                              drill=DrillRun(scenario, time.time(), "trainee"))


async def _assessed(app, pilot):  # type: ignore[no-untyped-def]
    from screens.assess import AssessScreen

    await app.workers.wait_for_complete()
    await pilot.press("a")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, AssessScreen)
    await wait_until(lambda: screen.assessment is not None, pilot, 90)
    await pilot.pause()
    return screen


def _keys(screen) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {a.binding.action: a.binding.description for a in screen.active_bindings.values()
            if a.node is screen}


async def test_the_console_shows_the_fix_saves_it_and_scores_the_path_100(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from screens.debrief import DebriefScreen
    from screens.finding import FixScreen

    app = await _forward_fix_console(console_config, conn, tmp_path, monkeypatch)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _assessed(app, pilot)
        verdict = str(screen.query_one("#assess-verdict").render())
        assert "FORWARD-FIX" in verdict and "Type 1" not in verdict
        assert "f: save the fix" in verdict and "w: watch" in verdict
        assert "override: roll back against the verdict" in verdict
        shown = screen.query_one("#assess-reasons-text").render()
        assert "CREATE INDEX CONCURRENTLY objects_owner_id_idx" in str(shown)
        keys = _keys(screen)
        assert "accept" not in keys                      # no "accept" that leads to a rollback
        assert keys["against"].startswith("Override: roll back against the verdict")
        assert {"save_fix", "watch"} <= set(keys)
        await pilot.press("Y")                           # not offered: nothing happens
        await pilot.pause()
        assert app.screen is screen
        await pilot.press("y")                           # ... and y says why
        await pilot.pause()
        toast = [n for n in app._notifications if n.title == "y is not Y"]
        assert toast and "FORWARD-FIX recommends none" in toast[-1].message
        assert "f: save the fix" in toast[-1].message
        await pilot.press("f")
        await pilot.pause()
        assert isinstance(app.screen, FixScreen)          # the whole fix, at full width
        assert "CREATE INDEX CONCURRENTLY objects_owner_id_idx" in app.screen.sql
        await pilot.press("escape")
        await pilot.pause()
        assert screen.journal is not None
        saved = screen.journal.dir / "suggested-fix.sql"
        assert "CREATE INDEX CONCURRENTLY objects_owner_id_idx" in saved.read_text()
        entry = screen.journal.last("fix_suggested")
        assert entry is not None and any("CREATE INDEX CONCURRENTLY" in s
                                         for s in entry.data["statements"])
        await pilot.press("q")                           # the drill ends from this screen
        await pilot.pause()
        assert isinstance(app.screen, DebriefScreen)
        assert "Score: 100/100 for trainee" in app.debrief, app.debrief
        assert "took the suggested fix" in app.debrief
        assert "f: save the fix" in app.debrief          # the ideal path is the screen's own


async def test_a_fix_that_cannot_be_saved_says_so_and_the_console_goes_on(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The incident folder cannot be made (a file stands where the incidents folder goes: a
    fault root's permissions cannot produce): f says why in a failure line, nothing crashes."""
    from app.paths import state_dir

    app = await _forward_fix_console(console_config, conn, tmp_path, monkeypatch)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _assessed(app, pilot)
        incidents = state_dir() / "incidents"
        if incidents.is_dir():
            import shutil

            shutil.rmtree(incidents)
        incidents.write_text("not a folder")
        await pilot.press("f")
        await pilot.pause()
        assert app.screen is screen
        toast = [n for n in app._notifications if n.title == "Fix not saved"]
        assert toast and toast[-1].message.startswith("could not save the suggested fix: ")
        assert "nothing was run" in toast[-1].message


async def test_assess_then_quit_is_the_call_without_a_hidden_dance(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = await _forward_fix_console(console_config, conn, tmp_path, monkeypatch)
    async with app.run_test(size=(120, 36)) as pilot:
        await _assessed(app, pilot)
        await pilot.press("q")
        await pilot.pause()
        assert "Score: 100/100" in app.debrief and "+25 tier: FORWARD-FIX" in app.debrief


async def test_watch_is_offered_and_journaled(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from screens.watch import WatchScreen

    app = await _forward_fix_console(console_config, conn, tmp_path, monkeypatch)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await _assessed(app, pilot)
        await pilot.press("w")
        await pilot.pause()
        assert isinstance(app.screen, WatchScreen)
        assert app.screen.journal is screen.journal and screen.journal is not None
        decision = screen.journal.last("decision")
        assert decision is not None and decision.data["choice"] == "watch"
        await pilot.press("s")   # stop watching
        await pilot.pause()


async def test_a_rollback_against_the_verdict_is_an_override_with_its_reason(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from screens.plan import PlanScreen
    from screens.reason import ReasonScreen

    app = await _forward_fix_console(console_config, conn, tmp_path, monkeypatch)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await _assessed(app, pilot)
        await pilot.press("O")
        await pilot.pause()
        assert isinstance(app.screen, ReasonScreen)
        await pilot.click("#reason")
        await pilot.press(*"index build too slow", "enter")
        await wait_until(lambda: isinstance(app.screen, PlanScreen), pilot, 10)
        plan = app.screen
        assert isinstance(plan, PlanScreen)
        assert plan.override is not None and plan.override.verdict == "FORWARD-FIX"
        assert plan.against_verdict() == ("FORWARD-FIX", "index build too slow")
        assert plan.kind.value == "schema"
        assert screen.journal is not None
        decision = screen.journal.last("decision")
        assert decision is not None and decision.data["against"] == "FORWARD-FIX"


def test_a_rollback_against_the_verdict_scores_lower_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.drill_score import score

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path))
    started = time.time()
    journal = Journal.open(incidents_root() / "drill-1")
    journal.append("assessment", tier="FORWARD-FIX", action="fix forward")
    journal.append("decision", choice="override", reason="in a hurry", against="FORWARD-FIX")
    journal.append("incident_opened", target="t", type="schema", backup="b", tables=[])
    result = score(drills.BY_NAME["dropped-index"], started, "trainee")
    assert result.points == 25
    assert any("rolled back against the verdict" in line and "in a hurry" in line
               and "suggested fix" in line for line in result.lines), result.lines


def test_the_report_reads_as_prose_and_carries_the_fix(tmp_path: Path) -> None:
    """The Markdown report: the suggested fix as SQL, the override against the verdict, and
    every journal entry in words (never Python's dict text)."""
    from app.report import render_markdown

    journal = Journal.open(tmp_path / "incident")
    fix = ["CREATE INDEX CONCURRENTLY objects_owner_id_idx ON public.objects USING btree "
           "(owner_id);"]
    journal.append("assessment", tier="FORWARD-FIX", action="Do not roll back: fix forward.",
                   fix=fix, findings=[{"check": "schema", "tier": "FORWARD-FIX",
                                       "summary": "index dropped"}])
    journal.append("fix_suggested", statements=fix, file=str(tmp_path / "suggested-fix.sql"))
    journal.append("decision", choice="override", reason="in a hurry", against="FORWARD-FIX")
    journal.append("action_started", step="apply", action="apply DDL",
                   statements=["DROP INDEX x"], tables={"public.objects": {"rows": 3}})
    journal.append("watch_regression", regressed=["Performance: was pass, now warn"])
    md = render_markdown(journal)
    assert "{'" not in md and "['" not in md, md
    assert "```sql\n" + fix[0] + "\n```" in md
    assert "against the verdict FORWARD-FIX" in md
    assert "suggested fix saved to" in md
    assert "watch regression: regressed: Performance: was pass, now warn" in md
    assert "# Incident incident: assessment: FORWARD-FIX, no rollback" in md


@pytest.mark.tmux
def test_the_forward_fix_drill_played_with_the_keys_the_screen_names(
        tmux: Tmux, tmp_path: Path) -> None:  # noqa: F811
    """In a real terminal at 80x24: a, then f (the screen names it), escape, q: full marks, the
    debrief says the fix was taken, and no rollback ran."""
    done = tmp_path / "exit-code"
    shell = (f"ROLLBACK_CONSOLE_HOME={tmp_path / 'home'} {COMMAND} drill --scenario "
             f"dropped-index --rows 300 --dir {tmp_path / 'sandbox'}; echo $? > {done}")
    tmux.run("new-session", "-d", "-s", "console", "-x", "80", "-y", "24", shell)
    tmux.wait_for("press a to assess", timeout=120)
    tmux.run("send-keys", "-t", "console", "a")
    screen = tmux.wait_for("f: save the fix", timeout=90)
    assert "FORWARD-FIX" in screen and "accept" not in screen
    tmux.run("send-keys", "-t", "console", "f")
    screen = tmux.wait_for("nothing was run")
    assert "CREATE INDEX CONCURRENTLY" in tmux.wait_for("CREATE INDEX CONCURRENTLY")
    tmux.run("send-keys", "-t", "console", "Escape")
    tmux.wait_for("f: save the fix")
    tmux.run("send-keys", "-t", "console", "q")
    screen = tmux.wait_for("Drill debrief")
    assert "Score: 100/100" in screen and "took the suggested fix" in screen, screen
    tmux.run("send-keys", "-t", "console", "q")
    assert tmux.exit_code(done) == "0", tmux.screen()
    saved = list((tmp_path / "home" / "incidents").glob("*/suggested-fix.sql"))
    assert len(saved) == 1 and "CREATE INDEX CONCURRENTLY" in saved[0].read_text()


async def test_a_healthy_verdict_offers_nothing_destructive(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from app.tui import RollbackConsoleApp
    from screens.plan import PlanScreen

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    cfg = config.load(console_config)
    await create_set(cfg, "baseline")
    app = RollbackConsoleApp(cfg, mode="live")
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await _assessed(app, pilot)
        assert screen.assessment.decision.tier is Tier.HEALTHY, \
            screen.assessment.decision.to_dict()
        assert "Nothing to do" in str(screen.query_one("#assess-verdict").render())
        assert not {"accept", "override", "against", "save_fix", "watch"} & set(_keys(screen))
        for key in ("Y", "O", "f", "w"):
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is screen and not isinstance(app.screen, PlanScreen)
    assert not list((tmp_path / "home" / "incidents").glob("*/journal.jsonl"))
