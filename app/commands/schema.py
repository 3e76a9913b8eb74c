"""`diff`: the schema drift between the target and a backup set, read-only: what a schema-only
rollback (Type 1) would change, each statement annotated. Exit 0 no drift, 1 drift, 2 bad
input."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from app.commands.pitr import at_option, set_at

if TYPE_CHECKING:
    from app.backups.backupset import BackupSet
    from app.config import Config
    from app.drift import Drift


def register(group: click.Group) -> None:
    group.add_command(diff)


@click.command()
@click.option("--backup", "backup_id", default=None, help="Backup set id [default: newest].")
@at_option
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option("--sql", "as_sql", is_flag=True, help="Only the SQL plan, annotated in comments.")
@click.option("--rehearse", is_flag=True, help="Also apply the plan to a scratch copy of the "
              "target's schema (no rows) and check it reaches zero drift; exit 4 if not.")
@click.pass_context
def diff(ctx: click.Context, backup_id: str | None, at: str | None, as_json: bool,
         as_sql: bool, rehearse: bool) -> None:
    """Show how the target's schema differs from a backup's (changes nothing).

    The backup's schema is restored into a scratch database on the same server (dropped
    after), both catalogs are compared, and the DDL that takes the target back is printed with
    what each statement destroys. Platform schemas (target.platform_schemas) are left alone.

    \b
    Examples:
      rollback-console diff
      rollback-console diff --backup production_migration_20261124 --sql > plan.sql
      rollback-console diff --rehearse
      rollback-console diff --json | jq '.changes[].kind'

    Exit codes: 0 no drift, 1 drift, 2 bad input, 4 the rehearsal failed.
    """
    import asyncio
    import tempfile
    from pathlib import Path

    from app import config as config_mod
    from app import logs
    from app.backups.backupset import resolve
    from app.drift import drift
    from app.scratch import rehearse as rehearse_plan

    logs.configure()
    cfg = config_mod.load(ctx.obj["config_path"])
    backup_id = set_at(cfg, backup_id, at)
    backup = resolve(cfg.target.backups_root, backup_id)
    found = asyncio.run(drift(cfg, backup, cfg.target.platform_schemas))
    d = found.diff
    problems: list[str] | None = None
    if rehearse and not d.empty:
        with tempfile.TemporaryDirectory(prefix="rollback-rehearsal-") as work:
            problems = asyncio.run(rehearse_plan(cfg, backup, d, Path(work)))
    _show(cfg, backup, found, problems, as_json, as_sql)
    sys.exit(4 if problems else 1 if not d.empty else 0)


def _show(cfg: Config, backup: BackupSet, found: Drift, problems: list[str] | None, as_json: bool,
          as_sql: bool) -> None:
    """The drift as JSON, as the SQL script, or in words, and the rehearsal's result."""
    import json

    d = found.diff
    if as_json:
        print(json.dumps({
            "target": cfg.target.name, "backup": backup.id, "drift": not d.empty,
            "objects": {"target": found.target_objects, "backup": found.backup_objects},
            "changes": [{"kind": c.kind, "object": c.object, "note": c.note,
                         "destroys": c.destroys, "residual": c.residual, "blocker": c.blocker,
                         "sql": list(c.sql)} for c in d.changes],
            "unsupported": d.unsupported, "data_tables": d.data_tables,
            "rehearsal": None if problems is None else {"ok": not problems,
                                                         "problems": problems}}, indent=2))
    elif as_sql:
        print(d.script())
    elif d.empty:
        print(f"no drift: the schema of {cfg.target.name} equals backup {backup.id}'s "
              f"({found.backup_objects} objects compared)")
    else:
        n = len(d.changes) + len(d.unsupported)
        print(f"{n} difference(s) between {cfg.target.name} and backup {backup.id} "
              f"({found.target_objects} objects on the target, {found.backup_objects} in the "
              "backup). A schema-only rollback would run, in one transaction:\n")
        print(d.script())
        if d.data_tables:
            print(f"\nrows only the backup still has: {', '.join(d.data_tables)} (a partial "
                  "data rollback can follow)")
    if problems is not None and not as_json:
        print("\nREHEARSAL FAILED on a scratch copy of the target's schema: " + "; ".join(problems)
              if problems else "\nrehearsal: on a scratch copy of the target's schema the plan "
              "ran in one transaction and left zero drift from the backup's schema",
              file=sys.stderr if as_sql else sys.stdout)
