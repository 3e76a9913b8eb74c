"""Type 3's switch: the restored copy takes the target's name, the current database is kept aside.

Both renames happen in one transaction, so there is never a moment without a database of that
name, and a failure leaves the names as they were. Sessions on the target are stopped first
(new ones refused, existing ones terminated), since a database in use cannot be renamed.
"""

from __future__ import annotations

import asyncio

import asyncpg

from app.catalog import quote_ident
from app.rollback.context import NeedsOperator, StepFailed


async def database_exists(admin: asyncpg.Connection, name: str) -> bool:
    return bool(await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))


async def can_rename(admin: asyncpg.Connection, name: str) -> str | None:
    """None when this role may rename ``name``; otherwise why not (owner/superuser/CREATEDB)."""
    row = await admin.fetchrow(
        "SELECT r.rolsuper, r.rolcreatedb, pg_has_role(d.datdba, 'USAGE') AS owns "
        "FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = $1", name)
    if row is None:
        return f"database {name} does not exist"
    if row["rolsuper"] or (row["owns"] and row["rolcreatedb"]):
        return None
    return (f"role {await admin.fetchval('SELECT current_user')} may not rename {name} "
            "(needs to own it and have CREATEDB, or be superuser)")


async def stop_sessions(admin: asyncpg.Connection, database: str, wait_s: float = 10.0) -> int:
    """Refuse new connections to ``database`` and terminate the current ones."""
    await admin.execute(f"ALTER DATABASE {quote_ident(database)} WITH ALLOW_CONNECTIONS false")
    terminated = 0
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        n = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()", database)
        terminated += int(n or 0)
        left = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
            "AND pid <> pg_backend_pid()", database)
        if not left:
            return terminated
        if asyncio.get_running_loop().time() > deadline:
            await admin.execute(f"ALTER DATABASE {quote_ident(database)} "
                                "WITH ALLOW_CONNECTIONS true")
            raise StepFailed(f"{left} sessions on {database} did not end within {wait_s:g}s; "
                             "connections are allowed again and nothing was switched")
        await asyncio.sleep(0.1)


async def switch(admin: asyncpg.Connection, target: str, restored: str, aside: str) -> None:
    """Rename ``target`` to ``aside`` and ``restored`` to ``target`` in one transaction.

    Idempotent for resume: if the switch already happened, it does nothing."""
    has_target, has_restored, has_aside = (
        await database_exists(admin, target), await database_exists(admin, restored),
        await database_exists(admin, aside))
    if has_aside and has_target and not has_restored:
        return  # done before a crash
    if not (has_target and has_restored):
        raise NeedsOperator(f"cannot switch: {target} exists={has_target}, {restored} "
                            f"exists={has_restored}, {aside} exists={has_aside}; inspect the "
                            "databases and the journal before going on")
    await stop_sessions(admin, target)
    try:
        async with admin.transaction():
            await admin.execute(f"ALTER DATABASE {quote_ident(target)} RENAME TO "
                                f"{quote_ident(aside)}")
            await admin.execute(f"ALTER DATABASE {quote_ident(restored)} RENAME TO "
                                f"{quote_ident(target)}")
    except asyncpg.PostgresError as exc:
        await admin.execute(f"ALTER DATABASE {quote_ident(target)} WITH ALLOW_CONNECTIONS true")
        raise StepFailed(f"the switch failed and was undone ({exc}); {target} is unchanged "
                         "and accepts connections again") from None
    await admin.execute(f"ALTER DATABASE {quote_ident(target)} WITH ALLOW_CONNECTIONS true")
