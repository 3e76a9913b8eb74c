"""The incident journal: append-only JSON lines, fsync'ed, hash-chained.

It is the single source of truth: resume, the audit log and the incident report are read from
it. Each entry holds the hash of the one before, so an edited or deleted line shows. Secrets are
scrubbed before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.errors import ConsoleError
from app.paths import state_dir
from app.secrets import scrub

GENESIS = "0" * 64


class JournalCorrupt(ConsoleError):
    """The journal's hash chain is broken: someone edited, removed or reordered entries."""


@dataclass(frozen=True)
class Entry:
    seq: int
    at: str
    kind: str
    data: dict[str, Any]
    prev: str
    hash: str

    @property
    def step(self) -> str | None:
        value = self.data.get("step")
        return str(value) if value is not None else None


def _digest(seq: int, at: str, kind: str, data: dict[str, Any], prev: str) -> str:
    body = json.dumps({"seq": seq, "at": at, "kind": kind, "data": data, "prev": prev},
                      sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


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
    root = state_dir() / "incidents"
    root.mkdir(parents=True, exist_ok=True)
    return root


def new_incident_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class Journal:
    """One incident's journal file. ``append`` returns only after the entry is on disk."""

    def __init__(self, path: Path):
        self.path = path
        if path.exists():
            _drop_torn_tail(path)
        self.entries: list[Entry] = list(read(path)) if path.exists() else []

    @classmethod
    def open(cls, incident_dir: Path) -> Journal:
        incident_dir.mkdir(parents=True, exist_ok=True)
        return cls(incident_dir / "journal.jsonl")

    @property
    def dir(self) -> Path:
        return self.path.parent

    @property
    def incident_id(self) -> str:
        return self.dir.name

    def append(self, kind: str, **data: Any) -> Entry:
        prev = self.entries[-1].hash if self.entries else GENESIS
        seq = len(self.entries) + 1
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        clean = _clean(data)
        entry = Entry(seq, at, kind, clean, prev, _digest(seq, at, kind, clean, prev))
        line = json.dumps({"seq": seq, "at": at, "kind": kind, "data": clean, "prev": prev,
                           "hash": entry.hash}, sort_keys=True, default=str)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self.entries.append(entry)
        return entry

    def last(self, kind: str) -> Entry | None:
        return next((e for e in reversed(self.entries) if e.kind == kind), None)

    def of_kind(self, kind: str) -> list[Entry]:
        return [e for e in self.entries if e.kind == kind]

    @property
    def closed(self) -> bool:
        return any(e.kind == "incident_closed" for e in self.entries)

    def finished_steps(self) -> dict[str, Entry]:
        """Steps whose last ``step_finished`` entry says done or skipped."""
        done: dict[str, Entry] = {}
        for e in self.entries:
            if e.kind == "step_finished" and e.step and e.data.get("status") in ("done",
                                                                                "skipped"):
                done[e.step] = e
        return done

    def started_not_finished(self) -> str | None:
        """The step a killed console was in the middle of, if any."""
        open_step: str | None = None
        for e in self.entries:
            if e.kind == "step_started":
                open_step = e.step
            elif e.kind == "step_finished" and e.step == open_step:
                open_step = None
        return open_step


def _drop_torn_tail(path: Path) -> None:
    """A console killed mid-write leaves a partial last line: cut it so appends stay valid.
    That entry's action was never confirmed, and resume treats it so."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())


def read(path: Path) -> Iterator[Entry]:
    """Entries of ``path``, checking the chain. A torn last line (a crash mid-write) is ignored;
    anything else out of place raises ``JournalCorrupt`` naming the line."""
    prev = GENESIS
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                return  # torn final write: the action it described never got confirmed
            raise JournalCorrupt(
                f"{path}:{number}: not a JSON line; the journal was edited") from None
        seq, at, kind, data = raw.get("seq"), raw.get("at"), raw.get("kind"), raw.get("data")
        if raw.get("prev") != prev or seq != number or \
                _digest(seq, at, kind, data, prev) != raw.get("hash"):
            raise JournalCorrupt(
                f"{path}:{number}: the hash chain is broken (entry edited, removed or "
                "reordered); keep this file as evidence and start a new incident")
        entry = Entry(seq, at, kind, data, prev, raw["hash"])
        prev = entry.hash
        yield entry


def _incidents_of(target_name: str) -> Iterator[Journal]:
    """The incidents opened on ``target_name``, newest first."""
    for journal_path in sorted(incidents_root().glob("*/journal.jsonl"), reverse=True):
        journal = Journal(journal_path)
        opened = journal.last("incident_opened")
        if opened and opened.data.get("target") == target_name:
            yield journal


def newest_incident(target_name: str) -> Journal | None:
    """The newest incident on ``target_name``, finished or not."""
    return next(_incidents_of(target_name), None)


def find_unfinished(target_name: str) -> Journal | None:
    """The newest incident on ``target_name`` that was opened and never closed."""
    return next((j for j in _incidents_of(target_name) if not j.closed), None)


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
