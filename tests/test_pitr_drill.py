"""The point-in-time drill (late-writes): users write between the baseline dump and the
migration, a mark is made just before it. Played headless with the real CLI: a Type 2 of
media `--at` the mark scores 100 and brings media back as it was at the mark, the evening's
writes included; the same from the dump scores less and the debrief names what it lost."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from app import config, drills
from app.backups.create import create_set
from app.checks import run_assessment
from app.drill_score import DrillFacts, facts_for
from tests.conftest import DemoApp, DemoDb
from tests.helpers import read_until_enter

LATE = drills.BY_NAME["late-writes"]


async def test_the_evenings_writes_leave_the_verdict_on_media(console_config: Path,
                                                             demo_db: DemoDb,
                                                             demo_app: DemoApp,
                                                             conn: asyncpg.Connection) -> None:
    """Against the dump, the users' writes (before and after the migration) are traffic, not
    damage: the verdict is IMMEDIATE ROLLBACK, Type 2 of media alone."""
    cfg = config.load(console_config)
    await create_set(cfg, "before-drill")
    await conn.execute(LATE.before_mark)
    await conn.execute(LATE.migration)
    await conn.execute(LATE.after)
    d = (await run_assessment(cfg)).decision
    assert d.tier.label == LATE.expected_tier, d.to_dict()
    assert d.recommended is not None and d.recommended.key == LATE.expected_type, d.to_dict()
    assert tuple(d.tables) == LATE.tables, d.to_dict()


class Drill:
    """A headless late-writes drill: the sandbox up, the trainee's commands, then the call."""

    def __init__(self, tmp_path: Path) -> None:
        self.env = {**os.environ, "ROLLBACK_CONSOLE_HOME": str(tmp_path / "home")}
        self.app = [sys.executable, "-m", "app"]
        self.box = tmp_path / "box"
        self.proc = subprocess.Popen(
            [*self.app, "drill", "--headless", "--scenario", "late-writes", "--rows", "300",
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
            found = facts_for(LATE)
        finally:
            if old is None:
                del os.environ["ROLLBACK_CONSOLE_HOME"]
            else:
                os.environ["ROLLBACK_CONSOLE_HOME"] = old
        assert found is not None
        return found

    async def media(self) -> dict[str, object]:
        """media as it stands: its rows (all but caption and updated_at) as one checksum, the
        ids, the captions, the newest updated_at."""
        conn = await asyncpg.connect(self.cfg.target.dsn.reveal())
        try:
            rows = await conn.fetch("SELECT id, caption, updated_at FROM public.media")
            frame = await conn.fetchval(
                "SELECT md5(string_agg(concat_ws('|', id, object_id, owner_id, url, mime_type, "
                "bytes, created_at), ',' ORDER BY id)) FROM public.media")
            others = await conn.fetchval(
                "SELECT md5(string_agg(x, ',' ORDER BY x)) FROM (SELECT c::text AS x FROM "
                "public.chakai c UNION ALL SELECT o::text FROM public.objects o) AS t")
        finally:
            await conn.close()
        return {"frame": frame, "ids": {r["id"] for r in rows}, "others": others,
                "captions": {r["id"]: r["caption"] for r in rows},
                "newest": max(r["updated_at"] for r in rows)}


PHRASE = "ROLLBACK tea-school-sandbox"


async def test_a_type_2_from_the_mark_keeps_the_evenings_writes_and_scores_100(
        tmp_path: Path) -> None:
    from datetime import datetime

    drill = Drill(tmp_path)
    try:
        assert "DRILL INCIDENT" in drill.printed and "`rollback-console pitr`" in drill.printed
        assert re.search(r"window:\s+rollback-console -c \S+ pitr", drill.printed), drill.printed
        assert "[--at WHEN]" in drill.printed
        facts = drill.facts()
        window = drill.run("pitr")
        assert window.returncode == 0, window.stdout + window.stderr
        assert "before-migration" in window.stdout
        assert drill.run("assess", "--json").returncode == 30        # IMMEDIATE ROLLBACK
        before = await drill.media()
        assert any(c is None for c in before["captions"].values())   # type: ignore[attr-defined]
        rolled = drill.run("run", "--type", "partial", "--tables", "media", "--at",
                           "before-migration", "--confirm", PHRASE)
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        after = await drill.media()
        # the same rows (the evening's uploads among them), the other tables untouched
        assert after["ids"] == before["ids"] and after["frame"] == before["frame"]
        assert after["others"] == before["others"]
        # as at the mark: no row carries the migration's write, the evening's edits are back
        mark_at = datetime.fromisoformat(facts.mark_at)
        assert after["newest"] <= mark_at                            # type: ignore[operator]
        lost = facts.lost["public.media"]
        captions: dict[int, str | None] = after["captions"]  # type: ignore[assignment]
        new_ids = {i for i in captions if i > min(captions) + 299}  # ids past the demo's 300
        assert len(new_ids) == lost["new"] > 0
        assert all(str(captions[i]).startswith("evening upload: ") for i in new_ids)
        edited = [i for i, c in captions.items() if c and c.endswith("(edited by its owner)")
                  and i not in new_ids]
        assert len(edited) == lost["edited"] > 0
        validated = drill.run("validate")
        assert validated.returncode == 0, validated.stdout
        out = drill.finish()
    finally:
        drill.stop()
    assert "Score: 100/100 for trainee" in out, out
    assert "✔ +15 source: the point in time mark before-migration" in out, out
    assert f"kept the {lost['new'] + lost['edited']} rows users wrote after the" in out, out
    assert "The right answer: IMMEDIATE ROLLBACK / partial of public.media from the point in " \
        "time (the mark before-migration)" in out


def test_a_type_2_from_the_dump_scores_less_and_names_the_rows_it_lost(tmp_path: Path) -> None:
    drill = Drill(tmp_path)
    try:
        facts = drill.facts()
        rolled = drill.run("run", "--type", "partial", "--tables", "media", "--confirm", PHRASE)
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        assert drill.run("validate").returncode == 1    # the other tables moved on since
        out = drill.finish()
    finally:
        drill.stop()
    lost = facts.lost["public.media"]
    n = lost["new"] + lost["edited"]
    found = re.search(r"Score: (\d+)/100 for trainee", out)
    assert found and int(found.group(1)) < 100, out
    assert "✖ +0 source: a backup set" in out, out
    assert f"a Type 2 from the {facts.dump_time()} dump would have lost {n} rows users " \
        f"wrote before the migration ({lost['new']} new and {lost['edited']} edited in " \
        "public.media, e.g. id " in out, out
    assert "`--at before-migration` restores the state of the mark" in out
    assert "the checklist compared with " in out and "Data Integrity: row counts differ: " \
        "public.chakai" in out, out


@pytest.mark.tmux
def test_the_console_plays_it_from_the_mark(tmp_path: Path) -> None:
    """In a real terminal, with the keys a trainee who read the briefing presses: assess,
    accept Type 2 of media, p (a point in time) on the plan screen, the mark's label, build,
    the gate, run, validate, quit: 100."""
    import shutil
    import time

    from tests.test_tmux import COMMAND, Tmux

    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed: `make test` installs it; or apt-get install tmux")
    tmux = Tmux()
    done = tmp_path / "exit-code"
    shell = (f"unset COLUMNS LINES; ROLLBACK_CONSOLE_HOME={tmp_path / 'home'} {COMMAND} drill "
             f"--scenario late-writes --rows 300 --dir {tmp_path / 'sandbox'} --operator "
             f"trainee; echo $? > {done}")

    def press(*keys: str, literal: bool = False) -> None:
        tmux.run("send-keys", "-t", "console", *(["-l"] if literal else []), *keys)
        time.sleep(0.5)

    try:
        tmux.run("new-session", "-d", "-s", "console", "-x", "200", "-y", "50", shell)
        tmux.wait_for("press a to assess", timeout=120)
        assert "rollback-console pitr" in tmux.screen()
        press("a")
        tmux.wait_for("shift+y: accept", timeout=120)
        press("Y")
        tmux.wait_for("p: from a point in time", timeout=60)
        press("p")
        screen = tmux.wait_for("⚑ before-migration", timeout=60)  # the window lists the mark
        if "Default moment: mark before-migration" in screen:
            press("b")
        else:                       # no default: the migration's time is unknown here
            press("before-migration", literal=True)
            press("Enter")
        tmux.wait_for("POINT OF NO RETURN", timeout=180)
        assert "pitr-before-migration" in tmux.screen()
        press("G")
        tmux.wait_for("type the phrase here", timeout=30)
        press(PHRASE, literal=True)
        press("Enter")
        tmux.wait_for("rollback completed and validated", timeout=180)
        press("v")
        tmux.wait_for("ALL ITEMS PASS", timeout=120)
        press("q")
        screen = tmux.wait_for("Drill debrief", timeout=30)
        assert "Score: 100/100 for trainee" in screen, screen
        assert "✔ +15 source: the point in time mark before-migration" in screen, screen
        press("q")
        assert tmux.exit_code(done, timeout=60) == "0", tmux.screen()
    finally:
        subprocess.run(["tmux", "-L", tmux.socket, "kill-server"], capture_output=True)
    assert not list((tmp_path / "sandbox").rglob("postmaster.pid"))   # the sandbox stopped
