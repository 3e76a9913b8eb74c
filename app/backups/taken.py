"""When a backup set was taken: its manifest's time, else the runbook's backup_info.txt line
(ISO, or what `$(date)` writes), else its newest dump file's time, said as a guess."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from app.backups.manifest import Manifest
from app.backups.tools import tool_output
from app.errors import ConsoleError

# Supabase's record of the migrations applied (the CLI's), versions YYYYMMDDHHMMSS in UTC.
MIGRATIONS_TABLE = "supabase_migrations.schema_migrations"
_COPY_MIGRATIONS = f"COPY {MIGRATIONS_TABLE} "

_COMPLETED = re.compile(r"^[ \t]*Backup completed(?:[ \t]+(?:at|on))?:?[ \t]*"
                        r"(?P<text>.*?)[ \t\r]*$", re.MULTILINE | re.IGNORECASE)
_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)"
                  r"\s*(Z|UTC|[+-]\d{2}:?\d{2})?$")
# what the runbook's `$(date)` writes in the C locale: "Tue Dec  1 21:01:13 UTC 2026" (the
# day padded with a space), also with a numeric zone ("+0100") or none
_DATE = re.compile(r"^(?:[A-Za-z]{3},?\s+)?(?P<mon>[A-Za-z]{3})\s+(?P<day>\d{1,2})\s+"
                   r"(?P<time>\d{1,2}:\d{2}:\d{2})\s+(?:(?P<zone>[A-Za-z]{1,6}|[+-]\d{2}:?\d{2})"
                   r"\s+)?(?P<year>\d{4})$")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_UTC_NAMES = ("UTC", "GMT", "Z", "UT")


def _zone(text: str | None) -> timezone | None:
    """UTC for no zone, UTC/GMT/Z, or a numeric offset; None for a zone name that is not
    unique worldwide (CST, IST, ...): the console does not guess."""
    if not text or text.upper() in _UTC_NAMES:
        return UTC
    m = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", text)
    if m is None:
        return None
    minutes = int(m.group(2)) * 60 + int(m.group(3))
    return timezone(timedelta(minutes=-minutes if m.group(1) == "-" else minutes))


def parse_completed(text: str) -> datetime | str:
    """The time of a ``Backup completed:`` line: ISO (``2026-11-24 02:00:00``, UTC unless it
    says otherwise) or what the runbook's ``$(date)`` writes (``Tue Dec  1 21:01:13 UTC
    2026``). Returns why not, when it cannot be read."""
    text = " ".join(text.split())
    if not text:
        return "its 'Backup completed' line has no time"
    iso, date = _ISO.match(text), _DATE.match(text)
    try:
        if iso is not None:
            zone_text = iso.group(3)
            stamp = datetime.fromisoformat(f"{iso.group(1)}T{iso.group(2)}")
        elif date is not None and date.group("mon").lower() in _MONTHS:
            zone_text = date.group("zone")
            hour, minute, second = (int(x) for x in date.group("time").split(":"))
            stamp = datetime(int(date.group("year")),
                             _MONTHS.index(date.group("mon").lower()) + 1,
                             int(date.group("day")), hour, minute, second)
        else:
            return f"its 'Backup completed' line is not a time the console reads ({text!r})"
    except ValueError:
        return f"its 'Backup completed' line is not a valid time ({text!r})"
    zone = _zone(zone_text)
    if zone is None:
        return (f"its time {text!r} is in zone {zone_text}, which names no single offset "
                "(write it with `date -u`)")
    return stamp.replace(tzinfo=zone).astimezone(UTC)


def taken_at(path: Path, manifest: Manifest | None) -> tuple[datetime | None, str]:
    """When the set was taken and, when that is not the set's own record, where the time comes
    from: the manifest, else backup_info.txt's 'Backup completed' line, else the newest dump
    file's modification time (a copied file is newer than its dump, never older: the guess
    errs towards 'after the migration', which is refused)."""
    if manifest is not None and manifest.point_in_time is not None:
        pit = manifest.point_in_time
        note = f"point in time: {pit.get('said', '?')}, {pit.get('engine', '?')} WAL archive"
        at = pit.get("at")
        return (datetime.fromisoformat(at), note) if at else \
            (None, note + "; the moment's time is not known")
    if manifest is not None:
        return datetime.fromisoformat(manifest.state.captured_at), ""
    info = path / "backup_info.txt"
    why = "no backup_info.txt"
    if info.is_file():
        lines = _COMPLETED.findall(info.read_text(errors="replace"))
        if not lines:
            why = "backup_info.txt has no time"
        else:
            parsed = parse_completed(lines[-1])
            if isinstance(parsed, datetime):
                return parsed, ""
            why = f"backup_info.txt: {parsed}"
    dumps = [p for p in path.iterdir() if p.is_file() and p.suffix in (".sql", ".dump")] \
        if path.is_dir() else []
    if not dumps:
        return None, f"{why}, and no dump files to date it by"
    newest = max(p.stat().st_mtime for p in dumps)
    return datetime.fromtimestamp(newest, UTC), f"from file times: {why}"


def _versions(lines: Iterable[str]) -> set[str]:
    """The first column of the migrations table's COPY block in dump text."""
    out: set[str] = set()
    inside = False
    for line in lines:
        if not inside:
            inside = line.startswith(_COPY_MIGRATIONS)
        elif line.startswith("\\."):
            break
        else:
            out.add(line.split("\t", 1)[0].strip())
    return out


async def recorded_migrations(path: Path, tools_dir: Path | None = None) -> set[str] | None:
    """The migration versions the set's full dump holds in Supabase's migrations table (empty:
    the dump has no such table); None when the set has no full dump to read them from."""
    custom = next((path / n for n in ("full_database_backup.dump", "full_database_backup.custom")
                   if (path / n).is_file()), None)
    if custom is not None:
        try:
            text = await tool_output("pg_restore", [
                "--data-only", "--schema=supabase_migrations", "--table=schema_migrations",
                "--file=-", str(custom)], tools_dir)
        except ConsoleError:
            return None
        return _versions(text.splitlines())
    plain = path / "full_database_backup.sql"
    if not plain.is_file():
        return None

    def scan() -> set[str]:
        with plain.open(encoding="utf-8", errors="replace") as f:
            return _versions(f)

    return await asyncio.to_thread(scan)
