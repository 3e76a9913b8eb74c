"""What hangs on tables: constraints, foreign keys, indexes, views, triggers, policies."""

from __future__ import annotations

from app.catalog import quote_ident
from app.schemadiff.diff.phases import Phase
from app.schemadiff.diff.sql import RELKIND, any_row, unquoted
from app.schemadiff.diff.state import DiffState
from app.schemamodel.model import (
    Constraint,
)


class Dependents(DiffState):
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
            self.add(Phase.DROP_FOREIGN_KEYS if c.type == "f"
                     else Phase.DROP_CONSTRAINTS, "drop constraint", f"{c.table} {c.name}",
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
                    self.add(Phase.ADD_FOREIGN_KEYS, "validate foreign key" if w.type == "f" else
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
            self.add(Phase.ADD_CONSTRAINTS, f"add {kind}", f"{w.table} {w.name}", sql)
            return
        referenced = w.definition.split(" REFERENCES ", 1)[1].split("(", 1)[0].strip()
        kw: dict[str, object] = {}
        if any(referenced == unquoted(t) or referenced == t for t in self.created) \
                and w.table not in self.created and "NOT VALID" not in w.definition:
            kw = {"count_sql": any_row(w.table),
                  "if_rows_sql": (sql + " NOT VALID",),
                  "residual": f"NOT VALID until {referenced} gets its rows back"}
        self.add(Phase.ADD_FOREIGN_KEYS, f"add {kind}", f"{w.table} {w.name}", sql, **kw)

    def indexes(self) -> None:
        cur, want = self.cur.indexes, self.want.indexes
        for name, i in cur.items():
            if i.table in self.dropped_tables:
                continue
            w = want.get(name)
            if w is None or w.definition != i.definition:
                self.add(Phase.DROP_INDEXES, "drop index", name, f"DROP INDEX {name}",
                         note="added by the migration" if w is None else "changed")
        for name, w in want.items():
            old = cur.get(name)
            if old is None or old.definition != w.definition or old.table in \
                    self.dropped_tables:
                self.add(Phase.MATVIEW_INDEXES if w.on_matview else Phase.CREATE_INDEXES,
                         "create index", name, w.definition,
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
            self.add(Phase.DROP_VIEWS, f"drop {RELKIND[v.kind].lower()}", name,
                     f"DROP {RELKIND[v.kind]} {name}",
                     note="added by the migration" if name not in want else
                     "rebuilt from the backup's definition")
        for name, w in sorted(want.items(), key=lambda kv: kv[1].order):
            if name in cur and name not in redo:
                continue
            opts = f" WITH ({', '.join(w.options)})" if w.options else ""
            data = " WITH DATA" if w.kind == "m" else ""
            self.created.add(name)
            self.add(Phase.CREATE_VIEWS, f"create {RELKIND[w.kind].lower()}", name,
                     f"CREATE {RELKIND[w.kind]} {name}{opts} AS\n{w.definition}{data}")

    def triggers(self) -> None:
        cur, want = self.cur.triggers, self.want.triggers
        for key, t in cur.items():
            if t.table in self.dropped_tables:
                continue
            w = want.get(key)
            if w is None or w.definition != t.definition or t.table in self.recreated_views:
                self.add(Phase.DROP_TRIGGERS, "drop trigger", f"{t.table} {t.name}",
                         f"DROP TRIGGER {quote_ident(t.name)} ON {t.table}",
                         note="added by the migration" if w is None else "changed")
        for key, w in want.items():
            old = cur.get(key)
            fresh = old is None or old.definition != w.definition or old.table in \
                self.dropped_tables or w.table in self.recreated_views
            if fresh:
                self.add(Phase.CREATE_TRIGGERS, "create trigger", f"{w.table} {w.name}",
                         w.definition)
            if (w.enabled != "O" and fresh) or (old is not None and not fresh
                                                and old.enabled != w.enabled):
                how = {"O": "ENABLE", "D": "DISABLE", "R": "ENABLE REPLICA",
                       "A": "ENABLE ALWAYS"}[w.enabled]
                self.add(Phase.CREATE_TRIGGERS, "trigger state", f"{w.table} {w.name}",
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
                self.add(Phase.DROP_POLICIES, "drop policy", f"{p.table} {p.name}",
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
            self.add(Phase.CREATE_POLICIES, "create policy", f"{w.table} {w.name}", sql,
                     note="the backup's policy" + (" (the migration replaced it)" if old
                                                   else ""))
