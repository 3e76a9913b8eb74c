"""A point in time as a restore source: the window checked, the moment restored ASIDE (a
scratch cluster on 127.0.0.1, never the live one), and the aside cluster's state captured as a
backup set of the runbook's layout, verified like any other (manifest, sha256, row counts).
Every rollback type, assess, validate and diff then read it through the RestoreSource
interface (app.backups.source) with the same gate, safety snapshot and validation; the set's
manifest records the moment (``point_in_time``), so its ``taken_at`` is that moment.

Nothing here writes to the live database: the live side is only read (the window, marks,
the migration's time) until the rollback's own destructive step.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.backups.backupset import BackupSet
from app.backups.create import create_set
from app.catalog import DatabaseIdentity, identity
from app.config import Config, PitrSettings, parse_time
from app.db import connect
from app.errors import BadInput
from app.pitr.marks import Mark, marks_on
from app.pitr.model import LSN_RE, Engine, PitrError, PointTarget, Window, when
from app.secrets import Secret

AUTO = "auto"   # `--at` alone: the newest mark before the migration, else a second before it


def settings(cfg: Config) -> PitrSettings:
    if cfg.pitr is None:
        raise BadInput(f"{cfg.path}: no [pitr] section, so there is no WAL archive to restore "
                       "a point in time from; add one (engine = \"native\" with archive_dir "
                       "and base_dir, or engine = \"pgbackrest\" with stanza): see README, "
                       "Point in time")
    return cfg.pitr


def server_bins(pitr: PitrSettings) -> Path:
    if pitr.bin_dir is not None:
        return pitr.bin_dir
    from app.sandbox.server import bin_dir

    return bin_dir()


def engine_for(cfg: Config) -> Engine:
    pitr = settings(cfg)
    if pitr.engine == "pgbackrest":
        from app.pitr.pgbackrest import PgBackRestEngine

        return PgBackRestEngine(pitr, server_bins(pitr))
    from app.pitr.native import NativeEngine

    return NativeEngine(pitr, server_bins(pitr))


def aside_root(pitr: PitrSettings) -> Path:
    from app.pitr.aside import default_root

    return default_root(pitr)


def sweep(cfg: Config, on_line: Callable[[str], None]) -> list[str]:
    """Aside clusters left by a console that died (kill -9 during a restore): stopped and
    removed, each said. Nothing to do without [pitr]."""
    if cfg.pitr is None:
        return []
    from app.pitr.aside import sweep_orphans

    cleaned = sweep_orphans(aside_root(cfg.pitr))
    for line in cleaned:
        on_line(line)
    return cleaned


def _pg_time(moment: datetime) -> str:
    """What recovery_target_time reads: ISO with an explicit UTC offset."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def resolve_target(text: str, marks: list[Mark], migration_at: datetime | None,
                   migration_said: str = "") -> PointTarget:
    """``--at``: an ISO time, an LSN (``16/B374D848``), a mark's label, or ``auto`` (the
    newest mark before the migration, else one second before the migration)."""
    text = text.strip()
    if text == AUTO:
        if migration_at is None:
            raise BadInput("--at needs a moment: the migration's time is unknown (give "
                           "--migration-time or target.migration_at), or name a mark, a time "
                           "or an LSN")
        before = [m for m in marks if m.at < migration_at]
        if before:
            return _mark_target(before[-1], f" (the newest mark before the migration at "
                                f"{when(migration_at)})")
        moment = migration_at - timedelta(seconds=1)
        return PointTarget("time", _pg_time(moment),
                           f"{when(moment)} (one second before the migration"
                           + (f", {migration_said}" if migration_said else "") + "; no mark "
                           "before it)", at=moment)
    if LSN_RE.match(text):
        return PointTarget("lsn", text.upper(), f"LSN {text.upper()}", lsn=text.upper())
    by_label = [m for m in marks if m.label == text]
    if by_label:
        return _mark_target(by_label[-1])
    if re.match(r"^\d{4}-\d{2}-\d{2}", text):
        try:
            moment = parse_time(text)
        except ValueError:
            raise BadInput(f"--at {text!r}: not a time; give ISO like 2026-12-02T04:31:07Z")\
                from None
        return PointTarget("time", _pg_time(moment), when(moment), at=moment)
    known = ", ".join(m.label for m in marks[-5:]) or "none on this database"
    raise BadInput(f"--at {text!r}: not a time, an LSN or a mark (marks: {known})")


def _mark_target(mark: Mark, why: str = "") -> PointTarget:
    return PointTarget("name", mark.restore_point, f"mark {mark.label} ({when(mark.at)}, LSN "
                       f"{mark.lsn}){why}", at=mark.at, lsn=mark.lsn)


async def live_facts(cfg: Config) -> tuple[DatabaseIdentity, list[Mark]]:
    """The live database's identity and its marks (read-only)."""
    conn = await connect(cfg.target)
    try:
        ident = await identity(conn)
    finally:
        await conn.close()
    return ident, marks_on(ident)


async def check_window(cfg: Config, target: PointTarget) -> Window:
    """The engine's window with ``target`` checked against it: refused (PitrError, exit 2)
    before anything starts when it is outside, behind a gap or without a usable base
    backup."""
    window = await engine_for(cfg).window()
    refusal = window.refusal(target)
    if refusal:
        raise PitrError(f"cannot restore {target.said}: {refusal}. Nothing was changed; "
                        "`rollback-console pitr` shows the window")
    return window


async def restore_point_in_time(cfg: Config, target: PointTarget, *,
                                tables: tuple[str, ...] = (), full: bool = True,
                                on_line: Callable[[str], None] = lambda _l: None,
                                on_progress: Callable[[float | None, str], None] =
                                lambda _f, _l: None) -> BackupSet:
    """Restore ``target`` aside and capture it as a backup set (only ``tables``' rows when
    given; the whole-database dump only when ``full``). The aside cluster is stopped and
    removed afterwards unless ``[pitr] keep_aside``; the live database is not touched."""
    from app.pitr.aside import AsideCluster

    pitr = settings(cfg)
    sweep(cfg, on_line)
    engine = engine_for(cfg)
    window = await check_window(cfg, target)
    base = window.base_for(target)
    assert base is not None   # check_window refused otherwise
    on_line(f"restoring {target.said} aside from base backup {base.id} ({engine.name})")
    cluster = await AsideCluster.create(aside_root(pitr), target)
    try:
        prepared = await engine.prepare(target, base, cluster.data_dir, on_line)
        await cluster.start(prepared, server_bins(pitr), end_lsn=target.lsn or window.latest_lsn,
                            on_progress=on_progress, target_dsn=cfg.target.dsn.reveal())
        reached = cluster.reached_at
        record = {**target.record(), "engine": engine.name, "base_backup": base.id,
                  "where": window.where}
        if record["at"] is None and reached is not None:
            record["at"] = reached.isoformat()
            record["said"] = f"{target.said} (last commit replayed {when(reached)})"
        aside_cfg = replace(cfg, target=replace(cfg.target, dsn=Secret(
            cluster.dsn(cfg.target.database, cfg.target.dsn.reveal()))))
        on_line("capturing the restored state as a backup set")
        return await create_set(aside_cfg, label=f"pitr-{_label(target)}", on_line=on_line,
                                only_tables=tables, full=full, point_in_time=record)
    finally:
        await cluster.stop(keep=pitr.keep_aside)
        if pitr.keep_aside:
            on_line(f"aside cluster kept in {cluster.folder} ([pitr] keep_aside)")


def _label(target: PointTarget) -> str:
    raw = target.value if target.kind != "time" else (target.at or datetime.now(UTC)) \
        .astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    return re.sub(r"[^A-Za-z0-9_.-]", "-", raw)[:40]
