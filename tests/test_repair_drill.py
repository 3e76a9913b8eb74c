"""The repair drill (busy-afternoon): the migration deletes, blanks and rewrites media rows,
the deploy script marks the moments before and right after it, and users keep writing to media
(new rows, edits of damaged and untouched rows) and to the other tables. Played headless with
the real CLI: the repair from the two marks scores 100 and keeps every row users wrote after
the migration exactly, the damaged rows nobody touched back as they were; a Type 2 scores less
and the debrief counts the users' writes it lost."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import asyncpg

from app import config, drills
from app.drill_score import DrillFacts, facts_for
from tests.helpers import read_until_enter

BUSY = drills.BY_NAME["busy-afternoon"]
PHRASE = "ROLLBACK tea-school-sandbox"
MEDIA = "public.media"


class Drill:
    """A headless busy-afternoon drill: the sandbox up, the trainee's commands, the call."""

    def __init__(self, tmp_path: Path) -> None:
        self.env = {**os.environ, "ROLLBACK_CONSOLE_HOME": str(tmp_path / "home")}
        self.app = [sys.executable, "-m", "app"]
        self.box = tmp_path / "box"
        self.proc = subprocess.Popen(
            [*self.app, "drill", "--headless", "--scenario", BUSY.name, "--rows", "300",
             "--dir", str(self.box), "--operator", "trainee"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=self.env)
        self.printed = read_until_enter(self.proc)
        found = re.search(r"assess:\s+rollback-console -c (\S+) assess", self.printed)
        assert found, self.printed
        self.config_path = Path(found.group(1))
        self.cfg = config.load(self.config_path)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.app, "-c", str(self.config_path), *args],
                              capture_output=True, text=True, env=self.env, timeout=300,
                              stdin=subprocess.DEVNULL)

    def finish(self) -> str:
        """Enter, the call (1: IMMEDIATE ROLLBACK); the debrief. The sandbox stops."""
        out, _ = self.proc.communicate("\n1\n", timeout=120)
        assert self.proc.returncode == 0, out
        assert not list(self.box.rglob("postmaster.pid"))            # the sandbox stopped
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=60)

    def facts(self) -> DrillFacts:
        old = os.environ.get("ROLLBACK_CONSOLE_HOME")
        os.environ["ROLLBACK_CONSOLE_HOME"] = self.env["ROLLBACK_CONSOLE_HOME"]
        try:
            found = facts_for(BUSY)
        finally:
            if old is None:
                del os.environ["ROLLBACK_CONSOLE_HOME"]
            else:
                os.environ["ROLLBACK_CONSOLE_HOME"] = old
        assert found is not None
        return found

    async def rows(self) -> tuple[dict[str, str], str]:
        """media's rows (key: md5 of the row), and the other tables' checksum."""
        conn = await asyncpg.connect(self.cfg.target.dsn.reveal())
        try:
            media = {r["key"]: r["hash"] for r in await conn.fetch(
                "SELECT id::text AS key, md5(m::text) AS hash FROM public.media m")}
            others = await conn.fetchval(
                "SELECT md5(string_agg(x, ',' ORDER BY x)) FROM (SELECT c::text AS x FROM "
                "public.chakai c UNION ALL SELECT o::text FROM public.objects o) AS t")
        finally:
            await conn.close()
        return media, others


async def test_the_repair_from_the_two_marks_keeps_every_user_write_and_scores_100(
        tmp_path: Path) -> None:
    drill = Drill(tmp_path)
    try:
        assert "DRILL INCIDENT" in drill.printed and "after-migration" in drill.printed
        assert "[--after WHEN]" in drill.printed, drill.printed
        facts = drill.facts()
        damaged = facts.damaged[MEDIA]
        users = set(map(str, facts.written_after[MEDIA]["keys"]))
        conflicts = facts.conflicts(MEDIA)
        # the story: the migration's three kinds of damage, users' writes to damaged rows
        # (conflicts) and to others, new rows
        assert len(damaged) > 40 and facts.written_after[MEDIA]["new"] > 0
        assert conflicts and users - set(damaged) and set(damaged) - users
        window = drill.run("pitr")
        assert window.returncode == 0, window.stdout + window.stderr
        assert "before-migration" in window.stdout and "after-migration" in window.stdout
        assessed = drill.run("assess", "--json")
        assert assessed.returncode == 30, assessed.stdout + assessed.stderr
        verdict = json.loads(assessed.stdout)          # the deploy script's time is known
        assert verdict["recommended_type"] == "repair", verdict
        assert verdict["repair"]["tables"][MEDIA]["rows"] == facts.after_rows, verdict
        assert "run --type repair --tables public.media --at before-migration --after " \
            "after-migration" in verdict["action"], verdict
        live, others = await drill.rows()
        args = ("run", "--type", "repair", "--tables", "media", "--at", "before-migration",
                "--after", "after-migration")
        rolled = drill.run(*args, "--confirm", PHRASE)
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        repaired, others_after = await drill.rows()
        assert others_after == others                              # other tables untouched
        # every row users wrote after the migration exactly as they left it (conflicts kept)
        assert {k: repaired.get(k) for k in users} == {k: live[k] for k in users}
        # the damaged rows nobody touched since: as before the migration
        want = {k: h for k, h in damaged.items() if k not in users}
        assert {k: repaired.get(k) for k in want} == want
        # nothing else written
        rest = set(live) - set(damaged) - users
        assert {k: repaired[k] for k in rest} == {k: live[k] for k in rest}
        assert set(repaired) == rest | users | {k for k, h in want.items() if h}
        validated = drill.run("validate")
        assert validated.returncode == 0, validated.stdout + validated.stderr
        out = drill.finish()
    finally:
        drill.stop()
    assert "Score: 100/100 for trainee" in out, out
    assert "✔ +10 type: repair (conflicts: keep)" in out, out
    found = re.search(r"✔ \+15 source: the two moments, mark before-migration \(.*\) and mark "
                      r"after-migration \(.*\): (.*)", out)
    assert found, out
    assert found.group(1).startswith(
        f"it put back the {len(damaged) - len(conflicts)} rows the migration touched that "
        f"nobody touched since and kept {facts.after_rows} rows users wrote after the "
        f"migration ({facts.written_after[MEDIA]['new']} new and "
        f"{facts.written_after[MEDIA]['edited']} edited in public.media, e.g. id "), out
    assert found.group(1).endswith(f", the {len(conflicts)} conflicts among them"), out
    assert f"Here: the migration touched {len(damaged)} rows of public.media, " \
        f"{len(conflicts)} of which users edited since (conflicts)" in out, out
    assert "The right answer: IMMEDIATE ROLLBACK / repair of public.media from the two marks " \
        "(before-migration before the migration, after-migration right after it)" in out, out


async def test_a_type_2_from_the_mark_scores_less_and_counts_the_writes_it_lost(
        tmp_path: Path) -> None:
    drill = Drill(tmp_path)
    try:
        facts = drill.facts()
        live, _ = await drill.rows()
        rolled = drill.run("run", "--type", "partial", "--tables", "media", "--at",
                           "before-migration", "--confirm", PHRASE)
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        restored, _ = await drill.rows()
        drill.run("validate")
        out = drill.finish()
    finally:
        drill.stop()
    # the count is what happened: every row users wrote after the migration is gone or undone
    users = set(map(str, facts.written_after[MEDIA]["keys"]))
    assert all(restored.get(k) != live[k] for k in users)
    found = re.search(r"Score: (\d+)/100 for trainee", out)
    assert found and int(found.group(1)) < 100, out
    assert "✖ +0 type: expected repair, got partial" in out, out
    w = facts.written_after[MEDIA]
    assert facts.after_rows == w["new"] + w["edited"] > 0
    assert re.search(r"✖ \+0 source: mark before-migration \(.*\): a Type 2 \(partial\) "
                     r"replaces the whole of public.media: it lost", out), out
    assert f"it lost {facts.after_rows} rows users wrote after the migration " \
        f"({w['new']} new and {w['edited']} edited in public.media, e.g. id " in out, out
    assert "--at before-migration --after after-migration" in out, out

