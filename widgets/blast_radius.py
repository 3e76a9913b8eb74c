"""What a destructive action will touch: tables, rows, sizes, the backup's age, what is lost."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual.widgets import Static


class BlastRadius(Static):
    """A bordered list; lines starting with '!' are losses and are marked as such in words
    (``marked``: the word; the repair's '!' lines are the rows it writes, not a loss)."""

    DEFAULT_CSS = "BlastRadius { height: auto; border: round $error; padding: 0 1; }"

    def __init__(self, lines: Iterable[str], *, marked: str = "LOSS", id: str | None = None,
                 classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.lines = list(lines)
        self.marked = marked

    def on_mount(self) -> None:
        self.border_title = "Blast radius"
        text = Text()
        for line in self.lines:
            if line.startswith("!"):
                text.append(f"{self.marked} ", style="bold reverse")
                text.append(line[1:].strip() + "\n", style="bold")
            else:
                text.append("• " + line + "\n")
        text.rstrip()
        self.update(text)


# --- a point-in-time source: which moment, and the writes it replaces ------------------------


def point_in_time_of(source: Any) -> dict[str, Any] | None:
    """The moment a restore source was restored to (its manifest's ``point_in_time``), or
    None for a set taken by a dump."""
    manifest = getattr(source, "manifest", None)
    pit = getattr(manifest, "point_in_time", None)
    return pit if isinstance(pit, dict) else None


def _at(pit: dict[str, Any]) -> datetime | None:
    raw = pit.get("at")
    try:
        return datetime.fromisoformat(str(raw)) if raw else None
    except ValueError:
        return None


def mark_label(said: str, value: str) -> str:
    """A mark's label as the operator gave it: restore points may carry a unique suffix
    (``before-deploy.3f9a1c``) that the target's words (``mark before-deploy (...)``) do not."""
    found = re.match(r"^mark (\S+) \(", said)
    return found.group(1) if found else value


def marked_word(kind: str) -> str:
    """How a blast radius marks its '!' lines: LOSS, except for the repair, whose are the rows
    it writes (re-insert, revert, delete; conflicts as chosen): WRITES."""
    return "WRITES" if kind == "repair" else "LOSS"


def moment_words(pit: dict[str, Any], verb: str = "restoring to") -> str:
    """``restoring to mark before-deploy, 2026-12-02 04:31:07 UTC, LSN 0/3000060`` (``verb``
    first; none: the moment alone)."""
    from app.pitr.model import when

    at, lsn = _at(pit), pit.get("lsn")
    kind, value, said = pit.get("kind"), pit.get("value"), str(pit.get("said") or "")
    if kind == "name":
        words = (f"mark {mark_label(said, str(value))}" + (f", {when(at)}" if at else "")
                 + (f", LSN {lsn}" if lsn else ""))
    elif kind == "lsn":
        words = f"LSN {value}" + (f", last commit replayed {when(at)}" if at else "")
    else:
        words = said or (when(at) if at else str(value))
        if lsn and "LSN" not in words:
            words += f", LSN {lsn}"
    engine, base = pit.get("engine"), pit.get("base_backup")
    origin = (f" (from the {engine} WAL archive" + (f", base backup {base}" if base else "")
              + ")") if engine else ""
    return f"{verb} {words}{origin}" if verb else f"{words}{origin}"


def seconds_in_words(seconds: int) -> str:
    """``312 s`` and, past two minutes, ``312 s (5 min 12 s)``; past two hours in hours."""
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds:,} s ({seconds // 60} min {seconds % 60} s)"
    return f"{seconds:,} s ({seconds / 3600:.1f} h)"


def writes_lost(pit: dict[str, Any], restores: str, tables: Iterable[str], database: str,
                now: datetime | None = None, loses: str = "") -> str:
    """What the moment costs, for the blast radius: how many seconds of writes (now minus the
    moment) the rollback replaces, for the chosen tables (Type 2), the whole database (Type 3)
    or the schema (Type 1, rows kept); another kind of type says its own ``loses``. A loss
    line starts with '!'."""
    at = _at(pit)
    now = now or datetime.now(UTC)
    ago = seconds_in_words(max(0, int((now - at).total_seconds()))) if at else ""
    span = f"in the last {ago} (since the moment)" if at else \
        "since the moment (its time is not known)"
    if restores == "tables":
        names = ", ".join(tables) or "the chosen tables"
        return f"!writes to {names} {span} are replaced; exported first"
    if restores == "database":
        return f"!every write to the whole database {database} {span} is replaced"
    if restores == "schema":
        return f"schema changes {span} are undone; the rows stay as they are"
    return (f"the moment is {ago} ago" if at else "the moment's time is not known") + \
        (f"; this type loses {loses}" if loses else "")
