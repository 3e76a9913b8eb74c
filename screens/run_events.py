"""The runner's events on their way to the rollback screen: batched (logs and progress arrive
in bursts), a flood thinned, and a dump tool's per-object lines recognised for condensing."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from textual.message import Message

from app.events import Event, EventChannel, RunFinished, StepLog

PROGRESS_EVERY_S = 0.1
# A dump tool's per-object progress (pg_restore --verbose prints a line per object: ~370 for
# the demo database) is condensed to one counter on screen; warnings and errors stay lines.
TOOL_PROGRESS = re.compile(r"^(pg_restore|pg_dump|pg_dumpall|psql): (?!.*(warning|error|"
                           r"fatal|WARNING|ERROR|FATAL|DETAIL|HINT))")
MAX_LOG_LINES_PER_BATCH = 2000   # beyond this a flood is summarised on screen (the log keeps all)


def thin(events: list[Event]) -> list[Event]:
    """Keep a flood's last lines and the latest progress; say how many lines were not shown."""
    logs = [e for e in events if isinstance(e, StepLog)]
    if len(logs) <= MAX_LOG_LINES_PER_BATCH:
        return events
    dropped = set(map(id, logs[:-MAX_LOG_LINES_PER_BATCH]))
    kept: list[Event] = [StepLog(logs[0].step, f"… {len(dropped)} lines not shown (log flood; "
                                               "the run's log file has them all)", "warning")]
    kept.extend(e for e in events if id(e) not in dropped)
    return kept


class RunnerEvents(Message):
    """A batch of the runner's events (coalesced: logs and progress arrive in bursts)."""

    def __init__(self, events: list[Event]):
        super().__init__()
        self.events = events


async def until_finished(channel: EventChannel, runner: asyncio.Task[Any]
                         ) -> AsyncIterator[Event]:
    """The run's events up to RunFinished, or until the runner ends without one (an
    unexpected error in it): the screen then hears that error instead of waiting forever."""
    queue = channel.queue
    while True:
        if queue.empty():
            waiting = asyncio.ensure_future(queue.get())
            try:
                await asyncio.wait({waiting, runner}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                got = waiting.done()
                if not got:
                    waiting.cancel()   # stopped, or the runner ended: no getter left behind
            if not got:
                while not queue.empty():
                    yield queue.get_nowait()
                return
            event = waiting.result()
        else:
            event = queue.get_nowait()
        yield event
        if isinstance(event, RunFinished):
            return
