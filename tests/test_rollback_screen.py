"""The rollback screen with Pilot: statuses in words, the live log, failure then skip with a
reason, abort asks first, and a log flood never loses a key press."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from textual import events

from app import config
from app.events import EventChannel
from app.journal import Journal
from app.rollback.context import Options, Outcome, RollbackType, RunContext, StepFailed
from app.rollback.plan import Plan, Step
from app.tui import RollbackConsoleApp
from screens.confirm import ConfirmScreen
from screens.reason import ReasonScreen
from screens.rollback import RollbackScreen
from tests.conftest import DemoApp, wait_until
from widgets.live_log import LiveLog
from widgets.step_list import StepList

FLOOD_LINES = 20_000


async def flood(ctx: RunContext) -> str:
    for i in range(FLOOD_LINES):
        ctx.log(f"COPY line {i}")
        if i % 500 == 0:
            ctx.progress(i, FLOOD_LINES, "rows")
            await asyncio.sleep(0)
    return f"{FLOOD_LINES} lines"


async def fails(_ctx: RunContext) -> str:
    raise StepFailed("could not lock public.media: held by pid 42")


async def sleeps(_ctx: RunContext) -> str:
    await asyncio.sleep(30)
    return "slept"


async def quick(_ctx: RunContext) -> str:
    return "quick"


def screen_for(console_config: Path, tmp_path: Path, steps: list[Step]) -> tuple[
        RollbackConsoleApp, RollbackScreen, RunContext]:
    cfg = config.load(console_config)
    ctx = RunContext(cfg, RollbackType.PARTIAL, Journal.open(tmp_path / "inc"), EventChannel(),
                     None, Options(confirm=f"ROLLBACK {cfg.target.name}"))
    plan = Plan(RollbackType.PARTIAL, cfg.target.name, "b1", ("public.media",), steps)
    app = RollbackConsoleApp(cfg, mode="drill")
    return app, RollbackScreen(plan, ctx), ctx



async def test_failure_then_skip_with_a_reason_then_done(console_config: Path,
                                                         tmp_path: Path) -> None:
    app, screen, ctx = screen_for(console_config, tmp_path, [
        Step("flood", "Load rows", "streams", 60, flood, destructive=True),
        Step("lock", "Take the lock", "locks", 10, fails),
        Step("end", "Recover", "ends", 10, quick)])
    async with app.run_test(size=(120, 36)) as pilot:
        await app.push_screen(screen)
        await wait_until(lambda: screen.outcome is not None, pilot)
        assert screen.outcome is Outcome.FAILED_RESTORED
        steps = screen.query_one(StepList)
        assert [r.status for r in steps.rows.values()] == ["done", "failed", "pending"]
        assert "FAILED" in str(steps.line(steps.rows["lock"]))  # a word, not only a colour
        log = screen.query_one(LiveLog)
        log.flush()
        assert f"COPY line {FLOOD_LINES - 1}" in log.history  # the flood's end is on screen
        assert any("held by pid 42" in line for line in log.history)

        await pilot.press("S")
        await pilot.pause()
        assert isinstance(app.screen, ReasonScreen)
        await pilot.click("#reason")
        await pilot.press(*"lock taken by hand")
        await pilot.press("enter")
        await wait_until(lambda: screen.outcome is Outcome.DONE, pilot)
        skipped = [e for e in ctx.journal.of_kind("step_finished")
                   if e.data.get("status") == "skipped"]
        assert skipped and skipped[0].data["reason"] == "lock taken by hand"
        assert steps.rows["lock"].status == "skipped"


async def test_abort_asks_first_and_cancel_keeps_running(console_config: Path,
                                                         tmp_path: Path) -> None:
    app, screen, ctx = screen_for(console_config, tmp_path, [
        Step("wait", "A long step", "waits", 60, sleeps)])
    async with app.run_test(size=(120, 36)) as pilot:
        await app.push_screen(screen)
        await wait_until(lambda: screen.query_one(StepList).rows["wait"].status == "running",
                       pilot)
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert app.focused is not None and app.focused.id == "no"
        await pilot.press("enter")  # Cancel
        await pilot.pause()
        assert screen.running
        await pilot.press("ctrl+c")
        await pilot.pause()
        await pilot.click("#yes")
        await wait_until(lambda: screen.outcome is not None, pilot)
        assert screen.outcome is Outcome.NEEDS_OPERATOR
        finished = ctx.journal.last("step_finished")
        assert finished is not None and finished.data["status"] == "aborted"


async def test_a_log_flood_never_loses_a_key(console_config: Path, tmp_path: Path) -> None:
    stop = asyncio.Event()
    sent = 0

    async def flood_until_stopped(ctx: RunContext) -> str:
        nonlocal sent
        while not stop.is_set():  # about 20,000 lines a second
            for _ in range(200):
                ctx.log(f"COPY line {sent}")
                sent += 1
            await asyncio.sleep(0.01)
        return f"{sent} lines"

    app, screen, _ = screen_for(console_config, tmp_path, [
        Step("flood", "Load rows", "streams", 60, flood_until_stopped)])
    async with app.run_test(size=(120, 36)) as pilot:
        await app.push_screen(screen)
        await wait_until(lambda: sent > 2000, pilot)
        await pilot.press("slash")
        search = screen.query_one("#rb-search")
        typed = "COPY line 1999 and a longer phrase typed during the flood"
        started_at = sent
        for char in typed:  # as the terminal driver delivers them: no waiting between keys
            app.post_message(events.Key("space" if char == " " else char, char))
        await wait_until(lambda: search.value == typed, pilot)  # type: ignore[attr-defined]
        flooded_while_typing = sent - started_at
        stop.set()
        await wait_until(lambda: screen.outcome is not None, pilot)
        assert flooded_while_typing > 0  # the log really was flooding while the keys went in
        wanted = f"COPY line {sent - 100}"
        search.value = wanted  # type: ignore[attr-defined]
        await pilot.press("enter")
        await pilot.pause()
        log = screen.query_one(LiveLog)
        assert log.history[log.search_from - 1] == wanted


async def test_after_a_failed_run_shift_m_turns_maintenance_off(
        console_config: Path, demo_app: DemoApp, tmp_path: Path) -> None:
    """The run switched the real demo app into maintenance, then failed and was undone: the
    outcome line says the app is still in maintenance; shift+m asks, then switches it off
    (verified: health 200) and journals it."""
    from app.rollback.steps import maintenance_on

    app, screen, ctx = screen_for(console_config, tmp_path, [
        Step("maintenance", "Set maintenance mode", "on", 120, maintenance_on),
        Step("lock", "Take the lock", "locks", 10, fails)])
    async with app.run_test(size=(120, 36)) as pilot:
        await app.push_screen(screen)
        await wait_until(lambda: screen.outcome is not None, pilot)
        assert screen.outcome is Outcome.FAILED_RESTORED
        outcome = screen.query_one("#rb-outcome")
        assert "M: maintenance off" in str(outcome.render())
        assert httpx.get(f"{demo_app.url}/api/health").status_code == 503
        await pilot.press("M")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.focused is not None and app.screen.focused.id == "no"  # safe default
        await pilot.click("#yes")
        await wait_until(lambda: ctx.maintenance == "off", pilot)
        assert "M: maintenance off" not in str(outcome.render())
    assert httpx.get(f"{demo_app.url}/api/health").status_code == 200
    done = [e for e in ctx.journal.of_kind("action_finished")
            if e.data["action"] == "maintenance_off"]
    assert done and done[-1].data["ok"] is True
