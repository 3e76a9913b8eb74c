"""`rollback-console --help` against `python -c pass`: what a user waits for before the first
line of help, both started the way a user starts them (the installed console script, the same
interpreter).

Bytecode: a user's install (pip) compiles every module to ``__pycache__``, and a console run
from a checkout writes its own on the first run. This machine sets PYTHONDONTWRITEBYTECODE,
which would make every run compile the console's modules again: the benchmark drops it from the
children's environment and warms the cache first, so it times what a user's second run costs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Result

BIN = Path(sys.executable).parent
INVOCATIONS = 20     # per run, interleaved; a run's figure is their median


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["COLUMNS"] = "100"   # the same help width whatever terminal runs the bench
    return env


def _time(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                   check=True)
    return time.perf_counter() - started


def run(runs: int) -> list[Result]:
    env = _env()
    script = str(BIN / "rollback-console")
    commands = {
        "help": [script, "--help"],
        "version": [script, "--version"],
        "command help": [script, "validate", "--help"],
        "click": [sys.executable, "-c", "import click"],
        "pass": [sys.executable, "-c", "pass"],
    }
    for cmd in commands.values():   # warm the bytecode and the OS's file cache
        _time(cmd, env)
    figures: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(runs):
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(INVOCATIONS):
            for name, cmd in commands.items():
                samples[name].append(_time(cmd, env))
        for name in commands:
            figures[name].append(statistics.median(samples[name]))
        print(f"  startup run {i + 1}: " + ", ".join(
            f"{n} {figures[n][-1] * 1000:.1f} ms" for n in commands), flush=True)
    notes = [f"each run is the median of {INVOCATIONS} interleaved starts of each command; the "
             "installed console script and `python -c pass` run on the same interpreter",
             "bytecode cached, as after a user's install or first run (PYTHONDONTWRITEBYTECODE "
             "is dropped for the children, and a warm-up start writes the cache)",
             "--help and --version are answered before click is imported (app/entry.py: click's "
             "help text kept in app/help.txt, a test fails when it drifts; a terminal narrower "
             "than 80 columns goes through click); a test asserts click stays unloaded"]
    base = "python -c pass"
    return [
        Result("rollback-console --help", figures["help"], figures["pass"], base, 3.0, notes),
        Result("rollback-console --version", figures["version"], figures["pass"], base, None,
               notes),
        Result("rollback-console validate --help (a command's help, through click)",
               figures["command help"], figures["pass"], base, None,
               ["click and the command modules only (a test asserts that asyncio, rich, "
                "structlog, asyncpg, httpx and Textual stay unloaded)"]),
        Result("python -c 'import click' (click alone)", figures["click"],
               figures["pass"], base, None,
               ["click's own import (inspect, typing, enum, uuid, datetime, gettext): the floor "
                "of any answer click renders, hence the fast path for the top-level --help"]),
    ]
