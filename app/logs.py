"""structlog to one JSON-lines file per run; never to the terminal while the TUI runs."""

from __future__ import annotations

import os
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog

from app.paths import logs_dir
from app.secrets import Secret, scrub

_log_file: TextIO | None = None
_log_path: Path | None = None


def _redact(value: Any) -> Any:
    if isinstance(value, Secret):
        return str(value)
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def redact_processor(_logger: Any, _name: str,
                     event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Scrub secrets from every field, including rendered exceptions."""
    return {k: _redact(v) for k, v in event.items()}


def configure(path: Path | None = None) -> Path:
    """Send all structlog output of this process to ``path`` (default: a new file per run)."""
    global _log_file, _log_path
    if path is None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        path = logs_dir() / f"run-{stamp}-{os.getpid()}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    if _log_file is not None:
        _log_file.close()
    _log_file = path.open("a", encoding="utf-8", buffering=1)
    _log_path = path
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=_log_file),
        cache_logger_on_first_use=False,
    )
    return path


def current_log_path() -> Path | None:
    return _log_path


def get(name: str) -> Any:
    return structlog.get_logger(name)
