"""Every drill played in a real terminal the way the screen suggests: the player below knows no
scenario's answer. It reads the screen and presses a key only when the screen names it (the
recommendation's "shift+y: accept", the plan's "press b", the gate's phrase, "press D for phase
2", "v: validate", the fix's "f: save the fix", ...). Following the screen must score 100 on
every scenario: where the right move is not to roll back (FORWARD-FIX, MONITOR), the screen
must not lead into one."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from app.drills import playable
from tests.test_tmux import COMMAND, Tmux, tmux  # noqa: F401  (the fixture)

pytestmark = pytest.mark.tmux

PHRASE = re.compile(r"type exactly:\s+(\S+(?: \S+)*?)\s{2,}")


def _play(tmux: Tmux, limit: float = 240.0) -> tuple[str, list[str]]:  # noqa: F811
    """Press what the screen names until the debrief shows; returns it and the keys pressed."""
    pressed: list[str] = []
    assessed = fixed = False
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        screen = tmux.screen()
        if "Drill debrief" in screen:
            return screen, pressed
        key = None
        if "press a to assess" in screen and not assessed:
            key, assessed = "a", True
        elif "press a to assess" in screen:
            key = "q"                              # back home after the fix or watch: end
        elif "shift+y: accept" in screen:
            key = "Y"
        elif "f: save the fix" in screen and not fixed:
            key, fixed = "f", True
        elif "nothing was run" in screen and "esc" in screen.lower():
            key = "Escape"                         # the saved fix, shown whole: back
        elif "w: watch" in screen.lower() and not fixed and "MONITOR" in screen:
            key, fixed = "w", True
        elif fixed and "Stop watching" in screen and "esc Back" in screen:
            key = "Escape"
        elif fixed and ("f: save the fix" in screen or "w: watch" in screen.lower()):
            key = "q"
        elif "press b to build the plan" in screen:
            key = "b"
        elif "POINT OF NO RETURN" in screen and "Go to the gate" in screen:
            key = "G"
        elif (m := PHRASE.search(screen)) and "type the phrase here" in screen:
            tmux.run("send-keys", "-t", "console", "-l", m.group(1))
            time.sleep(0.5)
            key = "Enter"
        elif "press D for phase" in screen:
            key = "D"
        elif "rollback completed and validated" in screen and "v: validate" in screen:
            key = "v"
        elif "ALL ITEMS PASS" in screen:
            key = "q"
        if key is not None:
            tmux.run("send-keys", "-t", "console", key)
            pressed.append(key)
            _settle(tmux, screen)   # the screen moves on before it is read again
        else:
            time.sleep(0.3)
    raise AssertionError(f"no debrief after {limit:.0f} s; keys {pressed}:\n{tmux.screen()}")


def _settle(tmux: Tmux, before: str, timeout: float = 90.0) -> None:  # noqa: F811
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        if tmux.screen() != before:
            time.sleep(0.5)
            return


@pytest.mark.parametrize("scenario", [s.name for s in playable()])
def test_following_the_screen_scores_100(tmux: Tmux, tmp_path: Path,  # noqa: F811
                                         scenario: str) -> None:
    done = tmp_path / "exit-code"
    shell = (f"unset COLUMNS LINES; ROLLBACK_CONSOLE_HOME={tmp_path / 'home'} {COMMAND} drill "
             f"--scenario {scenario} --rows 300 --dir {tmp_path / 'sandbox'}; echo $? > {done}")
    # wide, so no hint the player reads wraps (80 columns has its own tests)
    tmux.run("new-session", "-d", "-s", "console", "-x", "200", "-y", "50", shell)
    tmux.wait_for("press a to assess", timeout=120)
    screen, keys = _play(tmux)
    assert "Score: 100/100" in screen, f"keys {keys}:\n{screen}"
    tmux.run("send-keys", "-t", "console", "q")
    assert tmux.exit_code(done) == "0", tmux.screen()
