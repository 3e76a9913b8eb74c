"""The console's rollback screen under a log flood, for bench/tui.py, which runs this in a
pseudo-terminal and types into it: ``python -m bench.flood_app CONFIG WORKDIR RATE SECONDS
EXPECTED_CHARS RESULT_JSON``.

The flood goes through the same path as a real restore's output: a plan step calls
``RunContext.log``, the event channel carries the lines to the screen's worker, which coalesces
them into ``RunnerEvents`` messages for the live log. The search input is open from the start,
so the keys the benchmark types land in it; when the flood is over and every key has arrived (or
a deadline passes), the app writes what it saw to RESULT_JSON and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from textual import events
from textual.widgets import Input

from app import config, logs
from app.events import EventChannel
from app.journal import Journal
from app.rollback.context import Options, RollbackType, RunContext
from app.rollback.plan import Plan, Step
from app.tui import RollbackConsoleApp
from screens.rollback import RollbackScreen
from widgets.live_log import LiveLog

LINE = ("pg_restore: processing data for table \"public.media\": COPY 4096 rows, "
        "block {n}, {n} lines so far")


class FloodApp(RollbackConsoleApp):
    def __init__(self, cfg: config.Config, workdir: Path, rate: int, seconds: float,
                 expected: int, result: Path):
        super().__init__(cfg, mode="drill")
        self.rate, self.seconds, self.expected, self.result = rate, seconds, expected, result
        self.sent = 0
        self.flood_s = 0.0
        self.flood_done = False
        self.deadline = 0.0
        journal = Journal.open(workdir / f"flood-incident-{time.time_ns()}")
        ctx = RunContext(cfg, RollbackType.PARTIAL, journal, EventChannel(),
                         None,  # type: ignore[arg-type]  # the flood step reads no source
                         Options(confirm=f"ROLLBACK {cfg.target.name}"))
        plan = Plan(RollbackType.PARTIAL, cfg.target.name, "bench", ("public.media",),
                    [Step("flood", "Load rows (a log flood)", "streams lines", 600, self.flood)])
        self.rollback = RollbackScreen(plan, ctx)

    async def flood(self, ctx: RunContext) -> str:
        """``rate`` lines a second for ``seconds``, paced by the clock, not by sleep's drift."""
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < self.seconds:
            due = int(self.rate * elapsed)
            while self.sent < due:
                ctx.log(LINE.format(n=self.sent))
                self.sent += 1
            await asyncio.sleep(0.005)
        self.flood_s = time.monotonic() - started
        self.flood_done = True
        self.deadline = time.monotonic() + 10
        return f"{self.sent} lines"

    def on_mount(self, event: events.Mount) -> None:  # type: ignore[override]
        """Straight to the rollback screen: no home screen, no probes."""
        event.prevent_default()   # Textual would run the base class's on_mount too
        self.title = f"rollback-console: {self.config.target.name}"
        self.push_screen(self.rollback)
        self.call_after_refresh(self.rollback.action_search)
        self.set_interval(0.2, self.maybe_finish)

    def maybe_finish(self) -> None:
        if not self.flood_done:
            return
        search = self.rollback.query_one("#rb-search", Input)
        if len(search.value) < self.expected and time.monotonic() < self.deadline:
            return
        log = self.rollback.query_one(LiveLog)
        log.flush()
        self.result.write_text(json.dumps({
            "typed": search.value, "lines_sent": self.sent, "flood_s": self.flood_s,
            "lines_received": log.received, "last_line_shown": log.history[-1]
            if log.history else ""}))
        self.exit(return_code=0)


def main() -> None:
    cfg_path, workdir, rate, seconds, expected, result = sys.argv[1:7]
    logs.configure(Path(workdir) / "flood-app.jsonl")
    app = FloodApp(config.load(Path(cfg_path)), Path(workdir), int(rate), float(seconds),
                   int(expected), Path(result))
    app.run()


if __name__ == "__main__":
    main()
