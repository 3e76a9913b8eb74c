"""`backup` and `backups`: take a set in the runbook's layout with a manifest; list, verify and
rehearse sets. Exit codes: 0 ok, 1 verification failed, 2 bad input."""

from __future__ import annotations

import sys
from typing import Any

import click

from app.commands.rollback import given_time
from app.errors import BadInput, ConsoleError


async def _facts(cfg: Any, given: Any, sets: list[Any]) -> dict[str, Any]:
    """The migration's time (per set too, as the plan judges each: a set whose dump holds the
    newest recorded migration cannot be dated by it), the dump tools and the server's version;
    a target that does not answer does not stop the listing."""
    from app.backups.backupset import migration_time
    from app.backups.tools import tool_versions
    from app.db import connect

    facts: dict[str, Any] = {"tools": await tool_versions(cfg.target.tools_dir),
                             "migration_at": given, "migration_source": "--migration-time",
                             "per_set": {}}
    try:
        conn = await connect(cfg.target)
    except ConsoleError as exc:
        facts["server_version"] = f"unreachable ({exc})"
        if given is None and cfg.target.migration_at is not None:
            facts.update(migration_at=cfg.target.migration_at,
                         migration_source="target.migration_at")
        return facts
    try:
        facts["server_version"] = await conn.fetchval("SELECT current_setting('server_version')")
        if given is None:
            at, source = await migration_time(conn, cfg.target.migration_at)
            facts.update(migration_at=at, migration_source="target.migration_at"
                         if cfg.target.migration_at else source)
            for s in sets:
                facts["per_set"][s.id] = await migration_time(
                    conn, cfg.target.migration_at, s.path, cfg.target.tools_dir)
    finally:
        await conn.close()
    return facts


def _list(cfg: Any, root: Any, as_json: bool, given: Any, out: Any) -> None:
    """The listing: each set, its parts and age against the migration (judged per set, as
    the plan judges it), then the migration's time, the dump tools and the server."""
    import asyncio
    import json
    import time

    from app.backups.backupset import against_migration, describe_taken, list_sets

    sets = list_sets(root)
    facts = asyncio.run(_facts(cfg, given, sets))
    per_set = facts.pop("per_set")
    rows: list[dict[str, Any]] = []
    for s in sets:
        at, why = per_set.get(s.id, (facts["migration_at"], ""))
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
                     "taken_from": s.taken_note or None, "taken": describe_taken(s),
                     "age_hours": age, "parts": parts,
                     "size_bytes": sum(p.stat().st_size for p in files),
                     "manifest": s.manifest is not None, "verified": "not yet (--verify)",
                     "against_migration": against_migration(s, at) or (
                         f"vs the migration: {why}" if why.startswith("unknown") else None),
                     "after_migration": None if at is None or s.taken_at is None
                     else s.taken_at > at})
    at = facts["migration_at"]
    if as_json:
        click.echo(json.dumps({**facts, "migration_at": at.isoformat() if at else None,
                               "sets": rows}, indent=2))
        return
    if not rows:
        out.print(f"no backup sets under {root}: take one with `rollback-console backup`")
    for r in rows:
        # the id is what --backup takes: on its own line, whole, at any terminal width
        old = f"{r['age_hours']} h old" if r["age_hours"] is not None else "age unknown"
        out.print(r["id"], style="bold", markup=False, overflow="ignore", crop=False)
        vs = r["against_migration"] or "vs the migration: ?"
        manifest = "yes" if r["manifest"] else "NO"
        out.print(f"    taken {r['taken']} ({old}); {vs}; {', '.join(r['parts'])}; "
                  f"{r['size_bytes'] / 1e6:,.1f} MB; manifest {manifest}", markup=False)
    out.print(f"migration: {at:%Y-%m-%d %H:%M %Z} ({facts['migration_source']})" if at else
              "migration time unknown: give --migration-time or target.migration_at",
              markup=False)
    for name, tool in facts["tools"].items():
        out.print(f"{name}: {tool['version']} ({tool['path']})" if tool["path"] else
                  f"{name}: MISSING: {tool['problem']}", markup=False)
    out.print(f"server: {facts['server_version']}", markup=False)


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
    from app.backups.create import create_set

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
@click.option("--migration-time", default=None, metavar="ISO",
              help="When the bad migration ran [default: target.migration_at, else Supabase's "
              "supabase_migrations table]: each set's age is shown against it.")
@click.pass_context
def backups(ctx: click.Context, as_json: bool, verify_id: str | None, rehearse: bool,
            keep: bool, migration_time: str | None) -> None:
    """List the backup sets under the target's backups root (with their age against the
    migration, and the dump tools and server versions), or verify one."""
    import asyncio
    import json

    from rich.console import Console

    from app import config as config_mod
    from app import logs
    from app.backups.backupset import resolve
    from app.backups.verify import rehearse as rehearse_set
    from app.backups.verify import verify

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
        _list(cfg, root, as_json, given_time(migration_time), out)
        return

    chosen = resolve(root, verify_id)
    result = asyncio.run(verify(cfg, chosen, migration_at=given_time(migration_time)))
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
