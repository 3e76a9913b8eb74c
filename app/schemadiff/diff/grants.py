"""Owners and grants, back to exactly the backup's."""

from __future__ import annotations

from app.catalog import quote_ident
from app.schemadiff.diff.phases import Phase
from app.schemadiff.diff.sql import RELKIND, acl_sql, owner_table, routine
from app.schemadiff.diff.state import DiffState


class Grants(DiffState):
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
            fresh = old_s is None or name in self.created or owner_table(s) in self.created
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
            target = f"{routine(f)} {sig}"
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
            sql += acl_sql(target, (), wanted)
            self.add(Phase.GRANTS, "grants", name, *sql, note="exactly the backup's grants")
        elif current != wanted:
            gone = sorted(current - wanted)
            came = sorted(wanted - current)
            self.add(Phase.GRANTS, "grants", name, *acl_sql(target, current, wanted),
                     note="; ".join(filter(None, [
                         f"revoke what the migration granted ({', '.join(gone)})" if gone
                         else "", f"grant back ({', '.join(came)})" if came else ""])))

    def owner(self, target: str, owner: str, fresh: bool = False) -> None:
        if fresh and owner == self.cur.role:
            return
        self.add(Phase.OWNERS, "owner", target, f"ALTER {target} OWNER TO {owner}")
