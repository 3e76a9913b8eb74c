"""The incident journal: append-only JSON lines, fsync'ed, and chained with a keyed hash.

It is the single source of truth: resume, the audit log and the incident report are read from
it, so it must show any change made to it:

- each entry holds the HMAC of the one before, keyed with a secret made for this incident and
  kept outside its folder (``keys/``), so an edited, removed or reordered line shows, and so does
  a chain recomputed without the key;
- a seal beside it (``journal.seal``: the entry count and the last hash, under the same key) is
  rewritten after every append, so a journal cut short shows too;
- readers never write: only ``append`` cuts a torn last line (a crash mid-write), the one
  change that loses nothing, since that entry's action was never confirmed.

Secrets are scrubbed before anything is written.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.errors import ConsoleError
from app.journal_chain import (
    GENESIS,
    SEAL,
    Entry,
    JournalCorrupt,
    cut_torn_tail,
    digest,
    key_path,
    new_key,
    private_dir,
    read_key,
    seal_mac,
    verify,
)
from app.paths import state_dir
from app.secrets import scrub

if TYPE_CHECKING:
    from app.catalog import DatabaseIdentity


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return scrub(str(value))


def incidents_root() -> Path:
    return private_dir(state_dir() / "incidents")


def new_incident_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class Journal:
    """One incident's journal file. Reading it verifies it (``JournalCorrupt`` otherwise) and
    writes nothing; ``append`` returns only after the entry and the seal are on disk. A journal
    whose folder has no file yet is empty: the folder is made by the first ``append``, so a run
    refused before it starts opens no incident."""

    def __init__(self, path: Path):
        self.path = path
        self.torn = False      # a partial last line, left by a crash mid-write, was ignored
        self._key: bytes | None = None
        self.entries: list[Entry] = []
        self._size = 0         # the file's size as last read or written by this object
        if path.exists():
            self._size = path.stat().st_size
            self._key = read_key(self.dir)
            if self._key is None:
                raise JournalCorrupt(
                    f"{path}: its key ({key_path(self.dir)}) is missing, so the journal "
                    "cannot be verified; keep the folder as evidence and start a new incident "
                    f"(`rollback-console abandon {self.incident_id} --reason ...`)")
            self.entries, self.torn = verify(path, self._key)

    def reload(self) -> None:
        """Read the file again (another process may have appended since), verifying it."""
        fresh = Journal(self.path)
        self._key, self.entries, self.torn = fresh._key, fresh.entries, fresh.torn
        self._size = fresh._size

    @classmethod
    def open(cls, incident_dir: Path) -> Journal:
        return cls(incident_dir / "journal.jsonl")

    @property
    def dir(self) -> Path:
        return self.path.parent

    @property
    def incident_id(self) -> str:
        return self.dir.name

    def append(self, kind: str, **data: Any) -> Entry:
        """Add an entry after the last one on disk: another process may have appended since
        this object read the file (an operator's switch after a stop), and the chain goes on
        from there, re-verified, instead of forking."""
        if self.path.exists() and self.path.stat().st_size != self._size:
            self.reload()
        if self._key is None:
            private_dir(self.dir)
            self._key = new_key(self.dir)
        if self.torn:
            cut_torn_tail(self.path)
            self.torn = False
        prev = self.entries[-1].hash if self.entries else GENESIS
        seq = len(self.entries) + 1
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        clean = _clean(data)
        entry = Entry(seq, at, kind, clean, prev, digest(self._key, seq, at, kind, clean, prev))
        line = json.dumps({"seq": seq, "at": at, "kind": kind, "data": clean, "prev": prev,
                           "hash": entry.hash}, sort_keys=True, default=str)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
            self._size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        self.entries.append(entry)
        self._write_seal()
        return entry

    def _write_seal(self) -> None:
        assert self._key is not None
        last = self.entries[-1].hash
        body = json.dumps({"count": len(self.entries), "last": last,
                           "mac": seal_mac(self._key, len(self.entries), last)})
        tmp = self.dir / (SEAL + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, body.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.dir / SEAL)

    def last(self, kind: str) -> Entry | None:
        return next((e for e in reversed(self.entries) if e.kind == kind), None)

    def of_kind(self, kind: str) -> list[Entry]:
        return [e for e in self.entries if e.kind == kind]

    @property
    def closed(self) -> bool:
        """Closed, and not taken up again since (the console goes on after a failed step the
        operator skipped, in the same incident)."""
        for e in reversed(self.entries):
            if e.kind == "incident_closed":
                return True
            if e.kind == "incident_resumed":
                return False
        return False

    def finished_steps(self) -> dict[str, Entry]:
        """Steps whose last ``step_finished`` entry says done or skipped."""
        done: dict[str, Entry] = {}
        for e in self.entries:
            if e.kind == "step_finished" and e.step and e.data.get("status") in ("done",
                                                                                "skipped"):
                done[e.step] = e
        return done

    def recorded(self) -> dict[str, Any]:
        """What the finished steps found or made (paths, names, "maintenance": "on"), as a
        resumed run gets it back."""
        found: dict[str, Any] = {}
        for entry in self.finished_steps().values():
            found.update(entry.data.get("result", {}))
        return found

    def started_not_finished(self) -> str | None:
        """The step a killed console was in the middle of, if any."""
        open_step: str | None = None
        for e in self.entries:
            if e.kind == "step_started":
                open_step = e.step
            elif e.kind == "step_finished" and e.step == open_step:
                open_step = None
        return open_step


def read(path: Path) -> Iterator[Entry]:
    """Entries of ``path``, verified (``JournalCorrupt`` naming the problem otherwise)."""
    yield from Journal(path).entries


ABANDONED = "abandoned.json"


@dataclass(frozen=True)


class Incident:
    """An incident folder as the lookups see it: its journal when it verifies, else the
    problem; what ``incident_opened`` recorded; whether it ended (closed or abandoned)."""

    dir: Path
    journal: Journal | None
    problem: str | None
    opened: dict[str, Any]
    opened_at: str

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def finished(self) -> bool:
        if (self.dir / ABANDONED).exists():
            return True
        return self.journal is not None and self.journal.closed


def _load(journal_path: Path) -> Incident | None:
    """The incident in ``journal_path`` if it was ever opened (a journal holding only an
    assessment is no incident yet). A journal that fails verification is still an incident:
    its first ``incident_opened`` line, unverified, says which database it was on."""
    try:
        journal: Journal | None = Journal(journal_path)
        problem = None
    except JournalCorrupt as exc:
        journal, problem = None, str(exc)
    if journal is not None:
        opened = journal.last("incident_opened")
        return Incident(journal_path.parent, journal, None, opened.data, opened.at) \
            if opened else None
    for line in journal_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(raw, dict) and raw.get("kind") == "incident_opened" \
                and isinstance(raw.get("data"), dict):
            return Incident(journal_path.parent, None, problem, raw["data"], str(raw.get("at")))
    return None


def same_database(opened: dict[str, Any], database: DatabaseIdentity) -> bool:
    """Whether an incident was opened on ``database`` (a ``catalog.DatabaseIdentity``): the same
    cluster (system identifier) and name, and the same database OID, except after a complete
    restore, whose switch puts a new database (a new OID) under the name."""
    recorded = opened.get("database")
    if not isinstance(recorded, dict):
        return False
    if (recorded.get("system_identifier"), recorded.get("name")) != \
            (database.system_identifier, database.name):
        return False
    return recorded.get("oid") == database.oid or opened.get("type") == "full"


def incidents_on(database: DatabaseIdentity) -> Iterator[Incident]:
    """The incidents opened on ``database`` (its identity, not the config's label), newest
    first."""
    for journal_path in sorted(incidents_root().glob("*/journal.jsonl"), reverse=True):
        incident = _load(journal_path)
        if incident is not None and same_database(incident.opened, database):
            yield incident


def newest_incident(database: DatabaseIdentity) -> Journal | None:
    """The newest incident on ``database`` whose journal verifies, finished or not."""
    return next((i.journal for i in incidents_on(database) if i.journal is not None), None)


def find_unfinished(database: DatabaseIdentity) -> Incident | None:
    """The newest incident on ``database`` that was opened and neither closed nor abandoned
    (a journal that fails verification counts: nobody can tell it ended)."""
    return next((i for i in incidents_on(database) if not i.finished), None)


def abandon(incident: Incident, reason: str, by: str) -> None:
    """Set an unfinished incident aside, with the operator's reason: journaled as its close
    when the journal verifies; otherwise in a file beside the journal, which is left as it is
    (evidence)."""
    if not reason.strip():
        raise ConsoleError("abandoning an incident needs a reason (--reason): it goes into the "
                           "journal")
    if incident.journal is not None:
        incident.journal.append("incident_closed", outcome="abandoned", exit_code=0,
                                reason=reason.strip(), by=by,
                                summary=f"abandoned by {by}: {reason.strip()}")
        return
    body = json.dumps({"at": datetime.now(UTC).isoformat(timespec="seconds"), "by": by,
                       "reason": scrub(reason.strip()), "problem": incident.problem})
    fd = os.open(incident.dir / ABANDONED, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, body.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager


def journaled(journal: Journal, action: str, tags: dict[str, Any] | None = None,
              **details: Any) -> Iterator[None]:
    """Journal an action before it runs and after it ends, whatever the end; ``tags`` (the
    step, say) go into both entries."""
    tags = tags or {}
    journal.append("action_started", **tags, action=action, **details)
    started = time.monotonic()
    try:
        yield
    except BaseException as exc:
        journal.append("action_finished", **tags, action=action, ok=False,
                       error=f"{type(exc).__name__}: {exc}",
                       elapsed_s=round(time.monotonic() - started, 3))
        raise
    journal.append("action_finished", **tags, action=action, ok=True,
                   elapsed_s=round(time.monotonic() - started, 3))
