"""Work that failed, said in one line for the operator, with where its details are: the
console's screens all say it the same way (and the traceback goes to the log file, never to the
screen: it can hold local values)."""

from __future__ import annotations

from pathlib import Path

from app import logs
from app.errors import ConsoleError
from app.secrets import scrub


def reason(error: BaseException | None) -> str:
    """A ConsoleError in its own words (it names the problem and the fix); anything else as
    its type and first line."""
    if isinstance(error, ConsoleError):
        return scrub(str(error))
    if error is None:
        return "stopped without saying why"
    lines = str(error).strip().splitlines()
    return scrub(f"{type(error).__name__}: {lines[0] if lines else 'no message'}")


def failure_line(what: str, error: BaseException | None, log_path: Path | None) -> str:
    """``could not <what>: <reason> (details in the log: <path>)``; the error and its
    traceback are written to the log first (when there is one: structlog must never print to
    the terminal while the console runs)."""
    if logs.current_log_path() is not None:
        logs.get("console").error(f"could not {what}", exc_info=error)
    where = log_path or logs.current_log_path()
    details = f" (details in the log: {where})" if where else ""
    return f"could not {what}: {reason(error)}{details}"
