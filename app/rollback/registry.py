"""The rollback types, each declared once: one module in ``app/rollback/types/`` per type holds
its facts (key, number, title, when the runbook uses it, risk, downtime budget, confirmation
phrase, what it loses, what it restores, its plan builder and its resume state) and registers
itself. The decision matrix, the CLI's ``--type``, the plan screen and the gate, the docs table
and the drill scoring read them here.

This module and the type modules load nothing heavy (a command's ``--help`` reads them): plan
builders import the engine inside the function.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from app.errors import BadInput

if TYPE_CHECKING:
    from app.config import Config
    from app.rollback.context import Options
    from app.rollback.plan import Plan


class RollbackType(StrEnum):
    """The built-in types' keys, for code that names one of them. A new type needs no member
    here: its key is a plain string, and everything else reads its ``TypeSpec``."""

    SCHEMA = "schema"
    PARTIAL = "partial"
    FULL = "full"


# What a type brings back: the decision matrix recommends the type that restores what the
# findings need (schema objects only; the data of a few tables; the whole database).
Restores = Literal["schema", "tables", "database", "other"]
# The plan and its blast radius, from a read-only look at the target (``Options`` says which
# tables, in place or not, phases).
PlanBuilder = Callable[["Config", Any, "Options"], Awaitable["Plan"]]


@dataclass(frozen=True)
class TypeSpec:
    key: str                       # the CLI's --type (schema | partial | full | ...)
    number: int                    # the runbook's "Type N"; the order everywhere
    title: str                     # "Schema-only rollback"
    when: str                      # the runbook's words for when to use it
    risk: str                      # Low | Medium | High
    downtime: str                  # the runbook's downtime budget
    phrase: Callable[[str], str]   # the gate's phrase, from the target's name
    loses: str                     # what running it throws away
    restores: Restores
    plan: PlanBuilder
    # The options a resumed run must get back from the journal to build the same plan.
    resume_state: tuple[str, ...] = ()
    takes_tables: bool = False     # it needs a list of tables (--tables, the plan screen's list)

    @property
    def label(self) -> str:
        """"Type 2: partial data rollback": the plan screen's and the gate's title."""
        return f"Type {self.number}: {self.title.lower()}"

    @property
    def facts(self) -> str:
        """Risk, downtime and phrase in one line: the same words in --help and on screen."""
        return (f"risk {self.risk}, downtime {self.downtime}, phrase "
                f"'{self.phrase('<target>')}'")


_TYPES: dict[str, TypeSpec] = {}
_loaded = False


def register(spec: TypeSpec) -> TypeSpec:
    """Add a type (its module calls this when imported); a second type with the same key or
    number is a programming error."""
    clash = next((t for t in _TYPES.values() if t.key != spec.key and t.number == spec.number),
                 None)
    if clash is not None:
        raise ValueError(f"rollback type {spec.key}: number {spec.number} is {clash.key}'s")
    _TYPES[spec.key] = spec
    return spec


def unregister(key: str) -> None:
    """Remove a type (tests that register a toy one)."""
    _TYPES.pop(key, None)


def _load_types() -> None:
    """Import every module in ``app/rollback/types/``: each registers its type. Adding a type
    is adding a module there."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from app.rollback import types as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


def all_types() -> tuple[TypeSpec, ...]:
    """Every registered type, in the runbook's order (Type 1 first)."""
    _load_types()
    return tuple(sorted(_TYPES.values(), key=lambda t: t.number))


def type_keys() -> tuple[str, ...]:
    return tuple(str(t.key) for t in all_types())


def rollback_type(key: str) -> TypeSpec:
    """The type with this key; BadInput (exit 2) naming the known ones otherwise."""
    _load_types()
    spec = _TYPES.get(str(key))
    if spec is None:
        raise BadInput(f"unknown rollback type {key!r}: choose one of "
                       + ", ".join(type_keys()))
    return spec


def types_table() -> str:
    """The Markdown table of the types (docs/ROLLBACK.md keeps it; a test compares)."""
    rows = ["| type | when (runbook) | risk | downtime | phrase | loses | run |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for t in all_types():
        run = f"`run --type {t.key}" + (" --tables a,b`" if t.takes_tables else "`")
        rows.append(f"| {t.number} {t.title.lower()} | {t.when} | {t.risk} | {t.downtime} | "
                    f"`{t.phrase('<target>')}` | {t.loses} | {run} |")
    return "\n".join(rows) + "\n"
