"""The journal is append-only, survives a torn last line, and shows tampering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.journal import Journal, JournalCorrupt, read


def _journal(tmp_path: Path) -> Journal:
    j = Journal.open(tmp_path / "inc-1")
    j.append("incident_opened", target="shop", type="partial")
    j.append("step_started", step="prerequisites")
    j.append("step_finished", step="prerequisites", status="done")
    j.append("step_started", step="restore")
    return j


def test_entries_are_chained_and_read_back(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    again = Journal(j.path)
    assert [e.kind for e in again.entries] == [e.kind for e in j.entries]
    assert again.entries[1].prev == again.entries[0].hash
    assert list(again.finished_steps()) == ["prerequisites"]
    assert again.started_not_finished() == "restore"
    assert not again.closed


@pytest.mark.parametrize("tamper", ["edit", "delete", "reorder"])
def test_tampering_shows(tmp_path: Path, tamper: str) -> None:
    j = _journal(tmp_path)
    lines = j.path.read_text().splitlines()
    if tamper == "edit":
        raw = json.loads(lines[2])
        raw["data"]["status"] = "skipped"
        lines[2] = json.dumps(raw)
    elif tamper == "delete":
        del lines[1]
    else:
        lines[1], lines[2] = lines[2], lines[1]
    j.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(JournalCorrupt, match="hash chain is broken"):
        list(read(j.path))


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    with j.path.open("a") as f:
        f.write('{"seq": 5, "kind": "step_fin')  # the console died mid-write
    again = Journal(j.path)
    assert len(again.entries) == 4
    again.append("step_finished", step="restore", status="done")
    reread = Journal(j.path).entries
    assert [e.seq for e in reread] == [1, 2, 3, 4, 5]
    assert reread[-1].kind == "step_finished" and reread[-1].step == "restore"


def test_secrets_are_scrubbed(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "inc-2")
    j.append("note", dsn="postgresql://app:Sup3rSecret@db/shop")
    assert "Sup3rSecret" not in j.path.read_text()
