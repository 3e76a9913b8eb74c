"""The journal's keyed hash chain and its seal: how an entry's hash is made, where an
incident's key lives, and how a journal file is verified line by line and as a whole (see
``app.journal`` for why). Unchanged from when it lived in ``app.journal``; only moved."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import ConsoleError

GENESIS = "0" * 64
SEAL = "journal.seal"


class JournalCorrupt(ConsoleError):
    """The journal fails verification: edited, cut, reordered, or its key or seal is gone."""

    exit_code = 5


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


def digest(key: bytes, seq: int, at: str, kind: str, data: dict[str, Any], prev: str) -> str:
    body = json.dumps({"seq": seq, "at": at, "kind": kind, "data": data, "prev": prev},
                      sort_keys=True, separators=(",", ":"), default=str)
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def seal_mac(key: bytes, count: int, last: str) -> str:
    return hmac.new(key, f"seal:{count}:{last}".encode(), hashlib.sha256).hexdigest()


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def key_path(incident_dir: Path) -> Path:
    """Where an incident's key lives: beside the incidents, not in the incident's folder (what
    is copied or sent as evidence), named after the folder's place (a journal copied or moved
    elsewhere is not trusted)."""
    where = hashlib.sha256(str(incident_dir.resolve()).encode()).hexdigest()[:16]
    return incident_dir.parent / ".keys" / f"{incident_dir.name}-{where}.key"


def read_key(incident_dir: Path) -> bytes | None:
    try:
        return bytes.fromhex(key_path(incident_dir).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def new_key(incident_dir: Path) -> bytes:
    key = secrets.token_bytes(32)
    path = key_path(incident_dir)
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key.hex().encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def cut_torn_tail(path: Path) -> None:
    """Cut a partial last line so appends stay valid (writers only)."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())


def verify(path: Path, key: bytes) -> tuple[list[Entry], bool]:
    """The entries of ``path``, checked line by line against the chain and as a whole against
    the seal; and whether a torn last line was ignored."""
    raw_text = path.read_bytes().decode("utf-8", errors="replace")
    lines = raw_text.split("\n")
    torn = lines[-1] != ""
    if torn:
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:
            pass
        else:  # a whole entry without its newline: a crash between the two writes
            torn = False
            lines.append("")
    complete = lines[:-1]
    entries: list[Entry] = []
    prev = GENESIS
    for number, line in enumerate(complete, start=1):
        try:
            raw = json.loads(line)
            seq, at, kind, data = raw["seq"], raw["at"], raw["kind"], raw["data"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise JournalCorrupt(f"{path}:{number}: not a journal entry; the journal was "
                                 "edited. " + KEEP) from None
        if raw.get("prev") != prev or seq != number or \
                not hmac.compare_digest(digest(key, seq, at, kind, data, prev),
                                        str(raw.get("hash"))):
            raise JournalCorrupt(f"{path}:{number}: the hash chain is broken (entry edited, "
                                 "removed or reordered). " + KEEP)
        entry = Entry(seq, at, kind, data, prev, raw["hash"])
        prev = entry.hash
        entries.append(entry)
    check_seal(path, key, entries)
    return entries, torn


KEEP = ("Keep the folder as evidence, check the database by hand, and set the incident aside "
         "with `rollback-console abandon INCIDENT --reason ...`")


def check_seal(path: Path, key: bytes, entries: list[Entry]) -> None:
    """The seal says how many entries were confirmed: fewer in the file means it was cut. One
    more is a crash between writing an entry and resealing."""
    seal_path = path.parent / SEAL
    try:
        seal = json.loads(seal_path.read_text(encoding="utf-8"))
        count, last, mac = int(seal["count"]), str(seal["last"]), str(seal["mac"])
    except FileNotFoundError:
        if not entries:
            return
        raise JournalCorrupt(f"{path}: its seal ({SEAL}) is missing, so a cut cannot be ruled "
                             "out. " + KEEP) from None
    except (OSError, ValueError, KeyError, TypeError):
        raise JournalCorrupt(f"{seal_path}: the seal is unreadable. " + KEEP) from None
    if not hmac.compare_digest(seal_mac(key, count, last), mac):
        raise JournalCorrupt(f"{seal_path}: the seal does not verify (edited). " + KEEP)
    if count > len(entries):
        raise JournalCorrupt(f"{path}: the journal was cut: its seal records {count} entries, "
                             f"the file holds {len(entries)}. " + KEEP)
    if count < len(entries) - 1 or entries[count - 1].hash != last:
        raise JournalCorrupt(f"{path}: entries after the seal's {count} were added outside "
                             "the console. " + KEEP)
