"""A database's schema as plain data: the objects Type 1 compares, frozen dataclasses keyed by
their qualified names. ``read`` fills a model from a live database's catalogs; ``document``
keeps one as JSON inside a backup set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.catalog import quote_ident


def qname(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    position: int            # among the live columns, from 1
    not_null: bool = False
    default: str | None = None
    identity: str = ""       # '' | 'a' (ALWAYS) | 'd' (BY DEFAULT)
    identity_seq: str = ""   # its sequence, qualified
    generated: str = ""      # '' | 's' (STORED) | 'v' (VIRTUAL)
    collation: str | None = None
    comment: str | None = None
    local: bool = True       # declared by the table itself, not only inherited from a parent

    def shape(self) -> tuple[Any, ...]:
        """Everything but the name and position: equal shapes with other names = a rename."""
        return (self.type, self.not_null, self.default, self.identity, self.generated,
                self.collation)


@dataclass(frozen=True)
class Table:
    name: str                # qualified
    kind: str                # 'r' | 'p'
    owner: str
    columns: tuple[Column, ...]
    unlogged: bool = False
    rls: bool = False
    force_rls: bool = False
    comment: str | None = None
    acl: frozenset[str] = frozenset()
    oid: int = 0
    inherits: tuple[str, ...] = ()   # parents by table inheritance (INHERITS), in order

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def shape(self) -> tuple[Any, ...]:
        return tuple((c.name, c.shape()) for c in self.columns)


@dataclass(frozen=True)
class Constraint:
    table: str
    name: str
    type: str                # p u c f x
    definition: str
    validated: bool = True
    index: str = ""          # p/u/x: its index; f: the referenced key's index (qualified)


@dataclass(frozen=True)
class Index:
    name: str                # qualified
    table: str
    definition: str
    on_matview: bool = False


@dataclass(frozen=True)
class Sequence:
    name: str
    owner: str
    options: tuple[Any, ...]  # type, start, increment, min, max, cache, cycle
    owned_by: str = ""        # table.column (qualified table) when OWNED BY
    identity: bool = False    # an identity column's sequence: comes and goes with its column
    acl: frozenset[str] = frozenset()


@dataclass(frozen=True)
class View:
    name: str
    kind: str                # 'v' | 'm'
    owner: str
    definition: str
    options: tuple[str, ...] = ()
    acl: frozenset[str] = frozenset()
    order: int = 0           # creation order (oid): dependencies come first
    depends: frozenset[str] = frozenset()   # relations and "relation.column" it reads


@dataclass(frozen=True)
class Function:
    signature: str           # qualified name(identity args)
    kind: str                # f p a w
    owner: str
    definition: str | None   # CREATE OR REPLACE ... (None for aggregates and window functions)
    result: str = ""
    acl: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Trigger:
    table: str
    name: str
    definition: str
    enabled: str = "O"


@dataclass(frozen=True)
class Policy:
    table: str
    name: str
    command: str             # ALL SELECT INSERT UPDATE DELETE
    permissive: bool
    roles: tuple[str, ...]
    using: str | None
    check: str | None
    depends: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Type:
    name: str
    kind: str                # e (enum) | d (domain) | c (composite)
    owner: str
    labels: tuple[str, ...] = ()
    definition: tuple[Any, ...] = ()   # domain: base, not null, default, checks; composite: attrs


@dataclass
class SchemaModel:
    schemas: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)  # owner, acl
    managed: frozenset[str] = frozenset()   # excluded schemas: only their grants are compared
    extensions: dict[str, tuple[str, str]] = field(default_factory=dict)  # schema, version
    types: dict[str, Type] = field(default_factory=dict)
    sequences: dict[str, Sequence] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)
    constraints: dict[tuple[str, str], Constraint] = field(default_factory=dict)
    indexes: dict[str, Index] = field(default_factory=dict)
    views: dict[str, View] = field(default_factory=dict)
    functions: dict[str, Function] = field(default_factory=dict)
    triggers: dict[tuple[str, str], Trigger] = field(default_factory=dict)
    policies: dict[tuple[str, str], Policy] = field(default_factory=dict)
    # Grants on the objects of managed schemas ("TABLE name", "FUNCTION sig"...): the objects
    # are the platform's, but the grants to the API roles are what migrations break.
    managed_acls: dict[str, frozenset[str]] = field(default_factory=dict)
    default_acl_grantees: frozenset[str] = frozenset()
    role: str = ""           # who reads it (and would create objects)

    def object_count(self) -> int:
        return sum(len(d) for d in (self.schemas, self.extensions, self.types, self.sequences,
                                    self.tables, self.constraints, self.indexes, self.views,
                                    self.functions, self.triggers, self.policies))
