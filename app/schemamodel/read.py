"""A database's schema read from its catalogs into a ``SchemaModel``: what Type 1 compares.

Read on a connection whose ``search_path`` is ``pg_catalog`` (see ``read``), so every name the
server renders (types, defaults, view and policy expressions, index and trigger definitions)
comes out schema-qualified and two databases on the same server render alike. Objects that
belong to an extension are left out (the extension stands for them); so are the schemas in
``exclude`` (platform-managed ones by default), except their own USAGE/CREATE grants, which
migrations do touch.
"""

from __future__ import annotations

import asyncpg

from app.catalog import quote_ident
from app.schemamodel.model import (
    Column,
    Constraint,
    Function,
    Index,
    Policy,
    SchemaModel,
    Sequence,
    Table,
    Trigger,
    Type,
    View,
    qname,
)

SYSTEM_SCHEMAS = ("information_schema",)


# aclexplode over the effective ACL (NULL = the owner's defaults), without the owner's own
# privileges (implicit) and without grantors (a restore by another role changes them).
def _acl(column: str, kind: str, owner: str) -> str:
    return (f"ARRAY(SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE "
            f"quote_ident(pg_get_userbyid(a.grantee)) END || ':' || a.privilege_type || "
            f"CASE WHEN a.is_grantable THEN '*' ELSE '' END "
            f"FROM aclexplode(coalesce({column}, acldefault('{kind}', {owner}))) a "
            f"WHERE a.grantee <> {owner} ORDER BY 1)")


def _not_extension_member(classid: str, oid: str) -> str:
    return (f"NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{classid}'::regclass "
            f"AND e.objid = {oid} AND e.deptype = 'e')")


_FUNCTION_COLUMNS = (
    "n.nspname, p.proname, pg_get_function_identity_arguments(p.oid) AS args, "
    "p.prokind::text AS prokind, quote_ident(pg_get_userbyid(p.proowner)) AS owner, "
    "CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) END AS def, "
    "pg_get_function_result(p.oid) AS result, "
    f"{_acl('p.proacl', 'f', 'p.proowner')} AS acl")
_POLICY_COLUMNS = (
    "p.polname, p.polcmd::text AS polcmd, p.polpermissive, ARRAY(SELECT CASE WHEN x = 0 THEN "
    "'public' ELSE quote_ident(pg_get_userbyid(x)) END FROM unnest(p.polroles) x ORDER BY 1) "
    "AS roles, pg_get_expr(p.polqual, p.polrelid) AS qual, "
    "pg_get_expr(p.polwithcheck, p.polrelid) AS chk")
_COMMANDS = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}


def _policy(table: str, r: asyncpg.Record, depends: frozenset[str]) -> Policy:
    return Policy(table, r["polname"], _COMMANDS[r["polcmd"]], r["polpermissive"],
                  tuple(r["roles"]), r["qual"], r["chk"], depends)


_IN_SCOPE = "n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> ALL($1::text[])"


async def read(conn: asyncpg.Connection, exclude: tuple[str, ...]) -> SchemaModel:
    """The schema of the database ``conn`` is on. Only reads; works inside a transaction (Type 1
    reads the target again inside its own transaction, before committing)."""
    previous = await conn.fetchval("SELECT current_setting('search_path')")
    await conn.execute("SELECT set_config('search_path', 'pg_catalog', true)"
                       if conn.is_in_transaction() else "SET search_path = pg_catalog")
    try:
        return await _read(conn, (*exclude, *SYSTEM_SCHEMAS))
    finally:
        if not conn.is_in_transaction():
            await conn.execute("SELECT set_config('search_path', $1, false)", previous)


async def _read(conn: asyncpg.Connection, out: tuple[str, ...]) -> SchemaModel:
    m = SchemaModel(role=await conn.fetchval("SELECT quote_ident(current_user)"))
    excluded = list(out)
    for r in await conn.fetch(
            "SELECT n.nspname, quote_ident(pg_get_userbyid(n.nspowner)) AS owner, "
            f"{_acl('n.nspacl', 'n', 'n.nspowner')} AS acl FROM pg_namespace n "
            "WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> ALL($1::text[]) "
            f"AND {_not_extension_member('pg_namespace', 'n.oid')} ORDER BY 1",
            list(SYSTEM_SCHEMAS)):
        m.schemas[r["nspname"]] = (r["owner"], frozenset(r["acl"]))
    m.managed = frozenset(s for s in m.schemas if s in out)
    for r in await conn.fetch("SELECT x.extname, n.nspname, x.extversion FROM pg_extension x "
                              "JOIN pg_namespace n ON n.oid = x.extnamespace "
                              "WHERE x.extname <> 'plpgsql' ORDER BY 1"):
        m.extensions[r["extname"]] = (r["nspname"], r["extversion"])
    await _read_types(conn, m, excluded)
    await _read_relations(conn, m, excluded)
    await _read_functions(conn, m, excluded)
    await _read_user_objects_in_managed(conn, m)
    await _read_managed_acls(conn, m)
    grantees = await conn.fetch(
        "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE "
        "quote_ident(pg_get_userbyid(a.grantee)) END AS g FROM pg_default_acl d, "
        "aclexplode(d.defaclacl) a")
    m.default_acl_grantees = frozenset(r["g"] for r in grantees)
    return m


async def _read_types(conn: asyncpg.Connection, m: SchemaModel, excluded: list[str]) -> None:
    for r in await conn.fetch(
            "SELECT n.nspname, t.typname, t.typtype::text AS typtype, "
            "quote_ident(pg_get_userbyid(t.typowner)) AS owner, ARRAY(SELECT e.enumlabel::text "
            "FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) AS labels, "
            "format_type(t.typbasetype, t.typtypmod) AS base, "
            "t.typnotnull, t.typdefault, ARRAY(SELECT pg_get_constraintdef(c.oid) "
            "FROM pg_constraint c WHERE c.contypid = t.oid AND c.contype = 'c' "
            "ORDER BY c.conname) AS checks, ARRAY(SELECT quote_ident(a.attname) || ' ' || "
            "format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = "
            "t.typrelid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum) AS attrs "
            "FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            f"WHERE {_IN_SCOPE} AND {_not_extension_member('pg_type', 't.oid')} AND "
            "(t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND "
            "(SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')) ORDER BY 1, 2",
            excluded):
        name = qname(r["nspname"], r["typname"])
        if r["typtype"] == "e":
            m.types[name] = Type(name, "e", r["owner"], tuple(r["labels"]))
        elif r["typtype"] == "d":
            m.types[name] = Type(name, "d", r["owner"], definition=(
                r["base"], r["typnotnull"], r["typdefault"], tuple(r["checks"])))
        else:
            m.types[name] = Type(name, "c", r["owner"], definition=tuple(r["attrs"]))


async def _read_relations(conn: asyncpg.Connection, m: SchemaModel, excluded: list[str]) -> None:
    rels = await conn.fetch(
        "SELECT c.oid, n.nspname, c.relname, c.relkind::text AS relkind, "
        "c.relpersistence::text AS relpersistence, c.relrowsecurity, "
        "c.relforcerowsecurity, quote_ident(pg_get_userbyid(c.relowner)) AS owner, "
        "obj_description(c.oid, 'pg_class') AS comment, coalesce(c.reloptions, '{}') AS opts, "
        f"{_acl('c.relacl', 'r', 'c.relowner')} AS acl, "
        f"{_acl('c.relacl', 's', 'c.relowner')} AS seqacl, "
        "CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END AS viewdef "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE {_IN_SCOPE} AND {_not_extension_member('pg_class', 'c.oid')} "
        "AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND NOT c.relispartition "
        "ORDER BY n.nspname, c.relname",
        excluded)
    names = {r["oid"]: qname(r["nspname"], r["relname"]) for r in rels}
    oids = list(names)
    columns: dict[int, list[Column]] = {}
    for r in await conn.fetch(
            "SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod) AS typ, "
            "a.attnotnull, pg_get_expr(d.adbin, d.adrelid) AS def, "
            "a.attidentity::text AS attidentity, a.attislocal, "
            "a.attgenerated::text AS attgenerated, CASE WHEN a.attcollation <> t.typcollation THEN "
            "quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END AS coll, "
            "col_description(a.attrelid, a.attnum) AS comment, "
            "CASE WHEN a.attidentity <> '' THEN pg_get_serial_sequence("
            "a.attrelid::regclass::text, a.attname) END AS idseq "
            "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "LEFT JOIN pg_collation co ON co.oid = a.attcollation "
            "LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace "
            "WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attrelid, a.attnum", oids):
        cols = columns.setdefault(r["attrelid"], [])
        cols.append(Column(r["attname"], r["typ"], len(cols) + 1, r["attnotnull"], r["def"],
                           r["attidentity"], r["idseq"] or "", r["attgenerated"], r["coll"],
                           r["comment"], r["attislocal"]))
    parents: dict[int, list[str]] = {}
    for r in await conn.fetch(   # table inheritance (partitions are not in ``oids``)
            "SELECT inhrelid, inhparent FROM pg_inherits WHERE inhrelid = ANY($1::oid[]) "
            "ORDER BY inhrelid, inhseqno", oids):
        if r["inhparent"] in names:
            parents.setdefault(r["inhrelid"], []).append(names[r["inhparent"]])
    depends = await _dependencies(conn, names)
    for r in rels:
        oid, name, kind = r["oid"], names[r["oid"]], r["relkind"]
        if kind in ("r", "p"):
            m.tables[name] = Table(name, kind, r["owner"], tuple(columns.get(oid, ())),
                                   r["relpersistence"] == "u", r["relrowsecurity"],
                                   r["relforcerowsecurity"], r["comment"], frozenset(r["acl"]),
                                   oid, tuple(parents.get(oid, ())))
        elif kind in ("v", "m"):
            m.views[name] = View(name, kind, r["owner"], r["viewdef"].strip().rstrip(";"),
                                 tuple(sorted(r["opts"])), frozenset(r["acl"]), oid,
                                 frozenset(depends.get(("v", oid), ())))
    await _read_sequences(conn, m, names, excluded)
    await _read_attached(conn, m, names, depends)


async def _read_attached(conn: asyncpg.Connection, m: SchemaModel, names: dict[int, str],
                         depends: dict[tuple[str, int], set[str]]) -> None:
    """What hangs on the tables and views read: constraints, indexes, triggers, policies."""
    rel_oids = [o for o, n in names.items() if n in m.tables or n in m.views]
    for r in await conn.fetch(
            "SELECT c.conrelid, c.conname, c.contype::text AS contype, "
            "pg_get_constraintdef(c.oid) AS def, "
            "c.convalidated, CASE WHEN c.conindid <> 0 THEN quote_ident(inn.nspname) || '.' || "
            "quote_ident(i.relname) END AS idx FROM pg_constraint c "
            "LEFT JOIN pg_class i ON i.oid = c.conindid "
            "LEFT JOIN pg_namespace inn ON inn.oid = i.relnamespace "
            "WHERE c.conrelid = ANY($1::oid[]) AND c.contype IN ('p', 'u', 'c', 'f', 'x') "
            "AND c.conislocal ORDER BY c.conrelid::regclass::text, c.conname", rel_oids):
        table = names[r["conrelid"]]
        m.constraints[(table, r["conname"])] = Constraint(
            table, r["conname"], r["contype"], r["def"], r["convalidated"], r["idx"] or "")
    for r in await conn.fetch(
            "SELECT i.indrelid, n.nspname, c.relname, pg_get_indexdef(i.indexrelid) AS def "
            "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.indrelid = ANY($1::oid[]) "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid "
            "AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x')) ORDER BY 2, 3",
            rel_oids):
        table = names[r["indrelid"]]
        name = qname(r["nspname"], r["relname"])
        m.indexes[name] = Index(name, table, r["def"], table in m.views)
    for r in await conn.fetch(
            "SELECT t.tgrelid, t.tgname, pg_get_triggerdef(t.oid) AS def, "
            "t.tgenabled::text AS tgenabled "
            "FROM pg_trigger t WHERE t.tgrelid = ANY($1::oid[]) AND NOT t.tgisinternal "
            "AND t.tgparentid = 0 ORDER BY t.tgrelid::regclass::text, t.tgname", rel_oids):
        table = names[r["tgrelid"]]
        m.triggers[(table, r["tgname"])] = Trigger(table, r["tgname"], r["def"],
                                                   r["tgenabled"])
    for r in await conn.fetch(
            f"SELECT p.oid, p.polrelid, {_POLICY_COLUMNS} FROM pg_policy p "
            "WHERE p.polrelid = ANY($1::oid[]) ORDER BY p.polrelid::regclass::text, p.polname",
            rel_oids):
        table = names[r["polrelid"]]
        m.policies[(table, r["polname"])] = _policy(
            table, r, frozenset(depends.get(("p", r["oid"]), ())))


async def _dependencies(conn: asyncpg.Connection, names: dict[int, str]
                        ) -> dict[tuple[str, int], set[str]]:
    """What each view ('v', view oid) and policy ('p', policy oid) reads: relations, and
    "relation.column" for the columns (a column's type change must recreate them)."""
    out: dict[tuple[str, int], set[str]] = {}
    for r in await conn.fetch(
            "SELECT CASE WHEN d.classid = 'pg_rewrite'::regclass THEN 'v' ELSE 'p' END AS k, "
            "CASE WHEN d.classid = 'pg_rewrite'::regclass THEN rw.ev_class ELSE d.objid END "
            "AS obj, d.refobjid, a.attname FROM pg_depend d "
            "LEFT JOIN pg_rewrite rw ON d.classid = 'pg_rewrite'::regclass AND rw.oid = d.objid "
            "LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
            "AND d.refobjsubid > 0 WHERE d.classid IN ('pg_rewrite'::regclass, "
            "'pg_policy'::regclass) AND d.refclassid = 'pg_class'::regclass "
            "AND d.deptype = 'n'"):
        rel = names.get(r["refobjid"])
        if rel is None or (r["k"] == "v" and r["refobjid"] == r["obj"]):
            continue
        deps = out.setdefault((r["k"], r["obj"]), set())
        deps.add(rel)
        if r["attname"] is not None:
            deps.add(f"{rel}.{quote_ident(r['attname'])}")
    return out


async def _read_sequences(conn: asyncpg.Connection, m: SchemaModel, names: dict[int, str],
                          excluded: list[str]) -> None:
    for r in await conn.fetch(
            "SELECT s.seqrelid, format_type(s.seqtypid, NULL) AS typ, s.seqstart, "
            "s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle, "
            "quote_ident(pg_get_userbyid(c.relowner)) AS owner, "
            f"{_acl('c.relacl', 's', 'c.relowner')} AS acl, d.deptype::text AS deptype, "
            "quote_ident(tn.nspname) || '.' || quote_ident(tc.relname) || '.' || "
            "quote_ident(a.attname) AS owned_by "
            "FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid "
            "AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') "
            "LEFT JOIN pg_class tc ON tc.oid = d.refobjid "
            "LEFT JOIN pg_namespace tn ON tn.oid = tc.relnamespace "
            "LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
            f"WHERE {_IN_SCOPE} AND {_not_extension_member('pg_class', 'c.oid')} "
            "ORDER BY n.nspname, c.relname", excluded):
        name = names.get(r["seqrelid"])
        if name is None:
            continue
        options = (r["typ"], r["seqstart"], r["seqincrement"], r["seqmin"], r["seqmax"],
                   r["seqcache"], r["seqcycle"])
        m.sequences[name] = Sequence(name, r["owner"], options, r["owned_by"] or "",
                                     r["deptype"] == "i", frozenset(r["acl"]))


async def _read_functions(conn: asyncpg.Connection, m: SchemaModel, excluded: list[str]) -> None:
    for r in await conn.fetch(
            f"SELECT {_FUNCTION_COLUMNS} "
            "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            f"WHERE {_IN_SCOPE} AND {_not_extension_member('pg_proc', 'p.oid')} "
            "ORDER BY 1, 2, 3", excluded):
        _add_function(m, r)


def _add_function(m: SchemaModel, r: asyncpg.Record) -> None:
    sig = f"{qname(r['nspname'], r['proname'])}({r['args']})"
    m.functions[sig] = Function(sig, r["prokind"], r["owner"],
                                r["def"].strip() if r["def"] else None, r["result"] or "",
                                frozenset(r["acl"]))


async def _read_managed_acls(conn: asyncpg.Connection, m: SchemaModel) -> None:
    managed = sorted(m.managed)
    for r in await conn.fetch(
            "SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE ' ELSE 'TABLE ' END || "
            "quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS k, "
            f"CASE c.relkind WHEN 'S' THEN {_acl('c.relacl', 's', 'c.relowner')} "
            f"ELSE {_acl('c.relacl', 'r', 'c.relowner')} END AS acl "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'S') "
            f"AND {_not_extension_member('pg_class', 'c.oid')} "
            "UNION ALL SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE ' ELSE 'FUNCTION ' END || "
            "quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '(' || "
            "pg_get_function_identity_arguments(p.oid) || ')', "
            f"{_acl('p.proacl', 'f', 'p.proowner')} FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY($1::text[]) "
            f"AND p.prokind IN ('f', 'p') AND {_not_extension_member('pg_proc', 'p.oid')} "
            "ORDER BY 1", managed):
        m.managed_acls[r["k"]] = frozenset(r["acl"])



# Platform roles: superusers and the owners of the managed schemas, except the connected role
# when it is no superuser (the app's role: on Supabase ``postgres`` owns supabase_migrations).
_PLATFORM_ROLE = ("(SELECT r.rolsuper OR (r.oid IN (SELECT nspowner FROM pg_namespace "
                  "WHERE nspname = ANY($1::text[])) AND r.rolname <> current_user) "
                  "FROM pg_roles r WHERE r.oid = {owner})")


async def _read_user_objects_in_managed(conn: asyncpg.Connection, m: SchemaModel) -> None:
    """The app's own objects inside managed (platform) schemas: functions not owned by a
    platform role, triggers on platform tables calling such a function (or one outside the
    managed schemas), and policies on platform tables (the platform ships none: the app's
    migrations add them). The sign-up trigger on auth.users is one."""
    managed = sorted(m.managed)
    if not managed:
        return
    for r in await conn.fetch(
            f"SELECT {_FUNCTION_COLUMNS} "
            "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = ANY($1::text[]) "
            f"AND {_not_extension_member('pg_proc', 'p.oid')} "
            f"AND NOT {_PLATFORM_ROLE.format(owner='p.proowner')} ORDER BY 1, 2, 3", managed):
        _add_function(m, r)
    for r in await conn.fetch(
            "SELECT n.nspname, c.relname, t.tgname, pg_get_triggerdef(t.oid) AS def, "
            "t.tgenabled::text AS tgenabled FROM pg_trigger t "
            "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_proc f ON f.oid = t.tgfoid JOIN pg_namespace fn ON fn.oid = f.pronamespace "
            "WHERE n.nspname = ANY($1::text[]) AND NOT t.tgisinternal AND t.tgparentid = 0 "
            f"AND {_not_extension_member('pg_class', 'c.oid')} "
            "AND (fn.nspname <> ALL($1::text[]) OR NOT "
            f"{_PLATFORM_ROLE.format(owner='f.proowner')}) ORDER BY 1, 2, 3", managed):
        table = qname(r["nspname"], r["relname"])
        m.triggers[(table, r["tgname"])] = Trigger(table, r["tgname"], r["def"],
                                                   r["tgenabled"])
    for r in await conn.fetch(
            f"SELECT n.nspname, c.relname, {_POLICY_COLUMNS} FROM pg_policy p "
            "JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ANY($1::text[]) ORDER BY 1, 2, 3", managed):
        table = qname(r["nspname"], r["relname"])
        m.policies[(table, r["polname"])] = _policy(table, r, frozenset())
