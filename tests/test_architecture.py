"""The layer rule of ARCHITECTURE.md: Textual is imported only in screens/, widgets/ and
app/tui.py. The import-linter contract lives in pyproject.toml; this runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_textual_only_in_screens_widgets_and_tui() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_stylesheet_is_found() -> None:
    from app.paths import stylesheet

    assert stylesheet().read_text().strip()
