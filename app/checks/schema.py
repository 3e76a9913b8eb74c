"""The schema check: the live schema against the backup's, by the same catalog diff Type 1
plans from, so the check can never pass while a schema rollback would change something.

The manifest's comparison (tables, columns, grants, indexes: ``database.schema``) still says
what was lost (a dropped table or column is data loss); the catalog diff adds every other
object kind it knows (policies, views, triggers, enums, defaults, sequences, publications...)
and names each change. When the backup's schema model cannot be read here (a read-only session
cannot restore a schema dump into a scratch database), the check says the comparison was
incomplete instead of passing.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from app.checks.context import CheckContext
from app.checks.database import LOCKED
from app.checks.database import schema as manifest_schema
from app.checks.model import Finding, Kind, Status, worst
from app.checks.runner import Outcome, blocked_outcome
from app.errors import ConsoleError

# Diff kinds that mean a constraint changed (data intact); every other kind is schema drift.
CONSTRAINT_KINDS = ("validate foreign key", "set not null", "drop not null")
# Kinds the manifest comparison already reports as data loss (a table or column to re-create).
LOSS_KINDS = ("create table", "add column")


async def schema(ctx: CheckContext) -> Outcome:
    manifest = await manifest_schema(ctx)   # raises Skip without a backup set
    try:
        changes, unsupported = await _catalog_diff(ctx)
    except LOCKED:
        msg, holders = await blocked_outcome(ctx, "the catalog of the schema")
        return Outcome(worst([manifest.status, Status.ERROR]), manifest.summary + "; " + msg,
                       {**manifest.evidence, "catalog_compared": False,
                        "lock_holders": holders},
                       [*manifest.findings, Finding(Kind.CONTENTION, msg)])
    except (ConsoleError, asyncpg.PostgresError, OSError) as exc:
        finding = Finding(Kind.INCOMPLETE, "schema compared by tables, columns, grants and "
                          "indexes only: the backup's full schema could not be read here "
                          f"({exc}); `rollback-console diff` in live mode compares everything")
        return Outcome(worst([manifest.status, Status.WARN]), manifest.summary + "; "
                       + finding.summary, {**manifest.evidence, "catalog_compared": False,
                                           "catalog_error": str(exc)},
                       [*manifest.findings, finding])
    loss = [f for f in manifest.findings if f.kind is Kind.DATA_LOSS]
    findings = list(loss)
    for kind, text, sql in changes:
        if kind in LOSS_KINDS and loss:
            continue   # said above, as the data it lost
        findings.append(Finding(Kind.CONSTRAINT_DRIFT if kind in CONSTRAINT_KINDS
                                else Kind.SCHEMA_DRIFT, f"Type 1 would {text}",
                                evidence={"change": kind, "sql": sql}))  # a forward fix
    findings += [Finding(Kind.SCHEMA_DRIFT, f"changed in a way Type 1 cannot undo: {u}",
                         evidence={"change": "unsupported"}) for u in unsupported]
    evidence: dict[str, Any] = {**manifest.evidence, "catalog_compared": True,
                                "changes": [text for _kind, text, _sql in changes],
                                "unsupported": unsupported}
    if not findings:
        return Outcome(Status.PASS, f"schema matches backup {manifest.evidence.get('backup')} "
                       "(every object kind Type 1 compares)", evidence, [])
    status = Status.FAIL if loss else Status.WARN
    shown = [f.summary for f in findings]
    summary = (f"{len(changes) + len(unsupported)} schema change(s) since the backup: "
               + "; ".join(shown[:4]) + (f" (+{len(shown) - 4} more)" if len(shown) > 4 else ""))
    return Outcome(status, summary, evidence, findings)


async def _catalog_diff(ctx: CheckContext) -> tuple[list[tuple[str, str, list[str]]],
                                                    list[str]]:
    """(kind, words, SQL) of each change Type 1 would make, and what it cannot undo."""
    from app.backups.backupset import open_set
    from app.schemadiff import backup_schema, compare, read

    base = ctx.need_baseline()
    exclude = ctx.config.target.platform_schemas
    want = await backup_schema(ctx.config, open_set(base.directory), exclude)
    async with ctx.pool.acquire() as conn:
        current = await read(conn, exclude)
    diff = compare(current, want)
    return ([(c.kind, f"{c.kind} {c.object}" + (f" ({c.note})" if c.note else ""),
              list(c.sql)) for c in diff.changes], list(diff.unsupported))
