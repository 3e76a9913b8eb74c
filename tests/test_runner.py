"""The runner on the real database: every step journaled before and after, failures end in the
right outcome, a resumed run does not redo finished work, and a held lock refuses the run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import asyncpg

from app.events import EventChannel, RunFinished, StepFinished, StepStarted
from app.lock import TargetLock
from app.rollback.context import NeedsOperator, Outcome, RollbackType, RunContext
from app.rollback.plan import Plan, Step
from app.rollback.runner import execute, skip_step
from app.rollback.state import StepState
from tests.helpers import run_context
from tests.test_partial_rollback import last_event


@dataclass
class Marker(StepState):
    """A toy type's own step state (as a new type declares it): journaled, read back."""

    marker_written: bool | None = None


def marker_plan(dsn: str, fail_once: list[bool]) -> Plan:
    async def insert_marker(ctx: RunContext) -> str:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS runner_marker (n int)")
            await conn.execute("INSERT INTO runner_marker VALUES (1)")
        finally:
            await conn.close()
        ctx.state(Marker).marker_written = True
        ctx.log("marker written")
        return "marker written"

    async def flaky(ctx: RunContext) -> str:
        if fail_once and fail_once.pop():
            raise NeedsOperator("the app did not answer; check it, then resume")
        assert ctx.state(Marker).marker_written is True  # a resumed run gets it back
        return "ok"

    async def last(_ctx: RunContext) -> str:
        return "finished"

    return Plan(RollbackType.PARTIAL, "tea-school-sandbox", "b1", ("public.media",), [
        Step("one", "Write a marker", "d", 60, insert_marker, destructive=True),
        Step("two", "Flaky step", "d", 60, flaky),
        Step("three", "Last step", "d", 60, last)])


async def drain(channel: EventChannel) -> list[object]:
    return [e async for e in channel]


async def test_a_stopped_run_resumes_without_redoing_work(console_config: Path, tmp_path: Path,
                                                          conn: asyncpg.Connection,
                                                          demo_db) -> None:
    fail_once = [True]
    plan = marker_plan(demo_db.dsn, fail_once)
    ctx = run_context(console_config, RollbackType.PARTIAL, tmp_path / "inc", None)
    assert await execute(plan, ctx) is Outcome.NEEDS_OPERATOR
    events = await drain(ctx.channel)
    assert isinstance(events[-1], RunFinished) and events[-1].exit_code == 5
    assert [e.step for e in events if isinstance(e, StepStarted)] == ["one", "two"]

    # a new console (new context, same journal) resumes
    ctx2 = run_context(console_config, RollbackType.PARTIAL, tmp_path / "inc", None)
    assert ctx2.journal.started_not_finished() is None
    assert await execute(plan, ctx2) is Outcome.DONE
    events = await drain(ctx2.channel)
    assert [e.step for e in events if isinstance(e, StepStarted)] == ["two", "three"]
    assert await conn.fetchval("SELECT count(*) FROM runner_marker") == 1  # not redone
    kinds = [e.kind for e in ctx2.journal.entries]
    assert kinds[0] == "incident_opened" and kinds[-1] == "incident_closed"
    assert "incident_resumed" in kinds
    assert kinds.count("step_started") == kinds.count("step_finished") == 4


async def test_pause_stops_between_steps(console_config: Path, tmp_path: Path, demo_db) -> None:
    plan = marker_plan(demo_db.dsn, [])
    ctx = run_context(console_config, RollbackType.PARTIAL, tmp_path / "inc", None)
    ctx.pause_requested = True
    assert await execute(plan, ctx) is Outcome.NEEDS_OPERATOR
    assert ctx.journal.of_kind("step_started") == []
    assert ctx.journal.last("incident_paused") is not None


async def test_skip_is_journaled_with_its_reason(console_config: Path, tmp_path: Path,
                                                 demo_db) -> None:
    plan = marker_plan(demo_db.dsn, [True])
    ctx = run_context(console_config, RollbackType.PARTIAL, tmp_path / "inc", None)
    await execute(plan, ctx)
    skip_step(ctx, "two", "app team confirmed by phone")
    ctx.channel = EventChannel()
    assert await execute(plan, ctx) is Outcome.DONE
    skipped = [e for e in ctx.journal.of_kind("step_finished") if e.data["status"] == "skipped"]
    assert skipped[0].data["reason"] == "app team confirmed by phone"
    events = await drain(ctx.channel)
    assert any(isinstance(e, StepFinished) and e.status == "skipped" for e in events)


async def test_a_held_target_lock_refuses_the_run(console_config: Path, tmp_path: Path,
                                                  demo_db) -> None:
    plan = marker_plan(demo_db.dsn, [])
    ctx = run_context(console_config, RollbackType.PARTIAL, tmp_path / "inc", None)
    async with TargetLock(ctx.cfg.target, "someone-else"):
        assert await execute(plan, ctx) is Outcome.REFUSED
    assert not ctx.journal.path.exists(), "a run refused by the lock opened an incident"
    finished = last_event(ctx)
    assert finished.exit_code == 3 and "someone-else" in finished.summary
