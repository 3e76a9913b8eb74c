"""What the runner tells the world, through one async channel. The TUI turns these into Textual
messages, the headless CLI into JSON lines; neither owns any logic."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class StepStarted:
    step: str
    title: str
    index: int
    total: int
    budget_s: int
    destructive: bool
    point_of_no_return: bool


@dataclass(frozen=True)
class StepProgress:
    step: str
    done: int
    total: int | None
    unit: str
    detail: str = ""


@dataclass(frozen=True)
class StepLog:
    step: str
    line: str
    level: str = "info"


@dataclass(frozen=True)
class StepFinished:
    step: str
    status: str          # done | failed | skipped | aborted
    summary: str
    elapsed_s: float


@dataclass(frozen=True)
class RunFinished:
    outcome: str
    exit_code: int
    summary: str
    incident: str


Event = StepStarted | StepProgress | StepLog | StepFinished | RunFinished


def to_json(event: Event) -> str:
    return json.dumps({"event": type(event).__name__, "at": round(time.time(), 3),
                       **asdict(event)}, ensure_ascii=False, default=str)


@dataclass
class EventChannel:
    """An unbounded queue of events; ``emit`` never blocks the runner."""

    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)

    def emit(self, event: Event) -> None:
        self.queue.put_nowait(event)

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            event = await self.queue.get()
            yield event
            if isinstance(event, RunFinished):
                return
