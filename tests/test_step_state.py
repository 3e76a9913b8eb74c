"""What steps find or make is typed per rollback type (``app.rollback.state``) and journaled
under the journal's own names, as before the types existed: a resumed run (a new console on the
same journal) gets it back typed, and a step's journal entry holds only what it changed."""

from __future__ import annotations

from pathlib import Path

from app.rollback.context import NeedsOperator, Outcome, RollbackType, RunContext
from app.rollback.plan import Plan, Step
from app.rollback.runner import execute
from tests.helpers import run_context

DATABASES = {"target": "demo", "restored": "demo_restored_x", "aside": "demo_aside_x"}


def found_plan(target: str, stop_once: list[bool], seen: list[RunContext]) -> Plan:
    async def finds(ctx: RunContext) -> str:
        ctx.full.databases = dict(DATABASES)
        ctx.full.full_dump = "/backups/set/full_database_backup.dump"
        ctx.full.in_place = False
        ctx.schema.residual_objects = ["public.media"]
        ctx.partial.rows_loaded = {"public.media": 3}
        return "found"

    async def reads(ctx: RunContext) -> str:
        if stop_once and stop_once.pop():
            raise NeedsOperator("stop here; resume")
        seen.append(ctx)
        ctx.full.aside_database = ctx.full.names["aside"]
        return "read"

    return Plan(RollbackType.FULL, target, "b1", (), [
        Step("one", "Find", "d", 60, finds), Step("two", "Read", "d", 60, reads)])


def results(ctx: RunContext) -> dict[str, dict[str, object]]:
    return {e.data["step"]: e.data.get("result", {})
            for e in ctx.journal.of_kind("step_finished") if e.data["status"] == "done"}


async def test_typed_state_is_journaled_under_its_names_and_read_back_on_resume(
        console_config: Path, tmp_path: Path) -> None:
    seen: list[RunContext] = []
    first = run_context(console_config, RollbackType.FULL, tmp_path / "inc", None)
    plan = found_plan(first.cfg.target.name, [True], seen)
    assert await execute(plan, first) is Outcome.NEEDS_OPERATOR
    # the journal keeps the names a resume (and `report`) reads: unchanged by the typing
    assert results(first)["one"] == {
        "databases": DATABASES, "full_dump": "/backups/set/full_database_backup.dump",
        "in_place": False, "residual_objects": ["public.media"],
        "rows_loaded": {"public.media": 3}}

    again = run_context(console_config, RollbackType.FULL, tmp_path / "inc", None)
    assert await execute(plan, again) is Outcome.DONE, again.journal.entries[-1].data
    [ctx] = seen
    assert ctx is again
    assert ctx.full.dump == Path("/backups/set/full_database_backup.dump")
    assert ctx.in_place is False and ctx.schema.residual_objects == ["public.media"]
    assert ctx.partial.rows_loaded == {"public.media": 3}
    assert results(again)["two"] == {"aside_database": "demo_aside_x"}   # only what it changed
