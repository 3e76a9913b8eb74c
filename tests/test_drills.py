"""Drill scenarios: each playable one, applied after a baseline backup taken by the console,
lands in its declared tier and type, and (where a rollback is the answer) the rollback brings
the sandbox back so that the post-rollback checklist passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from app import config, drills
from app.backups.backupset import sha256_file
from app.backups.create import create_set
from app.checks import run_assessment
from app.events import EventChannel
from app.journal import Journal
from app.rollback.context import Options, Outcome, RollbackType, RunContext, expected_phrase
from app.rollback.plans import build_plan
from app.rollback.runner import execute
from app.validation import run_validation
from tests.conftest import DemoApp, DemoDb
from tests.helpers import read_until_enter


def test_list_shows_every_scenario_but_keeps_the_answers_for_the_debrief() -> None:
    out = subprocess.run([sys.executable, "-m", "app", "drill", "--list"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0
    lines = out.stdout.strip().splitlines()
    assert len(lines) == len(drills.SCENARIOS) + 1 >= 9   # and how to play one
    assert all(any(s.name in line for line in lines) for s in drills.SCENARIOS)
    for tier in ("IMMEDIATE ROLLBACK", "FORWARD-FIX", "MONITOR"):
        assert tier not in out.stdout
    assert "--scenario NAME" in lines[-1]


def test_an_unknown_scenario_is_refused(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "app", "drill", "--scenario", "no-such-drill",
                          "--dir", str(tmp_path / "sbx")], capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 2 and "no drill scenario 'no-such-drill'" in out.stderr
    assert not (tmp_path / "sbx").exists()  # refused before any sandbox was started


async def test_the_baseline_set_is_in_the_runbook_layout(console_config: Path, demo_db: DemoDb,
                                                         demo_app: DemoApp) -> None:
    cfg = config.load(console_config)
    backup = await create_set(cfg, "before-drill")
    names = {p.name for p in backup.path.iterdir()}
    for expected in ("schema_only_backup.sql", "table_media_backup.sql",
                     "table_local_classes_backup.sql", "full_database_backup.sql",
                     "full_database_backup.dump", "backup_info.txt", "manifest.json"):
        assert expected in names
    assert backup.manifest is not None and backup.taken_at is not None
    for name, entry in backup.manifest.files.items():
        assert sha256_file(backup.path / name) == entry.sha256
    assert "Backup completed:" in (backup.path / "backup_info.txt").read_text()
    assert not any(p.name.startswith(".") for p in backup.path.parent.iterdir())


@pytest.mark.parametrize("scenario", [s.name for s in drills.playable()])
async def test_each_scenario_plays_to_its_answer(scenario: str, console_config: Path,
                                                 demo_db: DemoDb, demo_app: DemoApp,
                                                 conn: asyncpg.Connection,
                                                 tmp_path: Path) -> None:
    s = drills.BY_NAME[scenario]
    cfg = config.load(console_config)
    backup = await create_set(cfg, "before-drill")
    await conn.execute(s.migration)
    assessment = await run_assessment(cfg)
    d = assessment.decision
    assert d.tier.label == s.expected_tier, d.to_dict()
    assert (d.recommended.key if d.recommended else None) == s.expected_type, d.to_dict()
    if s.expected_tier != "IMMEDIATE ROLLBACK":
        return  # forward-fix or monitor: the right answer is not to roll back
    assert d.then_partial == list(s.tables if s.then else ())
    for n, key in enumerate(s.types):
        kind = RollbackType(key)
        if kind is RollbackType.PARTIAL:
            assert tuple(d.tables or d.then_partial) == s.tables
        options = Options(tables=s.tables if kind is RollbackType.PARTIAL else (),
                          confirm=expected_phrase(kind, cfg.target.name))
        plan = await build_plan(cfg, kind, backup, options)
        ctx = RunContext(cfg, kind, Journal.open(tmp_path / f"incident-{n}"), EventChannel(),
                         backup, options)
        assert await execute(plan, ctx) is Outcome.DONE, ctx.journal.entries[-1].data
        if s.then:   # Type 1 says which tables came back without their rows
            assert [t.replace('"', "") for t in ctx.followup_tables] == \
                   (list(s.tables) if kind is RollbackType.SCHEMA else [])
    checklist = await run_validation(cfg, backup.id)
    assert checklist.passed, [(i.name, str(i.status), i.summary) for i in checklist.items]
    if kind is RollbackType.FULL:
        admin = await asyncpg.connect(demo_db.server.dsn())
        await admin.execute(f'DROP DATABASE "{ctx.full.aside_database}" WITH (FORCE)')
        await admin.close()


async def test_a_drill_played_in_the_console_is_scored_and_debriefed(
        console_config: Path, demo_db: DemoDb, demo_app: DemoApp, conn: asyncpg.Connection,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from app.drill_score import scores_path
    from app.tui import DrillRun, RollbackConsoleApp
    from screens.debrief import DebriefScreen
    from tests.conftest import wait_until

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    scenario = drills.BY_NAME["corrupted-captions"]
    cfg = config.load(console_config)
    await create_set(cfg, "before-drill")
    await conn.execute(scenario.migration)
    app = RollbackConsoleApp(cfg, mode="drill", briefing=scenario.briefing,
                             drill=DrillRun(scenario, time.time(), "trainee"))
    async with app.run_test(size=(140, 45)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("a")
        await wait_until(lambda: getattr(app.screen, "assessment", None) is not None, pilot, 60)
        await pilot.press("Y")
        await pilot.pause()
        await pilot.press("b")
        await wait_until(lambda: getattr(app.screen, "plan", None) is not None, pilot)
        await pilot.press("G")
        await pilot.pause()
        app.screen.query_one("#gate-input").value = "ROLLBACK tea-school-sandbox"  # type: ignore[attr-defined]
        await pilot.click("#confirm")
        await wait_until(lambda: getattr(app.screen, "outcome", None) is not None, pilot, 60)
        await pilot.press("v")
        await wait_until(lambda: getattr(app.screen, "checklist", None) is not None, pilot, 60)
        checklist = app.screen.checklist  # type: ignore[attr-defined]
        assert checklist.passed, [(i.name, str(i.status), i.summary) for i in checklist.items]
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, DebriefScreen)
        text = app.debrief
        assert "Score: 100/100 for trainee" in text, text
        assert "time to recovery" in text and "The ideal path" in text
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0
    assert '"operator": "trainee"' in scores_path().read_text()


@pytest.mark.parametrize(("rolled_back", "points"), [(False, 100), (True, 25)])
def test_a_needless_rollback_costs_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          rolled_back: bool, points: int) -> None:
    import time

    from app.drill_score import score
    from app.journal import incidents_root

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path))
    started = time.time()
    journal = Journal.open(incidents_root() / "drill-1")
    journal.append("assessment", tier="FORWARD-FIX", action="forward-fix preferred")
    journal.append("decision", choice="accept schema" if rolled_back else "no rollback",
                   reason="drill")
    if rolled_back:
        journal.append("incident_opened", target="t", type="partial", backup="b", tables=[])
    result = score(drills.BY_NAME["dropped-index"], started, "trainee")
    assert result.points == points
    assert any(("rolled back against the verdict" in line) == rolled_back
               for line in result.lines)


@pytest.mark.parametrize(("types", "right"), [(["schema", "partial"], True),
                                              (["schema"], False), (["full"], False)])
def test_a_dropped_table_wants_type_1_then_type_2(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  types: list[str], right: bool) -> None:
    import time

    from app.drill_score import score
    from app.journal import incidents_root

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path))
    started = time.time()
    for n, kind in enumerate(types):   # named so that path order is not opening order
        journal = Journal.open(incidents_root() / f"incident-{9 - n}")
        journal.append("incident_opened", target="t", type=kind, backup="b", tables=[])
        time.sleep(0.01)   # opened at distinct milliseconds, as real incidents are
    result = score(drills.BY_NAME["dropped-table"], started, "trainee")
    assert ("✔ +25 type: schema then partial" in result.lines) == right, result.lines


def test_the_curriculum_moves_on_after_full_marks() -> None:
    first, second = drills.playable()[0], drills.playable()[1]
    assert drills.pick(None) is first
    assert drills.pick(None, {first.name}) is second
    assert drills.pick(None, {s.name for s in drills.playable()}) is first  # from the top


def test_a_headless_drill_is_played_with_the_commands_and_scored(tmp_path: Path) -> None:
    """`drill --headless`: the sandbox and the incident, the commands printed; the trainee
    assesses, rolls back and validates with them; Enter, the call, then the same score and
    debrief as the console's. The sandbox stops at the end."""
    import os
    import re

    env = {**os.environ, "ROLLBACK_CONSOLE_HOME": str(tmp_path / "home")}
    app = [sys.executable, "-m", "app"]
    proc = subprocess.Popen([*app, "drill", "--headless", "--scenario", "corrupted-captions",
                             "--dir", str(tmp_path / "box"), "--operator", "trainee"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        printed = read_until_enter(proc)
        assert "DRILL INCIDENT" in printed and "blank captions" in printed
        found = re.search(r"assess:\s+rollback-console -c (\S+) assess", printed)
        assert found, printed
        base = [*app, "-c", found.group(1)]

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*base, *args], capture_output=True, text=True, env=env,
                                  timeout=300, stdin=subprocess.DEVNULL)

        assert run("assess", "--json").returncode == 30        # IMMEDIATE ROLLBACK
        rolled = run("run", "--type", "partial", "--tables", "media", "--confirm",
                     "ROLLBACK tea-school-sandbox")
        assert rolled.returncode == 0, rolled.stderr
        validated = run("validate")
        assert validated.returncode == 0, validated.stdout
        assert "journaled in incident" in validated.stderr
        out, _ = proc.communicate("\n1\n", timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "Score: 100/100 for trainee" in out, out
    assert "The right answer: IMMEDIATE ROLLBACK / partial" in out
    assert not (tmp_path / "box" / "postmaster.pid").exists() and \
        not list((tmp_path / "box").rglob("postmaster.pid"))            # the sandbox stopped
