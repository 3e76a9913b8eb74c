"""Know the role you are: what each rollback type can do as the connected role, decided at
connect time, BEFORE anything starts.

A managed platform (Supabase) gives its users a role that is not a superuser (``postgres``:
CREATEDB, CREATEROLE, BYPASSRLS, members of the API roles), keeps its own schemas, event
triggers and extensions under a superuser it keeps to itself (``supabase_admin``), names the
database ``postgres`` and holds sessions on it. Type 1 and Type 2 of the app's tables work
there; Type 3 by rename-and-switch cannot. This module reads the facts (role attributes and
memberships, the database's name and owner, the other sessions' roles, the owners a full dump
would set) and says per type: possible, why, and what to do instead.

Only reads; the keys are the rollback types' values (``"schema"``, ``"partial"``, ``"full"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from app.catalog import user_tables

# The server's maintenance database: the console connects there to rename the target, so the
# target can never be it (and a platform's project database is named so).
MAINTENANCE_DB = "postgres"
SCHEMA, PARTIAL, FULL = "schema", "partial", "full"
SWAP, IN_PLACE_BY_SCHEMA, WHOLE_DUMP_IN_PLACE = "swap", "in_place_by_schema", "in_place"


@dataclass(frozen=True)
class Capability:
    """One rollback type as this role: possible or not, why, and what to do instead."""

    kind: str
    possible: bool
    why: str
    instead: str = ""
    # Type 3 only: how it runs here. "swap": restore into a new database and switch names;
    # "in_place_by_schema": every schema the app owns restored in place (Type 1's catalog diff,
    # then Type 2's reload of every app table), the platform's schemas left alone.
    how: str = ""

    def message(self) -> str:
        """One line for a refusal: why not, then what to do instead."""
        return self.why + (f". Instead: {self.instead}" if self.instead else "")


@dataclass(frozen=True)
class RoleFacts:
    role: str
    superuser: bool
    createdb: bool
    signal_backend: bool          # member of pg_signal_backend
    memberships: tuple[str, ...]
    database: str
    database_owner: str
    owns_database: bool
    # other sessions on the database: (role, is superuser, may this role terminate it)
    sessions: tuple[tuple[str, bool, bool], ...]
    # owners a full dump sets (ALTER … OWNER TO) that this role may not become
    foreign_owners: tuple[str, ...]
    event_triggers: tuple[str, ...]
    app_tables: tuple[str, ...]
    tables_not_owned: tuple[str, ...]


_ROLE = """
SELECT r.rolname, r.rolsuper, r.rolcreatedb,
       pg_has_role('pg_signal_backend', 'MEMBER') AS signal_backend,
       ARRAY(SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid
             WHERE m.member = r.oid ORDER BY 1) AS memberships,
       current_database() AS db, pg_get_userbyid(d.datdba) AS db_owner,
       pg_has_role(d.datdba, 'MEMBER') AS owns_db
FROM pg_roles r, pg_database d
WHERE r.rolname = current_user AND d.datname = current_database()
"""

# pg_terminate_backend's rule: a superuser ends any session; anyone else only sessions of
# non-superuser roles whose privileges it has, or any non-superuser's as pg_signal_backend.
_SESSIONS = """
SELECT coalesce(a.usename::text, '') AS role, coalesce(r.rolsuper, false) AS super,
       CASE WHEN me.rolsuper THEN true
            WHEN coalesce(r.rolsuper, false) THEN false
            WHEN a.usesysid IS NULL THEN false
            ELSE pg_has_role(a.usesysid, 'USAGE')
                 OR pg_has_role('pg_signal_backend', 'USAGE') END AS can_end
FROM pg_stat_activity a LEFT JOIN pg_roles r ON r.oid = a.usesysid
JOIN pg_roles me ON me.rolname = current_user
WHERE a.datname = coalesce($1, current_database()) AND a.pid <> pg_backend_pid()
  AND coalesce(a.backend_type, 'client backend') = 'client backend'  -- NULL: not ours to see
ORDER BY 1
"""


async def sessions_it_cannot_end(conn: asyncpg.Connection, database: str) -> list[str]:
    """The roles of the sessions on ``database`` this role may not terminate (read-only)."""
    return sorted({r["role"] or "?" for r in await conn.fetch(_SESSIONS, database)
                   if not r["can_end"]})

# Every owner pg_dump writes an ALTER … OWNER TO for: schemas (public's default owner is
# never written), relations, functions, types, extensions' schemas, event triggers,
# publications; outside the system schemas.
_OWNERS = """
WITH owners(o) AS (
  SELECT nspowner FROM pg_namespace
   WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN ('information_schema', 'public')
  UNION SELECT c.relowner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
     AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  UNION SELECT p.proowner FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
  UNION SELECT evtowner FROM pg_event_trigger
  UNION SELECT pubowner FROM pg_publication)
SELECT pg_get_userbyid(o) AS owner FROM owners
WHERE NOT pg_has_role(o, 'MEMBER') ORDER BY 1
"""


async def read_facts(conn: asyncpg.Connection) -> RoleFacts:
    """The facts the decisions rest on, read from the connected database (read-only)."""
    row = await conn.fetchrow(_ROLE)
    sessions = await conn.fetch(_SESSIONS, None)
    owners = [r["owner"] for r in await conn.fetch(_OWNERS)] if not row["rolsuper"] else []
    events = [r["evtname"] for r in await conn.fetch(
        "SELECT evtname FROM pg_event_trigger ORDER BY 1")]
    tables = await user_tables(conn)
    not_owned = [r["t"] for r in await conn.fetch(
        "SELECT t FROM unnest($1::text[]) t JOIN pg_class c ON c.oid = to_regclass("
        "quote_ident(split_part(t, '.', 1)) || '.' || quote_ident(split_part(t, '.', 2))) "
        "WHERE NOT pg_has_role(c.relowner, 'MEMBER') ORDER BY 1", tables)]
    return RoleFacts(
        role=row["rolname"], superuser=row["rolsuper"], createdb=row["rolcreatedb"],
        signal_backend=row["signal_backend"], memberships=tuple(row["memberships"]),
        database=row["db"], database_owner=row["db_owner"], owns_database=row["owns_db"],
        sessions=tuple((s["role"], s["super"], s["can_end"]) for s in sessions),
        foreign_owners=tuple(owners), event_triggers=tuple(events),
        app_tables=tuple(tables), tables_not_owned=tuple(not_owned))


def _platform_restore(taken_at: datetime | None) -> str:
    when = (f"{taken_at:%Y-%m-%d %H:%M:%S %Z}".strip() if taken_at is not None
            else "the backup's time")
    return (f"restore through the platform: point-in-time restore to {when} (or restore to a "
            "new project), from its dashboard or support")


def full_reasons(facts: RoleFacts) -> list[str]:
    """Why Type 3 by rename-and-switch cannot run as this role (empty: it can)."""
    reasons = []
    if facts.database == MAINTENANCE_DB:
        reasons.append(f"the database is named {MAINTENANCE_DB}, the server's maintenance "
                       "database: it cannot be renamed while the console works from it "
                       "(a managed platform's project database is named so)")
    if not (facts.superuser or (facts.owns_database and facts.createdb)):
        reasons.append(f"role {facts.role} may not rename {facts.database} (owned by "
                       f"{facts.database_owner}; needs to own it with CREATEDB, or superuser)")
    stuck = sorted({role or "?" for role, _, can_end in facts.sessions if not can_end})
    if stuck:
        reasons.append(f"role {facts.role} may not end the sessions of {', '.join(stuck)} on "
                       f"{facts.database} (a superuser's session can only be ended by a "
                       "superuser)")
    return reasons + restore_reasons(facts)


def whole_dump_in_place(facts: RoleFacts) -> bool:
    """The old in-place Type 3 (the whole dump restored over the target, with
    --allow-in-place) is possible: renaming is the one obstacle, and the role may restore
    every owner and event trigger in the dump."""
    return (facts.database != MAINTENANCE_DB and not facts.foreign_owners
            and (facts.superuser or not facts.event_triggers)
            and all(r.startswith(f"role {facts.role} may not") for r in full_reasons(facts)))


def restore_reasons(facts: RoleFacts) -> list[str]:
    """Why this role cannot restore the database's whole dump (empty: it can): owners it may
    not become, event triggers only a superuser creates (a managed platform's database)."""
    reasons = []
    if facts.foreign_owners:
        reasons.append(f"a restore as {facts.role} cannot set the owners "
                       f"{', '.join(facts.foreign_owners)} that the dump sets")
    if facts.event_triggers and not facts.superuser:
        reasons.append(f"{len(facts.event_triggers)} event triggers "
                       f"({', '.join(facts.event_triggers)}) can only be restored by a "
                       "superuser")
    return reasons


def decide(facts: RoleFacts, taken_at: datetime | None = None) -> dict[str, Capability]:
    """Per rollback type, what this role can do, and what to do instead."""
    platform = _platform_restore(taken_at)
    out: dict[str, Capability] = {}
    if facts.superuser or facts.createdb:
        out[SCHEMA] = Capability(SCHEMA, True, f"role {facts.role} may create the scratch "
                                 "database the schema comparison needs")
    else:
        out[SCHEMA] = Capability(SCHEMA, False, f"role {facts.role} has no CREATEDB (the "
                                 "schema comparison restores into a scratch database)",
                                 "connect as a role with CREATEDB, or " + platform)
    if facts.tables_not_owned and not facts.superuser:
        out[PARTIAL] = Capability(
            PARTIAL, False, f"role {facts.role} does not own "
            f"{', '.join(facts.tables_not_owned)}", "connect as their owner, or " + platform)
    else:
        out[PARTIAL] = Capability(PARTIAL, True, f"role {facts.role} owns the app's tables")
    reasons = full_reasons(facts)
    if not reasons:
        out[FULL] = Capability(FULL, True, f"role {facts.role} may restore into a new "
                               f"database and switch it with {facts.database}", how=SWAP)
        return out
    if out[SCHEMA].possible and out[PARTIAL].possible:
        out[FULL] = Capability(
            FULL, True, "Type 3 restores IN PLACE, schema by schema: every schema the app "
            "owns from the backup (Type 1's catalog diff, then Type 2's reload of every app "
            "table); the platform's schemas, roles, event triggers and extensions are left "
            "alone. A swap (restore into a new database and switch) is impossible here: "
            + "; ".join(reasons), how=IN_PLACE_BY_SCHEMA)
        return out
    instead = []
    only_role = facts.database != MAINTENANCE_DB and not facts.superuser
    if only_role:
        instead.append("connect as a superuser")
    instead.append(platform)
    blocked = [c.why for c in (out[SCHEMA], out[PARTIAL]) if not c.possible]
    out[FULL] = Capability(FULL, False, "Type 3 is impossible here: neither a swap ("
                           + "; ".join(reasons) + ") nor in place by schema ("
                           + "; ".join(blocked) + ")", "; or ".join(instead))
    return out


async def full_capability(conn: asyncpg.Connection, taken_at: datetime | None,
                          allow_in_place: bool) -> Capability:
    """How Type 3 runs here: a swap; the whole dump in place (--allow-in-place, where renaming
    is the one obstacle); in place schema by schema; or impossible (with what to do)."""
    facts = await read_facts(conn)
    cap = decide(facts, taken_at)[FULL]
    if cap.how != SWAP and allow_in_place and whole_dump_in_place(facts):
        return Capability(FULL, True, "the whole dump restored in place (--allow-in-place): "
                          + "; ".join(full_reasons(facts)), how=WHOLE_DUMP_IN_PLACE)
    return cap


async def capabilities(conn: asyncpg.Connection,
                       taken_at: datetime | None = None) -> dict[str, Capability]:
    """Read the facts on ``conn`` (connected to the target) and decide per rollback type."""
    return decide(await read_facts(conn), taken_at)
