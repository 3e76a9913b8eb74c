"""The incident report: a Markdown post-mortem draft written from the journal alone (the journal
is the single source of truth), so it can be produced after a crash, on another machine."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.journal import Entry, Journal
from app.journal_entries import (
    Decision,
    Gate,
    IncidentEnded,
    IncidentOpened,
    IncidentResumed,
    StepFinished,
    StepStarted,
    Typed,
    decision,
    opened,
    typed,
)

POST_ROLLBACK_ACTIONS = {
    "Immediate (0-2 hours)": [
        "User Communication: notify users of service restoration",
        "Team Notification: update all stakeholders on rollback completion",
        "Incident Documentation: begin post-mortem documentation (this draft)",
        "Monitoring Setup: enhanced monitoring for 24 hours (`validate --watch 24h`)"],
    "Short term (2-24 hours)": [
        "Root Cause Analysis: investigate what caused the rollback",
        "Migration Review: assess the consolidated migration for issues",
        "Process Improvement: update migration procedures based on lessons learned",
        "Stakeholder Updates: provide a detailed incident report"],
    "Long term (1-4 weeks)": [
        "Migration Strategy Revision", "Testing Enhancement", "Documentation Updates",
        "Team Training: share lessons learned"],
}


def _at(entry: Entry) -> datetime:
    return datetime.fromisoformat(entry.at)


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m{whole % 60:02d}s"
    return f"{whole // 60}m{whole % 60:02d}s"


def _words(value: Any) -> str:
    """A journal value as prose: lists joined, mappings as 'key: value' (never Python's
    dict text)."""
    if isinstance(value, dict):
        return "; ".join(f"{str(k).replace('_', ' ')}: {_words(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_words(v) for v in value) or "none"
    return "none" if value is None else str(value)


def _typed_line(entry: Typed) -> str | None:
    """The timeline's words for the typed kinds (None: said from the raw entry)."""
    if isinstance(entry, IncidentOpened):
        return (f"incident opened: {entry.type} rollback of {entry.target} from backup "
                f"{entry.backup}" + (f", tables {', '.join(entry.tables)}" if entry.tables
                                     else ""))
    if isinstance(entry, Decision):
        return f"decision: {_decision_words(entry)} (reason: {entry.reason})"
    if isinstance(entry, Gate):
        return "confirmation gate passed" if entry.ok else \
            f"confirmation gate REFUSED (expected {entry.expected!r})"
    if isinstance(entry, StepStarted):
        return f"step started: {entry.step}" + (" (destructive)" if entry.destructive else "")
    if isinstance(entry, StepFinished):
        return f"step {entry.status}: {entry.step}" + "".join(
            f": {text}" for text in (entry.summary, entry.error) if text) + (
            f" (reason: {entry.reason})" if entry.reason else "")
    if isinstance(entry, IncidentEnded):
        return f"{entry.kind.replace('_', ' ')}: {entry.outcome}: {entry.summary}"
    if isinstance(entry, IncidentResumed):
        return "resumed from the journal" + (f" (was in {entry.resumed_from})"
                                             if entry.resumed_from else "")
    return None


def _decision_words(decision: Decision) -> str:
    return decision.choice + (f", against the verdict {decision.against}" if decision.against
                              else "") + (f" (backup {decision.backup})" if decision.backup
                                          else "")


def _line(entry: Entry) -> str:
    said = _typed_line(typed(entry))
    if said is not None:
        return said
    d = entry.data
    kind = entry.kind
    if kind == "assessment":
        return f"assessment: **{d.get('tier')}**: {d.get('action')}"
    if kind == "fix_suggested":
        return (f"suggested fix saved to `{d.get('file')}` ({len(d.get('statements') or [])} "
                "statement(s); the console ran none)")
    if kind == "action_started":
        return f"action started: {d.get('action')}"
    if kind == "action_finished":
        ok = "done" if d.get("ok") else f"FAILED ({d.get('error')})"
        return f"action {ok}: {d.get('action')} in {d.get('elapsed_s')}s"
    if kind == "notified":
        sent = sum(1 for r in d.get("results", []) if r.get("ok"))
        return f"notification {d.get('event')}: {sent}/{len(d.get('results', []))} delivered"
    if kind == "validation":
        failing = [i["item"] for i in d.get("items", []) if i.get("status") != "pass"]
        return ("validation: every item passes" if d.get("passed") else
                f"validation: NOT passing: {', '.join(failing)}")
    return f"{kind.replace('_', ' ')}: {_words(d)}"


def step_table(journal: Journal) -> list[dict[str, Any]]:
    """Each step's final status, time taken and summary, in journal order."""
    steps: dict[str, dict[str, Any]] = {}
    for e in journal.of_kind("step_finished"):
        s = StepFinished.read(e)
        if s.step:
            steps[s.step] = {"step": s.step, "status": s.status, "elapsed_s": s.elapsed_s,
                             "summary": s.summary or s.error or s.reason}
    return list(steps.values())


def _decision_section(journal: Journal) -> list[str]:
    """The assessment, the operator's decision and the suggested fix."""
    lines: list[str] = []
    assessment, decided = journal.last("assessment"), decision(journal)
    if assessment or decided:
        lines += ["## Decision and evidence", ""]
        if assessment:
            lines.append(f"Assessment: **{assessment.data.get('tier')}**: "
                         f"{assessment.data.get('action')}")
            for f in assessment.data.get("findings", []):
                lines.append(f"- [{f.get('tier')}] {f.get('check')}: {f.get('summary')}")
        if decided:
            lines += ["", f"Operator's decision: {_decision_words(decided)}; "
                      f"reason: {decided.reason}"]
        fix = (assessment.data.get("fix") if assessment else None) or []
        if fix:
            lines += ["", "Suggested fix (nothing was run by the console):", "", "```sql",
                      *fix, "```"]
        lines.append("")
    return lines


def _saved_section(journal: Journal) -> list[str]:
    """What the run kept: safety snapshots, the database set aside, rows written since the
    backup."""
    lines: list[str] = []
    saved = [e for e in journal.of_kind("step_finished") if e.data.get("result")]
    kept = []
    for e in saved:
        result = e.data["result"]
        for key in ("safety_snapshot", "aside_database"):
            if result.get(key):
                kept.append(f"- {key.replace('_', ' ')}: `{result[key]}`")
        for path in result.get("exported_since_backup", []):
            kept.append(f"- rows written since the backup: `{path}`")
    if kept:
        lines += ["## What was saved where", "", *kept, ""]
    return lines


def _actions_section(journal: Journal) -> list[str]:
    """Each destructive action with what it ran."""
    lines: list[str] = []
    actions = journal.of_kind("action_started")
    if actions:
        lines += ["## Destructive actions and statements", ""]
        for e in actions:
            details = {k: v for k, v in e.data.items() if k not in ("step", "action")}
            lines.append(f"- {e.at} {e.data.get('action')} ({e.data.get('step')}): "
                         f"{_words(details)}")
        lines.append("")
    return lines


def _validation_section(journal: Journal) -> list[str]:
    """Each validation checklist, item by item."""
    lines: list[str] = []
    validations = journal.of_kind("validation")
    if validations:
        lines += ["## Validation", ""]
        for v in validations:
            lines.append(f"Against backup {v.data.get('backup')} at {v.at}: "
                         + ("**every item passes**" if v.data.get("passed") else
                            "**not passing**"))
            lines += [f"- [{'x' if i.get('status') == 'pass' else ' '}] {i.get('item')}: "
                      f"{i.get('status')}: {i.get('summary')}" for i in v.data.get("items", [])]
            lines.append("")
    return lines


def render_markdown(journal: Journal) -> str:
    entries = journal.entries
    first = opened(journal)
    closed = journal.last("incident_closed") or journal.last("incident_paused")
    assessed = journal.last("assessment")
    if first:
        heading = f"rollback of {first.target}"
    elif assessed:
        heading = f"assessment: {assessed.data.get('tier')}, no rollback"
    else:
        heading = "no rollback"
    lines = [f"# Incident {journal.incident_id}: {heading}", ""]
    if entries:
        span = (_at(entries[-1]) - _at(entries[0])).total_seconds()
        lines += [f"- Started: {entries[0].at}", f"- Last entry: {entries[-1].at} "
                  f"(elapsed {_duration(span)})"]
    if first:
        lines += [f"- Rollback type: {first.type}", f"- Backup set: {first.backup}"]
        if first.tables:
            lines.append(f"- Tables: {', '.join(first.tables)}")
        if first.allow_in_place:
            lines.append("- Approved at the gate: restore in place (renaming impossible)")
        if first.allow_after_migration:
            lines.append("- Approved at the gate: a set taken after the migration (or at an "
                         "unknown time)")
    if closed:
        lines.append(f"- Outcome: **{closed.data.get('outcome')}**: {closed.data.get('summary')}")
    torn = ("; its last line was torn by a crash mid-write and is left out: the action it "
            "began was never confirmed") if journal.torn else ""
    lines += ["", f"Journal: `{journal.path}` ({len(entries)} entries, keyed hash chain and "
              f"seal verified{torn})", ""]

    lines += _decision_section(journal)

    steps = step_table(journal)
    if steps:
        lines += ["## Steps", "", "| step | status | time | summary |",
                  "| --- | --- | ---: | --- |"]
        for s in steps:
            t = _duration(s["elapsed_s"]) if isinstance(s["elapsed_s"], int | float) else "-"
            summary = str(s["summary"]).replace("|", "\\|")
            lines.append(f"| {s['step']} | {s['status']} | {t} | {summary} |")
        lines.append("")

    lines += _saved_section(journal) + _actions_section(journal) + _validation_section(journal)

    lines += ["## Timeline", ""]
    for e in entries:
        lines.append(f"- `{e.at}` {_line(e)}")
    lines += ["", "## Post-rollback actions", ""]
    for heading, items in POST_ROLLBACK_ACTIONS.items():
        lines += [f"### {heading}", "", *[f"- [ ] {i}" for i in items], ""]
    return "\n".join(lines)
