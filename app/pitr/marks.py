"""Marks: named restore points (``pg_create_restore_point``), the runbook's "backup before the
migration" step costing milliseconds instead of a dump. Each mark is journaled (its own
HMAC-chained journal under the state directory, beside the incidents, never inside them) with
the database it was made on, so ``--at <label>`` finds its LSN and time again."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from app.catalog import DatabaseIdentity, identity
from app.config import Config
from app.db import connect
from app.errors import BadInput
from app.journal import Journal
from app.paths import state_dir

LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,49}$")


@dataclass(frozen=True)
class Mark:
    label: str
    lsn: str
    at: datetime
    database: str            # name
    system_identifier: str
    archived: bool           # the segment holding it was switched out for archiving
    point: str = ""          # the restore point's own name: the label and a unique suffix

    @property
    def restore_point(self) -> str:
        """What recovery_target_name stops at. Restore points are the cluster's, and
        recovery stops at the FIRST of a name: the console's are unique (label.xxxxxx)."""
        return self.point or self.label


def marks_journal() -> Journal:
    return Journal(state_dir() / "marks" / "journal.jsonl")


def marks_on(ident: DatabaseIdentity, journal: Journal | None = None) -> list[Mark]:
    """The marks made on this database, oldest first."""
    journal = journal or marks_journal()
    found = []
    for entry in journal.of_kind("mark"):
        d = entry.data
        if d.get("system_identifier") != ident.system_identifier or \
                d.get("database") != ident.name:
            continue
        found.append(Mark(str(d["label"]), str(d["lsn"]), datetime.fromisoformat(str(d["at"])),
                          ident.name, ident.system_identifier, bool(d.get("archived")),
                          str(d.get("point") or "")))
    return found


async def create_mark(cfg: Config, label: str | None, by: str) -> Mark:
    """A restore point on the target, then a WAL switch so the archive holds it now rather than
    when the segment fills. Refused (nothing created) for a bad or reused label, or a role
    that may not create restore points."""
    now = datetime.now(UTC)
    label = label or f"mark-{now:%Y%m%dT%H%M%SZ}"
    if not LABEL_RE.match(label):
        raise BadInput(f"--label {label!r}: use 1-50 letters, digits and . _ : - (starting "
                       "with a letter or digit)")
    point = f"{label}.{secrets.token_hex(3)}"
    conn = await connect(cfg.target)
    try:
        ident = await identity(conn)
        journal = marks_journal()
        if any(m.label == label for m in marks_on(ident, journal)):
            raise BadInput(f"a mark named {label!r} exists on {ident.name} already: recovery "
                           "would stop at the first one; choose another --label")
        try:
            row = await conn.fetchrow(
                "SELECT pg_create_restore_point($1)::text AS lsn, clock_timestamp() AS at, "
                "current_setting('archive_mode') AS archive_mode", point)
        except asyncpg.InsufficientPrivilegeError:
            raise BadInput(
                f"the role in the target's DSN may not create restore points "
                f"(pg_create_restore_point is the superuser's unless granted: GRANT EXECUTE ON "
                f"FUNCTION pg_create_restore_point(text) TO <role>); nothing was marked. "
                f"A rollback can still use --at {now:%Y-%m-%dT%H:%M:%SZ}") from None
        except asyncpg.ObjectNotInPrerequisiteStateError as exc:
            raise BadInput(f"the server cannot create a restore point: {exc} (wal_level must "
                           "be replica or logical)") from None
        assert row is not None
        archived = False
        if row["archive_mode"] != "off":
            try:
                await conn.execute("SELECT pg_switch_wal()")
                archived = True
            except asyncpg.PostgresError:
                archived = False   # said below: archived when its segment fills
        mark = Mark(label, row["lsn"], row["at"].astimezone(UTC), ident.name,
                    ident.system_identifier, archived, point)
    finally:
        await conn.close()
    journal.append("mark", label=mark.label, point=point, lsn=mark.lsn, at=mark.at.isoformat(),
                   database=mark.database, system_identifier=mark.system_identifier,
                   archived=archived, archive_mode=row["archive_mode"], by=by,
                   target=cfg.target.name)
    return mark


def marks_path() -> Path:
    return marks_journal().path
