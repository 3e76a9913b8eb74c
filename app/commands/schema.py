"""`diff`: the schema drift between the target and a backup set, read-only: what a schema-only
rollback (Type 1) would change, each statement annotated. Exit 0 no drift, 1 drift, 2 bad
input."""

from __future__ import annotations

import asyncio
import json
import sys

import click


def register(group: click.Group) -> None:
    group.add_command(diff)


@click.command()
@click.option("--backup", "backup_id", default=None, help="Backup set id [default: newest].")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option("--sql", "as_sql", is_flag=True, help="Only the SQL plan, annotated in comments.")
@click.pass_context
def diff(ctx: click.Context, backup_id: str | None, as_json: bool, as_sql: bool) -> None:
    """Show how the target's schema differs from a backup's (changes nothing).

    The backup's schema is restored into a scratch database on the same server (dropped
    after), both catalogs are compared, and the DDL that takes the target back is printed with
    what each statement destroys. Platform schemas (target.platform_schemas) are left alone.

    \b
    Examples:
      rollback-console diff
      rollback-console diff --backup production_migration_20261124 --sql > plan.sql
      rollback-console diff --json | jq '.changes[].kind'
    """
    from app import config as config_mod
    from app import logs
    from app.rollback.backupset import resolve
    from app.schemadiff import drift

    logs.configure()
    cfg = config_mod.load(ctx.obj["config_path"])
    backup = resolve(cfg.target.backups_root, backup_id)
    found = asyncio.run(drift(cfg, backup, cfg.target.platform_schemas))
    d = found.diff
    if as_json:
        print(json.dumps({
            "target": cfg.target.name, "backup": backup.id, "drift": not d.empty,
            "objects": {"target": found.target_objects, "backup": found.backup_objects},
            "changes": [{"kind": c.kind, "object": c.object, "note": c.note,
                         "destroys": c.destroys, "residual": c.residual, "blocker": c.blocker,
                         "sql": list(c.sql)} for c in d.changes],
            "unsupported": d.unsupported, "data_tables": d.data_tables}, indent=2))
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
    sys.exit(1 if not d.empty else 0)
