"""`--help` and `--version` are answered before click is imported (app/entry.py), a command's
`--help` loads click and nothing heavy: what makes them fast (bench/startup.py times them; no
timing here). The help still lists every command and is exactly click's, and the version is the
package's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app import __version__
from app.cli import render_help
from app.entry import HELP_WIDTH

HEAVY = ("asyncio", "asyncpg", "httpx", "rich", "structlog", "textual", "importlib.metadata",
         "app.config", "app.logs")

PROBE = """
import contextlib, io, sys
sys.argv = ["rollback-console", *sys.argv[1:]]
from app.entry import main
out = io.StringIO()
code = 0
with contextlib.redirect_stdout(out):
    try:
        main()
    except SystemExit as exc:
        code = exc.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {heads!r} or m in {heavy!r})
print(repr((code, out.getvalue(), loaded)))
"""


def probe(*args: str, columns: int = 100, heavy: tuple[str, ...] = HEAVY,
          ) -> tuple[int, str, list[str]]:
    heads = {m.split(".")[0] for m in heavy if "." not in m}
    script = PROBE.format(heads=heads, heavy=set(heavy))
    env = {**os.environ, "COLUMNS": str(columns)}
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, check=True, timeout=60, env=env)
    code, text, loaded = eval(done.stdout)  # our own repr of a tuple
    return code, text, loaded


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_command_without_loading_click(flag: str) -> None:
    code, text, loaded = probe(flag, heavy=(*HEAVY, "click", "app.cli"))
    assert code == 0
    assert loaded == []
    for command in ("assess", "validate", "run", "resume", "report", "backup", "backups",
                    "drill", "sandbox"):
        assert f"\n  {command} " in text, f"{command} missing from --help"
    assert "Exit codes: 0 ok" in text


def test_version_prints_the_package_version_without_loading_click() -> None:
    code, text, loaded = probe("--version", heavy=(*HEAVY, "click", "app.cli"))
    assert code == 0
    assert text == f"rollback-console, version {__version__}\n"
    assert loaded == []


def test_a_command_still_loads_what_it_needs() -> None:
    """The lazy imports moved into the commands: a command's own --help works too."""
    code, text, _ = probe("validate", "--help")
    assert code == 0
    assert "--watch DURATION" in text


def test_the_kept_help_is_what_click_renders() -> None:
    """app/help.txt must not drift from the commands: when this fails, regenerate it with
    `python -c "import app.cli as c; c.write_help()"`."""
    _, kept, _ = probe("--help", columns=HELP_WIDTH)
    assert kept == render_help()


def test_a_narrow_terminal_gets_clicks_own_wrapping() -> None:
    """Below HELP_WIDTH the kept text would overflow: click renders it for the terminal."""
    code, text, loaded = probe("--help", columns=60, heavy=("click",))
    assert code == 0
    assert "click" in loaded
    body = text.split("Examples:")[0]   # the examples are kept unwrapped (click's \\b)
    assert max(len(line) for line in body.splitlines()) <= 60
    assert "\n  assess " in text
