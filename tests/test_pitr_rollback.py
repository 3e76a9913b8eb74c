"""Point-in-time rollbacks with the real CLI on a real archiving cluster (native engine), the
issue's story: users write → `mark` → a damaging migration → more writes. Type 2 `--at` the
mark gives the chosen table exactly its state at the mark while the other tables keep their
later writes; Type 3 `--at` the mark gives every table its state at the mark. A target
outside the window, a gap in the archive and a corrupt base backup are refused before
anything changes; a run killed while restoring aside leaves no cluster, process or set, and
`resume` says so.

One archiving cluster per module; each test works in its own copy of the demo database (the
aside restore brings back the whole cluster, so tests do not see each other's writes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.sandbox.server import cmdline
from tests.helpers import CONSOLE
from tests.pitr_cluster import DATABASE, PitrCluster, PitrDb, start_pitr_cluster

TARGET = "tea-school-sandbox"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PitrCluster]:
    c = start_pitr_cluster(tmp_path_factory.mktemp("pitr-rollback"), rows=600)
    yield c
    c.stop()


# user writes before the mark, the migration's damage, and the users' writes after it
BEFORE_MARK = ("INSERT INTO public.chakai (host_id, local_class_id, title, held_on, season) "
               "SELECT (SELECT id FROM public.accounts ORDER BY id LIMIT 1), 1, "
               "'before the mark ' || g, DATE '2026-12-01', 'winter' "
               "FROM generate_series(1, 7) g")
MIGRATION = ("UPDATE public.media SET caption = NULL WHERE id % 3 = 0; "
             "DELETE FROM public.chakai WHERE id % 4 = 0")
AFTER = ("INSERT INTO public.local_classes (name, region) VALUES ('after the migration', 'Uji'); "
         "UPDATE public.objects SET name = name || ' (renamed later)' WHERE id % 5 = 0")


def story(db: PitrDb, label: str) -> dict[str, str]:
    """writes, the mark (its state returned), the migration, more writes, WAL archived."""
    db.execute(BEFORE_MARK)
    at_mark = db.contents()
    marked = db.cli("mark", "--label", label, "--json")
    assert marked.returncode == 0, marked.stderr
    assert json.loads(marked.stdout)["archived"] is True
    db.execute(MIGRATION)
    db.execute(AFTER)
    db.cluster.switch_wal()
    return at_mark


def test_type_2_at_a_mark_restores_the_table_as_at_the_mark_and_keeps_later_writes(
        cluster: PitrCluster, tmp_path: Path) -> None:
    db = PitrDb(cluster, tmp_path / "db")
    at_mark = story(db, "before-m1")
    damaged = db.contents()
    assert damaged["public.media"] != at_mark["public.media"]

    window = db.cli("pitr")
    assert window.returncode == 0, window.stdout + window.stderr
    assert "before-m1" in window.stdout and "Gaps: none" in window.stdout

    dry = db.cli("run", "--type", "partial", "--tables", "media,chakai", "--at", "before-m1",
                 "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert db.contents() == damaged            # a dry run changes nothing
    run = db.cli("run", "--type", "partial", "--tables", "media,chakai", "--at", "before-m1",
                 "--confirm", f"ROLLBACK {TARGET}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "point in time: mark before-m1" in run.stderr
    after = db.contents()
    assert after["public.media"] == at_mark["public.media"]
    assert after["public.chakai"] == at_mark["public.chakai"]   # the 7 rows before the mark too
    # the tables not rolled back keep what users wrote after the migration
    assert after["public.local_classes"] == damaged["public.local_classes"] \
        != at_mark["public.local_classes"]
    assert after["public.objects"] == damaged["public.objects"] != at_mark["public.objects"]
    # the incident journals the moment it restored
    opened = [json.loads(line) for p in (db.home / "incidents").glob("*/journal.jsonl")
              for line in p.read_text().splitlines() if '"incident_opened"' in line]
    moment = opened[-1]["data"]["source"]["point_in_time"] if opened else {}
    assert moment["value"].startswith("before-m1.")           # the mark's unique restore point
    assert not list((db.home / "aside").glob("aside-*"))     # the aside cluster is gone


def test_type_3_at_a_mark_restores_every_table_as_at_the_mark(cluster: PitrCluster,
                                                               tmp_path: Path) -> None:
    db = PitrDb(cluster, tmp_path / "db")
    at_mark = story(db, "before-m3")
    run = db.cli("run", "--type", "full", "--at", "before-m3", "--confirm",
                 f"CONFIRM_FULL_RESTORE {TARGET}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert db.contents() == at_mark


def test_assess_at_a_mark_compares_with_the_moment_before_the_migration(
        cluster: PitrCluster, tmp_path: Path) -> None:
    db = PitrDb(cluster, tmp_path / "db")
    story(db, "before-a")
    out = db.cli("assess", "--at", "before-a", "--json")
    assert out.returncode == 30, out.stdout + out.stderr        # IMMEDIATE ROLLBACK
    verdict = json.loads(out.stdout)
    assert "pitr-before-a" in verdict["backup"]            # compared with the moment, not a dump
    # the evidence is the migration's alone: the tables users wrote to later are not named
    assert verdict["tables"] == ["public.chakai", "public.media"]


@pytest.mark.parametrize("at, expected", [
    ("2001-01-01T00:00:00Z", "before the window opens"),
    ("2999-01-01T00:00:00Z", "after the newest moment the archive holds"),
    ("FF/00000000", "after the newest archived WAL"),
    ("no-such-mark", "not a time, an LSN or a mark"),
])
def test_a_target_outside_the_window_is_refused_before_anything_changes(
        cluster: PitrCluster, tmp_path: Path, at: str, expected: str) -> None:
    db = PitrDb(cluster, tmp_path / "db")
    db.execute(MIGRATION)
    before = db.contents()
    run = db.cli("run", "--type", "partial", "--tables", "media", "--at", at, "--confirm",
                 f"ROLLBACK {TARGET}")
    assert run.returncode == 2, run.stdout + run.stderr
    assert expected in run.stderr and "Traceback" not in run.stderr
    assert db.contents() == before
    assert not (db.home / "incidents").exists() or not list(
        (db.home / "incidents").glob("*/journal.jsonl"))


def _damaged_archive(cluster: PitrCluster, folder: Path) -> str:
    """A copy of the archive without one segment after the base backup."""
    archive = cluster.copy_archive(folder / "archive")
    segments = sorted(p for p in archive.iterdir() if len(p.name) == 24)
    victim = segments[len(segments) // 2]
    victim.unlink()
    return (f'\n[pitr]\nengine = "native"\narchive_dir = "{archive}"\n'
            f'base_dir = "{cluster.base_dir}"\n')


def _corrupt_base(cluster: PitrCluster, folder: Path) -> str:
    base = cluster.copy_base(folder / "base")
    for backup in base.iterdir():
        victim = backup / "global" / "pg_control"
        data = bytearray(victim.read_bytes())
        data[40:48] = b"\xff" * 8
        victim.write_bytes(bytes(data))
    return (f'\n[pitr]\nengine = "native"\narchive_dir = "{cluster.archive_dir}"\n'
            f'base_dir = "{base}"\n')


@pytest.mark.parametrize("damage, expected", [
    (_damaged_archive, "gap"),
    (_corrupt_base, "no usable base backup"),
])
def test_a_gap_or_a_corrupt_base_backup_is_refused_before_anything_changes(
        cluster: PitrCluster, tmp_path: Path, damage: Callable[[PitrCluster, Path], str],
        expected: str) -> None:
    for _ in range(3):    # enough WAL segments that one can go missing after the base
        cluster.execute("INSERT INTO public.local_classes (name, region) "
                        "SELECT 'wal ' || g || ' ' || md5(random()::text), 'Kyoto' "
                        "FROM generate_series(1, 50) g", DATABASE)
        cluster.switch_wal()
    db = PitrDb(cluster, tmp_path / "db")
    story(db, "before-g")
    db.use_pitr(damage(cluster, tmp_path))
    before = db.contents()
    window = db.cli("pitr")
    assert window.returncode == 1, window.stdout + window.stderr
    run = db.cli("run", "--type", "partial", "--tables", "media", "--at", "before-g",
                 "--confirm", f"ROLLBACK {TARGET}")
    assert run.returncode == 2, run.stdout + run.stderr
    assert expected in run.stderr.lower() and "nothing was changed" in run.stderr.lower()
    assert db.contents() == before


def test_kill_9_while_restoring_aside_leaves_nothing_and_resume_says_so(
        cluster: PitrCluster, tmp_path: Path) -> None:
    db = PitrDb(cluster, tmp_path / "db")
    story(db, "before-k")
    before = db.contents()
    env = {**os.environ, "ROLLBACK_CONSOLE_HOME": str(db.home)}
    proc = subprocess.Popen([*CONSOLE, "-c", str(db.config), "run", "--type", "partial",
                             "--tables", "media", "--at", "before-k", "--confirm",
                             f"ROLLBACK {TARGET}"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    aside_root = db.home / "aside"
    deadline = time.monotonic() + 60
    postmaster = None
    while time.monotonic() < deadline and postmaster is None:   # the aside server is up
        for record in aside_root.glob("aside-*/aside.json"):
            pid = json.loads(record.read_text()).get("postmaster_pid")
            if pid:
                postmaster = int(pid)
        time.sleep(0.02)
    assert postmaster is not None, "the aside cluster never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    resumed = db.cli("resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "nothing else to resume" in resumed.stderr
    assert not list(aside_root.glob("aside-*"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and str(aside_root) in cmdline(postmaster):
        time.sleep(0.1)
    assert str(aside_root) not in cmdline(postmaster)           # no orphan server
    assert db.contents() == before
    sets = [p for p in (db.config.parent / "backups").iterdir() if not p.name.startswith(".")]
    assert sets == []
