"""The journal is append-only, survives a torn last line, and shows tampering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.journal import Journal, JournalCorrupt, read
from app.journal_entries import (
    Decision,
    IncidentEnded,
    IncidentOpened,
    Raw,
    StepFinished,
    record_decision,
    typed,
)
from app.report import render_markdown


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


def test_a_journal_cut_short_fails_verification(tmp_path: Path) -> None:
    """Keeping only the first lines (a cut at a line boundary) leaves a valid chain: the seal
    says how many entries were confirmed, so the cut shows."""
    j = _journal(tmp_path)
    lines = j.path.read_text().splitlines(keepends=True)
    j.path.write_text("".join(lines[:2]))
    with pytest.raises(JournalCorrupt, match="the journal was cut: its seal records 4 entries, "
                       "the file holds 2"):
        Journal(j.path)


def test_a_chain_recomputed_without_the_key_is_rejected(tmp_path: Path) -> None:
    """Whoever edits an entry and recomputes the hashes (plain sha256, as the chain used to
    be) cannot produce the keyed chain."""
    import hashlib

    j = _journal(tmp_path)
    prev, out = "0" * 64, []
    for line in j.path.read_text().splitlines():
        raw = json.loads(line)
        if raw["kind"] == "step_finished":
            raw["data"]["status"] = "skipped"
        raw["prev"] = prev
        body = json.dumps({k: raw[k] for k in ("seq", "at", "kind", "data", "prev")},
                          sort_keys=True, separators=(",", ":"))
        raw["hash"] = prev = hashlib.sha256(body.encode()).hexdigest()
        out.append(json.dumps(raw))
    j.path.write_text("\n".join(out) + "\n")
    with pytest.raises(JournalCorrupt, match="hash chain is broken"):
        Journal(j.path)


def test_a_missing_seal_or_key_fails_verification(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    (j.dir / "journal.seal").unlink()
    with pytest.raises(JournalCorrupt, match="seal"):
        Journal(j.path)
    k = Journal.open(tmp_path / "inc-3")
    k.append("incident_opened", target="shop")
    for key in (tmp_path / ".keys").glob("inc-3-*.key"):
        key.unlink()
    with pytest.raises(JournalCorrupt, match=r"key .* is missing"):
        Journal(k.path)


def test_reading_never_writes_and_a_torn_line_is_reported(tmp_path: Path) -> None:
    from app.report import render_markdown

    j = _journal(tmp_path)
    with j.path.open("a") as f:
        f.write('{"seq": 5, "kind": "step_fin')
    before = j.path.read_bytes()
    again = Journal(j.path)
    assert again.torn and len(again.entries) == 4
    text = render_markdown(again)
    assert j.path.read_bytes() == before, "a read command rewrote the journal"
    assert "last line was torn" in text


def test_one_entry_past_the_seal_is_a_crash_not_a_forgery(tmp_path: Path) -> None:
    """The console died between writing an entry and resealing: the entry stands."""
    j = _journal(tmp_path)
    seal = (j.dir / "journal.seal").read_bytes()
    j.append("step_finished", step="restore", status="done")
    (j.dir / "journal.seal").write_bytes(seal)
    assert [e.kind for e in Journal(j.path).entries][-1] == "step_finished"


def test_two_writers_never_fork_the_chain(tmp_path: Path) -> None:
    """An operator's command appends to an incident another Journal object read earlier: the
    later append goes on from the entry on disk, and the journal still verifies."""
    j = _journal(tmp_path)
    other = Journal(j.path)
    other.append("action_started", action="maintenance_off", by="operator")
    j.append("incident_resumed")
    entries = Journal(j.path).entries
    assert [e.kind for e in entries][-2:] == ["action_started", "incident_resumed"]
    assert [e.seq for e in entries] == list(range(1, 7))


def test_one_reader_types_old_and_new_entries_and_keeps_the_rest_raw(tmp_path: Path) -> None:
    """Entries written before the typed ones (no version) read as their dataclass; a kind
    nobody types stays readable; the chain is the same (the journal verifies)."""
    j = _journal(tmp_path)
    j.append("notified", step="maintenance", event="started", results=[])
    j.append("incident_closed", outcome="done", exit_code=0, summary="rolled back")
    kinds = [typed(e) for e in Journal(j.path).entries]
    first = kinds[0]
    assert isinstance(first, IncidentOpened) and first.version == 1
    assert first.type == "partial" and first.allow_in_place is None
    assert isinstance(kinds[2], StepFinished) and kinds[2].done
    assert isinstance(kinds[-2], Raw) and kinds[-2].data["event"] == "started"
    assert isinstance(kinds[-1], IncidentEnded) and kinds[-1].closed and kinds[-1].exit_code == 0


def test_the_three_decision_shapes_read_as_one_and_the_report_names_each(
        tmp_path: Path) -> None:
    """`decision` was written three ways; the third (``decision=`` instead of ``choice=``, the
    plan screen's "use a set taken after the migration") showed as "None" in the report."""
    j = Journal.open(tmp_path / "inc-2")
    j.append("decision", choice="accept partial", reason="recommendation")
    j.append("decision", choice="override", reason="in a hurry", against="FORWARD-FIX")
    j.append("decision", decision="use a set taken after the migration", backup="b7",
             reason="the migrations table is stale")
    record_decision(j, "accept schema", "as advised")
    read_back = [Decision.read(e) for e in Journal(j.path).of_kind("decision")]
    assert [d.choice for d in read_back] == [
        "accept partial", "override", "use a set taken after the migration", "accept schema"]
    assert read_back[1].against == "FORWARD-FIX" and read_back[2].backup == "b7"
    assert read_back[3].version == 2 and Journal(j.path).entries[-1].data["choice"] == \
        "accept schema"
    report = render_markdown(Journal(j.path))
    assert "decision: use a set taken after the migration (backup b7) (reason: the " \
        "migrations table is stale)" in report
    assert "None" not in report
