"""Scoring a drill from the journals it produced: the right tier, the right type, time to
recovery (operator think time apart from machine time), validation, no needless destruction,
no skipped steps. Scores are kept locally per operator, so progress shows over time."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from app.drills import Scenario
from app.journal import Entry, Journal, JournalCorrupt, incidents_root
from app.paths import state_dir
from app.rollback.registry import rollback_type


@dataclass
class Score:
    scenario: str
    operator: str
    points: int
    out_of: int
    lines: list[str] = field(default_factory=list)
    recovery_s: float | None = None
    machine_s: float = 0.0
    think_s: float | None = None
    at: float = field(default_factory=time.time)


def journals_since(started: float) -> list[Journal]:
    out = []
    for path in sorted(incidents_root().glob("*/journal.jsonl")):
        try:
            journal = Journal(path)
        except JournalCorrupt:
            continue   # an older incident's broken journal is not this drill's
        if journal.entries and datetime.fromisoformat(journal.entries[0].at).timestamp() \
                >= started - 1:
            out.append(journal)
    return sorted(out, key=lambda j: j.entries[0].at)   # in the order they were opened


def score(scenario: Scenario, started: float, operator: str,
          seen_tier: str | None = None) -> Score:
    """Read what the operator did (the journals written since ``started``) and score it.
    ``seen_tier``: the verdict the operator read on the assessment screen without journaling
    a decision (assess, read, go back: the right move for a forward-fix) counts as the call."""
    journals = journals_since(started)
    entries = [e for j in journals for e in j.entries]
    s = Score(scenario.name, operator, 0, 100)
    assessed = [e for e in entries if e.kind == "assessment"]
    called = assessed[-1].data.get("tier") if assessed else seen_tier
    if called == scenario.expected_tier:
        s.points += 25
        s.lines.append(f"✔ +25 tier: {scenario.expected_tier}"
                       + ("" if assessed else " (read on the assessment screen)"))
    else:
        seen = called or "no assessment"
        s.lines.append(f"✖ +0 tier: expected {scenario.expected_tier}, got {seen}")
    opened = [e for e in entries if e.kind == "incident_opened"]
    rollback_expected = scenario.expected_tier == "IMMEDIATE ROLLBACK"
    if not rollback_expected:
        _no_rollback(s, scenario, entries, opened)
        return _times(s, journals, started)
    want = " then ".join(scenario.types)
    got = " then ".join(str(e.data.get("type")) for e in opened[-len(scenario.types):])
    if got == want:
        s.points += 25
        s.lines.append(f"✔ +25 type: {want}")
    else:
        s.lines.append(f"✖ +0 type: expected {want}, got {got or 'no rollback run'}")
    closed = [e for e in entries if e.kind == "incident_closed"]
    if closed and closed[-1].data.get("outcome") == "done":
        s.points += 20
        s.lines.append("✔ +20 recovered: the rollback finished")
    else:
        s.lines.append("✖ +0 not recovered: the rollback did not finish")
    validations = [e for e in entries if e.kind == "validation"]
    if validations and validations[-1].data.get("passed"):
        s.points += 20
        s.lines.append("✔ +20 validated: every checklist item passes")
    else:
        s.lines.append("✖ +0 validation: not run, or not passing (v after the rollback)")
    skipped = [e for e in entries if e.kind == "step_finished"
               and e.data.get("status") == "skipped"]
    if not skipped:
        s.points += 10
        s.lines.append("✔ +10 no step skipped")
    else:
        s.lines.append(f"✖ +0 {len(skipped)} step(s) skipped")
    return _times(s, journals, started)


def _no_rollback(s: Score, scenario: Scenario, entries: list[Entry],
                 opened: list[Entry]) -> None:
    """A verdict that calls for no rollback: its path is the fix (or watching), then quit."""
    verdict = scenario.expected_tier
    if opened:
        override = [e for e in entries if e.kind == "decision"
                    and e.data.get("choice") == "override"]
        why = f" (your reason: {override[-1].data.get('reason')})" if override else ""
        s.lines.append(f"✖ +0 rolled back against the verdict: a {opened[-1].data.get('type')} "
                       f"rollback where {verdict} was right{why}. A rollback takes the app down "
                       "(maintenance) and throws away what changed since the backup, for a "
                       "problem fixed online" + (" by the suggested fix" if scenario.fix else ""))
        return
    s.points += 75
    s.lines.append(f"✔ +75 no rollback: {verdict} was the right call")
    if any(e.kind == "fix_suggested" for e in entries):
        s.lines.append("✔ took the suggested fix (saved in the incident folder)")
    elif any(e.kind == "decision" and e.data.get("choice") == "watch" for e in entries):
        s.lines.append("✔ watched the checklist")
    elif scenario.fix:
        s.lines.append("· next: on the assessment screen, f saves the suggested fix to run "
                       "(w watches)")


def _times(s: Score, journals: list[Journal], started: float) -> Score:
    closed = [e for j in journals for e in j.entries if e.kind == "incident_closed"]
    if closed:
        s.recovery_s = datetime.fromisoformat(closed[-1].at).timestamp() - started
    s.machine_s = sum(float(e.data.get("elapsed_s") or 0) for j in journals
                      for e in j.entries if e.kind == "step_finished")
    if s.recovery_s is not None:
        s.think_s = max(0.0, s.recovery_s - s.machine_s)
        s.lines.append(f"time to recovery {s.recovery_s:.0f} s: machine {s.machine_s:.0f} s, "
                       f"operator {s.think_s:.0f} s")
    return s


def scores_path() -> Path:
    return state_dir() / "drill-scores.json"


def record(s: Score, run: float | None = None) -> list[dict[str, object]]:
    """Append to the local scores; return this operator's history, oldest first. ``run`` (the
    drill's start) keeps one entry per drill: a debrief shown again (escape, then q) replaces
    that drill's entry instead of recording the drill twice."""
    path = scores_path()
    history: list[dict[str, object]] = json.loads(path.read_text()) if path.exists() else []
    if run is not None:
        history = [h for h in history
                   if not (h.get("run") == run and h["operator"] == s.operator)]
    history.append({**asdict(s), **({"run": run} if run is not None else {})})
    path.write_text(json.dumps(history, indent=2))
    return [h for h in history if h["operator"] == s.operator]


def debrief_text(scenario: Scenario, s: Score, history: list[dict[str, object]]) -> str:
    if scenario.expected_tier == "FORWARD-FIX":
        ideal = ("a: assess → read FORWARD-FIX and its suggested fix → f: save the fix (run it "
                 "or copy it; w watches after) → q. No rollback")
    elif scenario.expected_tier != "IMMEDIATE ROLLBACK":
        ideal = f"a: assess → read {scenario.expected_tier} → w: watch → q. No rollback"
    else:
        ideal = "assess → accept the recommendation → build the plan → gate → run"
        if scenario.then:
            then = rollback_type(scenario.then).number
            ideal += f" → shift+d: Type {then} of {', '.join(scenario.tables)} → gate → run"
        ideal += " → validate"
    past = ", ".join(f"{h['points']}" for h in history[-5:])
    return "\n".join([
        f"Drill: {scenario.title} ({scenario.difficulty})",
        f"Score: {s.points}/{s.out_of} for {s.operator} (last runs: {past})",
        "", *s.lines, "",
        f"What happened: {scenario.debrief}",
        f"The ideal path: {ideal}.",
        f"The right answer: {scenario.answer}",
    ])


def mastered(operator: str) -> set[str]:
    """Scenarios this operator has scored full marks on."""
    path = scores_path()
    if not path.exists():
        return set()
    return {str(h["scenario"]) for h in json.loads(path.read_text())
            if h["operator"] == operator and h["points"] == h["out_of"]}
