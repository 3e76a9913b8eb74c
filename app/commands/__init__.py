"""Sub-commands beyond the TUI and the sandbox. Each module here defines ``register(group)``,
which adds its click commands to the top-level group; heavy imports stay inside the commands
so `rollback-console --help` stays fast."""

from __future__ import annotations

import importlib

import click

# Add a module's name here when it defines register(group).
COMMAND_MODULES: list[str] = ["rollback", "assess", "backupsets", "schema"]


def register_all(group: click.Group) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"app.commands.{name}").register(group)
