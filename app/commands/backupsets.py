"""`backup` and `backups`: take a set in the runbook's layout with a manifest; list, verify and
rehearse sets. Exit codes: 0 ok, 1 verification failed, 2 bad input."""

from __future__ import annotations

import sys
from typing import Any

import click

from app.errors import BadInput


def register(group: click.Group) -> None:
    group.add_command(backup)
    group.add_command(backups)


@click.command()
@click.option("--label", default="", help="Appended to the set's name (letters, digits, -_).")
@click.option("--tables", default="", help="Only these tables get a table_<name>_backup.sql "
              "(comma separated); schema and full dumps always cover everything.")
@click.pass_context
def backup(ctx: click.Context, label: str, tables: str) -> None:
    """Take a backup set: schema, one file per table, a full dump (SQL and custom format) and
    manifest.json, all from one snapshot; written aside and renamed when complete."""
    import asyncio

    from rich.console import Console

    from app import config as config_mod
    from app import logs
    from app.rollback.backupset import create_set

    if label and not label.replace("-", "").replace("_", "").isalnum():
        raise BadInput(f"--label {label!r}: use letters, digits, '-' and '_' only")
    logs.configure()
    cfg = config_mod.load(ctx.obj["config_path"])
    err = Console(stderr=True, highlight=False)
    with err.status("taking the backup…") as status:
        only = tuple(t.strip() if "." in t else f"public.{t.strip()}"
                     for t in tables.split(",") if t.strip())
        made = asyncio.run(create_set(cfg, label, on_line=lambda line: status.update(line),
                                      only_tables=only))
    size = sum(p.stat().st_size for p in made.path.iterdir())
    click.echo(f"backup set {made.id} written to {made.path} ({size / 1e6:,.1f} MB)")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
@click.option("--verify", "verify_id", default=None, metavar="ID",
              help="Verify a set: hashes, every dump parses, taken from this target.")
@click.option("--rehearse", is_flag=True, help="With --verify: restore into a scratch database "
              "and compare with the manifest.")
@click.option("--keep", is_flag=True, help="With --rehearse: keep the scratch database.")
@click.pass_context
def backups(ctx: click.Context, as_json: bool, verify_id: str | None, rehearse: bool,
            keep: bool) -> None:
    """List the backup sets under the target's backups root, or verify one."""
    import asyncio
    import json
    import time

    from rich.console import Console
    from rich.table import Table

    from app import config as config_mod
    from app import logs
    from app.rollback.backupset import list_sets, resolve
    from app.rollback.verify import rehearse as rehearse_set
    from app.rollback.verify import verify

    logs.configure()
    cfg = config_mod.load(ctx.obj["config_path"])
    root = cfg.target.backups_root
    if not root.is_dir():
        raise BadInput(f"the backups root {root} does not exist: set target.backups_root in "
                       f"{cfg.path}, or take a set with `rollback-console backup`")
    if (rehearse or keep) and verify_id is None:
        raise BadInput("--rehearse and --keep go with --verify ID")
    out = Console(highlight=False, soft_wrap=True)
    if verify_id is None:
        sets = list_sets(root)
        rows: list[dict[str, Any]] = []
        for s in sets:
            files = [p for p in s.path.iterdir() if p.is_file()]
            parts = [part for part, present in (
                ("schema", (s.path / "schema_only_backup.sql").is_file()),
                (f"{sum(1 for p in files if p.name.startswith('table_'))} tables",
                 any(p.name.startswith("table_") for p in files)),
                ("full SQL", (s.path / "full_database_backup.sql").is_file()),
                ("full custom", (s.path / "full_database_backup.dump").is_file())) if present]
            age = None if s.taken_at is None else round((time.time()
                                                         - s.taken_at.timestamp()) / 3600, 1)
            rows.append({"id": s.id, "taken_at": s.taken_at.isoformat() if s.taken_at else None,
                         "age_hours": age, "parts": parts,
                         "size_bytes": sum(p.stat().st_size for p in files),
                         "manifest": s.manifest is not None, "verified": "not yet (--verify)"})
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        if not rows:
            out.print(f"no backup sets under {root}: take one with `rollback-console backup`")
            return
        table = Table("id", "taken at", "age", "parts", "size", "manifest")
        for r in rows:
            table.add_row(r["id"], r["taken_at"] or "unknown", f"{r['age_hours']} h"
                          if r["age_hours"] is not None else "?", ", ".join(r["parts"]),
                          f"{r['size_bytes'] / 1e6:,.1f} MB", "yes" if r["manifest"] else "NO")
        out.print(table)
        return

    chosen = resolve(root, verify_id)
    result = asyncio.run(verify(cfg, chosen))
    if rehearse and result.ok:
        rehearsal = asyncio.run(rehearse_set(cfg, chosen, keep=keep))
        result.checked += rehearsal.checked
        result.problems += rehearsal.problems
        result.not_verifiable += rehearsal.not_verifiable
        result.ok = result.ok and rehearsal.ok
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        for line in result.checked:
            out.print(f"✔ {line}", markup=False)
        for line in result.not_verifiable:
            out.print(f"– NOT VERIFIABLE: {line}", markup=False)
        for line in result.problems:
            out.print(f"✖ PROBLEM: {line}", markup=False)
        out.print(f"{'VERIFIED' if result.ok else 'NOT VERIFIED'}: set {chosen.id}"
                  + (" (restore rehearsed)" if rehearse and result.ok else ""))
    sys.exit(0 if result.ok else 1)
