"""Sub-commands beyond the TUI and the sandbox. Each module here defines ``register(group)``,
which adds its click commands to the top-level group; heavy imports stay inside the commands
so `rollback-console --help` stays fast."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from pathlib import Path


class LazyPath:
    """A ``click.Path(path_type=...)`` that gives a ``pathlib.Path`` but imports pathlib only when
    an option is converted, not when the commands are defined (`--help` needs no pathlib)."""

    def __new__(cls, value: Any) -> Path:  # type: ignore[misc]
        from pathlib import Path

        return Path(value)

# Add a module's name here when it defines register(group).
COMMAND_MODULES: list[str] = ["rollback", "assess", "backupsets", "schema", "maintenance", "pitr"]


def register_all(group: click.Group) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"app.commands.{name}").register(group)
