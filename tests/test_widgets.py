"""Each widget on its own, in a bare App, driven with Pilot: what the operator reads is words
and icons, not colour alone."""

from __future__ import annotations

import time

from textual.app import App, ComposeResult
from textual.widget import Widget

from app.config import Contact
from widgets.banner import TargetBanner
from widgets.blast_radius import BlastRadius
from widgets.check_list import CheckList
from widgets.contacts import ContactsPanel
from widgets.incident_clock import IncidentClock
from widgets.live_log import LiveLog
from widgets.status_line import StatusLine
from widgets.step_list import StepList, StepRow


class Host(App[None]):
    def __init__(self, widget: Widget):
        super().__init__()
        self.widget = widget

    def compose(self) -> ComposeResult:
        yield self.widget


async def test_banner_names_target_environment_and_mode_in_words() -> None:
    banner = TargetBanner("shop", "production", "assess")
    async with Host(banner).run_test() as pilot:
        banner.server = "PostgreSQL 18.6"
        await pilot.pause()
        text = str(banner.render())
        assert "shop" in text and "PRODUCTION" in text and "READ-ONLY" in text
        assert "PostgreSQL 18.6" in text
        assert banner.has_class("env-production") and banner.has_class("mode-assess")


async def test_status_line_words() -> None:
    line = StatusLine("Database")
    async with Host(line).run_test() as pilot:
        line.status, line.summary = "fail", "connection refused"
        await pilot.pause()
        assert "✖ FAIL" in str(line.render()) and "connection refused" in str(line.render())


async def test_live_log_batches_and_searches() -> None:
    log = LiveLog(max_lines=1000)
    async with Host(log).run_test() as pilot:
        log.extend([f"line {i}" for i in range(5000)])
        assert log.history == []  # nothing painted line by line
        await pilot.pause(0.3)
        assert len(log.history) == 1000 and log.history[-1] == "line 4999"
        assert log.search("line 4500") is not None
        assert log.history[log.search_from - 1] == "line 4500"
        assert "match at line" in str(log.border_subtitle)
        assert log.search("nothing like this") is None
        assert "no line contains" in str(log.border_subtitle)
        log.follow()
        assert log.auto_scroll


async def test_step_list_shows_status_words_and_budget() -> None:
    steps = StepList([StepRow("a", "Prerequisites", 60),
                      StepRow("b", "Reload", 1, destructive=True, point_of_no_return=True)])
    async with Host(steps).run_test() as pilot:
        steps.set_status("a", "done", 12.0)
        steps.set_status("b", "running")
        steps.rows["b"].started = time.monotonic() - 5  # five seconds over a 1 s budget
        await pilot.pause()
        a, b = str(steps.line(steps.rows["a"])), str(steps.line(steps.rows["b"]))
        assert "✔ DONE" in a and "0:12/1:00" in a
        assert "▶ RUNNING" in b and "NO RETURN" in b and "0:05/0:01" in b


async def test_incident_clock_says_over_budget() -> None:
    clock = IncidentClock()
    async with Host(clock).run_test() as pilot:
        assert "not started" in str(clock.render())
        clock.start(time.time() - 120, budget_s=60)
        await pilot.pause()
        assert "2:00" in str(clock.render()) and "OVER BUDGET" in str(clock.render())


async def test_check_list_fills_in() -> None:
    checks = CheckList([("fk", "foreign keys"), ("rls", "rls")])
    async with Host(checks).run_test() as pilot:
        assert checks.done == 0
        checks.set_result("fk", "fail", "3 orphans in media")
        await pilot.pause()
        assert checks.statuses == {"fk": "fail", "rls": "pending"} and checks.done == 1
        row = checks.get_row("fk")
        assert str(row[1]) == "✖ FAIL" and row[2] == "3 orphans in media"


async def test_blast_radius_marks_losses_in_words() -> None:
    radius = BlastRadius(["!public.media: all 2,000 rows replaced", "backup taken 2h ago"])
    async with Host(radius).run_test():
        text = str(radius.render())
        assert "LOSS public.media: all 2,000 rows replaced" in text
        assert "• backup taken 2h ago" in text


async def test_contacts_panel_lists_people_and_channels() -> None:
    panel = ContactsPanel([Contact("Primary DBA", "Aiko", "+81 1")], {"slack": "#inc"})
    async with Host(panel).run_test():
        text = str(panel.render())
        assert "Primary DBA: Aiko +81 1" in text and "Slack: #inc" in text
