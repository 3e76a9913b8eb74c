"""Where backup sets live: the one seam between the console and its storage.

Everything else reads a set as a local folder (the dump tools need files) and never lists, creates
or renames set folders itself. An object store would implement ``BackupStore`` by fetching a set
into a local cache in ``folder`` and uploading a finished set in ``publish``; ``store_at`` would
pick it from the configured root (say, an ``s3://`` address). Only local folders exist today.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol


class BackupStore(Protocol):
    where: str   # shown in messages: a folder, or an address

    def available(self) -> bool:
        """The store can be read (a local root: the folder exists)."""

    def names(self) -> list[str]:
        """Complete sets, oldest first by name; sets still being written are not listed."""

    def folder(self, name: str) -> Path:
        """A local folder holding the set ``name``."""

    def staging(self, name: str) -> Path:
        """A new, empty local folder to write the set ``name`` into."""

    def publish(self, staging: Path, name: str) -> Path:
        """Make a fully written set visible under ``name``, atomically; its folder."""

    def discard(self, staging: Path) -> None:
        """Remove a set that failed half-way."""


class LocalStore:
    """Sets as sub-folders of ``root``: the runbook's ``backups/production_migration_…/``. A set
    is written into a hidden ``.<name>.partial`` folder and renamed when complete."""

    def __init__(self, root: Path):
        self.root = root
        self.where = str(root)

    def available(self) -> bool:
        return self.root.is_dir()

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith("."))

    def folder(self, name: str) -> Path:
        return self.root / name

    def staging(self, name: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        work = self.root / f".{name}.partial"
        work.mkdir()
        return work

    def publish(self, staging: Path, name: str) -> Path:
        final = self.root / name
        staging.rename(final)
        return final

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)


def store_at(root: Path) -> BackupStore:
    """The store for the configured ``target.backups_root``."""
    return LocalStore(root)
