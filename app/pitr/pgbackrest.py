"""The pgBackRest engine: the window from ``pgbackrest info``, a data folder from
``pgbackrest restore``; the real tool, run as a subprocess, never reimplemented.

Versions. Debian 12's package is pgBackRest 2.45, which reads PostgreSQL 9.0 to 15 (16 and
later arrived in newer pgBackRest releases). The console's bundled PostgreSQL 18 is not
covered: pgBackRest 2.45 refuses such a cluster (``[VersionNotSupportedError] unexpected
control version = 1800 ... is this version of PostgreSQL supported?``) so no stanza can be
made for it. The console then says, with the stanza problem pgBackRest reports: "pgBackRest
2.45 reads PostgreSQL 9.0 to 15, not PostgreSQL 18: install a newer pgBackRest
(apt.postgresql.org) or use engine = "native"" (from ``[pitr] bin_dir``'s major version); a
pgBackRest error naming the version gets the same advice. The aside cluster runs the
target's major version (``[pitr] bin_dir``); a stanza of another major version makes every
backup unusable, saying which bin_dir to set. Tested: 2.45 with PostgreSQL 15
(/usr/lib/postgresql/15/bin); 2.45 against the bundled 18 refused as above.

What the window holds: every backup of the stanza (its label, ending F, D or I for full,
diff or incr; LSNs, times, timeline, size), the archive's min/max WAL, missing segments
between them (found by listing the repository with ``pgbackrest repo-ls``, which works for
every repository type), and the newest commit (read with ``pg_waldump`` from the newest
segment, fetched uncompressed by ``pgbackrest archive-get``). Whatever cannot be read is said
in a note, never guessed over.

``prepare`` runs ``pgbackrest verify`` first (a backup, or the full it builds on, with a bad
checksum is refused before a byte is restored; 2.45's verify reads the whole repository, so
this costs a read of it), checks as root that the aside cluster's OS user can fetch WAL (its
restore_command runs as that user), then ``pgbackrest restore --set --type --target
--target-action=promote --archive-mode=off [--delta]``. pgBackRest writes restore_command
and the recovery target into postgresql.auto.conf and creates recovery.signal. Passwords are
never on a command line: the engine passes none (pgBackRest takes its repository secrets
from its own config file or PGBACKREST_* environment variables).
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.config import PitrSettings
from app.pitr.model import (
    BaseBackup,
    Gap,
    PitrError,
    PointTarget,
    Prepared,
    Window,
    lsn_int,
    lsn_text,
)
from app.pitr.native import segment_name, segment_of

DEFAULT_SEGMENT = 16 * 1024 * 1024
SEGMENT_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
REPO_SEGMENT_RE = re.compile(r"^([0-9A-F]{24})-[0-9a-f]{40}(\.\w+)?$")
COMMIT_RE = re.compile(r"desc: COMMIT(?:_PREPARED)? .*?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)"
                       r" UTC")
RECORD_RE = re.compile(r"len \(rec/tot\):\s*\d+/\s*(\d+),.*?lsn: ([0-9A-F]+/[0-9A-F]+)")
ERROR_RE = re.compile(r"ERROR: \[(\d+)\]: (.*)")
STAMP_RE = re.compile(r"^\S+ \S+ P\d+\s+(\w+): ")
WALK_BACK = 4   # segments read back from the newest when looking for the newest commit

# pgBackRest's exit status is the code of the error it raised (its build/error.yaml).
EXIT_CODES: dict[int, tuple[str, str]] = {
    27: ("config error", "check the pgBackRest config file ([pitr] pgbackrest_config)"),
    28: ("invalid file", "a repository file is unreadable: run `pgbackrest verify`"),
    31: ("invalid option", "check the options in the pgBackRest config file"),
    32: ("invalid option value", "check the options in the pgBackRest config file"),
    37: ("missing option", "the stanza needs pg1-path and repo1-path in its config"),
    38: ("PostgreSQL is running in the restore folder",
         "stop the cluster using that folder, or restore into an empty folder"),
    40: ("the restore folder is not empty", "restore into an empty folder"),
    41: ("a file could not be opened",
         "check that this user may read the pgBackRest config file and the repository"),
    44: ("the archive does not match the database",
         "the stanza's archive belongs to another cluster: check [pitr] stanza"),
    46: ("PostgreSQL version not supported by this pgBackRest",
         "install a newer pgBackRest (PostgreSQL's apt repository) or use engine = \"native\""),
    49: ("cannot reach the repository host", "check repo1-host and that the host is up"),
    50: ("another pgBackRest command holds the lock",
         "wait for the running backup or expire to finish, then try again"),
    53: ("a folder could not be opened",
         "check that this user may read the repository (repo1-path)"),
    55: ("a file is missing from the repository",
         "the stanza may not exist: check [pitr] stanza, or run `pgbackrest stanza-create`"),
    56: ("cannot connect to PostgreSQL", "check pg1-path/pg1-port/pg1-socket-path"),
    58: ("the repository belongs to another database",
         "the stanza does not match this cluster: check [pitr] stanza"),
    73: ("a folder is missing", "check repo1-path in the pgBackRest config"),
    75: ("the backup set is invalid", "choose another backup or take a new one"),
    82: ("WAL was not archived in time", "check archive_command and `pgbackrest check`"),
    95: ("the repository is encrypted and cannot be read",
         "set repo1-cipher-pass in the pgBackRest config file (never on the command line)"),
    102: ("a program could not be run", "check that pgbackrest is installed and on PATH"),
    103: ("no valid repository",
          "check repo1-path, and that this OS user may read the repository"),
}

# info --output=json: status.code of a stanza (a running backup/expire is status.lock)
STANZA_STATUS: dict[int, str] = {
    1: "the stanza's folder is missing from the repository: check [pitr] stanza and "
       "repo1-path, or run `pgbackrest --stanza=S stanza-create`",
    2: "",   # no valid backups: an empty window, not an error
    3: "the stanza's info files are missing from the repository: run `pgbackrest "
       "--stanza=S stanza-create` (or restore them) before point-in-time restores",
    4: "the repositories of this stanza are not all in the same state: run `pgbackrest "
       "--stanza=S info` to see which one is not ok",
    5: "the repositories hold different databases for this stanza (system id or version): "
       "check which cluster each repository belongs to",
}


def explain(command: str, rc: int, stderr: str, stdout: str = "", version: str = "") -> str:
    """A failed pgbackrest run in words: what failed, pgBackRest's own line, what to do."""
    found = ERROR_RE.findall(stderr + "\n" + stdout)
    said = found[-1][1].strip() if found else (stderr.strip() or stdout.strip())[-400:]
    code = int(found[-1][0]) if found else rc
    text = stderr + stdout
    if "unexpected control version" in text or "VersionNotSupported" in text:
        code = 46
    name, todo = EXIT_CODES.get(code, (f"error {code}", "see pgBackRest's message"))
    if code == 55 and re.search(r"\.conf' for read", said):
        name, todo = "its config file is missing", "check [pitr] pgbackrest_config"
    if code == 46:
        todo = (f"pgBackRest {version} reads PostgreSQL only up to the newest version its "
                "release knows (2.45: 9.0 to 15; the console's bundled PostgreSQL 18 needs a "
                "newer pgBackRest): " + todo).replace("  ", " ")
    return f"pgbackrest {command} failed (exit {rc}, {name}): {said}. What to do: {todo}"


def not_covered(version: str, major: str | None) -> str:
    """Why pgBackRest ``version`` cannot back up PostgreSQL ``major``, else ''. Releases up to
    2.45 read PostgreSQL 9.0 to 15 (2.45 refuses 18: ``unexpected control version = 1800``);
    newer releases are taken at their word."""
    try:
        release = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return ""
    if not major or not major.isdigit() or len(release) < 2 or release > (2, 45):
        return ""
    if int(major) > 15:
        return (f"pgBackRest {version} reads PostgreSQL 9.0 to 15, not PostgreSQL {major}: "
                "install a newer pgBackRest (apt.postgresql.org) or use engine = \"native\"")
    return ""


@dataclass
class _Scan:
    """What pg_waldump read from one segment."""

    commit: datetime | None
    end_lsn: int | None
    size: int


def segment_index(name: str, size: int) -> tuple[int, int]:
    """(timeline, linear segment number) of a 24-character WAL file name."""
    if not SEGMENT_RE.match(name):
        raise ValueError(name)
    return segment_of(name, size)


class PgBackRestEngine:
    """A stanza of the real pgBackRest (``[pitr] engine = "pgbackrest"``)."""

    name = "pgbackrest"

    def __init__(self, settings: PitrSettings, bins: Path, exe: str = "pgbackrest"):
        self.settings = settings
        self.stanza = settings.stanza
        self.bins = bins
        self.exe = exe
        self._version: str | None = None
        self._seg_size = DEFAULT_SEGMENT    # learnt by window() from a fetched segment

    # -- running pgbackrest ---------------------------------------------------------------

    def _argv(self, command: str, *options: str, console: str = "off") -> list[str]:
        # no log files written by the console's own runs (as root they would be root's and
        # break the postgres user's archive-push logging); errors still reach stderr
        argv = [self.exe, f"--stanza={self.stanza}", "--log-level-file=off",
                f"--log-level-console={console}", "--log-level-stderr=error"]
        if self.settings.pgbackrest_config is not None:
            argv.append(f"--config={self.settings.pgbackrest_config}")
        return [*argv, *options, command]

    async def _run(self, command: str, *options: str, args: tuple[str, ...] = (),
                   on_line: Callable[[str], None] | None = None,
                   user: pwd.struct_passwd | None = None,
                   cwd: Path | None = None) -> tuple[int, str, str]:
        """Run one pgbackrest command: (exit status, stdout, stderr). It dies with the
        console (parent-death signal) and is killed when the caller is cancelled; ``cwd``
        set to the restore folder lets an orphan sweep find it there."""
        if shutil.which(self.exe) is None:
            raise PitrError("pgbackrest is not installed on this machine (apt-get install "
                            "pgbackrest), or [pitr] engine should be \"native\"")
        from app.sandbox.server import set_parent_death_signal

        argv = self._argv(command, *options, console="info" if on_line else "off") + list(args)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "TZ": "UTC"},
            user=user.pw_uid if user else None, group=user.pw_gid if user else None,
            cwd=cwd, preexec_fn=lambda: set_parent_death_signal(signal.SIGTERM))
        assert proc.stdout is not None and proc.stderr is not None
        out: list[str] = []

        async def pump() -> None:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                out.append(line)
                if on_line is not None:
                    said = _console_line(line)
                    if said:
                        on_line(said)

        try:
            err, _ = await asyncio.gather(proc.stderr.read(), pump())
            rc = await proc.wait()
        except BaseException:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()
            raise
        return rc, "\n".join(out), err.decode(errors="replace")

    async def _checked(self, command: str, *options: str) -> str:
        rc, out, err = await self._run(command, *options)
        if rc != 0:
            raise PitrError(explain(command, rc, err, out, self._version or ""))
        return out

    async def version(self) -> str:
        """pgBackRest's version (``2.45``), '' when it does not say."""
        if self._version is None:
            rc, out, _ = await self._run("version")
            self._version = out.strip().removeprefix("pgBackRest ") if rc == 0 else ""
        return self._version

    # -- the window -------------------------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        """The stanza's entry of ``pgbackrest info --output=json``; a stanza or repository
        problem is a PitrError in words (with why, when this pgBackRest cannot read the
        target's PostgreSQL version at all)."""
        try:
            return await self._info()
        except PitrError as exc:
            cover = not_covered(await self.version(), await _bins_major(self.bins))
            if cover:
                raise PitrError(f"{exc}. Also: {cover}") from exc
            raise

    async def _info(self) -> dict[str, Any]:
        await self.version()
        out = await self._checked("info", "--output=json")
        try:
            stanzas = json.loads(out)
        except json.JSONDecodeError as exc:
            raise PitrError(f"pgbackrest info gave output that is not JSON ({exc}); is "
                            f"`{self.exe}` pgBackRest?") from exc
        entry = next((s for s in stanzas if s.get("name") == self.stanza), None)
        if entry is None:
            raise PitrError(f"pgBackRest has no stanza {self.stanza!r} in its repository: "
                            "check [pitr] stanza and pgbackrest_config")
        status = entry.get("status", {})
        code = int(status.get("code", 0))
        if code not in (0, 2):
            said = STANZA_STATUS.get(code, "see `pgbackrest info`").replace(
                "--stanza=S", f"--stanza={self.stanza}")
            raise PitrError(f"pgBackRest stanza {self.stanza!r}: {status.get('message', '')} "
                            f"(status {code}): {said}")
        return dict(entry)

    async def window(self) -> Window:
        entry = await self.info()
        notes: list[str] = []
        if entry.get("status", {}).get("lock", {}).get("backup", {}).get("held"):
            notes.append("a pgBackRest backup or expire is running now; its backup is not "
                         "listed until it ends")
        dbs = entry.get("db") or []
        current = max(dbs, key=lambda d: int(d["id"]), default=None)
        archive = next((a for a in entry.get("archive") or []
                        if current is None or a["database"]["id"] == current["id"]), None)
        mismatch = await self._mismatch(str(current["version"]) if current else "")
        if mismatch:
            notes.append(mismatch)
        cover = "" if mismatch else not_covered(await self.version(),
                                                await _bins_major(self.bins))
        if cover:
            notes.append(cover)

        listing, list_note = await self._listing(archive)
        if list_note:
            notes.append(list_note)
        seg_size = DEFAULT_SEGMENT
        newest: _Scan | None = None
        latest_lsn: str | None = None
        timeline = 1
        max_seg = str(archive.get("max") or "") if archive else ""
        min_seg = str(archive.get("min") or "") if archive else ""
        if max_seg:
            timeline = int(max_seg[:8], 16)
            newest, scan_note = await self._newest(max_seg, listing)
            if scan_note:
                notes.append(scan_note)
            if newest is not None:
                seg_size = self._seg_size = newest.size
            if newest is not None and newest.end_lsn is not None:
                latest_lsn = lsn_text(newest.end_lsn)
            else:
                latest_lsn = lsn_text((segment_index(max_seg, seg_size)[1] + 1) * seg_size)
                notes.append("the newest archived LSN is taken as the end of segment "
                             f"{max_seg} (assuming {seg_size // 1048576} MB segments)")
        else:
            notes.append("the repository holds no archived WAL for this stanza yet (is "
                         "archive_command set to `pgbackrest archive-push`?)")

        backups = [self._backup(b, current, mismatch, listing, seg_size)
                   for b in entry.get("backup") or []]
        gaps: list[Gap] = []
        if listing is not None and min_seg and max_seg:
            gaps = await self._gaps(min_seg, max_seg, listing, seg_size)
            tlis = sorted({int(n[:8], 16) for n in listing})
            if len(tlis) > 1:
                notes.append("the archive holds timelines " + ", ".join(map(str, tlis))
                             + f"; recovery follows the newest ({timeline})")
        usable = [b for b in backups if not b.problem]
        latest = newest.commit if newest is not None else None
        if latest is None and usable:
            last = max(usable, key=lambda b: b.stop_time)
            latest = last.stop_time
            notes.append(f"the newest commit in the archive could not be read; the window is "
                         f"shown up to the end of backup {last.id}")
        earliest = min((b.stop_time for b in usable), default=None)
        if latest is not None and earliest is not None and latest < earliest:
            notes.append("no commit was archived after the newest backup ended: only a mark "
                         "or an LSN target can be restored")
        return Window(engine=self.name, where=f"pgBackRest stanza {self.stanza}",
                      base_backups=tuple(backups), earliest=earliest, latest=latest,
                      latest_lsn=latest_lsn, timeline=timeline, gaps=tuple(gaps),
                      notes=tuple(notes))

    async def _mismatch(self, pg_version: str) -> str:
        """Why the aside cluster's binaries cannot run this stanza's data, else ''."""
        bins_version = await _bins_major(self.bins)
        if not pg_version or not bins_version or pg_version == bins_version:
            return ""
        return (f"the stanza holds PostgreSQL {pg_version} but the aside cluster would run "
                f"PostgreSQL {bins_version} ({self.bins}): set [pitr] bin_dir to the bin "
                f"folder of PostgreSQL {pg_version} (on Debian "
                f"/usr/lib/postgresql/{pg_version}/bin)")

    def _backup(self, b: dict[str, Any], current: dict[str, Any] | None, mismatch: str,
                listing: dict[str, str] | None, seg_size: int) -> BaseBackup:
        start_seg = str(b.get("archive", {}).get("start") or "")
        stop_seg = str(b.get("archive", {}).get("stop") or "")
        problems: list[str] = []
        if current is not None and b.get("database", {}).get("id") != current["id"]:
            problems.append("taken before the stanza was upgraded to PostgreSQL "
                            f"{current['version']}: it restores the older version")
        elif mismatch:
            problems.append(mismatch)
        if b.get("error"):
            problems.append("pgBackRest recorded errors while taking it (page checksum "
                            "errors): see `pgbackrest info --set=" + str(b["label"]) + "`")
        if listing is not None and start_seg and stop_seg:
            missing = _missing(start_seg, stop_seg, listing, seg_size)
            if missing:
                problems.append("WAL it needs is missing from the repository: "
                                + ", ".join(missing[:3]) + ("…" if len(missing) > 3 else ""))
        stamp = b.get("timestamp", {})
        info = b.get("info", {})
        label = str(b["label"])
        return BaseBackup(
            id=label, start_lsn=str(b["lsn"]["start"]), stop_lsn=str(b["lsn"]["stop"]),
            start_time=datetime.fromtimestamp(int(stamp["start"]), UTC),
            # whole seconds, so the next second: the earliest moment surely consistent
            stop_time=datetime.fromtimestamp(int(stamp["stop"]) + 1, UTC),
            timeline=int(start_seg[:8], 16) if start_seg else 1,
            size=int(info["size"]) if info.get("size") is not None else None,
            problem="; ".join(problems))

    async def _listing(self, archive: dict[str, Any] | None
                       ) -> tuple[dict[str, str] | None, str]:
        """Segment name -> repository file of the stanza's current archive (None: could not
        list) and a note when it could not be listed."""
        if archive is None:
            return None, ""
        rc, out, err = await self._run("repo-ls", "--recurse", "--output=json",
                                       args=(f"archive/{self.stanza}/{archive['id']}",))
        if rc != 0:
            return None, ("missing WAL segments were not checked: the repository could not "
                          "be listed (" + explain("repo-ls", rc, err, out) + ")")
        names: dict[str, str] = {}
        for path, meta in json.loads(out or "{}").items():
            m = REPO_SEGMENT_RE.match(path.rsplit("/", 1)[-1])
            if m and meta.get("type") == "file":
                names[m.group(1)] = path
        return names, ""

    async def _scan(self, segment: str) -> tuple[_Scan | None, str]:
        """Fetch one segment uncompressed (archive-get) and read it with pg_waldump."""
        waldump = self.bins / "pg_waldump"
        if not waldump.exists():
            return None, f"{waldump} is missing, so the archive's newest commit was not read"
        with tempfile.TemporaryDirectory(prefix="pgbr-wal-") as tmp:
            dest = Path(tmp) / segment
            rc, out, err = await self._run("archive-get", args=(segment, str(dest)))
            if rc != 0 or not dest.exists():
                return None, (f"WAL segment {segment} could not be fetched from the repository "
                              f"({explain('archive-get', rc, err, out)})")
            size = dest.stat().st_size
            proc = await asyncio.create_subprocess_exec(
                str(waldump), str(dest), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "TZ": "UTC"})
            raw, _ = await proc.communicate()
        commit: datetime | None = None
        end: int | None = None
        for line in raw.decode(errors="replace").splitlines():
            rec = RECORD_RE.search(line)
            if rec:
                hi, lo = rec.group(2).split("/")
                end = ((int(hi, 16) << 32) | int(lo, 16)) + int(rec.group(1))
            m = COMMIT_RE.search(line)
            if m:
                commit = datetime.fromisoformat(m.group(1)).replace(tzinfo=UTC)
        if end is None:   # nothing readable: the segment is not from this PostgreSQL version
            return None, (f"pg_waldump ({self.bins}) could not read WAL segment {segment}; "
                          "is [pitr] bin_dir the target's PostgreSQL version?")
        return _Scan(commit, end, size), ""

    async def _newest(self, max_seg: str, listing: dict[str, str] | None
                      ) -> tuple[_Scan | None, str]:
        """The newest archived segment's scan with the newest commit found walking back up to
        WALK_BACK segments (a segment after pg_switch_wal may hold no commit)."""
        newest, note = await self._scan(max_seg)
        if newest is None:
            return None, note
        seg_size = newest.size
        tli, index = segment_index(max_seg, seg_size)
        scan = newest
        for back in range(1, WALK_BACK):
            if scan.commit is not None or index - back < 0:
                break
            name = segment_name(tli, index - back, seg_size)
            if listing is not None and name not in listing:
                break
            earlier, _ = await self._scan(name)
            if earlier is None:
                break
            scan = earlier
        if scan.commit is None:
            return _Scan(None, newest.end_lsn, seg_size), (
                f"no commit found in the newest {WALK_BACK} archived WAL segments")
        return _Scan(scan.commit, newest.end_lsn, seg_size), ""

    async def _gaps(self, min_seg: str, max_seg: str, listing: dict[str, str],
                    seg_size: int) -> list[Gap]:
        """Missing segments between the archive's min and max, each run one Gap."""
        missing = _missing(min_seg, max_seg, listing, seg_size)
        gaps: list[Gap] = []
        runs: list[list[str]] = []
        for name in missing:
            if runs and _next(runs[-1][-1], seg_size) == name:
                runs[-1].append(name)
            else:
                runs.append([name])
        for run in runs:
            tli, first = segment_index(run[0], seg_size)
            before = None
            prior = segment_name(tli, first - 1, seg_size) if first > 0 else ""
            if prior in listing:
                scan, _ = await self._scan(prior)
                before = scan.commit if scan else None
            said = run[0] if len(run) == 1 else f"{run[0]} to {run[-1]} ({len(run)} segments)"
            gaps.append(Gap(text=f"WAL segment {said} is missing from the pgBackRest repository",
                            from_lsn=lsn_text(first * seg_size), before_time=before))
        return gaps

    # -- laying a data folder down ----------------------------------------------------------

    async def verify(self, label: str, on_line: Callable[[str], None]) -> str:
        """``pgbackrest verify``'s verdict on backup ``label`` and the backups it builds on
        (a diff/incr needs its full): '' when valid, else why. Unreadable archived WAL is
        said on ``on_line`` (verify does not say which segment; recovery fails if it needs
        one). 2.45's verify has no --set: it reads the whole repository."""
        entry = await self.info()
        chosen = next((b for b in entry.get("backup") or [] if b.get("label") == label), None)
        if chosen is None:
            return (f"backup {label} is no longer in the repository (expired since the window "
                    "was read?): read the window again")
        needed = [label, *(chosen.get("reference") or [])]
        out = await self._checked("verify", "--output=text", "--verbose")
        lines = out.splitlines()
        verdicts: dict[str, str] = {}
        for at, line in enumerate(lines):
            m = re.search(r"backup: (\S+), status: ([^,]+)(?:, total files checked: (\d+), "
                          r"total valid files: (\d+))?", line)
            if m:
                said = m.group(2).strip()
                if said != "valid" and m.group(3) is not None:
                    said += (f": {int(m.group(3)) - int(m.group(4))} of {m.group(3)} files "
                             "fail")
                    counts = _counts(lines, at)
                    said += f" ({counts})" if counts else ""
                verdicts[m.group(1)] = said
            w = re.search(r"archiveId: (\S+), total WAL checked: (\d+), total valid WAL: (\d+)",
                          line)
            if w and w.group(2) != w.group(3):
                counts = _counts(lines, at)
                on_line(f"warning: pgbackrest verify finds {int(w.group(2)) - int(w.group(3))} "
                        f"archived WAL segment(s) of {w.group(1)} unreadable"
                        + (f" ({counts})" if counts else "")
                        + "; the restore fails if it needs one")
        for needed_label in needed:
            verdict = verdicts.get(needed_label)
            if verdict is None or verdict == "valid":
                continue
            if needed_label == label:
                return f"pgbackrest verify finds backup {label} {verdict}"
            return (f"backup {label} builds on backup {needed_label}, and pgbackrest verify "
                    f"finds that one {verdict}")
        if label not in verdicts:
            on_line(f"warning: pgbackrest verify did not report on backup {label}")
        return ""

    async def prepare(self, target: PointTarget, base: BaseBackup, data_dir: Path,
                      on_line: Callable[[str], None]) -> Prepared:
        if base.problem:
            raise PitrError(f"base backup {base.id} cannot be restored: {base.problem}")
        on_line(f"checking backup {base.id} in the repository (pgbackrest verify)")
        bad = await self.verify(base.id, on_line)
        if bad:
            raise PitrError(bad + "; nothing was restored. Choose another backup or take a new "
                            "one (pgbackrest backup), and find the cause (disk, copies).")
        unreadable = await self._aside_cannot_fetch(base)
        if unreadable:
            raise PitrError(unreadable)
        filled = await asyncio.to_thread(_ready_folder, data_dir)
        options = [f"--set={base.id}", f"--type={target.kind}", f"--target={target.value}",
                   "--target-action=promote", f"--pg1-path={data_dir}"]
        if filled:
            options.append("--delta")
        major = await _bins_major(self.bins)
        settings = {"archive_mode": "off"}
        if major is None or int(major) >= 12:
            # the aside cluster must never push its own WAL into the live stanza's archive
            options.append("--archive-mode=off")
        on_line(f"restoring backup {base.id} into {data_dir} (pgbackrest restore, "
                f"recovery target {target.said})")
        rc, out, err = await self._run("restore", *options, on_line=on_line, cwd=data_dir)
        if rc != 0:
            raise PitrError(explain("restore", rc, err, out, self._version or "")
                            + "; the live database was not touched")
        await asyncio.to_thread(_hand_over, data_dir)
        return Prepared(data_dir=data_dir, base=base, settings=settings)


    async def _aside_cannot_fetch(self, base: BaseBackup) -> str:
        """As root the aside cluster runs as the sandbox's OS user, and so does the
        restore_command pgBackRest writes (``pgbackrest archive-get``): fetch the backup's
        last WAL segment as that user first. '' when it can (or when we are not root), else
        what to do."""
        from app.sandbox.server import os_user

        user = os_user()
        if user is None:
            return ""
        size = self._seg_size
        segment = segment_name(base.timeline, lsn_int(base.stop_lsn) // size, size)
        folder = await asyncio.to_thread(tempfile.mkdtemp, prefix="pgbr-aside-check-")
        try:
            os.chown(folder, user.pw_uid, user.pw_gid)
            rc, out, err = await self._run("archive-get", args=(segment, f"{folder}/{segment}"),
                                           user=user)
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)
        if rc in (0, 1):     # fetched, or not under that name: the restore itself will say
            return ""
        where = self.settings.pgbackrest_config or "/etc/pgbackrest/pgbackrest.conf"
        return (f"the aside cluster runs as OS user {user.pw_name}, and so does its "
                "restore_command (pgbackrest archive-get), which cannot read the repository "
                f"as that user: {explain('archive-get', rc, err, out, self._version or '')}. "
                f"Give {user.pw_name} read access to {where} and to the repository (for "
                "example: add it to the group that owns them); nothing was restored")


def _ready_folder(data_dir: Path) -> bool:
    """Create ``data_dir`` when missing; whether it already holds files (restore --delta)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return any(data_dir.iterdir())


def _hand_over(data_dir: Path) -> None:
    """The restored folder to the OS user the aside cluster runs as (as root: the sandbox
    user, whoever owned the files on the backed-up host), mode 0700 as PostgreSQL wants."""
    from app.sandbox.server import allow_traverse, chown_tree, os_user

    user = os_user()
    if user is not None:
        allow_traverse(data_dir)
        chown_tree(data_dir, user)
    data_dir.chmod(0o700)


def _console_line(line: str) -> str:
    """A pgbackrest console line without its timestamp and process prefix; '' for noise."""
    m = STAMP_RE.match(line)
    text = line[m.end():] if m else line
    if " command begin " in text or " command end" in text or not text.strip():
        return ""
    return text.strip()


def _counts(lines: list[str], at: int) -> str:
    """The non-zero counts of the 'missing: N, checksum invalid: N, ...' line after
    ``lines[at]`` in verify's text output."""
    if at + 1 < len(lines) and "checksum invalid" in lines[at + 1]:
        return ", ".join(p.strip() for p in lines[at + 1].split(",")
                         if not p.strip().endswith(": 0"))
    return ""


def _next(name: str, seg_size: int) -> str:
    tli, index = segment_index(name, seg_size)
    return segment_name(tli, index + 1, seg_size)


def _missing(first: str, last: str, listing: dict[str, str], seg_size: int) -> list[str]:
    """Segment names from ``first`` to ``last`` found on no timeline up to ``last``'s."""
    _, lo = segment_index(first, seg_size)
    top, hi = segment_index(last, seg_size)
    held = set()
    for name in listing:
        t, i = segment_index(name, seg_size)
        if t <= top:
            held.add(i)
    return [segment_name(top, i, seg_size) for i in range(lo, hi + 1) if i not in held]


async def _bins_major(bins: Path) -> str | None:
    """The major version of the server binaries in ``bins`` (``postgres --version``)."""
    postgres = bins / "postgres"
    if not postgres.exists():
        return None
    proc = await asyncio.create_subprocess_exec(
        str(postgres), "--version", stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    m = re.search(r"\) (\d+)", out.decode(errors="replace"))
    return m.group(1) if m else None
