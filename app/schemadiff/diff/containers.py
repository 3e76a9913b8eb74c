"""Schemas, extensions, types (enums rebuilt beside the old one), sequences and functions."""

from __future__ import annotations

from app.catalog import quote_ident
from app.schemadiff.diff.phases import Phase
from app.schemadiff.diff.sql import (
    alter_sequence,
    column_ref,
    create_sequence,
    create_type,
    literal,
    routine,
    unquoted,
)
from app.schemadiff.diff.state import DiffState
from app.schemamodel.model import (
    Type,
)


class Containers(DiffState):
    def schemas(self) -> None:
        cur, want = self.cur.schemas, self.want.schemas
        for name, (owner, _acl) in want.items():
            if name not in cur and name not in self.want.managed:
                self.add(Phase.CREATE_SCHEMAS, "create schema", quote_ident(name),
                         f"CREATE SCHEMA {quote_ident(name)} AUTHORIZATION {owner}")
                self.created.add(f"schema {name}")
        for name in cur:
            if name not in want and name not in self.cur.managed:
                self.add(Phase.DROP_SCHEMAS, "drop schema", quote_ident(name),
                         f"DROP SCHEMA {quote_ident(name)}",
                         note="the migration's schema; it must be empty by now")

    def extensions(self) -> None:
        cur, want = self.cur.extensions, self.want.extensions
        for name, (schema, version) in want.items():
            if name not in cur:
                self.add(Phase.EXTENSIONS, "create extension", name,
                         f"CREATE EXTENSION IF NOT EXISTS {quote_ident(name)} WITH SCHEMA "
                         f"{quote_ident(schema)} VERSION {literal(version)}")
            elif cur[name][1] != version:
                self.add(Phase.EXTENSIONS, "change extension version", name,
                         f"ALTER EXTENSION {quote_ident(name)} UPDATE TO {literal(version)}",
                         note=f"{cur[name][1]} back to {version} (needs a downgrade path)")
            elif cur[name][0] != schema:
                self.add(Phase.EXTENSIONS, "move extension", name,
                         f"ALTER EXTENSION {quote_ident(name)} SET SCHEMA {quote_ident(schema)}")
        for name in cur:
            if name not in want:
                self.add(Phase.DROP_EXTENSIONS, "drop extension", name,
                         f"DROP EXTENSION {quote_ident(name)}",
                         note="added by the migration", destroys="the extension's objects")

    # -- types, sequences, functions -------------------------------------------------------

    def types(self) -> None:
        cur, want = self.cur.types, self.want.types
        for name, t in want.items():
            old = cur.get(name)
            if old is None:
                self.add(Phase.TYPES, "create type", name, create_type(t))
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
                self.add(Phase.DROP_TYPES, "drop type", name, f"DROP TYPE {name}",
                         note="added by the migration")

    def enum(self, old: Type, new: Type) -> None:
        labels = list(old.labels)
        if all(label in new.labels for label in labels) and \
                [x for x in new.labels if x in labels] == labels:
            sql = []
            for i, label in enumerate(new.labels):
                if label not in labels:
                    where = (f" AFTER {literal(new.labels[i - 1])}" if i else
                             f" BEFORE {literal(new.labels[1])}" if len(new.labels) > 1 else "")
                    sql.append(f"ALTER TYPE {new.name} ADD VALUE {literal(label)}{where}")
            self.add(Phase.TYPES, "add enum values", new.name, *sql,
                     note=f"({', '.join(old.labels)}) back to ({', '.join(new.labels)})")
            return
        # Values cannot be removed from an enum: build the backup's type beside it, convert the
        # columns through text, drop the old one.
        aside = new.name[:-1] + '__rollback_old"'
        plain = unquoted(old.name)
        users = [(t, c) for t in self.cur.tables.values() for c in t.columns
                 if unquoted(c.type) in (plain, plain + "[]") and t.name not in
                 self.dropped_tables and c.name not in self.dropped_columns.get(t.name, ())]
        for t, c in users:
            if c.type.endswith("[]"):
                self.unsupported.append(f"{column_ref(t.name, c.name)} is an array of {old.name}, "
                                        "which changes labels: convert it by hand")
        users = [(t, c) for t, c in users if not c.type.endswith("[]")]
        self.add(Phase.TYPES, "recreate enum", new.name, f"ALTER TYPE {new.name} RENAME TO "
                 f"{aside.split('.', 1)[1]}", create_type(new),
                 note=f"({', '.join(old.labels)}) back to ({', '.join(new.labels)}): values "
                      "cannot be removed from an enum, so the backup's type is built beside "
                      "it and the columns converted")
        keep = ", ".join(literal(x) for x in new.labels)
        for table, column in users:
            target = self.renamed.get(table.name, table.name)
            ref = quote_ident(column.name)
            self.touched.add(column_ref(table.name, column.name))
            want_table = self.want.tables.get(target)
            want_col = want_table.column(column.name) if want_table else None
            default = want_col.default if want_col else None
            sql = [f"ALTER TABLE {table.name} ALTER COLUMN {ref} DROP DEFAULT"] \
                if column.default is not None else []
            sql.append(f"ALTER TABLE {table.name} ALTER COLUMN {ref} TYPE {new.name} "
                       f"USING {ref}::text::{new.name}")
            if default is not None:
                sql.append(f"ALTER TABLE {table.name} ALTER COLUMN {ref} SET DEFAULT {default}")
            self.add(Phase.ALTER_COLUMNS, "convert column", column_ref(table.name, column.name),
                     *sql,
                     note=f"to the backup's {new.name}",
                     count_sql=f"SELECT count(*) FROM {table.name} WHERE {ref}::text "
                               f"NOT IN ({keep})",
                     fails_if_count="{n:,} rows hold values the backup's enum does not have: "
                                    "fix or delete them first")
        self.add(Phase.DROP_TYPES, "drop type", aside, f"DROP TYPE {aside}",
                 note="the migration's version of the enum, now unused")

    def sequences(self) -> None:
        cur, want = self.cur.sequences, self.want.sequences
        for name, s in want.items():
            if s.identity:
                continue
            old = cur.get(name)
            if old is None or old.identity:
                self.add(Phase.CREATE_SEQUENCES, "create sequence", name, create_sequence(s))
                self.created.add(name)
            elif old.options != s.options:
                self.add(Phase.ALTER_SEQUENCES, "alter sequence", name, alter_sequence(s),
                         note="options back to the backup's (the current value is kept)")
            if s.owned_by and (old is None or old.owned_by != s.owned_by):
                self.add(Phase.ALTER_SEQUENCES, "sequence owned by", name,
                         f"ALTER SEQUENCE {name} OWNED BY {s.owned_by}")
        for name, s in cur.items():
            if name in want or s.identity:
                continue
            table, _, column = s.owned_by.rpartition(".")
            if table in self.dropped_tables or \
                    unquoted(column) in self.dropped_columns.get(table, ()):
                continue   # goes with its table or column
            self.add(Phase.DROP_SEQUENCES, "drop sequence", name, f"DROP SEQUENCE {name}",
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
                self.add(Phase.FUNCTIONS, f"create {routine(f).lower()}", sig, f.definition)
                self.created.add(sig)
            elif old.definition != f.definition:
                if old.result != f.result:
                    self.add(Phase.FUNCTIONS, f"recreate {routine(f).lower()}", sig,
                             f"DROP {routine(old)} {sig}", f.definition,
                             note=f"returns {old.result} now, {f.result} in the backup")
                else:
                    self.add(Phase.FUNCTIONS, f"replace {routine(f).lower()}", sig, f.definition,
                             note="body or attributes back to the backup's")
        for sig, f in cur.items():
            if sig not in want:
                self.add(Phase.DROP_FUNCTIONS, f"drop {routine(f).lower()}", sig,
                         f"DROP {routine(f)} {sig}",
                         note="added by the migration")
