"""The drill a newcomer plays in a real terminal, pressing only keys the screen names: in
dropped-index the verdict is FORWARD-FIX and the right move is not to roll back. Reading the
verdict and going back is the call, and scores full marks (it scored 75: 'no assessment
journaled'); following the screen into a rollback meets AGAINST THE VERDICT on the plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_tmux import COMMAND, Tmux, tmux  # noqa: F401  (the fixture)

pytestmark = pytest.mark.tmux


def test_forward_fix_drill_read_the_verdict_go_back_scores_100(
        tmux: Tmux, tmp_path: Path) -> None:  # noqa: F811
    done = tmp_path / "exit-code"
    shell = (f"ROLLBACK_CONSOLE_HOME={tmp_path / 'home'} {COMMAND} drill --scenario "
             f"dropped-index --rows 300 --dir {tmp_path / 'sandbox'}; echo $? > {done}")
    tmux.run("new-session", "-d", "-s", "console", "-x", "80", "-y", "24", shell)
    screen = tmux.wait_for("press a to assess", timeout=120)
    assert "a Assess" in screen                        # the key is named on the screen
    tmux.run("send-keys", "-t", "console", "a")
    screen = tmux.wait_for("FORWARD-FIX", timeout=90)
    tmux.wait_for("esc Back")                   # named in the footer, even at 80 columns
    tmux.run("send-keys", "-t", "console", "Escape")
    tmux.wait_for("press a to assess")
    tmux.run("send-keys", "-t", "console", "q")
    screen = tmux.wait_for("Drill debrief")
    assert "Score: 100/100" in screen, screen
    assert "tier: FORWARD-FIX" in screen
    tmux.run("send-keys", "-t", "console", "q")
    assert tmux.exit_code(done) == "0"
