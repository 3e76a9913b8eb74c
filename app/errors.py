"""Domain exceptions. Each carries a message that names the problem and the fix."""

from __future__ import annotations


class ConsoleError(Exception):
    """Base class: a problem the operator can act on. ``exit_code`` is the CLI's."""

    exit_code = 1


class BadInput(ConsoleError):
    """Bad input from the operator (config, DSN, arguments): nothing was changed."""

    exit_code = 2


class TakenAfterMigration(BadInput):
    """A backup set taken after the migration ran (it holds the broken state): refused unless
    the operator says otherwise, which the plan screen offers."""


class Refused(ConsoleError):
    """Refused by a safety rule (read-only mode, an unfinished incident): nothing was changed."""

    exit_code = 3


class ConfigError(BadInput):
    """The config file is missing or malformed. Holds every problem found, not just the first."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"config file {path} is not valid:\n{lines}")


class SandboxError(ConsoleError):
    """The sandbox could not be started, found or stopped."""
