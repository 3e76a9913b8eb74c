"""Point-in-time recovery: what an engine's WAL archive can restore (its window), the moment
an operator asks for (a target), and the interface every engine implements.

An engine (``native``: PostgreSQL's own base backups + archive_command folder; ``pgbackrest``)
answers two questions: what can be restored (``window``) and how to lay a data folder down
that recovers to a target (``prepare``). Starting that folder as a scratch cluster on
127.0.0.1, following its replay and tearing it down is the engine-independent part
(``app.pitr.aside``); turning the recovered cluster into a restore source is
``app.pitr.source``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from app.errors import BadInput

LSN_RE = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")


def lsn_int(lsn: str) -> int:
    """``16/B374D848`` as a number (bytes of WAL since the cluster began)."""
    hi, lo = lsn.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def when(moment: datetime) -> str:
    """A moment as the console shows it: ``2026-12-02 04:31:07 UTC``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@dataclass(frozen=True)
class BaseBackup:
    """One base backup an engine holds. ``problem`` non-empty: it cannot be restored from
    (corrupt, incomplete, missing its WAL), with why, found before anything starts."""

    id: str                       # the folder name (native) or pgBackRest's label
    start_lsn: str
    stop_lsn: str
    start_time: datetime
    stop_time: datetime           # the earliest moment it can be recovered to
    timeline: int
    size: int | None = None       # bytes, when known
    problem: str = ""


@dataclass(frozen=True)
class Gap:
    """WAL the archive lacks (a missing segment) or a timeline break: recovery cannot pass it."""

    text: str                     # in words, naming the segment(s)
    from_lsn: str                 # the first LSN that cannot be replayed
    before_time: datetime | None = None   # the newest commit known before it, if read


@dataclass(frozen=True)
class Window:
    """What the archive can restore: the earliest and latest moment, and every gap in it."""

    engine: str                   # "native" | "pgbackrest"
    where: str                    # the archive folder or the stanza, for display
    base_backups: tuple[BaseBackup, ...]
    earliest: datetime | None     # stop time of the oldest usable base backup
    latest: datetime | None       # newest commit found in the archive
    latest_lsn: str | None        # end of the newest archived WAL
    timeline: int = 1
    gaps: tuple[Gap, ...] = ()    # missing segments, timeline breaks
    notes: tuple[str, ...] = ()   # what could not be read (said, never guessed over)

    def usable(self) -> list[BaseBackup]:
        return [b for b in self.base_backups if not b.problem]

    def refusal(self, target: PointTarget) -> str | None:
        """Why ``target`` cannot be restored from this window, else None."""
        usable = self.usable()
        if not usable:
            broken = "; ".join(f"{b.id}: {b.problem}" for b in self.base_backups)
            return ("no usable base backup in " + self.where
                    + (f" ({broken})" if broken else ": take one first (pg_basebackup, or "
                       "pgbackrest backup)"))
        if target.lsn is not None and self.latest_lsn is not None \
                and lsn_int(target.lsn) > lsn_int(self.latest_lsn):
            return (f"{target.said} is after the newest archived WAL ({self.latest_lsn}); "
                    "the archive cannot reach it yet")
        # a target with a known LSN (a mark, an LSN) is reached by it: the newest commit's
        # time says nothing about a restore point written after it
        if target.at is not None and target.lsn is None:
            if self.earliest is not None and target.at < self.earliest:
                return (f"{target.said} is before the window opens ({when(self.earliest)}, "
                        "the end of the oldest usable base backup)")
            if self.latest is not None and target.at > self.latest:
                return (f"{target.said} is after the newest moment the archive holds "
                        f"({when(self.latest)})")
        base = self.base_for(target)
        if base is None:
            return f"no usable base backup ends before {target.said}"
        blocking = [g for g in self.gaps if _blocks(g, base, target)]
        if blocking:
            return ("the WAL archive has a gap between the base backup and the target, so "
                    "recovery would stop short: " + "; ".join(g.text for g in blocking))
        return None

    def base_for(self, target: PointTarget) -> BaseBackup | None:
        """The newest usable base backup that ends before the target (least WAL to replay)."""
        candidates = []
        for b in self.usable():
            if target.lsn is not None and lsn_int(b.stop_lsn) > lsn_int(target.lsn):
                continue
            # a known LSN decides (a stop time is rounded up to the second it ended in)
            if target.lsn is None and target.at is not None and b.stop_time > target.at:
                continue
            candidates.append(b)
        return max(candidates, key=lambda b: lsn_int(b.stop_lsn), default=None)


def _blocks(gap: Gap, base: BaseBackup, target: PointTarget) -> bool:
    """Whether recovery from ``base`` to ``target`` needs WAL past the gap (unknown: yes)."""
    if lsn_int(gap.from_lsn) < lsn_int(base.start_lsn):
        return False
    if target.lsn is not None:
        return lsn_int(gap.from_lsn) <= lsn_int(target.lsn)
    if target.at is not None and gap.before_time is not None:
        return gap.before_time < target.at
    return True


@dataclass(frozen=True)
class PointTarget:
    """The moment to restore: a time, a named restore point (a mark) or an LSN."""

    kind: Literal["time", "name", "lsn"]
    value: str                    # what recovery_target_<kind> is set to
    said: str                     # in words: "mark before-deploy (2026-12-02 04:31:07 UTC)"
    at: datetime | None = None    # the moment, when known (a time; a mark's recorded time)
    lsn: str | None = None        # the LSN, when known (an LSN; a mark's recorded LSN)

    def record(self) -> dict[str, str | None]:
        return {"kind": self.kind, "value": self.value, "said": self.said,
                "at": self.at.isoformat() if self.at else None, "lsn": self.lsn}


@dataclass
class Prepared:
    """A data folder laid down by an engine, ready to start as a recovering cluster."""

    data_dir: Path
    base: BaseBackup
    settings: dict[str, str] = field(default_factory=dict)   # recovery settings it needs


class Engine(Protocol):
    """A point-in-time engine behind the restore-source interface."""

    name: str

    async def window(self) -> Window:
        """What can be restored, read-only, found before anything starts."""
        ...

    async def prepare(self, target: PointTarget, base: BaseBackup, data_dir: Path,
                      on_line: Callable[[str], None]) -> Prepared:
        """Lay ``base`` down in the empty ``data_dir`` with what recovery to ``target``
        needs (restore_command, recovery_target_*), not started."""
        ...


class PitrError(BadInput):
    """A point in time cannot be restored (outside the window, a gap, a broken base backup);
    raised before anything changed."""
