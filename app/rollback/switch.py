"""Type 3's switch: the restored copy takes the target's name, the current database is kept aside.

Both renames happen in one transaction, so there is never a moment without a database of that
name, and a failure leaves the names as they were. Sessions on the target are stopped first
(new ones refused, existing ones terminated), since a database in use cannot be renamed.
"""

from __future__ import annotations

import asyncio

import asyncpg

from app import faults
from app.capabilities import MAINTENANCE_DB, sessions_it_cannot_end
from app.catalog import quote_ident
from app.config import Config
from app.db import TargetUnreachable, connect
from app.lock import TargetLocked
from app.rollback.context import NeedsOperator, StepFailed


async def database_exists(admin: asyncpg.Connection, name: str) -> bool:
    return bool(await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))


# Settings whose value is a list of names: each element is quoted on its own (as pg_dump does).
LIST_SETTINGS = {"search_path", "temp_tablespaces", "session_preload_libraries",
                 "local_preload_libraries"}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _setting_value(name: str, value: str) -> str:
    """A stored ``name=value`` of pg_db_role_setting as the right-hand side of ``SET``."""
    if name not in LIST_SETTINGS:
        return _literal(value)
    items, current, quoted, i = [], "", False, 0
    while i < len(value):
        ch = value[i]
        if ch == '"' and quoted and value[i + 1:i + 2] == '"':
            current += '"'   # a doubled quote inside a quoted name
            i += 1
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            items.append(current)
            current = ""
        elif quoted or not ch.isspace():
            current += ch
        i += 1
    items.append(current)
    return ", ".join(_literal(item) for item in items if item)


async def database_settings(admin: asyncpg.Connection, source: str, target: str) -> list[str]:
    """What a database carries that neither a dump without --create nor a rename brings along:
    its privileges, its ``ALTER DATABASE/ROLE … SET`` settings, connection limit and comment,
    as statements that give ``target`` the same."""
    row = await admin.fetchrow(
        "SELECT oid, datacl IS NULL AS default_acl, datconnlimit, "
        "shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1",
        source)
    if row is None:
        return []
    db = quote_ident(target)
    out = []
    if not row["default_acl"]:
        out.append(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")
        for acl in await admin.fetch(
                "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident("
                "pg_get_userbyid(a.grantee)) END AS grantee, a.privilege_type, a.is_grantable "
                "FROM pg_database d, aclexplode(d.datacl) a WHERE d.oid = $1 "
                "AND a.grantee <> d.datdba ORDER BY 1, 2", row["oid"]):
            out.append(f"GRANT {acl['privilege_type']} ON DATABASE {db} TO {acl['grantee']}"
                       + (" WITH GRANT OPTION" if acl["is_grantable"] else ""))
    for setting in await admin.fetch(
            "SELECT CASE WHEN setrole = 0 THEN NULL ELSE quote_ident(pg_get_userbyid(setrole)) "
            "END AS role, unnest(setconfig) AS config FROM pg_db_role_setting "
            "WHERE setdatabase = $1 ORDER BY 1 NULLS FIRST, 2", row["oid"]):
        name, _, value = setting["config"].partition("=")
        scope = (f"ROLE {setting['role']} IN DATABASE {db}" if setting["role"]
                 else f"DATABASE {db}")
        out.append(f"ALTER {scope} SET {quote_ident(name)} = {_setting_value(name, value)}")
    if row["datconnlimit"] != -1:
        out.append(f"ALTER DATABASE {db} CONNECTION LIMIT {int(row['datconnlimit'])}")
    if row["comment"] is not None:
        out.append(f"COMMENT ON DATABASE {db} IS {_literal(row['comment'])}")
    return out


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


async def _allow_again(admin: asyncpg.Connection, database: str) -> bool:
    """ALLOW_CONNECTIONS back on; False when even that failed (the admin session is gone: then
    ``reopen_interrupted_switch`` at the next resume does it)."""
    try:
        await admin.execute(f"ALTER DATABASE {quote_ident(database)} WITH ALLOW_CONNECTIONS true")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return False
    return True


async def stop_sessions(admin: asyncpg.Connection, database: str, wait_s: float = 10.0) -> int:
    """Refuse new connections to ``database`` and terminate the current ones.

    From the moment connections are refused, any failure (sessions that will not end, a role
    that may not terminate them, a lost admin session, a cancelled task) allows connections
    again before it is raised: production is never left locked out by a switch that did not
    happen. Before that, nothing is touched when the admin session is on ``database`` itself
    or a session this role may not end is connected (a superuser's, another role's)."""
    if await admin.fetchval("SELECT current_database()") == database:
        raise StepFailed(f"the console's maintenance connection is on {database} itself: a "
                         "database cannot refuse connections to the session that asks, nor "
                         "be renamed from it; nothing was switched")
    stuck = await sessions_it_cannot_end(admin, database)
    if stuck:
        raise StepFailed(
            f"this role may not end every session on {database} (the sessions of "
            f"{', '.join(stuck)}; only a superuser may end a superuser's session): nothing was "
            "switched and connections were never refused. End those sessions (or connect as a "
            "superuser), then run the rollback again")
    await admin.execute(f"ALTER DATABASE {quote_ident(database)} WITH ALLOW_CONNECTIONS false")
    try:
        faults.point("switch:connections_refused")
        return await _terminate_sessions(admin, database, wait_s)
    except asyncpg.InsufficientPrivilegeError as exc:
        again = await _allow_again(admin, database)
        raise StepFailed(
            f"this role may not end every session on {database} ({exc}; a session of a "
            "superuser or of another role is connected); "
            + ("connections are allowed again and nothing was switched" if again else
               "nothing was switched, but connections could not be allowed again: "
               f"run ALTER DATABASE {quote_ident(database)} WITH ALLOW_CONNECTIONS true")
            + ". End those sessions (or use a superuser or a member of pg_signal_backend), "
            "then run the rollback again") from None
    except BaseException:
        await _allow_again(admin, database)
        raise


async def _terminate_sessions(admin: asyncpg.Connection, database: str, wait_s: float) -> int:
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
    except BaseException:
        # not committed (or not known to be): whichever database now has the name, it must
        # accept connections (the restored copy always does; the old one had them refused)
        await _allow_again(admin, target)
        raise
    await admin.execute(f"ALTER DATABASE {quote_ident(target)} WITH ALLOW_CONNECTIONS true")


async def reopen_interrupted_switch(cfg: Config) -> str | None:
    """Let the target accept connections again after a console died inside a Type 3 switch.

    The switch refuses new connections to the target, ends its sessions, then renames in one
    transaction: a console killed in between leaves the names as they were (all old) or
    switched (all new), but the target refusing every connection, so resume, validate and
    the app itself all fail. Through the maintenance database: when the database named like
    the target has ``datallowconn = false``, allow connections again and say what was found
    (None: nothing was wrong). Refused (``TargetLocked``) while a live console is switching.
    Call it before anything connects to the target."""
    target = cfg.target.database
    try:
        admin = await connect(cfg.target, database=MAINTENANCE_DB, server_settings={
            "application_name": "rollback-console reopen after an interrupted switch"})
    except TargetUnreachable:
        return None   # nothing to check from here (no switch could have run without it either)
    try:
        allowed = await admin.fetchval(
            "SELECT datallowconn FROM pg_database WHERE datname = $1", target)
        if allowed is None or allowed:
            return None
        switching = await admin.fetchval(
            "SELECT string_agg(application_name || ' (server pid ' || pid || ')', ', ') "
            "FROM pg_stat_activity WHERE application_name LIKE 'rollback-console % switch' "
            "AND pid <> pg_backend_pid()")
        if switching:
            raise TargetLocked(f"{target} refuses connections because a console is switching "
                               f"databases right now: {switching}; wait for it to finish")
        others = [r["datname"] for r in await admin.fetch(
            "SELECT datname FROM pg_database WHERE left(datname, length($1) + 10) = "
            "$1 || '_restored_' OR left(datname, length($1) + 7) = $1 || '_aside_' "
            "ORDER BY 1", target)]
        try:
            await admin.execute(f"ALTER DATABASE {quote_ident(target)} "
                                "WITH ALLOW_CONNECTIONS true")
        except asyncpg.InsufficientPrivilegeError as exc:
            raise NeedsOperator(
                f"{target} refuses all connections (a complete restore was stopped inside its "
                f"switch) and this role may not allow them again ({exc}): run ALTER DATABASE "
                f"{quote_ident(target)} WITH ALLOW_CONNECTIONS true as its owner or a "
                "superuser, then resume") from None
    finally:
        await admin.close()
    restored = [n for n in others if n.startswith(f"{target}_restored_")]
    state = (f"the names are as before the switch (the restored copy {', '.join(restored)} is "
             "still there, so resume switches again)" if restored else
             "no restored copy waits under its own name")
    return (f"{target} refused all connections (ALLOW_CONNECTIONS false): a complete restore "
            "was stopped inside its switch, after refusing connections and before renaming. "
            f"The renames are one transaction; {state}. Connections to {target} are allowed "
            "again")
