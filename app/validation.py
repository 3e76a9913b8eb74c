"""The runbook's post-rollback validation checklist, each item backed by real checks.

Stricter than the assessment: the data item passes only when every table's row count equals the
backup's; an item passes only when all of its checks pass (a skipped check is not a pass).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from app.checks import CHECKS_BY_NAME
from app.checks.assessment import collect, open_context
from app.checks.model import CheckResult, Status, worst
from app.config import Config
from app.errors import BadInput


@dataclass(frozen=True)
class Item:
    name: str
    runbook: str
    checks: tuple[str, ...]


CHECKLIST: tuple[Item, ...] = (
    Item("Data Integrity", "All table row counts match pre-migration backup",
         ("schema", "data_integrity")),
    Item("Authentication", "User login functionality working", ("auth",)),
    Item("Foreign Keys", "All relationships intact", ("foreign_keys",)),
    Item("RLS Policies", "Access control functioning correctly", ("rls",)),
    Item("Application", "Critical features operational", ("app_endpoints",)),
    Item("Performance", "Response times within normal range", ("critical_queries",)),
    Item("Error Rates", "Application errors back to baseline", ("error_rate",)),
)


# The items that only the app can answer: without an [app] section they are not configured,
# which is neither a pass nor a failure of the database.
APP_ITEMS = ("Application", "Error Rates")
NOT_CONFIGURED = ("not configured: no [app] section in the config (add app.base_url to "
                  "check the app's endpoints and error rate)")


@dataclass
class ItemResult:
    name: str
    runbook: str
    status: Status
    summary: str
    evidence: dict[str, Any]
    not_configured: bool = False   # an app item without [app]: not run, and no failure

    @property
    def ok(self) -> bool:
        """Passes, or is not configured (which the summary says)."""
        return self.status.passed or self.not_configured

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.name, "runbook": self.runbook, "status": str(self.status),
                "summary": self.summary, "evidence": self.evidence,
                "not_configured": self.not_configured}


@dataclass
class Checklist:
    target: str
    backup: str
    items: list[ItemResult]

    @property
    def passed(self) -> bool:
        """Every item passes; an app item without [app] is not configured, not a failure."""
        return all(i.ok for i in self.items)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "target": self.target, "backup": self.backup,
                "items": [i.to_dict() for i in self.items]}

    def journal_fields(self) -> dict[str, Any]:
        """What a "validation" journal entry holds (the report and a drill's score read it)."""
        return {"passed": self.passed, "backup": self.backup,
                "items": [{"item": i.name, "status": str(i.status), "summary": i.summary,
                           "not_configured": i.not_configured} for i in self.items]}


@dataclass(frozen=True)
class Repaired:
    """A table the newest incident repaired (Type 4): checked row by row against its plan,
    not against the backup (the rows users wrote after the migration are kept)."""

    checked: int
    as_planned: int
    sample: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.checked == self.as_planned


def _data_item(item: Item, results: dict[str, CheckResult],
               repaired: dict[str, Repaired] | None = None) -> ItemResult:
    data, schema = results["data_integrity"], results["schema"]
    repaired = repaired or {}
    tables = data.evidence.get("tables", {})
    differ = {t: f"{i['rows']} rows, backup {i['baseline_rows']}" for t, i in tables.items()
              if i["delta"] and t not in repaired}
    content = [t for t, i in tables.items() if not i["delta"] and i["checksum_match"] is False
               and t not in repaired]
    off_plan = {t: r for t, r in repaired.items() if not r.ok}
    statuses: list[Status] = [schema.status if schema.status is not Status.WARN else Status.PASS,
                data.status if data.status is not Status.WARN else Status.PASS]
    if schema.evidence.get("tables_missing"):
        statuses.append(Status.FAIL)
    if differ or off_plan:
        statuses.append(Status.FAIL)
    if content:
        statuses.append(Status.WARN)
    if data.status is Status.FAIL and repaired and not differ and not content and not off_plan:
        statuses = [s for s in statuses if s is not Status.FAIL] or [Status.PASS]
    status = worst(statuses)
    done = "; ".join(f"{t} repaired: {r.as_planned:,} rows as the repair planned (users' "
                     "later writes kept, not compared with the backup)"
                     for t, r in repaired.items() if r.ok)
    if off_plan:
        summary = "; ".join(f"{t}: {r.checked - r.as_planned:,} of {r.checked:,} rows are not "
                            f"as the repair planned (e.g. {', '.join(r.sample)})"
                            for t, r in off_plan.items())
    elif status is Status.PASS:
        summary = (f"{len(tables) - len(repaired)} tables match the backup; {done}" if done
                   else f"{len(tables)} tables: row counts and content match the backup")
    elif differ:
        summary = "row counts differ: " + "; ".join(f"{t} {d}" for t, d in differ.items())
    elif content:
        summary = "counts match, content differs (writes since the backup?): " + \
            ", ".join(content)
    else:
        summary = data.summary if data.status is not Status.PASS else schema.summary
    return ItemResult(item.name, item.runbook, status, summary,
                      {"tables": tables, "tables_missing": schema.evidence.get("tables_missing")})


def item_result(item: Item, by_name: dict[str, CheckResult],
                repaired: dict[str, Repaired] | None = None) -> ItemResult:
    """One checklist item from its checks' results (all of them must be in ``by_name``)."""
    if item.name == "Data Integrity":
        return _data_item(item, by_name, repaired)
    parts = [by_name[c] for c in item.checks]
    return ItemResult(item.name, item.runbook, worst([p.status for p in parts]),
                      "; ".join(p.summary for p in parts), {p.check: p.evidence for p in parts})


def checklist(results: list[CheckResult], app_configured: bool = True,
              repaired: dict[str, Repaired] | None = None) -> list[ItemResult]:
    by_name = {r.check: r for r in results}
    items = [item_result(item, by_name, repaired) for item in CHECKLIST]
    if app_configured:
        return items
    return [ItemResult(i.name, i.runbook, Status.SKIP, NOT_CONFIGURED, i.evidence, True)
            if i.name in APP_ITEMS and i.status is Status.SKIP else i for i in items]


async def run_validation(config: Config, backup_id: str | None = None, *,
                         on_result: Callable[[CheckResult], None] | None = None,
                         transport: httpx.AsyncBaseTransport | None = None) -> Checklist:
    """Run the checklist against the backup ``backup_id`` (default: the newest set)."""
    names = sorted({c for item in CHECKLIST for c in item.checks})
    specs = [CHECKS_BY_NAME[n] for n in names]
    async with open_context(config, backup_id, size=len(specs) + 1, transport=transport) as ctx:
        if ctx.baseline is None:
            raise BadInput(f"validate compares with a backup, and there is no backup set with a "
                           f"manifest.json under {config.target.backups_root}: pass --backup ID "
                           "or take one with `rollback-console backup`")
        results = await collect(ctx, specs, on_result)
        return Checklist(config.target.name, ctx.baseline.set_id,
                         checklist(results, config.app is not None,
                                   await repaired_tables(config)))


async def repaired_tables(config: Config) -> dict[str, Repaired]:
    """The tables the newest incident on the target's database repaired (a finished Type 4),
    each checked row by row against the repair's plan (read-only)."""
    from pathlib import Path

    from app.catalog import identity
    from app.db import connect
    from app.journal import newest_incident
    from app.journal_entries import opened
    from app.rollback.repair import check_rows

    conn = await connect(config.target)
    try:
        journal = newest_incident(await identity(conn))
        first = opened(journal) if journal is not None else None
        if journal is None or first is None or first.type != "repair":
            return {}
        files = journal.recorded().get("plan_files") or {}
        found = {}
        for table, path in files.items():
            checked, ok, bad = await check_rows(conn, table, Path(path))
            found[table] = Repaired(checked, ok, tuple(bad))
        return found
    finally:
        await conn.close()
