"""The native point-in-time engine: PostgreSQL's own base backups and WAL archive.

What it reads (read-only, and fast: file names, small text files, one ``pg_verifybackup`` per
base backup and ``pg_waldump`` of a few segments, never the whole archive):

- ``base_dir``: one ``pg_basebackup -Fp`` folder per base backup (``backup_label``: start LSN,
  time and timeline; ``backup_manifest``: the WAL range it needs, file checksums);
- ``archive_dir``: what ``archive_command`` copied: 24-hex WAL segments, ``<tli>.history``
  timeline switches, ``<segment>.<offset>.backup`` history files (a base backup's STOP TIME).
  ``.partial`` files and anything else are ignored.

Restoring lays a base backup down by copying its folder and recovers with a
``restore_command`` that copies from the archive (``prepare``); starting it is
app/pitr/aside.py.
"""

from __future__ import annotations

import asyncio
import grp
import json
import os
import pwd
import re
import shlex
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.config_schema import PitrSettings
from app.pitr.model import (
    BaseBackup,
    Gap,
    PitrError,
    PointTarget,
    Prepared,
    Window,
    lsn_int,
    lsn_text,
    when,
)
from app.sandbox.server import os_user

SEGMENT_RE = re.compile(r"^[0-9A-F]{24}$")
HISTORY_RE = re.compile(r"^([0-9A-F]{8})\.history$")
BACKUP_RE = re.compile(r"^[0-9A-F]{24}\.[0-9A-F]{8}\.backup$")
COMMIT_RE = re.compile(r"lsn: ([0-9A-F]+/[0-9A-F]+),.*desc: (?:COMMIT|ABORT) "
                       r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")
RECORD_RE = re.compile(r"^rmgr: .*?lsn: ([0-9A-F]+/[0-9A-F]+),")
DEFAULT_SEGMENT = 16 * 1024 * 1024
WALK_BACK = 4            # segments read back from the newest for a commit time
GAP_TIMES = 3            # gaps whose preceding commit time is read


def segment_name(tli: int, segno: int, size: int) -> str:
    per = 0x100000000 // size
    return f"{tli:08X}{segno // per:08X}{segno % per:08X}"


def segment_of(name: str, size: int) -> tuple[int, int]:
    """(timeline, segment number) of a 24-hex WAL file name."""
    per = 0x100000000 // size
    return int(name[:8], 16), int(name[8:16], 16) * per + int(name[16:24], 16)


@dataclass
class Archive:
    """What the archive folder holds, from its file names (and the sizes of its segments)."""

    where: Path
    size: int = DEFAULT_SEGMENT
    segments: dict[int, set[int]] = field(default_factory=dict)   # timeline -> segment numbers
    histories: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    backup_files: dict[str, Path] = field(default_factory=dict)   # "<segment>.<offset>"
    short: list[str] = field(default_factory=list)   # segments of the wrong size

    def has(self, tli: int, segno: int) -> bool:
        return segno in self.segments.get(tli, set())

    def name(self, tli: int, segno: int) -> str:
        return segment_name(tli, segno, self.size)

    @property
    def latest_timeline(self) -> int:
        return max([*self.segments, *self.histories], default=1)

    @property
    def followable_timeline(self) -> int:
        """The newest timeline recovery can follow to: one with a history file (or 1)."""
        return max([t for t in self.histories if t in self.segments or t == 1] or [1])

    def ancestry(self, tli: int) -> list[tuple[int, int]]:
        """(timeline, end LSN) of each ancestor of ``tli``, oldest first, from its history
        file; the segment holding an end LSN belongs to the next timeline."""
        return self.histories.get(tli, [])

    def timeline_of(self, segno: int, tli: int) -> int:
        """Which timeline's copy of ``segno`` recovery following ``tli`` reads."""
        for parent, end in self.ancestry(tli):
            if segno < end // self.size:
                return parent
        return tli


def read_archive(folder: Path) -> Archive:
    archive = Archive(folder)
    sizes: list[int] = []
    names: list[str] = []
    for entry in os.scandir(folder):
        if SEGMENT_RE.match(entry.name):
            size = entry.stat().st_size
            sizes.append(size)
            names.append(entry.name)
        elif m := HISTORY_RE.match(entry.name):
            archive.histories[int(m.group(1), 16)] = _read_history(Path(entry.path))
        elif BACKUP_RE.match(entry.name):
            archive.backup_files[entry.name.removesuffix(".backup")] = Path(entry.path)
    if sizes:
        size = max(set(sizes), key=sizes.count)
        if size & (size - 1) == 0 and 1 << 20 <= size <= 1 << 30:
            archive.size = size
    for name, size in zip(names, sizes, strict=True):
        if size != archive.size:
            archive.short.append(name)     # still being copied, or truncated: not usable
            continue
        tli, segno = segment_of(name, archive.size)
        archive.segments.setdefault(tli, set()).add(segno)
    return archive


def _read_history(path: Path) -> list[tuple[int, int]]:
    """A ``.history`` file: one ``<parent tli> <switch LSN> <reason>`` line per ancestor."""
    found = []
    try:
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].isdigit() and "/" in parts[1]:
                found.append((int(parts[0]), lsn_int(parts[1])))
    except (OSError, ValueError):
        return []
    return found


def _fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _label_time(raw: str) -> datetime:
    """``2026-12-02 04:23:06 UTC`` (backup_label, .backup files) as an aware datetime."""
    stamp, _, zone = raw.rpartition(" ")
    moment = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")
    if zone not in ("UTC", "GMT"):
        raise ValueError(f"time zone {zone}")
    return moment.replace(tzinfo=UTC)


class NativeEngine:
    """PostgreSQL's own archive: ``[pitr] archive_dir`` + ``base_dir`` (pg_basebackup -Fp).
    ``bins``: the server's binaries (pg_verifybackup, pg_waldump, postgres) of the target's
    major version. ``verify``: check each base backup's files against its manifest (reads
    every file; cheap for small clusters, minutes for very large ones)."""

    name = "native"

    def __init__(self, settings: PitrSettings, bins: Path, verify: bool = True):
        if settings.archive_dir is None or settings.base_dir is None:
            raise PitrError("[pitr] engine = \"native\" needs archive_dir (the folder "
                            "archive_command copies WAL into) and base_dir (pg_basebackup "
                            "folders)")
        self.settings = settings
        self.archive_dir = settings.archive_dir
        self.base_dir = settings.base_dir
        self.bins = bins
        self.verify = verify

    # -- the window ----------------------------------------------------------------------

    async def window(self) -> Window:
        for folder, what in ((self.archive_dir, "archive_dir"), (self.base_dir, "base_dir")):
            if not folder.is_dir():
                raise PitrError(f"[pitr] {what} {folder} is not a folder: check the path in "
                                "the config")
        archive = await asyncio.to_thread(read_archive, self.archive_dir)
        notes: list[str] = []
        if archive.short:
            notes.append(f"{len(archive.short)} segment(s) of the wrong size are ignored (being "
                         f"copied, or truncated): {', '.join(sorted(archive.short)[:3])}")
        bases = await asyncio.to_thread(self._bases, archive, notes)
        if self.verify:
            bases = list(await asyncio.gather(*(self._verified(b) for b in bases)))
        usable = sorted((b for b in bases if not b.problem), key=lambda b: lsn_int(b.start_lsn))
        latest_tli = archive.latest_timeline
        follow = latest_tli if latest_tli in archive.histories else archive.followable_timeline
        gaps = self._gaps(archive, usable, latest_tli, follow)
        chain = self._chain(archive, usable, follow)
        latest_lsn: str | None = None
        latest: datetime | None = None
        if chain:
            latest_lsn, latest = await self._newest(archive, chain, notes)
        else:
            notes.append(f"no WAL segments in {self.archive_dir}: is archive_command set?")
        if latest is None and usable:
            latest = max(b.stop_time for b in usable)
            notes.append("no commit found in the newest WAL segments; the latest moment is the "
                         "end of the newest base backup")
        gaps = [await self._gap_time(archive, g, i) for i, g in enumerate(gaps)]
        return Window(engine=self.name, where=str(self.archive_dir),
                      base_backups=tuple(bases),
                      earliest=usable[0].stop_time if usable else None,
                      latest=latest, latest_lsn=latest_lsn, timeline=latest_tli,
                      gaps=tuple(gaps), notes=tuple(notes))

    def _bases(self, archive: Archive, notes: list[str]) -> list[BaseBackup]:
        folders = sorted(p for p in self.base_dir.iterdir() if p.is_dir())
        return [self._base(f, archive, notes) for f in folders]

    async def _verified(self, base: BaseBackup) -> BaseBackup:
        if base.problem:
            return base
        problem = await self._verify(self.base_dir / base.id)
        return replace(base, problem=problem) if problem else base

    def _base(self, folder: Path, archive: Archive, notes: list[str]) -> BaseBackup:
        """One base backup folder (its files not yet verified); ``problem`` says why it
        cannot be restored from."""
        label_path, manifest_path = folder / "backup_label", folder / "backup_manifest"
        fallback = datetime.fromtimestamp(folder.stat().st_mtime, UTC)

        def broken(problem: str, **known: object) -> BaseBackup:
            values: dict = {"start_lsn": "0/0", "stop_lsn": "0/0", "start_time": fallback,
                            "stop_time": fallback, "timeline": 1, **known}
            return BaseBackup(id=folder.name, problem=problem, **values)

        if not label_path.is_file():
            return broken("incomplete: no backup_label (not a finished pg_basebackup -Fp "
                          "folder); take a new base backup")
        label = _fields(label_path.read_text(errors="replace"))
        try:
            start_lsn = label["START WAL LOCATION"].split()[0]
            start_time = _label_time(label["START TIME"])
            timeline = int(label.get("START TIMELINE", "1"))
            lsn_int(start_lsn)
        except (KeyError, ValueError, IndexError):
            return broken("incomplete: its backup_label cannot be read; take a new base backup")
        known: dict[str, object] = {"start_lsn": start_lsn, "start_time": start_time,
                                    "stop_time": start_time, "timeline": timeline}
        if not manifest_path.is_file():
            return broken("incomplete: no backup_manifest (interrupted, or taken with "
                          "--no-manifest); take a new base backup", **known)
        try:
            manifest = json.loads(manifest_path.read_text())
            ranges = manifest["WAL-Ranges"]
            stop_lsn = str(ranges[-1]["End-LSN"])
            lsn_int(stop_lsn)
            size = sum(int(f.get("Size", 0)) for f in manifest.get("Files", []))
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return broken("incomplete: its backup_manifest cannot be read; take a new base "
                          "backup", **known)
        known["stop_lsn"] = stop_lsn
        # backup_manifest is written just after the backup stops: its file time is a close
        # upper bound (later still if it was copied without keeping times)
        written = datetime.fromtimestamp(manifest_path.stat().st_mtime, UTC)
        stop_time = self._stop_time(archive, start_lsn)
        if stop_time is None:
            stop_time = written
            notes.append(f"base backup {folder.name}: no .backup history file in the archive; "
                         "its end time is its backup_manifest's file time")
        stop_time = min(stop_time, max(written, start_time))
        known["stop_time"] = stop_time
        first = lsn_int(start_lsn) // archive.size
        last = lsn_int(stop_lsn) // archive.size
        own_wal = folder / "pg_wal"
        missing = [archive.name(timeline, s) for s in range(first, last + 1)
                   if not archive.has(timeline, s)
                   and not (own_wal / archive.name(timeline, s)).is_file()]
        if missing:
            return broken(f"the WAL it needs to be consistent is missing from the archive "
                          f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})",
                          **known)
        return BaseBackup(id=folder.name, start_lsn=start_lsn, stop_lsn=stop_lsn,
                          start_time=start_time, stop_time=stop_time, timeline=timeline,
                          size=size or None)

    def _stop_time(self, archive: Archive, start_lsn: str) -> datetime | None:
        """STOP TIME from the archive's ``<segment>.<offset>.backup`` file of this backup,
        rounded up to the next second (it is truncated, and a time target before the real
        stop would end recovery short of a consistent state)."""
        start = lsn_int(start_lsn)
        for tli in sorted({*archive.segments, 1}):
            key = f"{segment_name(tli, start // archive.size, archive.size)}." \
                  f"{start % archive.size:08X}"
            path = archive.backup_files.get(key)
            if path is None:
                continue
            try:
                stop = _label_time(_fields(path.read_text(errors="replace"))["STOP TIME"])
            except (OSError, KeyError, ValueError):
                return None
            # whole seconds, truncated: the next second is the first surely after it
            return stop + timedelta(seconds=1)
        return None

    async def _verify(self, folder: Path) -> str:
        """pg_verifybackup's verdict on the files (not the WAL): "" when they match."""
        proc = await asyncio.create_subprocess_exec(
            str(self.bins / "pg_verifybackup"), "--no-parse-wal", "--quiet", str(folder),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        if proc.returncode == 0:
            return ""
        said = [ln.removeprefix("pg_verifybackup: ").removeprefix("error: ")
                for ln in out.decode(errors="replace").splitlines() if ln.strip()]
        return ("corrupt: pg_verifybackup finds files that do not match its manifest ("
                + "; ".join(said[:3]) + (" ..." if len(said) > 3 else "")
                + "); take a new base backup")

    def _chain(self, archive: Archive, usable: list[BaseBackup],
               tli: int) -> list[tuple[int, int]]:
        """(timeline, segment) from the oldest usable base backup (else the oldest segment)
        to the newest segment, each on the timeline recovery following ``tli`` reads."""
        present = [s for t, segs in archive.segments.items() if t <= tli for s in segs]
        if not present:
            return []
        first = lsn_int(usable[0].start_lsn) // archive.size if usable else min(present)
        last = max(present)
        return [(archive.timeline_of(s, tli), s) for s in range(first, last + 1)]

    def _gaps(self, archive: Archive, usable: list[BaseBackup], latest: int,
              tli: int) -> list[Gap]:
        """Missing segments (one Gap per run) on the way along timeline ``tli`` (the newest
        one recovery can follow), and timeline breaks, from the oldest usable base backup
        on."""
        gaps: list[Gap] = []
        for broken in range(tli + 1, latest + 1):
            if broken in archive.segments and broken not in archive.histories:
                first = min(archive.segments[broken])
                gaps.append(Gap(f"timeline {broken} has WAL but no {broken:08X}.history file "
                                "in the archive, so recovery cannot follow the switch to it",
                                lsn_text(first * archive.size)))
        chain_tlis = {t for t, _ in archive.ancestry(tli)} | {tli}
        for base in usable:
            if base.timeline not in chain_tlis:
                gaps.append(Gap(f"base backup {base.id} is on timeline {base.timeline}, which "
                                f"the newest timeline {tli} does not descend from",
                                base.start_lsn))
        run: list[str] = []
        run_start = 0
        own: set[str] = set()
        if usable:
            wal = self.base_dir / usable[0].id / "pg_wal"
            own = {p.name for p in wal.iterdir()} if wal.is_dir() else set()
        for t, s in self._chain(archive, usable, tli):
            name = archive.name(t, s)
            if archive.has(t, s) or name in own:
                if run:
                    gaps.append(self._missing(run, run_start, archive))
                    run = []
                continue
            if not run:
                run_start = s
            run.append(name)
        if run:
            gaps.append(self._missing(run, run_start, archive))
        return gaps

    def _missing(self, run: list[str], segno: int, archive: Archive) -> Gap:
        names = run[0] if len(run) == 1 else f"{run[0]} to {run[-1]} ({len(run)} segments)"
        return Gap(f"WAL segment {names} is missing from {self.archive_dir}",
                   lsn_text(segno * archive.size))

    async def _gap_time(self, archive: Archive, gap: Gap, index: int) -> Gap:
        """The gap with the newest commit before it, read from the few segments before it
        (none found: left unknown, which Window.refusal treats as blocking)."""
        if index >= GAP_TIMES:
            return gap
        commit = None
        first = lsn_int(gap.from_lsn) // archive.size
        for segno in range(first - 1, max(first - 1 - WALK_BACK, -1), -1):
            tli = archive.timeline_of(segno, archive.latest_timeline)
            if not archive.has(tli, segno):
                break
            _, commit = await self._waldump(archive.name(tli, segno))
            if commit is not None:
                break
        if commit is None:
            return gap
        return Gap(f"{gap.text} (the newest commit before it: {when(commit)})", gap.from_lsn,
                   commit)

    async def _newest(self, archive: Archive, chain: list[tuple[int, int]],
                      notes: list[str]) -> tuple[str | None, datetime | None]:
        """(the newest archived WAL record's LSN, the newest commit time), reading the
        newest segment and, when it holds no commit, a few before it."""
        present = [(t, s) for t, s in chain if archive.has(t, s)]
        latest_lsn: str | None = None
        for i, (t, s) in enumerate(reversed(present[-(WALK_BACK + 1):])):
            last, commit = await self._waldump(archive.name(t, s))
            if i == 0:
                if last is not None:
                    latest_lsn = last
                else:
                    latest_lsn = lsn_text((s + 1) * archive.size - 1)
                    notes.append(f"pg_waldump could not read {archive.name(t, s)}; the newest "
                                 "LSN is the end of that segment")
            if commit is not None:
                return latest_lsn, commit
        return latest_lsn, None

    async def _waldump(self, segment: str) -> tuple[str | None, datetime | None]:
        """(LSN of the last record, time of the last commit) in one archived segment."""
        proc = await asyncio.create_subprocess_exec(
            str(self.bins / "pg_waldump"), "--path", str(self.archive_dir), segment, segment,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "TZ": "UTC"})
        assert proc.stdout is not None
        last: str | None = None
        commit: datetime | None = None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace")
            if m := RECORD_RE.match(line):
                last = lsn_text(lsn_int(m.group(1)))
            if m := COMMIT_RE.search(line):
                try:
                    commit = datetime.fromisoformat(m.group(2)).replace(tzinfo=UTC)
                except ValueError:
                    pass
        await proc.wait()
        return last, commit

    # -- laying a base backup down -------------------------------------------------------

    def _unreadable(self, path: Path, need: int) -> str:
        """Why the aside cluster's OS user (app/pitr/aside.py) cannot use ``path``, or ""."""
        user = os_user()
        if user is None:
            return ""
        st = path.stat()
        groups = {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem} | {user.pw_gid}
        if st.st_uid == user.pw_uid:
            bits = (st.st_mode >> 6) & 7
        elif st.st_gid in groups:
            bits = (st.st_mode >> 3) & 7
        else:
            bits = st.st_mode & 7
        if bits & need == need:
            return ""
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        return (f"the aside cluster runs as OS user {user.pw_name}, which cannot read {path} "
                f"(owner {owner}, mode {stat.filemode(st.st_mode)}); its restore_command "
                f"would fail. Let {user.pw_name} read the archive (e.g. add it to the "
                f"archive's group and make the files group-readable)")

    def _unreadable_archive(self) -> str:
        said = self._unreadable(self.archive_dir, 5)
        if said:
            return said
        sample = next((e for e in os.scandir(self.archive_dir) if SEGMENT_RE.match(e.name)),
                      None)
        return self._unreadable(Path(sample.path), 4) if sample else ""

    def _lay_down(self, base: BaseBackup, data_dir: Path) -> None:
        source = self.base_dir / base.id
        if not (source / "backup_label").is_file():
            raise PitrError(f"base backup {source} is gone or incomplete; `rollback-console "
                            "pitr` shows the base backups")
        data_dir.mkdir(parents=True, exist_ok=True)
        if any(data_dir.iterdir()):
            raise PitrError(f"{data_dir} is not empty; the base backup is laid down only into "
                            "an empty folder")
        shutil.copytree(source, data_dir, symlinks=True, dirs_exist_ok=True)

    async def prepare(self, target: PointTarget, base: BaseBackup, data_dir: Path,
                      on_line: Callable[[str], None]) -> Prepared:
        """Copy the base backup's folder into the empty ``data_dir`` (modes kept) and give
        the recovery settings. ``recovery_target_inclusive``: for a time, true (commits at
        exactly that moment are kept); for an LSN, false (everything before that LSN, which
        is what a mark's LSN, the end of its restore point, means); a name stops at the
        restore point either way."""
        problem = await asyncio.to_thread(self._unreadable_archive)
        if problem:
            raise PitrError(problem)
        on_line(f"copying base backup {base.id} into {data_dir}")
        await asyncio.to_thread(self._lay_down, base, data_dir)
        archive = shlex.quote(str(self.archive_dir.resolve()))
        settings = {
            "restore_command": f"cp {archive}/%f \"%p\"",
            f"recovery_target_{target.kind}": target.value,
            "recovery_target_inclusive": "false" if target.kind == "lsn" else "true",
            "recovery_target_action": "promote",
            "recovery_target_timeline": "latest",
        }
        return Prepared(data_dir=data_dir, base=base, settings=settings)
