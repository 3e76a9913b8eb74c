"""Scoring a drill from the journals it produced: the right tier, the right type, time to
recovery (operator think time apart from machine time), validation, no needless destruction,
no skipped steps. Scores are kept locally per operator, so progress shows over time."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class DrillFacts:
    """What a point-in-time drill's setup did (app.drill_run.prepare_drill): the baseline
    dump, the mark made before the migration, the migration's time, and, per damaged table,
    the rows users wrote between the dump and the mark (what a Type 2 from the dump loses)."""

    scenario: str
    dump_id: str
    dump_at: str
    mark: str
    mark_at: str
    mark_lsn: str
    migration_at: str
    lost: dict[str, dict[str, Any]] = field(default_factory=dict)
    prepared_at: float = field(default_factory=time.time)
    # a repair drill (Scenario.after_mark): the mark right after the migration, the rows
    # users wrote after it (what any Type 2 loses), the rows the migration touched (key: md5
    # of the row before it; None: it inserted the row)
    after_mark: str = ""
    after_mark_at: str = ""
    after_mark_lsn: str = ""
    written_after: dict[str, dict[str, Any]] = field(default_factory=dict)
    damaged: dict[str, dict[str, str | None]] = field(default_factory=dict)

    @property
    def after_rows(self) -> int:
        """The rows users wrote to the damaged tables after the migration."""
        return sum(int(w.get("new", 0)) + int(w.get("edited", 0))
                   for w in self.written_after.values())

    @property
    def since_dump_rows(self) -> int:
        """The rows users wrote to the damaged tables since the dump (before or after the
        migration, each row once): what a Type 2 from the dump loses."""
        return sum(int(w.get("since_dump", int(w.get("new", 0)) + int(w.get("edited", 0))))
                   for w in self.lost.values())

    def conflicts(self, table: str) -> set[str]:
        """The rows both the migration and users (after it) touched."""
        return set(self.damaged.get(table, {})) & \
            set(map(str, self.written_after.get(table, {}).get("keys", [])))

    def after_text(self) -> str:
        """'27 rows users wrote after the migration (6 new and 21 edited in public.media, e.g.
        id ...)'"""
        parts = []
        for table, w in self.written_after.items():
            keys = [*w.get("new_keys", []), *w.get("edited_keys", [])][:6]
            parts.append(f"{w.get('new', 0)} new and {w.get('edited', 0)} edited in {table}"
                         + (f", e.g. id {', '.join(map(str, keys))}" if keys else ""))
        return (f"{self.after_rows} rows users wrote after the migration ("
                + "; ".join(parts) + ")")

    def damage_text(self) -> str:
        """'the migration touched 63 rows of public.media, 9 of which users edited since
        (conflicts)'"""
        return "the migration touched " + "; ".join(
            f"{len(rows)} rows of {table}, {len(self.conflicts(table))} of which users edited "
            "since (conflicts)" for table, rows in self.damaged.items())

    def repaired_text(self) -> str:
        """What the right repair does: 'it put back the 54 rows the migration touched that
        nobody touched since and kept 46 rows users wrote after the migration (...), the 9
        conflicts among them'"""
        back = sum(len(rows) - len(self.conflicts(t)) for t, rows in self.damaged.items())
        conflicts = sum(len(self.conflicts(t)) for t in self.damaged)
        return (f"it put back the {back} rows the migration touched that nobody touched since "
                f"and kept {self.after_text()}, the {conflicts} conflicts among them")

    @property
    def lost_rows(self) -> int:
        return sum(int(w.get("new", 0)) + int(w.get("edited", 0)) for w in self.lost.values())

    def dump_time(self) -> str:
        return datetime.fromisoformat(self.dump_at).astimezone(UTC).strftime("%H:%M:%S UTC")

    def lost_text(self) -> str:
        """'12 rows users wrote before the migration (7 new, 5 edited in public.media: ...)'"""
        parts = []
        for table, w in self.lost.items():
            keys = [*w.get("new_keys", []), *w.get("edited_keys", [])][:6]
            parts.append(f"{w.get('new', 0)} new and {w.get('edited', 0)} edited in {table}"
                         + (f", e.g. id {', '.join(map(str, keys))}" if keys else ""))
        return (f"{self.lost_rows} rows users wrote before the migration ("
                + "; ".join(parts) + ")")


def facts_path() -> Path:
    return state_dir() / "drill-facts.json"


def save_facts(facts: DrillFacts) -> None:
    """Keep the facts of the drill just prepared (the newest per scenario is what counts)."""
    path = facts_path()
    kept: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
    kept = [k for k in kept if k.get("scenario") != facts.scenario][-20:]
    path.write_text(json.dumps([*kept, asdict(facts)], indent=2))


def facts_for(scenario: Scenario, started: float | None = None) -> DrillFacts | None:
    """The facts of the newest preparation of ``scenario`` (before ``started``), if any."""
    path = facts_path()
    if not scenario.point_in_time or not path.exists():
        return None
    try:
        kept = json.loads(path.read_text())
    except ValueError:
        return None
    found = [k for k in kept if k.get("scenario") == scenario.name
             and (started is None or float(k.get("prepared_at", 0)) <= started + 1)]
    if not found:
        return None
    known = {f.name for f in fields(DrillFacts)}   # a facts file of another version
    return DrillFacts(**{k: v for k, v in found[-1].items() if k in known})


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
    type_points = 10 if scenario.point_in_time else 25   # the source has the other 15
    if got == want and scenario.after_mark and opened[-1].data.get("conflicts") == "take":
        s.points += type_points // 2
        facts = facts_for(scenario, started)
        n = sum(len(facts.conflicts(t)) for t in scenario.tables) if facts else None
        s.lines.append(f"✖ +{type_points // 2} type: {want}, but --conflicts take put "
                       + (f"the {n} damaged rows users had edited since" if n is not None
                          else "the damaged rows users had edited since")
                       + " back to before the migration, throwing their edits away (keep, "
                       "the default, leaves them as the users left them)")
    elif got == want:
        s.points += type_points
        s.lines.append(f"✔ +{type_points} type: {want}"
                       + (f" (conflicts: {opened[-1].data.get('conflicts')})"
                          if scenario.after_mark else ""))
    else:
        s.lines.append(f"✖ +0 type: expected {want}, got {got or 'no rollback run'}")
    if scenario.after_mark:
        _repair_source(s, scenario, opened, started)
    elif scenario.point_in_time:
        _source(s, scenario, opened, started)
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
        if validations and scenario.point_in_time:
            s.lines.append("  " + _failing(validations[-1]))
    skipped = [e for e in entries if e.kind == "step_finished"
               and e.data.get("status") == "skipped"]
    if not skipped:
        s.points += 10
        s.lines.append("✔ +10 no step skipped")
    else:
        s.lines.append(f"✖ +0 {len(skipped)} step(s) skipped")
    return _times(s, journals, started)


SOURCE_POINTS = 15


def point_in_time_of(opened: Entry) -> dict[str, Any] | None:
    """The moment an incident's source was restored to (a point-in-time set), else None: the
    journal's source record, or the set's manifest.json at the path it records."""
    source = opened.data.get("source")
    if not isinstance(source, dict):
        return None
    if isinstance(source.get("point_in_time"), dict):
        return source["point_in_time"]
    path = source.get("path")
    if not path:
        return None
    try:
        manifest = json.loads((Path(str(path)) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    pit = manifest.get("point_in_time") if isinstance(manifest, dict) else None
    return pit if isinstance(pit, dict) else None


def _failing(validation: Entry) -> str:
    """What a failed checklist compared with and which items did not pass, in a line."""
    items = [i for i in validation.data.get("items") or []
             if isinstance(i, dict) and i.get("status") != "pass" and not i.get("not_configured")]
    said = "; ".join(f"{i.get('item')}: {i.get('summary')}" for i in items[:3])
    return (f"the checklist compared with {validation.data.get('backup')}: {said or 'failed'}"
            " (rows users wrote since that set differ from it)")


def _source(s: Score, scenario: Scenario, opened: list[Entry], started: float) -> None:
    """A point-in-time drill: the right source is the moment of the mark (or any moment from
    it to the migration); a backup set from before it loses what users wrote since."""
    facts = facts_for(scenario, started)
    label = facts.mark if facts else scenario.mark
    if not opened:
        s.lines.append(f"✖ +0 source: no rollback run (the right one: the point in time of "
                       f"the mark {label})")
        return
    pit = point_in_time_of(opened[-1])
    lost = (f"; it lost {facts.lost_text()}" if facts else "")
    if pit is None:
        dump = f"the {facts.dump_time()} dump" if facts else "the dump"
        s.lines.append(f"✖ +0 source: a backup set ({opened[-1].data.get('backup')}), "
                       f"{dump}: a Type 2 from it put {', '.join(scenario.tables)} back to "
                       f"the state of the dump{lost}. `--at {label}` restores the state of "
                       "the mark, just before the migration")
        return
    said = str(pit.get("said") or pit.get("value") or "a point in time")
    verdict = _moment(pit, facts, label)
    if verdict is None:
        s.points += SOURCE_POINTS
        kept = f": it kept the {facts.lost_rows} rows users wrote after the {facts.dump_time()}" \
            " dump" if facts else ""
        s.lines.append(f"✔ +{SOURCE_POINTS} source: the point in time {said}{kept}")
    else:
        s.lines.append(f"✖ +0 source: the point in time {said}: {verdict}")


def _moment(pit: dict[str, Any], facts: DrillFacts | None, label: str) -> str | None:
    """Why the restored moment is not the right one (None: it is: the mark, or a moment
    from the mark up to the migration)."""
    value = str(pit.get("value") or "")
    if pit.get("kind") == "name" and (value == label or value.startswith(label + ".")):
        return None
    if facts is not None and pit.get("lsn") and str(pit["lsn"]).upper() == \
            facts.mark_lsn.upper():
        return None
    at = pit.get("at")
    if facts is None or not at:
        return f"not the mark {label}" if facts is None else "its moment is not recorded"
    moment = datetime.fromisoformat(str(at))
    mark_at = datetime.fromisoformat(facts.mark_at)
    migration_at = datetime.fromisoformat(facts.migration_at)
    if moment >= migration_at:
        return ("after the migration began: the state restored already holds the damage "
                f"(the mark {label} is just before it)")
    if moment < mark_at - timedelta(seconds=1):
        return (f"before the mark {label}: the writes users made between that moment and "
                "the migration are lost")
    return None


def _set_point_in_time(opened: Entry, set_id: str) -> dict[str, Any] | None:
    """The moment of another set of the same incident (a repair's ``after``): its manifest,
    next to the source's set."""
    source = opened.data.get("source")
    path = source.get("path") if isinstance(source, dict) else None
    if not path or not set_id:
        return None
    try:
        manifest = json.loads((Path(str(path)).parent / set_id / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    pit = manifest.get("point_in_time") if isinstance(manifest, dict) else None
    return pit if isinstance(pit, dict) else None


def _after_moment(pit: dict[str, Any] | None, facts: DrillFacts | None,
                  label: str) -> str | None:
    """Why a repair's ``--after`` is not the right moment (None: it is: the mark right after
    the migration, or a moment from the migration's commit to that mark)."""
    if pit is None:
        return "its moment is not recorded"
    value = str(pit.get("value") or "")
    if pit.get("kind") == "name" and (value == label or value.startswith(label + ".")):
        return None
    if facts is not None and facts.after_mark_lsn and str(pit.get("lsn") or "").upper() == \
            facts.after_mark_lsn.upper():
        return None
    at = pit.get("at")
    if facts is None or not at or not facts.after_mark_at:
        return f"not the mark {label}"
    moment = datetime.fromisoformat(str(at))
    if moment > datetime.fromisoformat(facts.after_mark_at) + timedelta(seconds=1):
        return (f"after the mark {label}: users' writes since the migration count as the "
                "migration's, and the repair undoes them")
    if moment < datetime.fromisoformat(facts.migration_at):
        return "before the migration: the two moments show no damage to put back"
    return None


def _repair_source(s: Score, scenario: Scenario, opened: list[Entry], started: float) -> None:
    """A repair drill: the right sources are the two marks (before and right after the
    migration); a repair from a dump only guesses the damage (part of the points); a Type 2,
    from any source, replaces the whole table and loses the users' writes since."""
    facts = facts_for(scenario, started)
    label = facts.mark if facts else scenario.mark
    after_label = facts.after_mark if facts and facts.after_mark else scenario.after_mark
    both = f"--at {label} --after {after_label}"
    if not opened:
        s.lines.append(f"✖ +0 source: no rollback run (the right one: a repair from the two "
                       f"marks, {both})")
        return
    last = opened[-1]
    kind = str(last.data.get("type"))
    pit = point_in_time_of(last)
    said = str(pit.get("said") or pit.get("value") or "a point in time") if pit else \
        f"{f'the {facts.dump_time()} dump' if facts else 'a backup set'} " \
        f"({last.data.get('backup')})"
    if kind != "repair":
        if facts is None:
            lost = ""
        elif pit is None:
            lost = (f": it lost the {facts.since_dump_rows} rows users wrote to "
                    f"{', '.join(scenario.tables)} since the {facts.dump_time()} dump, "
                    f"{facts.after_text()} among them")
        else:
            lost = f": it lost {facts.after_text()}"
        number = rollback_type(kind).number if kind in ("schema", "partial", "full") else None
        named = f"a Type {number} ({kind})" if number else f"a {kind}"
        s.lines.append(f"✖ +0 source: {said}: {named} replaces the whole of "
                       f"{', '.join(scenario.tables)}{lost}. A repair from the two marks "
                       f"({both}) puts back only what the migration did and keeps them")
        return
    after_id = str(last.data.get("after") or "")
    if not after_id:
        damage = ",".join(map(str, last.data.get("damage") or [])) or "?"
        points = SOURCE_POINTS // 3
        s.points += points
        s.lines.append(f"✖ +{points} source: a repair from {said} only (--damage {damage}): "
                       "it put back what looked like damage and cannot tell the users' edits "
                       f"from the migration's. The two marks ({both}) show exactly what the "
                       "migration did")
        return
    before = _moment(pit, facts, label) if pit else \
        "a backup set, not a moment just before the migration"
    after_pit = _set_point_in_time(last, after_id)
    after = _after_moment(after_pit, facts, after_label)
    after_said = str(after_pit.get("said") or after_pit.get("value") or after_id) \
        if after_pit else after_id
    if before is None and after is None:
        s.points += SOURCE_POINTS
        kept = f": {facts.repaired_text()}" if facts else ""
        s.lines.append(f"✔ +{SOURCE_POINTS} source: the two moments, {said} and "
                       f"{after_said}{kept}")
        return
    why = "; ".join(f"{name} {what}: {verdict}" for name, what, verdict in
                    (("--at", said, before), ("--after", after_said, after)) if verdict)
    s.lines.append(f"✖ +0 source: {why} (the right ones: {both})")


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
    elif scenario.after_mark:
        facts = facts_for(scenario, s.at)
        label = facts.mark if facts else scenario.mark
        after_label = facts.after_mark if facts and facts.after_mark else scenario.after_mark
        tables = ",".join(t.removeprefix("public.") for t in scenario.tables)
        ideal = (f"assess → pitr: the window and the marks {label} and {after_label} → the "
                 f"repair (Type {rollback_type(scenario.types[0]).number}) of "
                 f"{', '.join(scenario.tables)} from the two moments (run --type repair "
                 f"--tables {tables} --at {label} --after {after_label} --dry-run: what it "
                 "re-inserts, reverts and the conflicts; then --confirm) → validate")
    elif scenario.point_in_time:
        label = facts.mark if (facts := facts_for(scenario, s.at)) else scenario.mark
        tables = ",".join(t.removeprefix("public.") for t in scenario.tables)
        ideal = (f"assess → pitr: the window and the mark {label} → Type "
                 f"{rollback_type(scenario.types[0]).number} of {', '.join(scenario.tables)} "
                 f"from that moment (run --type {scenario.types[0]} --tables {tables} --at "
                 f"{label}; in the console, p on the plan screen, then {label}) → gate → run → "
                 "validate")
    else:
        ideal = "assess → accept the recommendation → build the plan → gate → run"
        if scenario.then:
            then = rollback_type(scenario.then).number
            ideal += f" → shift+d: Type {then} of {', '.join(scenario.tables)} → gate → run"
        ideal += " → validate"
    past = ", ".join(f"{h['points']}" for h in history[-5:])
    happened = scenario.debrief
    if scenario.after_mark and (facts := facts_for(scenario, s.at)) is not None:
        happened += (f" Here: {facts.damage_text()}; a Type 2 from the mark {facts.mark} "
                     f"would have lost {facts.after_text()}, from the {facts.dump_time()} dump "
                     f"{facts.since_dump_rows} rows users wrote since it.")
    elif scenario.point_in_time and (facts := facts_for(scenario, s.at)) is not None:
        happened += (f" Here: a Type 2 from the {facts.dump_time()} dump would have lost "
                     f"{facts.lost_text()}.")
    return "\n".join([
        f"Drill: {scenario.title} ({scenario.difficulty})",
        f"Score: {s.points}/{s.out_of} for {s.operator} (last runs: {past})",
        "", *s.lines, "",
        f"What happened: {happened}",
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
