"""The model kept with a backup set: the schema read inside the backup's own snapshot, as a
JSON document (schema_model.json), so a later comparison need not restore the dump."""

from __future__ import annotations

import json
from typing import Any

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
)

_KINDS: dict[str, tuple[type, Any]] = {
    "types": (Type, lambda o: o.name), "sequences": (Sequence, lambda o: o.name),
    "tables": (Table, lambda o: o.name), "constraints": (Constraint, lambda o: (o.table, o.name)),
    "indexes": (Index, lambda o: o.name), "views": (View, lambda o: o.name),
    "functions": (Function, lambda o: o.signature),
    "triggers": (Trigger, lambda o: (o.table, o.name)),
    "policies": (Policy, lambda o: (o.table, o.name)),
}


def _plain(value: Any) -> Any:
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__dataclass_fields__}
    return value


def _build(cls: type, data: dict[str, Any]) -> Any:
    hints = {f.name: f.type for f in cls.__dataclass_fields__.values()}  # type: ignore[attr-defined]
    values: dict[str, Any] = {}
    for key, value in data.items():
        hint = str(hints[key])
        if hint.startswith("frozenset"):
            value = frozenset(value)
        elif hint.startswith("tuple[Column"):
            value = tuple(Column(**c) for c in value)
        elif hint.startswith("tuple"):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        values[key] = value
    return cls(**values)


def to_json(m: SchemaModel, exclude: tuple[str, ...], server_version_num: int) -> str:
    doc: dict[str, Any] = {
        "format": 1, "exclude": list(exclude), "server_version_num": server_version_num,
        "role": m.role, "managed": sorted(m.managed),
        "schemas": {k: [o, sorted(a)] for k, (o, a) in m.schemas.items()},
        "extensions": {k: list(v) for k, v in m.extensions.items()},
        "managed_acls": {k: sorted(v) for k, v in m.managed_acls.items()},
        "default_acl_grantees": sorted(m.default_acl_grantees)}
    for kind in _KINDS:
        doc[kind] = [_plain(o) for o in getattr(m, kind).values()]
    return json.dumps(doc, indent=1, sort_keys=True)


def from_json(text: str, exclude: tuple[str, ...], server_version_num: int
              ) -> SchemaModel | None:
    """The kept model, or None when it was read with other exclusions, on another server
    version (renderings differ), or in a format this version does not know."""
    doc = json.loads(text)
    if doc.get("format") != 1 or doc.get("exclude") != list(exclude) \
            or doc.get("server_version_num") != server_version_num:
        return None
    m = SchemaModel(role=doc["role"], managed=frozenset(doc["managed"]),
                    schemas={k: (o, frozenset(a)) for k, (o, a) in doc["schemas"].items()},
                    extensions={k: (v[0], v[1]) for k, v in doc["extensions"].items()},
                    managed_acls={k: frozenset(v) for k, v in doc["managed_acls"].items()},
                    default_acl_grantees=frozenset(doc["default_acl_grantees"]))
    for kind, (cls, key) in _KINDS.items():
        objects = [_build(cls, d) for d in doc[kind]]
        setattr(m, kind, {key(o): o for o in objects})
    return m
