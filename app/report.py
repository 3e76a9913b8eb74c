"""The incident report: a Markdown post-mortem draft written from the journal alone (the journal
is the single source of truth), so it can be produced after a crash, on another machine."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.journal import Entry, Journal

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


def _line(entry: Entry) -> str:
    d = entry.data
    kind = entry.kind
    if kind == "incident_opened":
        return (f"incident opened: {d.get('type')} rollback of {d.get('target')} from backup "
                f"{d.get('backup')}" + (f", tables {', '.join(d['tables'])}"
                                        if d.get("tables") else ""))
    if kind == "assessment":
        return f"assessment: **{d.get('tier')}**: {d.get('action')}"
    if kind == "decision":
        against = f", against the verdict {d['against']}" if d.get("against") else ""
        return f"decision: {d.get('choice')}{against} (reason: {d.get('reason')})"
    if kind == "fix_suggested":
        return (f"suggested fix saved to `{d.get('file')}` ({len(d.get('statements') or [])} "
                "statement(s); the console ran none)")
    if kind == "gate":
        return "confirmation gate passed" if d.get("ok") else \
            f"confirmation gate REFUSED (expected {d.get('expected')!r})"
    if kind == "step_started":
        return f"step started: {d.get('step')}" + (" (destructive)" if d.get("destructive")
                                                    else "")
    if kind == "step_finished":
        text = f"step {d.get('status')}: {d.get('step')}"
        if d.get("summary"):
            text += f": {d['summary']}"
        if d.get("error"):
            text += f": {d['error']}"
        if d.get("reason"):
            text += f" (reason: {d['reason']})"
        return text
    if kind == "action_started":
        return f"action started: {d.get('action')}"
    if kind == "action_finished":
        ok = "done" if d.get("ok") else f"FAILED ({d.get('error')})"
        return f"action {ok}: {d.get('action')} in {d.get('elapsed_s')}s"
    if kind == "notified":
        sent = sum(1 for r in d.get("results", []) if r.get("ok"))
        return f"notification {d.get('event')}: {sent}/{len(d.get('results', []))} delivered"
    if kind in ("incident_closed", "incident_paused"):
        return f"{kind.replace('_', ' ')}: {d.get('outcome')}: {d.get('summary')}"
    if kind == "validation":
        failing = [i["item"] for i in d.get("items", []) if i.get("status") != "pass"]
        return ("validation: every item passes" if d.get("passed") else
                f"validation: NOT passing: {', '.join(failing)}")
    if kind == "incident_resumed":
        return "resumed from the journal" + (f" (was in {d['resumed_from']})"
                                             if d.get("resumed_from") else "")
    return f"{kind.replace('_', ' ')}: {_words(d)}"


def step_table(journal: Journal) -> list[dict[str, Any]]:
    """Each step's final status, time taken and summary, in journal order."""
    steps: dict[str, dict[str, Any]] = {}
    for e in journal.entries:
        if e.kind == "step_finished" and e.step:
            steps[e.step] = {"step": e.step, "status": e.data.get("status"),
                             "elapsed_s": e.data.get("elapsed_s"),
                             "summary": e.data.get("summary") or e.data.get("error")
                             or e.data.get("reason") or ""}
    return list(steps.values())


def render_markdown(journal: Journal) -> str:
    entries = journal.entries
    opened = journal.last("incident_opened")
    closed = journal.last("incident_closed") or journal.last("incident_paused")
    assessed = journal.last("assessment")
    if opened:
        heading = f"rollback of {opened.data.get('target')}"
    elif assessed:
        heading = f"assessment: {assessed.data.get('tier')}, no rollback"
    else:
        heading = "no rollback"
    lines = [f"# Incident {journal.incident_id}: {heading}", ""]
    if entries:
        span = (_at(entries[-1]) - _at(entries[0])).total_seconds()
        lines += [f"- Started: {entries[0].at}", f"- Last entry: {entries[-1].at} "
                  f"(elapsed {_duration(span)})"]
    if opened:
        d = opened.data
        lines += [f"- Rollback type: {d.get('type')}", f"- Backup set: {d.get('backup')}"]
        if d.get("tables"):
            lines.append(f"- Tables: {', '.join(d['tables'])}")
    if closed:
        lines.append(f"- Outcome: **{closed.data.get('outcome')}**: {closed.data.get('summary')}")
    torn = ("; its last line was torn by a crash mid-write and is left out: the action it "
            "began was never confirmed") if journal.torn else ""
    lines += ["", f"Journal: `{journal.path}` ({len(entries)} entries, keyed hash chain and "
              f"seal verified{torn})", ""]

    assessment, decision = journal.last("assessment"), journal.last("decision")
    if assessment or decision:
        lines += ["## Decision and evidence", ""]
        if assessment:
            lines.append(f"Assessment: **{assessment.data.get('tier')}**: "
                         f"{assessment.data.get('action')}")
            for f in assessment.data.get("findings", []):
                lines.append(f"- [{f.get('tier')}] {f.get('check')}: {f.get('summary')}")
        if decision:
            against = (f" (against the verdict {decision.data['against']})"
                       if decision.data.get("against") else "")
            lines += ["", f"Operator's decision: {decision.data.get('choice')}{against}; "
                      f"reason: {decision.data.get('reason')}"]
        fix = (assessment.data.get("fix") if assessment else None) or []
        if fix:
            lines += ["", "Suggested fix (nothing was run by the console):", "", "```sql",
                      *fix, "```"]
        lines.append("")

    steps = step_table(journal)
    if steps:
        lines += ["## Steps", "", "| step | status | time | summary |",
                  "| --- | --- | ---: | --- |"]
        for s in steps:
            t = _duration(s["elapsed_s"]) if isinstance(s["elapsed_s"], int | float) else "-"
            summary = str(s["summary"]).replace("|", "\\|")
            lines.append(f"| {s['step']} | {s['status']} | {t} | {summary} |")
        lines.append("")

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

    actions = journal.of_kind("action_started")
    if actions:
        lines += ["## Destructive actions and statements", ""]
        for e in actions:
            details = {k: v for k, v in e.data.items() if k not in ("step", "action")}
            lines.append(f"- {e.at} {e.data.get('action')} ({e.data.get('step')}): "
                         f"{_words(details)}")
        lines.append("")

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

    lines += ["## Timeline", ""]
    for e in entries:
        lines.append(f"- `{e.at}` {_line(e)}")
    lines += ["", "## Post-rollback actions", ""]
    for heading, items in POST_ROLLBACK_ACTIONS.items():
        lines += [f"### {heading}", "", *[f"- [ ] {i}" for i in items], ""]
    return "\n".join(lines)
