"""Where things live: the state directory, the run logs and the stylesheet."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "rollback-console"


def state_dir() -> Path:
    """Per-user state (sandboxes, logs, drill scores). ``ROLLBACK_CONSOLE_HOME`` overrides it."""
    override = os.environ.get("ROLLBACK_CONSOLE_HOME")
    base = Path(override) if override else Path(platformdirs.user_state_dir(APP_NAME))
    base.mkdir(parents=True, exist_ok=True)
    return base


def default_sandbox_dir() -> Path:
    return state_dir() / "sandbox"


def logs_dir() -> Path:
    d = state_dir() / "logs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def stylesheet() -> Path:
    """styles.tcss: inside the package when installed from a wheel, at the top of a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "styles.tcss", here.parent / "styles.tcss"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("styles.tcss is missing from the installation")


def file_part(name: str) -> str:
    """A table or schema name as part of a file name: ``/``, the one character a name may hold
    that a file name cannot, is written ``%2F``."""
    return name.replace("/", "%2F")
