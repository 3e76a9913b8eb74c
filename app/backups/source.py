"""What a rollback restores *from*: the restore-source interface.

Today one implementation, a backup set folder (``app.backups.backupset.BackupSet``, made by the
console or by hand, the runbook's layout); next a point in time from a WAL archive. The gate,
the plan, the journal and resume ask this interface: who the source is and how old, what
tables and rows it holds, how to stream a table's rows, how to produce a whole database, how to
verify itself, and how it is journaled and read back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from app.errors import BadInput


@runtime_checkable
class RestoreSource(Protocol):
    """A source a rollback restores from."""

    @property
    def id(self) -> str:
        """What the operator names it by (``--backup``), the journal and the report show."""
        ...

    @property
    def taken_at(self) -> datetime | None:
        """The moment it holds (None: unknown, ``taken_note`` says why)."""
        ...

    @property
    def taken_note(self) -> str:
        """Where ``taken_at`` comes from when it is a guess, or why it is unknown."""
        ...

    @property
    def kind(self) -> str:
        """Its kind as journaled: ``backup_set`` (a WAL archive's point in time next)."""
        ...

    def tables(self) -> dict[str, int | None]:
        """The tables it holds (``schema.name``) and their rows as recorded (None: unknown)."""
        ...

    def table_rows(self, table: str) -> AsyncIterator[bytes]:
        """``table``'s rows as COPY text, streamed in chunks (``BadInput`` when it has none)."""
        ...

    def database_dump(self) -> Path | None:
        """A whole database for pg_restore or psql (None: it cannot produce one)."""
        ...

    async def verify(self) -> list[str]:
        """What is wrong with it, read-only (empty: nothing found)."""
        ...

    def journal_record(self) -> dict[str, Any]:
        """How an incident records it (``incident_opened.source``); ``open_source`` reads it
        back."""
        ...


def open_source(record: dict[str, Any], backups_root: Path) -> RestoreSource:
    """The source an incident recorded (``journal_record``): the same one again for a resume.
    A journal older than the record names only the set's id (``{"id": ...}``)."""
    from app.backups.backupset import resolve

    kind = record.get("kind", "backup_set")
    if kind != "backup_set":
        raise BadInput(f"the incident restores from a {kind!r}, which this console cannot "
                       "open; resume it with the version that started it")
    return resolve(backups_root, str(record["id"]))
