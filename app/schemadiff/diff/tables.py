"""Tables and columns: renamed back where the shape matches, created, dropped, altered."""

from __future__ import annotations

from dataclasses import replace

from app.catalog import quote_ident
from app.schemadiff.diff.phases import Phase
from app.schemadiff.diff.sql import (
    any_row,
    column_anchors,
    column_ref,
    column_sql,
    literal,
    parents_first,
)
from app.schemadiff.diff.state import DiffState
from app.schemamodel.model import (
    Column,
    Table,
)


class Tables(DiffState):
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
                self.add(Phase.RENAME_TABLES, "rename table", twins[0].name,
                         f"ALTER TABLE {twins[0].name} RENAME TO {name.split('.', 1)[1]}",
                         note=f"back to {name} (same columns; its rows are kept)")
        for t in extra:
            if t.name in self.renamed:
                continue
            self.dropped_tables.add(t.name)
            self.add(Phase.DROP_TABLES, "drop table", t.name, f"DROP TABLE {t.name}",
                     note="added by the migration", count_sql=f"SELECT count(*) FROM {t.name}",
                     count_table=t.name,
                     count_says="{n:,} rows")
        for name, t in parents_first(want):
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
        self.add(Phase.CREATE_TABLES, "create table", t.name,
                 f"CREATE {unlogged}TABLE {t.name} (\n    {cols}\n){inherits}",
                 note="dropped by the migration; it comes back EMPTY: its rows are only in the "
                      "backup (follow with a partial data rollback of this table)",
                 data_tables=(t.name,))
        self.table_flags(None, t)

    def inheritance(self, old: Table, t: Table) -> None:
        for parent in t.inherits:
            if parent not in old.inherits:
                self.add(Phase.ALTER_COLUMNS, "inherit", t.name,
                         f"ALTER TABLE {t.name} INHERIT {parent}",
                         note=f"a child of {parent} in the backup")
        for parent in old.inherits:
            if parent not in t.inherits:
                self.add(Phase.ALTER_COLUMNS, "no inherit", t.name,
                         f"ALTER TABLE {t.name} NO INHERIT {parent}",
                         note=f"made a child of {parent} by the migration")

    def table_flags(self, old: Table | None, t: Table) -> None:
        if (old.rls if old else False) != t.rls:
            self.add(Phase.ROW_SECURITY, "row level security", t.name, f"ALTER TABLE {t.name} "
                     f"{'ENABLE' if t.rls else 'DISABLE'} ROW LEVEL SECURITY",
                     note="enabled in the backup" if t.rls else "disabled in the backup")
        if (old.force_rls if old else False) != t.force_rls:
            self.add(Phase.ROW_SECURITY, "force row level security", t.name,
                     f"ALTER TABLE {t.name} "
                     f"{'' if t.force_rls else 'NO '}FORCE ROW LEVEL SECURITY")
        if old is not None and old.unlogged != t.unlogged:
            self.add(Phase.ALTER_COLUMNS, "persistence", t.name,
                     f"ALTER TABLE {t.name} SET {'UNLOGGED' if t.unlogged else 'LOGGED'}")
        if (old.comment if old else None) != t.comment:
            self.add(Phase.COMMENTS, "comment", t.name, f"COMMENT ON TABLE {t.name} IS "
                     + (literal(t.comment) if t.comment is not None else "NULL"))
        for c in t.columns:
            before = old.column(c.name) if old else None
            if (before.comment if before else None) != c.comment:
                self.add(Phase.COMMENTS, "comment", column_ref(t.name, c.name),
                         f"COMMENT ON COLUMN {column_ref(t.name, c.name)} IS "
                         + (literal(c.comment) if c.comment is not None else "NULL"))

    def columns(self, old: Table, t: Table) -> None:
        name = t.name
        old_names = {c.name for c in old.columns}
        new_names = {c.name for c in t.columns}
        extra = [c for c in old.columns if c.name not in new_names]
        renames: dict[str, str] = {}
        for c in t.columns:
            if c.name in old_names:
                continue
            anchors = column_anchors(t.columns, c, old_names & new_names)
            twins = [x for x in extra if x.shape() == c.shape() and x.name not in renames
                     and column_anchors(old.columns, x, old_names & new_names) == anchors]
            if len(twins) == 1:
                renames[twins[0].name] = c.name
                self.add(Phase.RENAME_COLUMNS, "rename column", column_ref(name, twins[0].name),
                         f"ALTER TABLE {name} RENAME COLUMN {quote_ident(twins[0].name)} TO "
                         f"{quote_ident(c.name)}",
                         note=f"back to {c.name}, keeping its values (same type and place; "
                              "if it is a new column rather than a renamed one, its values "
                              f"become {c.name}'s)")
        for c in extra:
            if c.name in renames:
                continue
            ref = column_ref(name, c.name)
            self.dropped_columns.setdefault(name, set()).add(c.name)
            self.add(Phase.DROP_COLUMNS, "drop column", ref,
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
            kw = {"count_sql": any_row(t.name),
                  "if_rows_sql": (f"ALTER TABLE {t.name} ADD COLUMN "
                                  f"{column_sql(replace(c, not_null=False))}",),
                  "residual": "NOT NULL comes back with the values (the table has rows)"}
        self.add(Phase.ADD_COLUMNS, "add column", column_ref(t.name, c.name), sql,
                 note="dropped by the migration; it comes back without its values (NULL or "
                      "its default): they are only in the backup", data_tables=(t.name,), **kw)

    def alter_column(self, table: str, old: Column, new: Column) -> None:
        ref, col = column_ref(table, new.name), quote_ident(new.name)
        alter = f"ALTER TABLE {table} ALTER COLUMN {col}"
        if old.generated != new.generated or (new.generated and old.default != new.default):
            self.add(Phase.ADD_COLUMNS, "recreate generated column", ref,
                     f"ALTER TABLE {table} DROP COLUMN {col}",
                     f"ALTER TABLE {table} ADD COLUMN {column_sql(new)}",
                     note="its expression back to the backup's (values are computed again)")
            return
        if old.identity and old.identity != new.identity:
            self.add(Phase.ALTER_COLUMNS, "drop identity", ref, f"{alter} DROP IDENTITY")
        retype = old.type != new.type or old.collation != new.collation
        if retype:
            coll = f" COLLATE {new.collation}" if new.collation else ""
            self.touched.add(column_ref(table, old.name))
            sql = [f"{alter} DROP DEFAULT"] if old.default is not None else []
            sql.append(f"{alter} TYPE {new.type}{coll} USING {col}::{new.type}")
            if new.default is not None and not new.identity:
                sql.append(f"{alter} SET DEFAULT {new.default}")
            self.add(Phase.ALTER_COLUMNS, "change type", ref, *sql,
                     note=f"{old.type} back to {new.type}: the table is rewritten; a value that "
                          "does not convert stops the whole plan",
                     count_sql=f"SELECT count(*) FROM {table}", count_table=table,
                     count_says="{n:,} rows rewritten")
        elif old.default != new.default and not new.identity:
            self.add(Phase.ALTER_COLUMNS, "default", ref,
                     f"{alter} DROP DEFAULT" if new.default is None
                     else f"{alter} SET DEFAULT {new.default}",
                     note=f"back to {new.default}" if new.default else "none in the backup")
        if new.identity and old.identity != new.identity:
            how = "ALWAYS" if new.identity == "a" else "BY DEFAULT"
            drop = [f"{alter} DROP DEFAULT"] if old.default is not None and not retype else []
            self.add(Phase.ALTER_COLUMNS, "identity", ref, *drop,
                     f"{alter} ADD GENERATED {how} AS IDENTITY"
                     + (f" (SEQUENCE NAME {new.identity_seq})" if new.identity_seq else ""))
        if old.not_null != new.not_null:
            if new.not_null:
                self.add(Phase.ALTER_COLUMNS, "set not null", ref, f"{alter} SET NOT NULL",
                         count_sql=f"SELECT count(*) FROM {table} WHERE {col} IS NULL",
                         fails_if_count="{n:,} rows are NULL: NOT NULL cannot come back until "
                                        "they have values")
            else:
                self.add(Phase.ALTER_COLUMNS, "drop not null", ref, f"{alter} DROP NOT NULL")
