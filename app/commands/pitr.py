"""`pitr` (the WAL archive's recoverable window) and `mark` (a named restore point, journaled),
plus the ``--at`` option that `run`, `assess`, `validate` and `diff` share: a point in time
restored aside and captured as a verified backup set. Exit codes: 0 ok, 1 the window has a gap
or no usable base backup, 2 bad input (nothing changed)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from app.errors import BadInput

if TYPE_CHECKING:
    from app.backups.backupset import BackupSet
    from app.config import Config

AT_HELP = ("Restore from a point in time instead of a backup set: an ISO time, a mark's "
           "label, an LSN (16/B374D848), or --at alone for the newest mark before the "
           "migration, else one second before it. Needs [pitr]; the moment is restored aside "
           "(a scratch cluster, never the live one) and captured as a verified set.")


def at_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--at", "at", default=None, is_flag=False, flag_value="auto",
                        metavar="WHEN", help=AT_HELP)(f)


def register(group: click.Group) -> None:
    group.add_command(pitr)
    group.add_command(mark)


def _err(line: str) -> None:
    click.echo(line, err=True)


class _Bar:
    """Replay progress on stderr: a bar on a terminal, a line per 10 % otherwise."""

    def __init__(self) -> None:
        self.shown = -1

    def __call__(self, fraction: float | None, line: str) -> None:
        if fraction is None:
            _err(f"  {line}")
            return
        tenth = int(fraction * 10)
        if sys.stderr.isatty():
            filled = int(fraction * 30)
            click.echo(f"\r  [{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%} {line}"[:120],
                       err=True, nl=fraction >= 1)
        elif tenth != self.shown:
            self.shown = tenth
            _err(f"  {fraction:4.0%} {line}")


async def point_in_time_set(cfg: Config, at: str, tables: tuple[str, ...] = (),
                            full: bool = True, migration_at: Any = None) -> BackupSet:
    """``--at`` as a backup set: the target resolved (marks, the migration's time), the
    window checked, the moment restored aside and captured, progress on stderr."""
    from app.backups.backupset import migration_time
    from app.db import connect
    from app.pitr.source import live_facts, resolve_target, restore_point_in_time

    _ident, marks = await live_facts(cfg)
    said = ""
    if migration_at is None and at == "auto":
        conn = await connect(cfg.target)
        try:
            migration_at, said = await migration_time(conn, cfg.target.migration_at)
        finally:
            await conn.close()
    target = resolve_target(at, marks, migration_at, said)
    _err(f"point in time: {target.said}")
    backup = await restore_point_in_time(cfg, target, tables=tables, full=full,
                                         on_line=lambda line: _err(f"  {line}"),
                                         on_progress=_Bar())
    _err(f"captured as backup set {backup.id}")
    return backup


def set_at(cfg: Config, backup_id: str | None, at: str | None) -> str | None:
    """``--backup`` or ``--at`` of a command that compares (assess, validate, diff): with
    ``--at``, the moment restored aside and captured (no whole-database dump); its set's id."""
    if at is None:
        return backup_id
    if backup_id is not None:
        raise BadInput("give --backup or --at, not both")
    import asyncio

    return asyncio.run(point_in_time_set(cfg, at, full=False)).id


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.pass_context
def pitr(ctx: click.Context, as_json: bool) -> None:
    """The WAL archive's recoverable window: base backups, the earliest and latest moment that
    can be restored, gaps (a missing segment, a timeline break) and the marks, read-only.

    \b
    Examples:
      rollback-console pitr
      rollback-console mark --label before-deploy-142
      rollback-console run --type partial --tables media --at before-deploy-142 --dry-run
      rollback-console run --type full --at 2026-12-02T04:31:07Z --dry-run

    Exit codes: 0 the window is whole, 1 it has a gap or no usable base backup, 2 bad input."""
    import asyncio

    from app import config as config_mod

    cfg = config_mod.load(ctx.obj["config_path"])
    sys.exit(asyncio.run(_pitr(cfg, as_json)))


async def _pitr(cfg: Config, as_json: bool) -> int:
    import json

    from app.errors import ConsoleError
    from app.pitr.model import when
    from app.pitr.source import engine_for, live_facts, sweep

    sweep(cfg, _err)
    window = await engine_for(cfg).window()
    try:
        _ident, marks = await live_facts(cfg)
        marks_note = ""
    except ConsoleError as exc:
        marks, marks_note = [], f"marks not read: {exc}"
    bad = bool(window.gaps) or not window.usable()
    if as_json:
        click.echo(json.dumps({
            "engine": window.engine, "where": window.where, "timeline": window.timeline,
            "earliest": window.earliest.isoformat() if window.earliest else None,
            "latest": window.latest.isoformat() if window.latest else None,
            "latest_lsn": window.latest_lsn,
            "base_backups": [{"id": b.id, "start_lsn": b.start_lsn, "stop_lsn": b.stop_lsn,
                              "start_time": b.start_time.isoformat(),
                              "stop_time": b.stop_time.isoformat(), "timeline": b.timeline,
                              "size_bytes": b.size, "problem": b.problem or None}
                             for b in window.base_backups],
            "gaps": [{"text": g.text, "from_lsn": g.from_lsn} for g in window.gaps],
            "notes": list(window.notes) + ([marks_note] if marks_note else []),
            "marks": [{"label": m.label, "lsn": m.lsn, "at": m.at.isoformat(),
                       "archived": m.archived} for m in marks],
            "whole": not bad}, indent=2))
        return 1 if bad else 0
    click.echo(f"Point-in-time window ({window.engine}: {window.where})")
    click.echo(f"  earliest: {when(window.earliest) if window.earliest else 'none'}")
    click.echo(f"  latest:   {when(window.latest) if window.latest else 'unknown'}"
               + (f"  (WAL to {window.latest_lsn})" if window.latest_lsn else ""))
    click.echo("Base backups:")
    for b in window.base_backups or ():
        state = f"UNUSABLE: {b.problem}" if b.problem else "ok"
        size = f", {b.size / 1e6:,.1f} MB" if b.size else ""
        click.echo(f"  {b.id}: {when(b.start_time)} .. {when(b.stop_time)}, LSN {b.start_lsn}"
                   f"..{b.stop_lsn}, timeline {b.timeline}{size}: {state}")
    if not window.base_backups:
        click.echo("  none")
    click.echo("Gaps:" if window.gaps else "Gaps: none (every segment since the oldest usable "
               "base backup is in the archive)")
    for g in window.gaps:
        click.echo(f"  ✖ {g.text}")
    for note in (*window.notes, *([marks_note] if marks_note else [])):
        click.echo(f"Note: {note}")
    click.echo("Marks:" if marks else "Marks: none (make one before a migration: "
               "`rollback-console mark --label NAME`)")
    for m in marks:
        click.echo(f"  {m.label}: {when(m.at)}, LSN {m.lsn}"
                   + ("" if m.archived else " (not switched out: archived when its WAL segment "
                      "fills)"))
    return 1 if bad else 0


@click.command()
@click.option("--label", default=None, help="The restore point's name [default: "
              "mark-<UTC time>]; `--at LABEL` restores to it.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.pass_context
def mark(ctx: click.Context, label: str | None, as_json: bool) -> None:
    """Mark this moment: a named restore point on the target (pg_create_restore_point) and a
    WAL switch so the archive holds it at once; journaled. The runbook's "backup before the
    migration", in milliseconds. Exit codes: 0 marked, 2 refused (nothing marked)."""
    import asyncio
    import getpass
    import json

    from app import config as config_mod
    from app.pitr.marks import create_mark
    from app.pitr.model import when

    cfg = config_mod.load(ctx.obj["config_path"])
    if label is not None and not label.strip():
        raise BadInput("--label is empty: give a name, or leave the option out")
    m = asyncio.run(create_mark(cfg, label, getpass.getuser()))
    if as_json:
        click.echo(json.dumps({"label": m.label, "lsn": m.lsn, "at": m.at.isoformat(),
                               "archived": m.archived, "database": m.database}))
    else:
        click.echo(f"marked {m.label} on {m.database}: {when(m.at)}, LSN {m.lsn}"
                   + ("" if m.archived else "; archive_mode is off or the WAL switch was "
                      "refused: the archive holds it once its segment fills"))
        click.echo(f"  roll back to it: rollback-console run --type partial --tables T "
                   f"--at {m.label} --dry-run")
