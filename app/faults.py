"""Test-only kill points: a real ``kill -9`` of this process at a named moment.

Tests set ``ROLLBACK_CONSOLE_KILL_AT=<point>`` (e.g. ``before:restore``, ``after:restore``) to
kill the console exactly at a step boundary, where an outside observer could only race. The
kill itself is real (SIGKILL: no ``finally``, no flush), so what resume meets is what a crash
leaves. Unset, a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "ROLLBACK_CONSOLE_KILL_AT"


def point(name: str) -> None:
    """Die here, at once, when the environment names this point."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
