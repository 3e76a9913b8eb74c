"""The console script's entry point.

`rollback-console --help` and `--version` are what a user types first, often in a hurry: they are
answered here from plain Python, before click (itself 3.5 times a bare interpreter start) is
imported. The top-level help is click's own output, kept in `help.txt` and rendered at
HELP_WIDTH (both named in app/helptext.py, which the CLI shares without importing this module);
tests/test_cli_startup.py fails when it drifts from what click renders.
A terminal narrower than that, or any other argument, goes through click as usual.
"""

from __future__ import annotations

import os
import sys

from app.helptext import HELP_FILE, HELP_WIDTH


def _columns() -> int:
    """The terminal's width the way click asks for it (shutil.get_terminal_size's rules; shutil
    itself imports bz2 and lzma, 8 ms, half of a bare interpreter start)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    try:
        return (stdout and os.get_terminal_size(stdout.fileno()).columns) or 80
    except (ValueError, OSError):
        return 80


def _fast() -> str | None:
    """The text to print for a bare --help/-h/--version, or None when click must answer."""
    args = sys.argv[1:]
    if args == ["--version"]:
        from app import __version__

        return f"rollback-console, version {__version__}\n"
    if args in (["--help"], ["-h"]) and _columns() >= HELP_WIDTH:
        try:
            with open(HELP_FILE, encoding="utf-8") as kept:
                return kept.read()
        except OSError:
            return None
    return None


def main() -> None:
    text = _fast()
    if text is not None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    import os

    os.umask(0o077)   # journals, dumps, exports and sets hold data: the operator's eyes only
    from app.cli import main as click_main

    click_main()
