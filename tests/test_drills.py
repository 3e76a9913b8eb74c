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


def test_a_drill_the_player_cannot_play_yet_is_played_by_name() -> None:
    """late-writes needs a point in time on the plan screen, which the screen-following
    player does not choose yet: out of the curriculum (and the player's list), played by
    name."""
    late = drills.BY_NAME["late-writes"]
    assert late.point_in_time and late.mark == "before-migration" and late.player_needs
    assert late not in drills.playable() and late in drills.playable(by_name=True)
    assert drills.pick("late-writes") is late
    assert drills.pick(None, {s.name for s in drills.playable()}) is drills.playable()[0]
    assert "`rollback-console pitr`" in late.briefing
    assert "from the point in time (the mark before-migration)" in late.answer
    busy = drills.BY_NAME["busy-afternoon"]
    assert busy.player_needs and busy not in drills.playable()
    assert busy in drills.playable(by_name=True) and drills.pick("busy-afternoon") is busy
    assert all(not s.point_in_time and not s.mark for s in drills.SCENARIOS
               if s not in (late, busy))


def _pit_drill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: dict[str, object],
               validated: bool = True) -> tuple[object, str]:
    """late-writes' journals as a headless play writes them: the facts of the setup, the call,
    a Type 2 of media from ``source``, done, validated; the score and the debrief."""
    import time
    from datetime import UTC, datetime, timedelta

    from app.drill_score import DrillFacts, debrief_text, save_facts, score
    from app.journal import incidents_root

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path))
    now = datetime.now(UTC)
    save_facts(DrillFacts(
        scenario="late-writes", dump_id="20261202T041000Z-before-drill",
        dump_at=(now - timedelta(seconds=30)).isoformat(), mark="before-migration",
        mark_at=(now - timedelta(seconds=10)).isoformat(), mark_lsn="0/3000090",
        migration_at=(now - timedelta(seconds=9)).isoformat(),
        lost={"public.media": {"new": 7, "edited": 10, "new_keys": ["301", "302"],
                               "edited_keys": ["1", "31"]}},
        prepared_at=time.time() - 5))
    started = time.time()
    journal = Journal.open(incidents_root() / "drill-1")
    journal.append("incident_opened", target="t", type="partial", backup=str(source["id"]),
                   source=source, tables=["public.media"])
    journal.append("step_finished", step="reload", status="done", elapsed_s=1.0)
    journal.append("incident_closed", outcome="done")
    journal.append("validation", passed=validated)
    journal.append("assessment", tier="IMMEDIATE ROLLBACK", action="headless drill")
    scenario = drills.BY_NAME["late-writes"]
    result = score(scenario, started, "trainee")
    return result, debrief_text(scenario, result, [])


@pytest.mark.parametrize("point", ["before-migration", "before-migration.3f9a1c"])
def test_late_writes_from_the_mark_scores_full_marks(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    point: str) -> None:
    """The mark's restore point is its label, or its label with a unique suffix."""
    pit = {"kind": "name", "value": point, "said": "mark before-migration", "at": None,
           "lsn": "0/30000A0"}
    result, text = _pit_drill(tmp_path, monkeypatch, {"kind": "backup_set", "id": "pitr-1",
                                                      "path": "/nowhere", "point_in_time": pit})
    assert result.points == 100, result.lines  # type: ignore[attr-defined]
    assert "✔ +15 source: the point in time mark before-migration: it kept the 17 rows" in text
    assert "a Type 2 from the" in text and "would have lost 17 rows users wrote before the " \
        "migration (7 new and 10 edited in public.media, e.g. id 301, 302, 1, 31)" in text
    assert "--at before-migration" in text


def test_late_writes_from_the_dump_loses_the_source_points_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, text = _pit_drill(tmp_path, monkeypatch,
                              {"kind": "backup_set", "id": "before-drill",
                               "path": str(tmp_path / "no-such-set")})
    assert result.points == 85, result.lines  # type: ignore[attr-defined]
    assert "✔ +10 type: partial" in text
    assert "✖ +0 source: a backup set (before-drill)" in text
    assert "it lost 17 rows users wrote before the migration (7 new and 10 edited in " \
        "public.media" in text
    assert "`--at before-migration` restores the state of the mark" in text


@pytest.mark.parametrize(("moment", "right"), [(-10, True), (-9.5, True), (-20, False),
                                               (-8.5, False), (0, False)])
def test_the_point_in_time_read_from_the_manifest_is_judged_against_the_mark(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moment: float, right: bool) -> None:
    """A journal whose source record lacks the moment: the set's manifest.json says it. A
    time from the mark up to the migration is right; before the mark loses writes, from the
    migration on holds the damage."""
    import json
    from datetime import UTC, datetime, timedelta

    at = datetime.now(UTC) + timedelta(seconds=moment)
    folder = tmp_path / "sets" / "pitr-1"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"point_in_time": {
        "kind": "time", "value": "x", "said": "the moment", "at": at.isoformat(),
        "lsn": None}}))
    result, text = _pit_drill(tmp_path, monkeypatch, {"kind": "backup_set", "id": "pitr-1",
                                                      "path": str(folder)})
    assert (result.points == 100) == right, result.lines  # type: ignore[attr-defined]
    if not right:
        assert "✖ +0 source: the point in time the moment: " in text
        assert ("holds the damage" in text) == (moment > -9.5)


async def test_busy_afternoon_is_an_immediate_rollback_of_media(console_config: Path,
                                                               demo_db: DemoDb,
                                                               demo_app: DemoApp,
                                                               conn: asyncpg.Connection) -> None:
    """Against the dump, the migration's deletions and rewrites are damage to media alone; the
    users' writes after it (to media and the other tables) are traffic."""
    busy = drills.BY_NAME["busy-afternoon"]
    cfg = config.load(console_config)
    await create_set(cfg, "before-drill")
    await conn.execute(busy.before_mark)
    await conn.execute(busy.migration)
    await conn.execute(busy.after)
    d = (await run_assessment(cfg)).decision
    assert d.tier.label == busy.expected_tier, d.to_dict()
    assert tuple(d.tables) == busy.tables, d.to_dict()


def _repair_drill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: dict[str, object],
                  after_point: dict[str, object] | None = None) -> tuple[object, str]:
    """busy-afternoon's journals as a headless play writes them: the facts of the setup, the
    call, the rollback ``opened`` (its sets in tmp_path/sets: pitr-before, pitr-after with
    ``after_point``), done, validated; the score and the debrief."""
    import json
    import time
    from datetime import UTC, datetime, timedelta

    from app.drill_score import DrillFacts, debrief_text, save_facts, score
    from app.journal import incidents_root

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path))
    now = datetime.now(UTC)
    save_facts(DrillFacts(
        scenario="busy-afternoon", dump_id="20261202T041000Z-before-drill",
        dump_at=(now - timedelta(seconds=30)).isoformat(), mark="before-migration",
        mark_at=(now - timedelta(seconds=10)).isoformat(), mark_lsn="0/3000090",
        migration_at=(now - timedelta(seconds=9)).isoformat(),
        lost={"public.media": {"new": 7, "edited": 0, "new_keys": ["301"], "edited_keys": [],
                               "since_dump": 40}},
        prepared_at=time.time() - 5, after_mark="after-migration",
        after_mark_at=(now - timedelta(seconds=8)).isoformat(), after_mark_lsn="0/4000090",
        written_after={"public.media": {"new": 3, "edited": 30, "new_keys": ["308"],
                                        "edited_keys": ["5", "12"],
                                        "keys": ["308", "5", "12", "22"]}},
        damaged={"public.media": {"1": "a", "2": "b", "12": "c", "22": None}}))
    sets = tmp_path / "sets"
    for name, point in (("pitr-before", {"kind": "name", "value": "before-migration",
                                         "said": "mark before-migration", "at": None,
                                         "lsn": "0/30000A0"}),
                        ("pitr-after", after_point or {
                            "kind": "name", "value": "after-migration",
                            "said": "mark after-migration", "at": None, "lsn": "0/40000A0"})):
        (sets / name).mkdir(parents=True, exist_ok=True)
        (sets / name / "manifest.json").write_text(json.dumps({"point_in_time": point}))
    started = time.time()
    journal = Journal.open(incidents_root() / "drill-1")
    journal.append("incident_opened", **{"target": "t", "tables": ["public.media"],
                                         "conflicts": "keep", **opened})
    journal.append("step_finished", step="repair", status="done", elapsed_s=1.0)
    journal.append("incident_closed", outcome="done")
    journal.append("validation", passed=True)
    journal.append("assessment", tier="IMMEDIATE ROLLBACK", action="headless drill")
    scenario = drills.BY_NAME["busy-afternoon"]
    result = score(scenario, started, "trainee")
    return result, debrief_text(scenario, result, [])


def _pit(tmp_path: Path, name: str = "pitr-before") -> dict[str, object]:
    return {"kind": "backup_set", "id": name, "path": str(tmp_path / "sets" / name)}


def test_busy_afternoon_the_repair_from_the_two_marks_scores_100(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, text = _repair_drill(tmp_path, monkeypatch, {
        "type": "repair", "backup": "pitr-before", "source": _pit(tmp_path),
        "after": "pitr-after"})
    assert result.points == 100, result.lines  # type: ignore[attr-defined]
    assert "✔ +10 type: repair (conflicts: keep)" in text
    assert "✔ +15 source: the two moments, mark before-migration and mark after-migration: " \
        "it put back the 2 rows the migration touched that nobody touched since and kept 33 " \
        "rows users wrote after the migration (3 new and 30 edited in public.media, e.g. id " \
        "308, 5, 12), the 2 conflicts among them" in text
    assert "--at before-migration --after after-migration" in text
    assert "conflicts kept as the users left them" in text


def test_busy_afternoon_conflicts_taken_back_cost_half_the_type(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, text = _repair_drill(tmp_path, monkeypatch, {
        "type": "repair", "backup": "pitr-before", "source": _pit(tmp_path),
        "after": "pitr-after", "conflicts": "take"})
    assert result.points == 95, result.lines  # type: ignore[attr-defined]
    assert "✖ +5 type: repair, but --conflicts take put the 2 damaged rows users had edited " \
        "since back to before the migration" in text


@pytest.mark.parametrize(("moment", "right"), [(-8.5, True), (-8, True), (-5, False),
                                               (-9.5, False)])
def test_busy_afternoon_the_after_moment_is_judged_against_the_migration_and_the_mark(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moment: float, right: bool) -> None:
    """--after a time: from the migration up to the mark after it is right; later, users'
    writes look like the migration's; before the migration, there is nothing to repair."""
    from datetime import UTC, datetime, timedelta

    at = (datetime.now(UTC) + timedelta(seconds=moment)).isoformat()
    result, text = _repair_drill(tmp_path, monkeypatch, {
        "type": "repair", "backup": "pitr-before", "source": _pit(tmp_path),
        "after": "pitr-after"}, {"kind": "time", "value": at, "said": "the moment", "at": at,
                                 "lsn": None})
    assert (result.points == 100) == right, result.lines  # type: ignore[attr-defined]
    if not right:
        assert "✖ +0 source: --after the moment: " in text
        assert ("count as the migration's" in text) == (moment > -8)


def test_busy_afternoon_a_type_2_or_a_repair_from_the_dump_says_what_it_cost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dump = {"kind": "backup_set", "id": "before-drill", "path": str(tmp_path / "no-such")}
    result, text = _repair_drill(tmp_path / "a", monkeypatch, {
        "type": "partial", "backup": "before-drill", "source": dump})
    assert result.points == 75, result.lines  # type: ignore[attr-defined]
    assert "a Type 2 (partial) replaces the whole of public.media: it lost the 40 rows users " \
        "wrote to public.media since the " in text
    assert "33 rows users wrote after the migration (3 new and 30 edited" in text
    result, text = _repair_drill(tmp_path / "b", monkeypatch, {
        "type": "partial", "backup": "pitr-before", "source": _pit(tmp_path / "b")})
    assert result.points == 75, result.lines  # type: ignore[attr-defined]
    assert "✖ +0 source: mark before-migration: a Type 2 (partial) replaces the whole of " \
        "public.media: it lost 33 rows users wrote after the migration" in text
    result, text = _repair_drill(tmp_path / "c", monkeypatch, {
        "type": "repair", "backup": "before-drill", "source": dump,
        "damage": ["deleted", "nulled"]})
    assert result.points == 90, result.lines  # type: ignore[attr-defined]
    assert "✖ +5 source: a repair from the " in text and " dump (before-drill) only " \
        "(--damage deleted,nulled): it put back what looked like damage" in text
