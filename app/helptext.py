"""Where the top-level help is kept and how wide it is rendered: shared by the light entry
point (which answers a bare --help from the kept text, before click is imported) and the CLI
(which renders it with click at this width). Plain Python only: nothing heavy to import."""

from __future__ import annotations

import os

HELP_WIDTH = 80          # the cli group's max_content_width: click renders at most this wide
HELP_FILE = os.path.join(os.path.dirname(__file__), "help.txt")
