"""From two schema models to the DDL that turns the first (the live target) into the second
(the backup's schema), keeping the data: columns and tables renamed back rather than dropped
and re-added, types converted in place, and each statement annotated with what it changes and
what data it destroys.

Order: everything that must go is dropped first, in reverse dependency order (policies,
triggers, views, foreign keys, constraints, indexes), then the structure is brought back
(schemas, extensions, types, sequences, functions, tables, columns), then what hangs on it is
recreated (constraints, foreign keys, indexes, views, triggers, RLS, policies, owners, grants),
and last what no longer exists in the backup is dropped (functions, sequences, types,
extensions, schemas). Phases are numbers; statements keep their order within a phase.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from app.catalog import quote_ident
from app.schemadiff.snapshot import (
    Column,
    Constraint,
    Function,
    SchemaModel,
    Sequence,
    Table,
    Type,
)

RELKIND = {"v": "VIEW", "m": "MATERIALIZED VIEW"}


@dataclass
class Change:
    phase: int
    kind: str                 # e.g. "drop column", "rename table"
    object: str               # what it acts on, qualified
    sql: tuple[str, ...]
    note: str = ""            # what it changes, in words
    count_sql: str = ""       # read-only count on the target for the blast radius
    count_says: str = ""      # "{n:,} non-null values lost" (n from count_sql)
    count_table: str = ""     # a large table is estimated from statistics, not counted
    count_column: str = ""    # ... counting this column's non-null values
    destroys: str = ""        # filled by measure(): data this statement destroys
    fails_if_count: str = ""  # when count_sql > 0 the statement would fail: why
    if_rows_sql: tuple[str, ...] = ()   # used instead of sql when count_sql > 0
    residual: str = ""        # drift it cannot remove without data (a Type 2 follows)
    data_tables: tuple[str, ...] = ()   # tables whose rows only the backup still has
    blocker: str = ""         # filled by measure(): this plan would fail, and why

    def describe(self) -> str:
        text = f"{self.kind} {self.object}"
        if self.note:
            text += f": {self.note}"
        if self.destroys:
            text += f" — DESTROYS {self.destroys}"
        if self.residual:
            text += f" — LEFT FOR A DATA ROLLBACK: {self.residual}"
        return text


@dataclass
class Diff:
    changes: list[Change] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.changes and not self.unsupported

    @property
    def statements(self) -> list[str]:
        return [s for c in self.changes for s in c.sql]

    @property
    def data_tables(self) -> list[str]:
        return sorted({t for c in self.changes for t in c.data_tables})

    @property
    def blockers(self) -> list[str]:
        return [f"{c.kind} {c.object}: {c.blocker}" for c in self.changes if c.blocker]

    def summary(self) -> list[str]:
        return [c.describe() for c in self.changes] + \
            [f"UNSUPPORTED: {u}" for u in self.unsupported]

    def script(self) -> str:
        """The plan as SQL a DBA reads and signs off: each change's comment, then its SQL."""
        out = []
        for c in self.changes:
            out.append(f"-- {c.describe()}")
            out += [s + ";" for s in c.sql]
        out += [f"-- UNSUPPORTED (must be done by hand): {u}" for u in self.unsupported]
        return "\n".join(out)


def _col(table: str, column: str) -> str:
    return f"{table}.{quote_ident(column)}"


def column_sql(c: Column) -> str:
    parts = [quote_ident(c.name), c.type]
    if c.collation:
        parts.append(f"COLLATE {c.collation}")
    if c.generated:
        parts.append(f"GENERATED ALWAYS AS ({c.default}) "
                     + ("STORED" if c.generated == "s" else "VIRTUAL"))
    elif c.default is not None:
        parts.append(f"DEFAULT {c.default}")
    if c.identity:
        how = "ALWAYS" if c.identity == "a" else "BY DEFAULT"
        seq = f" (SEQUENCE NAME {c.identity_seq})" if c.identity_seq else ""
        parts.append(f"GENERATED {how} AS IDENTITY{seq}")
    if c.not_null:
        parts.append("NOT NULL")
    return " ".join(parts)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _acl_sql(target: str, current: Iterable[str], wanted: Iterable[str]) -> list[str]:
    """REVOKE what only ``current`` has, then GRANT what only ``wanted`` has; one statement
    per grantee (and grant option)."""
    cur, want = set(current), set(wanted)
    revoke: dict[str, list[str]] = {}
    grant: dict[tuple[str, bool], list[str]] = {}
    for entry in sorted(cur - want):
        grantee, _, priv = entry.partition(":")
        revoke.setdefault(grantee, []).append(priv.rstrip("*"))
    for entry in sorted(want - cur):
        grantee, _, priv = entry.partition(":")
        grant.setdefault((grantee, priv.endswith("*")), []).append(priv.rstrip("*"))
    out = [f"REVOKE {', '.join(privs)} ON {target} FROM {grantee}"
           for grantee, privs in revoke.items()]
    out += [f"GRANT {', '.join(privs)} ON {target} TO {grantee}"
            + (" WITH GRANT OPTION" if option else "")
            for (grantee, option), privs in grant.items()]
    return out


class _Differ:
    def __init__(self, cur: SchemaModel, want: SchemaModel) -> None:
        self.cur, self.want = cur, want
        self.changes: list[Change] = []
        self.unsupported: list[str] = []
        self.renamed: dict[str, str] = {}        # cur table -> want table
        self.dropped_tables: set[str] = set()   # cur names
        self.created: set[str] = set()          # want names of objects created from nothing
        self.touched: set[str] = set()          # cur "table.col" whose type changes
        self.dropped_columns: dict[str, set[str]] = {}   # cur table -> its dropped columns
        self.recreated_views: set[str] = set()

    def add(self, phase: int, kind: str, obj: str, *sql: str, **kw: object) -> Change:
        change = Change(phase, kind, obj, tuple(sql), **kw)  # type: ignore[arg-type]
        self.changes.append(change)
        return change

    def run(self) -> None:
        self.schemas()
        self.extensions()
        self.tables()
        self.types()
        self.sequences()
        self.functions()
        self.constraints()
        self.indexes()
        self.views()
        self.triggers()
        self.policies()
        self.grants_and_owners()

    # -- containers ------------------------------------------------------------------------

    def schemas(self) -> None:
        cur, want = self.cur.schemas, self.want.schemas
        for name, (owner, _acl) in want.items():
            if name not in cur and name not in self.want.managed:
                self.add(20, "create schema", quote_ident(name),
                         f"CREATE SCHEMA {quote_ident(name)} AUTHORIZATION {owner}")
                self.created.add(f"schema {name}")
        for name in cur:
            if name not in want and name not in self.cur.managed:
                self.add(64, "drop schema", quote_ident(name),
                         f"DROP SCHEMA {quote_ident(name)}",
                         note="the migration's schema; it must be empty by now")

    def extensions(self) -> None:
        cur, want = self.cur.extensions, self.want.extensions
        for name, (schema, version) in want.items():
            if name not in cur:
                self.add(21, "create extension", name,
                         f"CREATE EXTENSION IF NOT EXISTS {quote_ident(name)} WITH SCHEMA "
                         f"{quote_ident(schema)} VERSION {_literal(version)}")
            elif cur[name][1] != version:
                self.add(21, "change extension version", name,
                         f"ALTER EXTENSION {quote_ident(name)} UPDATE TO {_literal(version)}",
                         note=f"{cur[name][1]} back to {version} (needs a downgrade path)")
            elif cur[name][0] != schema:
                self.add(21, "move extension", name,
                         f"ALTER EXTENSION {quote_ident(name)} SET SCHEMA {quote_ident(schema)}")
        for name in cur:
            if name not in want:
                self.add(63, "drop extension", name, f"DROP EXTENSION {quote_ident(name)}",
                         note="added by the migration", destroys="the extension's objects")

    # -- types, sequences, functions -------------------------------------------------------

    def types(self) -> None:
        cur, want = self.cur.types, self.want.types
        for name, t in want.items():
            old = cur.get(name)
            if old is None:
                self.add(22, "create type", name, _create_type(t))
                self.created.add(name)
            elif old.kind != t.kind:
                self.unsupported.append(f"type {name} changed kind; recreate it by hand")
            elif t.kind == "e" and old.labels != t.labels:
                self.enum(old, t)
            elif t.kind != "e" and old.definition != t.definition:
                self.unsupported.append(f"{'domain' if t.kind == 'd' else 'composite type'} "
                                        f"{name} changed: {old.definition} -> {t.definition}")
        for name in cur:
            if name not in want:
                self.add(62, "drop type", name, f"DROP TYPE {name}", note="added by the migration")

    def enum(self, old: Type, new: Type) -> None:
        labels = list(old.labels)
        if all(label in new.labels for label in labels) and \
                [x for x in new.labels if x in labels] == labels:
            sql = []
            for i, label in enumerate(new.labels):
                if label not in labels:
                    where = (f" AFTER {_literal(new.labels[i - 1])}" if i else
                             f" BEFORE {_literal(new.labels[1])}" if len(new.labels) > 1 else "")
                    sql.append(f"ALTER TYPE {new.name} ADD VALUE {_literal(label)}{where}")
            self.add(22, "add enum values", new.name, *sql,
                     note=f"({', '.join(old.labels)}) back to ({', '.join(new.labels)})")
            return
        # Values cannot be removed from an enum: build the backup's type beside it, convert the
        # columns through text, drop the old one.
        aside = new.name[:-1] + '__rollback_old"'
        plain = _unquoted(old.name)
        users = [(t, c) for t in self.cur.tables.values() for c in t.columns
                 if _unquoted(c.type) in (plain, plain + "[]") and t.name not in
                 self.dropped_tables and c.name not in self.dropped_columns.get(t.name, ())]
        for t, c in users:
            if c.type.endswith("[]"):
                self.unsupported.append(f"{_col(t.name, c.name)} is an array of {old.name}, "
                                        "which changes labels: convert it by hand")
        users = [(t, c) for t, c in users if not c.type.endswith("[]")]
        self.add(22, "recreate enum", new.name, f"ALTER TYPE {new.name} RENAME TO "
                 f"{aside.split('.', 1)[1]}", _create_type(new),
                 note=f"({', '.join(old.labels)}) back to ({', '.join(new.labels)}): values "
                      "cannot be removed from an enum, so the backup's type is built beside "
                      "it and the columns converted")
        keep = ", ".join(_literal(x) for x in new.labels)
        for table, column in users:
            target = self.renamed.get(table.name, table.name)
            ref = quote_ident(column.name)
            self.touched.add(_col(table.name, column.name))
            want_table = self.want.tables.get(target)
            want_col = want_table.column(column.name) if want_table else None
            default = want_col.default if want_col else None
            sql = [f"ALTER TABLE {table.name} ALTER COLUMN {ref} DROP DEFAULT"] \
                if column.default is not None else []
            sql.append(f"ALTER TABLE {table.name} ALTER COLUMN {ref} TYPE {new.name} "
                       f"USING {ref}::text::{new.name}")
            if default is not None:
                sql.append(f"ALTER TABLE {table.name} ALTER COLUMN {ref} SET DEFAULT {default}")
            self.add(36, "convert column", _col(table.name, column.name), *sql,
                     note=f"to the backup's {new.name}",
                     count_sql=f"SELECT count(*) FROM {table.name} WHERE {ref}::text "
                               f"NOT IN ({keep})",
                     fails_if_count="{n:,} rows hold values the backup's enum does not have: "
                                    "fix or delete them first")
        self.add(62, "drop type", aside, f"DROP TYPE {aside}",
                 note="the migration's version of the enum, now unused")

    def sequences(self) -> None:
        cur, want = self.cur.sequences, self.want.sequences
        for name, s in want.items():
            if s.identity:
                continue
            old = cur.get(name)
            if old is None or old.identity:
                self.add(23, "create sequence", name, _create_sequence(s))
                self.created.add(name)
            elif old.options != s.options:
                self.add(37, "alter sequence", name, _alter_sequence(s),
                         note="options back to the backup's (the current value is kept)")
            if s.owned_by and (old is None or old.owned_by != s.owned_by):
                self.add(37, "sequence owned by", name,
                         f"ALTER SEQUENCE {name} OWNED BY {s.owned_by}")
        for name, s in cur.items():
            if name in want or s.identity:
                continue
            table, _, column = s.owned_by.rpartition(".")
            if table in self.dropped_tables or \
                    _unquoted(column) in self.dropped_columns.get(table, ()):
                continue   # goes with its table or column
            self.add(61, "drop sequence", name, f"DROP SEQUENCE {name}",
                     note="added by the migration")

    def functions(self) -> None:
        cur, want = self.cur.functions, self.want.functions
        for sig, f in want.items():
            old = cur.get(sig)
            if f.definition is None:
                if old is None:
                    self.unsupported.append(f"aggregate/window function {sig} is missing; "
                                            "recreate it from the backup by hand")
                continue
            if old is None:
                self.add(24, f"create {_routine(f).lower()}", sig, f.definition)
                self.created.add(sig)
            elif old.definition != f.definition:
                if old.result != f.result:
                    self.add(24, f"recreate {_routine(f).lower()}", sig,
                             f"DROP {_routine(old)} {sig}", f.definition,
                             note=f"returns {old.result} now, {f.result} in the backup")
                else:
                    self.add(24, f"replace {_routine(f).lower()}", sig, f.definition,
                             note="body or attributes back to the backup's")
        for sig, f in cur.items():
            if sig not in want:
                self.add(60, f"drop {_routine(f).lower()}", sig, f"DROP {_routine(f)} {sig}",
                         note="added by the migration")

    # -- tables and columns ----------------------------------------------------------------

    def tables(self) -> None:
        cur, want = self.cur.tables, self.want.tables
        extra = [t for t in cur.values() if t.name not in want]
        for name, t in want.items():
            if name in cur:
                continue
            schema = name.split(".", 1)[0]
            twins = [x for x in extra if x.shape() == t.shape()
                     and x.name.split(".", 1)[0] == schema and x.name not in self.renamed]
            if len(twins) == 1:
                self.renamed[twins[0].name] = name
                self.add(30, "rename table", twins[0].name,
                         f"ALTER TABLE {twins[0].name} RENAME TO {name.split('.', 1)[1]}",
                         note=f"back to {name} (same columns; its rows are kept)")
        for t in extra:
            if t.name in self.renamed:
                continue
            self.dropped_tables.add(t.name)
            self.add(31, "drop table", t.name, f"DROP TABLE {t.name}",
                     note="added by the migration", count_sql=f"SELECT count(*) FROM {t.name}",
                     count_table=t.name,
                     count_says="{n:,} rows")
        for name, t in _parents_first(want):
            if name in cur:
                self.columns(cur[name], t)
                self.inheritance(cur[name], t)
            elif name not in self.renamed.values():
                self.create_table(t)
            else:
                old = next(c for c, w in self.renamed.items() if w == name)
                self.table_flags(cur[old], t)

    def create_table(self, t: Table) -> None:
        if t.kind == "p":
            self.unsupported.append(f"partitioned table {t.name} was dropped: recreate it and "
                                    "its partitions from the backup by hand")
            return
        # a child declares only its own columns: the inherited ones (and their NOT NULL
        # constraints, with the parent's names) come from INHERITS
        cols = ",\n    ".join(column_sql(c) for c in t.columns if c.local or not t.inherits)
        unlogged = "UNLOGGED " if t.unlogged else ""
        inherits = f" INHERITS ({', '.join(t.inherits)})" if t.inherits else ""
        self.created.add(t.name)
        self.add(32, "create table", t.name,
                 f"CREATE {unlogged}TABLE {t.name} (\n    {cols}\n){inherits}",
                 note="dropped by the migration; it comes back EMPTY: its rows are only in the "
                      "backup (follow with a partial data rollback of this table)",
                 data_tables=(t.name,))
        self.table_flags(None, t)

    def inheritance(self, old: Table, t: Table) -> None:
        for parent in t.inherits:
            if parent not in old.inherits:
                self.add(36, "inherit", t.name, f"ALTER TABLE {t.name} INHERIT {parent}",
                         note=f"a child of {parent} in the backup")
        for parent in old.inherits:
            if parent not in t.inherits:
                self.add(36, "no inherit", t.name, f"ALTER TABLE {t.name} NO INHERIT {parent}",
                         note=f"made a child of {parent} by the migration")

    def table_flags(self, old: Table | None, t: Table) -> None:
        if (old.rls if old else False) != t.rls:
            self.add(53, "row level security", t.name, f"ALTER TABLE {t.name} "
                     f"{'ENABLE' if t.rls else 'DISABLE'} ROW LEVEL SECURITY",
                     note="enabled in the backup" if t.rls else "disabled in the backup")
        if (old.force_rls if old else False) != t.force_rls:
            self.add(53, "force row level security", t.name, f"ALTER TABLE {t.name} "
                     f"{'' if t.force_rls else 'NO '}FORCE ROW LEVEL SECURITY")
        if old is not None and old.unlogged != t.unlogged:
            self.add(36, "persistence", t.name,
                     f"ALTER TABLE {t.name} SET {'UNLOGGED' if t.unlogged else 'LOGGED'}")
        if (old.comment if old else None) != t.comment:
            self.add(55, "comment", t.name, f"COMMENT ON TABLE {t.name} IS "
                     + (_literal(t.comment) if t.comment is not None else "NULL"))
        for c in t.columns:
            before = old.column(c.name) if old else None
            if (before.comment if before else None) != c.comment:
                self.add(55, "comment", _col(t.name, c.name),
                         f"COMMENT ON COLUMN {_col(t.name, c.name)} IS "
                         + (_literal(c.comment) if c.comment is not None else "NULL"))

    def columns(self, old: Table, t: Table) -> None:
        name = t.name
        old_names = {c.name for c in old.columns}
        new_names = {c.name for c in t.columns}
        extra = [c for c in old.columns if c.name not in new_names]
        renames: dict[str, str] = {}
        for c in t.columns:
            if c.name in old_names:
                continue
            anchors = _anchors(t.columns, c, old_names & new_names)
            twins = [x for x in extra if x.shape() == c.shape() and x.name not in renames
                     and _anchors(old.columns, x, old_names & new_names) == anchors]
            if len(twins) == 1:
                renames[twins[0].name] = c.name
                self.add(33, "rename column", _col(name, twins[0].name),
                         f"ALTER TABLE {name} RENAME COLUMN {quote_ident(twins[0].name)} TO "
                         f"{quote_ident(c.name)}",
                         note=f"back to {c.name}, keeping its values (same type and place; "
                              "if it is a new column rather than a renamed one, its values "
                              f"become {c.name}'s)")
        for c in extra:
            if c.name in renames:
                continue
            ref = _col(name, c.name)
            self.dropped_columns.setdefault(name, set()).add(c.name)
            self.add(34, "drop column", ref,
                     f"ALTER TABLE {name} DROP COLUMN {quote_ident(c.name)}",
                     note="added by the migration",
                     count_sql=f"SELECT count({quote_ident(c.name)}) FROM {name}",
                     count_table=name, count_column=c.name,
                     count_says="{n:,} non-null values")
        for c in t.columns:
            before = old.column(c.name) or next(
                (x for x in old.columns if renames.get(x.name) == c.name), None)
            if before is None:
                self.add_column(t, c)
            else:
                self.alter_column(name, before, c)
        self.table_flags(old, t)

    def add_column(self, t: Table, c: Column) -> None:
        sql = f"ALTER TABLE {t.name} ADD COLUMN {column_sql(c)}"
        needs_values = c.not_null and c.default is None and not c.identity and not c.generated
        kw: dict[str, object] = {}
        if needs_values:
            kw = {"count_sql": _any_row(t.name),
                  "if_rows_sql": (f"ALTER TABLE {t.name} ADD COLUMN "
                                  f"{column_sql(replace(c, not_null=False))}",),
                  "residual": "NOT NULL comes back with the values (the table has rows)"}
        self.add(35, "add column", _col(t.name, c.name), sql,
                 note="dropped by the migration; it comes back without its values (NULL or "
                      "its default): they are only in the backup", data_tables=(t.name,), **kw)

    def alter_column(self, table: str, old: Column, new: Column) -> None:
        ref, col = _col(table, new.name), quote_ident(new.name)
        alter = f"ALTER TABLE {table} ALTER COLUMN {col}"
        if old.generated != new.generated or (new.generated and old.default != new.default):
            self.add(35, "recreate generated column", ref,
                     f"ALTER TABLE {table} DROP COLUMN {col}",
                     f"ALTER TABLE {table} ADD COLUMN {column_sql(new)}",
                     note="its expression back to the backup's (values are computed again)")
            return
        if old.identity and old.identity != new.identity:
            self.add(36, "drop identity", ref, f"{alter} DROP IDENTITY")
        retype = old.type != new.type or old.collation != new.collation
        if retype:
            coll = f" COLLATE {new.collation}" if new.collation else ""
            self.touched.add(_col(table, old.name))
            sql = [f"{alter} DROP DEFAULT"] if old.default is not None else []
            sql.append(f"{alter} TYPE {new.type}{coll} USING {col}::{new.type}")
            if new.default is not None and not new.identity:
                sql.append(f"{alter} SET DEFAULT {new.default}")
            self.add(36, "change type", ref, *sql,
                     note=f"{old.type} back to {new.type}: the table is rewritten; a value that "
                          "does not convert stops the whole plan",
                     count_sql=f"SELECT count(*) FROM {table}", count_table=table,
                     count_says="{n:,} rows rewritten")
        elif old.default != new.default and not new.identity:
            self.add(36, "default", ref, f"{alter} DROP DEFAULT" if new.default is None
                     else f"{alter} SET DEFAULT {new.default}",
                     note=f"back to {new.default}" if new.default else "none in the backup")
        if new.identity and old.identity != new.identity:
            how = "ALWAYS" if new.identity == "a" else "BY DEFAULT"
            drop = [f"{alter} DROP DEFAULT"] if old.default is not None and not retype else []
            self.add(36, "identity", ref, *drop, f"{alter} ADD GENERATED {how} AS IDENTITY"
                     + (f" (SEQUENCE NAME {new.identity_seq})" if new.identity_seq else ""))
        if old.not_null != new.not_null:
            if new.not_null:
                self.add(36, "set not null", ref, f"{alter} SET NOT NULL",
                         count_sql=f"SELECT count(*) FROM {table} WHERE {col} IS NULL",
                         fails_if_count="{n:,} rows are NULL: NOT NULL cannot come back until "
                                        "they have values")
            else:
                self.add(36, "drop not null", ref, f"{alter} DROP NOT NULL")

    # -- what hangs on tables --------------------------------------------------------------

    def constraints(self) -> None:
        cur, want = self.cur.constraints, self.want.constraints
        redo_index: set[str] = set()     # indexes dropped and rebuilt: their FKs must follow
        for key, c in cur.items():
            w = want.get(key)
            if c.type != "f" and c.index and (w is None or w.definition != c.definition):
                redo_index.add(c.index)
        redo_index |= {i.name for k, i in self.cur.indexes.items()
                       if k not in self.want.indexes
                       or self.want.indexes[k].definition != i.definition}
        for key, c in sorted(cur.items(), key=lambda kv: kv[1].type != "f"):
            if c.table in self.dropped_tables:
                continue
            w = want.get(key)
            same = w is not None and w.definition == c.definition and not (
                c.type == "f" and c.index in redo_index)
            if same:
                continue
            if w is not None and c.definition == w.definition + " NOT VALID" \
                    and c.index not in redo_index:
                continue   # validated below
            self.add(13 if c.type == "f" else 14, "drop constraint", f"{c.table} {c.name}",
                     f"ALTER TABLE {c.table} DROP CONSTRAINT {quote_ident(c.name)}",
                     note="added by the migration" if w is None else "changed by the migration")
        for key, w in sorted(want.items(), key=lambda kv: kv[1].type == "f"):
            have = cur.get(key)
            if have is not None and have.table not in self.dropped_tables:
                if have.definition == w.definition and not (w.type == "f" and have.index in
                                                            redo_index):
                    continue
                if have.definition == w.definition + " NOT VALID" and \
                        have.index not in redo_index:
                    self.add(41, "validate foreign key" if w.type == "f" else
                             "validate constraint", f"{w.table} {w.name}",
                             f"ALTER TABLE {w.table} VALIDATE CONSTRAINT {quote_ident(w.name)}",
                             note="NOT VALID now, valid in the backup")
                    continue
            self.add_constraint(w)

    def add_constraint(self, w: Constraint) -> None:
        sql = f"ALTER TABLE {w.table} ADD CONSTRAINT {quote_ident(w.name)} {w.definition}"
        kind = {"p": "primary key", "u": "unique", "c": "check", "f": "foreign key",
                "x": "exclusion"}[w.type]
        if w.type != "f":
            self.add(40, f"add {kind}", f"{w.table} {w.name}", sql)
            return
        referenced = w.definition.split(" REFERENCES ", 1)[1].split("(", 1)[0].strip()
        kw: dict[str, object] = {}
        if any(referenced == _unquoted(t) or referenced == t for t in self.created) \
                and w.table not in self.created and "NOT VALID" not in w.definition:
            kw = {"count_sql": _any_row(w.table),
                  "if_rows_sql": (sql + " NOT VALID",),
                  "residual": f"NOT VALID until {referenced} gets its rows back"}
        self.add(41, f"add {kind}", f"{w.table} {w.name}", sql, **kw)

    def indexes(self) -> None:
        cur, want = self.cur.indexes, self.want.indexes
        for name, i in cur.items():
            if i.table in self.dropped_tables:
                continue
            w = want.get(name)
            if w is None or w.definition != i.definition:
                self.add(15, "drop index", name, f"DROP INDEX {name}",
                         note="added by the migration" if w is None else "changed")
        for name, w in want.items():
            old = cur.get(name)
            if old is None or old.definition != w.definition or old.table in \
                    self.dropped_tables:
                self.add(51 if w.on_matview else 42, "create index", name, w.definition,
                         note="dropped or changed by the migration; built again",
                         count_sql=f"SELECT count(*) FROM {w.table}" if w.table in
                         self.cur.tables else "", count_table=w.table,
                         count_says="built over {n:,} rows")

    def views(self) -> None:
        cur, want = self.cur.views, self.want.views
        redo: set[str] = set()
        for name, v in cur.items():
            w = want.get(name)
            if w is None or (w.definition, w.options, w.kind) != (v.definition, v.options,
                                                                  v.kind) \
                    or v.depends & self.touched or v.depends & set(self.renamed):
                redo.add(name)
        grew = True
        while grew:   # a view on a view that is rebuilt is rebuilt too
            more = {n for n, v in cur.items() if n not in redo and v.depends & redo}
            grew = bool(more)
            redo |= more
        self.recreated_views = redo
        self.touched |= redo
        for name in sorted(redo, key=lambda n: -cur[n].order):
            v = cur[name]
            self.add(12, f"drop {RELKIND[v.kind].lower()}", name,
                     f"DROP {RELKIND[v.kind]} {name}",
                     note="added by the migration" if name not in want else
                     "rebuilt from the backup's definition")
        for name, w in sorted(want.items(), key=lambda kv: kv[1].order):
            if name in cur and name not in redo:
                continue
            opts = f" WITH ({', '.join(w.options)})" if w.options else ""
            data = " WITH DATA" if w.kind == "m" else ""
            self.created.add(name)
            self.add(50, f"create {RELKIND[w.kind].lower()}", name,
                     f"CREATE {RELKIND[w.kind]} {name}{opts} AS\n{w.definition}{data}")

    def triggers(self) -> None:
        cur, want = self.cur.triggers, self.want.triggers
        for key, t in cur.items():
            if t.table in self.dropped_tables:
                continue
            w = want.get(key)
            if w is None or w.definition != t.definition or t.table in self.recreated_views:
                self.add(11, "drop trigger", f"{t.table} {t.name}",
                         f"DROP TRIGGER {quote_ident(t.name)} ON {t.table}",
                         note="added by the migration" if w is None else "changed")
        for key, w in want.items():
            old = cur.get(key)
            fresh = old is None or old.definition != w.definition or old.table in \
                self.dropped_tables or w.table in self.recreated_views
            if fresh:
                self.add(52, "create trigger", f"{w.table} {w.name}", w.definition)
            if (w.enabled != "O" and fresh) or (old is not None and not fresh
                                                and old.enabled != w.enabled):
                how = {"O": "ENABLE", "D": "DISABLE", "R": "ENABLE REPLICA",
                       "A": "ENABLE ALWAYS"}[w.enabled]
                self.add(52, "trigger state", f"{w.table} {w.name}",
                         f"ALTER TABLE {w.table} {how} TRIGGER {quote_ident(w.name)}",
                         note=f"{how.lower()}d in the backup")

    def policies(self) -> None:
        cur, want = self.cur.policies, self.want.policies

        def same(a: object, b: object) -> bool:
            fields = ("command", "permissive", "roles", "using", "check")
            return all(getattr(a, f) == getattr(b, f) for f in fields)

        for key, p in cur.items():
            if p.table in self.dropped_tables:
                continue
            w = want.get(key)
            if w is None or not same(p, w) or p.depends & self.touched:
                self.add(10, "drop policy", f"{p.table} {p.name}",
                         f"DROP POLICY {quote_ident(p.name)} ON {p.table}",
                         note="added by the migration" if w is None else
                         "replaced by the migration" if not same(p, w) else
                         "rebuilt: a column it reads changes type")
        for key, w in want.items():
            old = cur.get(key)
            if old is not None and same(old, w) and not old.depends & self.touched \
                    and old.table not in self.dropped_tables:
                continue
            sql = (f"CREATE POLICY {quote_ident(w.name)} ON {w.table} AS "
                   f"{'PERMISSIVE' if w.permissive else 'RESTRICTIVE'} FOR {w.command} "
                   f"TO {', '.join(w.roles)}")
            if w.using is not None:
                sql += f" USING ({w.using})"
            if w.check is not None:
                sql += f" WITH CHECK ({w.check})"
            self.add(54, "create policy", f"{w.table} {w.name}", sql,
                     note="the backup's policy" + (" (the migration replaced it)" if old
                                                   else ""))

    # -- owners and grants -----------------------------------------------------------------

    def grants_and_owners(self) -> None:
        cur, want = self.cur, self.want
        for name, (owner, acl) in want.schemas.items():
            old = cur.schemas.get(name)
            if old is None and name in want.managed:
                continue   # a platform schema this database does not have: not ours to make
            self.privileges(f"SCHEMA {quote_ident(name)}", quote_ident(name),
                            old[1] if old else None, acl, owner)
            if old is not None and old[0] != owner and name not in want.managed:
                self.owner(f"SCHEMA {quote_ident(name)}", owner)
        for key, acl in want.managed_acls.items():
            current = cur.managed_acls.get(key)
            if current is not None and current != acl:   # never created: the platform's object
                self.privileges(key, key.split(" ", 1)[1], current, acl)
        back = {w: c for c, w in self.renamed.items()}
        for name, t in want.tables.items():
            old_t = cur.tables.get(back.get(name, name))
            live = None if old_t is None or name in self.created else (old_t.acl, old_t.owner)
            self.grants_and_owner(f"TABLE {name}", f"TABLE {name}", name, live, t.acl, t.owner)
        for name, v in want.views.items():
            old_v = cur.views.get(name)
            live = None if old_v is None or name in self.recreated_views else (old_v.acl,
                                                                                 old_v.owner)
            self.grants_and_owner(f"TABLE {name}", f"{RELKIND[v.kind]} {name}", name, live,
                                  v.acl, v.owner)
        for name, s in want.sequences.items():
            old_s = cur.sequences.get(name)
            fresh = old_s is None or name in self.created or _owner_table(s) in self.created
            live = None if fresh or old_s is None else (old_s.acl, old_s.owner)
            self.grants_and_owner(f"SEQUENCE {name}", "" if s.identity else f"SEQUENCE {name}",
                                  name, live, s.acl, s.owner)
        for sig, f in want.functions.items():
            old_f = cur.functions.get(sig)
            if f.definition is None:
                continue
            recreated = old_f is not None and old_f.result != f.result \
                and old_f.definition != f.definition
            live = None if old_f is None or recreated else (old_f.acl, old_f.owner)
            target = f"{_routine(f)} {sig}"
            self.grants_and_owner(target, target, sig, live, f.acl, f.owner)
        for name, typ in want.types.items():
            old_type = cur.types.get(name)
            recreated = any(c.kind == "recreate enum" and c.object == name for c in self.changes)
            if old_type is None or recreated or old_type.owner != typ.owner:
                self.owner(f"TYPE {name}", typ.owner, old_type is None or recreated)

    def grants_and_owner(self, grant_target: str, owner_target: str, name: str,
                         live: tuple[frozenset[str], str] | None, acl: frozenset[str],
                         owner: str) -> None:
        """``live`` is the object's (grants, owner) now; None when the plan creates it."""
        self.privileges(grant_target, name, None if live is None else live[0], acl, owner)
        if owner_target and (live is None or live[1] != owner):
            self.owner(owner_target, owner, fresh=live is None)

    def privileges(self, target: str, name: str, current: frozenset[str] | None,
                   wanted: frozenset[str], owner: str = "") -> None:
        if current is None:   # created here: start from nothing, whatever defaults granted
            revoke = sorted({"PUBLIC", *self.cur.default_acl_grantees} - {self.cur.role, owner})
            sql = [f"REVOKE ALL ON {target} FROM {', '.join(revoke)}"]
            sql += _acl_sql(target, (), wanted)
            self.add(57, "grants", name, *sql, note="exactly the backup's grants")
        elif current != wanted:
            gone = sorted(current - wanted)
            came = sorted(wanted - current)
            self.add(57, "grants", name, *_acl_sql(target, current, wanted),
                     note="; ".join(filter(None, [
                         f"revoke what the migration granted ({', '.join(gone)})" if gone
                         else "", f"grant back ({', '.join(came)})" if came else ""])))

    def owner(self, target: str, owner: str, fresh: bool = False) -> None:
        if fresh and owner == self.cur.role:
            return
        self.add(56, "owner", target, f"ALTER {target} OWNER TO {owner}")


def _any_row(table: str) -> str:
    return f"SELECT count(*) FROM (SELECT FROM {table} LIMIT 1) AS any_row"


def _routine(f: Function) -> str:
    return "PROCEDURE" if f.kind == "p" else "FUNCTION"


def _unquoted(name: str) -> str:
    return name.replace('"', "")


def _owner_table(s: Sequence) -> str:
    return s.owned_by.rsplit(".", 1)[0] if s.owned_by else ""


def _anchors(columns: tuple[Column, ...], c: Column, common: set[str]) -> tuple[str, str]:
    """The nearest columns before and after ``c`` that both sides share: where it sits."""
    before = [x.name for x in columns if x.position < c.position and x.name in common]
    after = [x.name for x in columns if x.position > c.position and x.name in common]
    return (before[-1] if before else "", after[0] if after else "")


def _create_type(t: Type) -> str:
    if t.kind == "e":
        return f"CREATE TYPE {t.name} AS ENUM ({', '.join(_literal(x) for x in t.labels)})"
    if t.kind == "c":
        return f"CREATE TYPE {t.name} AS ({', '.join(t.definition)})"
    base, not_null, default, checks = t.definition
    sql = f"CREATE DOMAIN {t.name} AS {base}"
    if default is not None:
        sql += f" DEFAULT {default}"
    if not_null:
        sql += " NOT NULL"
    return sql + "".join(f" {c}" for c in checks)


def _sequence_options(s: Sequence) -> str:
    typ, start, inc, lo, hi, cache, cycle = s.options
    return (f"AS {typ} INCREMENT BY {inc} MINVALUE {lo} MAXVALUE {hi} START WITH {start} "
            f"CACHE {cache} {'CYCLE' if cycle else 'NO CYCLE'}")


def _create_sequence(s: Sequence) -> str:
    return f"CREATE SEQUENCE {s.name} {_sequence_options(s)}"


def _alter_sequence(s: Sequence) -> str:
    return f"ALTER SEQUENCE {s.name} {_sequence_options(s)}"


def _parents_first(tables: dict[str, Table]) -> list[tuple[str, Table]]:
    """The tables in their order, but an inheritance parent before its children (a child is
    created with INHERITS, so its parent must exist)."""
    out: list[tuple[str, Table]] = []
    seen: set[str] = set()

    def visit(name: str, trail: frozenset[str] = frozenset()) -> None:
        if name in seen or name in trail or name not in tables:
            return
        for parent in tables[name].inherits:
            visit(parent, trail | {name})
        seen.add(name)
        out.append((name, tables[name]))

    for name in tables:
        visit(name)
    return out


def compare(cur: SchemaModel, want: SchemaModel) -> Diff:
    """The changes that take ``cur`` (the live target) to ``want`` (the backup), in order."""
    d = _Differ(cur, want)
    d.run()
    changes = sorted(d.changes, key=lambda c: c.phase)   # stable: order within a phase kept
    return Diff(changes, d.unsupported)

