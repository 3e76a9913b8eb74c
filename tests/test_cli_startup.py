"""`--help` and `--version` load only click: what makes them fast (bench/startup.py times them;
no timing here). The help still lists every command, and the version is the package's."""

from __future__ import annotations

import subprocess
import sys

from app import __version__

HEAVY = ("asyncio", "asyncpg", "httpx", "rich", "structlog", "textual", "importlib.metadata",
         "app.config", "app.logs")

PROBE = """
import contextlib, io, sys
sys.argv = ["rollback-console", *sys.argv[1:]]
from app.cli import main
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


def probe(*args: str) -> tuple[int, str, list[str]]:
    heads = {m.split(".")[0] for m in HEAVY if "." not in m}
    script = PROBE.format(heads=heads, heavy=set(HEAVY))
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, check=True, timeout=60)
    code, text, loaded = eval(done.stdout)  # our own repr of a tuple
    return code, text, loaded


def test_help_lists_every_command_and_loads_nothing_heavy() -> None:
    code, text, loaded = probe("--help")
    assert code == 0
    assert loaded == []
    for command in ("assess", "validate", "run", "resume", "report", "backup", "backups",
                    "drill", "sandbox"):
        assert f"\n  {command} " in text, f"{command} missing from --help"
    assert "Exit codes: 0 ok" in text


def test_version_prints_the_package_version_and_loads_nothing_heavy() -> None:
    code, text, loaded = probe("--version")
    assert code == 0
    assert text == f"rollback-console, version {__version__}\n"
    assert loaded == []


def test_a_command_still_loads_what_it_needs() -> None:
    """The lazy imports moved into the commands: a command's own --help works too."""
    code, text, _ = probe("validate", "--help")
    assert code == 0
    assert "--watch DURATION" in text
