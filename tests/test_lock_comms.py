"""The target lock (a second console is refused, naming the holder) and maintenance mode and
notifications against the real demo app, plus a real HTTP server that answers 500 or hangs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from app import config
from app.comms import Maintenance, MaintenanceFailed, Notifier
from app.config import AppEndpoints, Notifications
from app.lock import TargetLock, TargetLocked
from app.secrets import Secret
from tests.conftest import DemoApp


async def test_second_console_is_refused_and_told_who_holds_the_lock(
        console_config: Path) -> None:
    target = config.load(console_config).target
    async with TargetLock(target, "inc-a"):
        with pytest.raises(TargetLocked) as info:
            async with TargetLock(target, "inc-b"):
                pass
        message = str(info.value)
        assert "inc-a" in message and "pid" in message
    async with TargetLock(target, "inc-c"):  # released: the next console may take it
        pass


async def test_advisory_lock_names_a_holder_on_another_host(console_config: Path,
                                                            tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    target = config.load(console_config).target
    first = TargetLock(target, "inc-remote")
    await first.acquire()
    try:
        # A console elsewhere has its own lock file: only the database lock can stop it.
        monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "other-host"))
        with pytest.raises(TargetLocked) as info:
            await TargetLock(target, "inc-local").acquire()
        assert "incident=inc-remote" in str(info.value)
        assert "server pid" in str(info.value)
    finally:
        await first.release()


def _app(demo_app: DemoApp, **overrides: object) -> AppEndpoints:
    values: dict[str, object] = {"base_url": demo_app.url, "token": Secret(demo_app.admin_token),
                                 "timeout_s": 2.0}
    values.update(overrides)
    return AppEndpoints(**values)  # type: ignore[arg-type]


async def test_maintenance_on_is_verified_and_off_restores_health(demo_app: DemoApp) -> None:
    m = Maintenance(_app(demo_app))
    try:
        on = await m.enable()
        assert on.status == 503 and await m.status() is True
        assert httpx.get(f"{demo_app.url}/api/objects").status_code == 503
        off = await m.disable()
        assert off.ok and await m.status() is False
    finally:
        await m.aclose()


async def test_wrong_token_is_a_clear_failure(demo_app: DemoApp) -> None:
    m = Maintenance(_app(demo_app, token=Secret("not-the-token")))
    try:
        with pytest.raises(MaintenanceFailed, match=r"refused \(401\): check app.token"):
            await m.enable()
    finally:
        await m.aclose()
    assert httpx.get(f"{demo_app.url}/api/health").status_code == 200  # nothing changed


class _Broken(BaseHTTPRequestHandler):
    mode = "500"

    def _answer(self) -> None:
        if self.mode == "hang":
            threading.Event().wait(5)
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(params=["500", "hang"])
def broken_app(request: pytest.FixtureRequest) -> Iterator[str]:
    handler = type("Handler", (_Broken,), {"mode": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


async def test_maintenance_endpoint_500_or_hanging_fails_clearly(broken_app: str) -> None:
    m = Maintenance(AppEndpoints(base_url=broken_app, timeout_s=0.5))
    try:
        with pytest.raises(MaintenanceFailed) as info:
            await m.enable()
    finally:
        await m.aclose()
    assert "answered 500" in str(info.value) or "did not answer in time" in str(info.value)


async def test_notifications_reach_the_receivers_and_failures_only_warn(
        demo_app: DemoApp, broken_app: str) -> None:
    cfg = Notifications(slack_webhook=Secret(f"{demo_app.url}/hooks/slack"),
                        status_page_url=f"{demo_app.url}/hooks/status",
                        webhooks=(Secret(f"{broken_app}/hook"),
                                  Secret("http://127.0.0.1:9/unreachable")))
    notifier = Notifier(cfg, "tea-school", timeout_s=0.5)
    try:
        results = await asyncio.wait_for(notifier.send("started", "type partial"), 10)
    finally:
        await notifier.aclose()
    assert [r.ok for r in results] == [True, True, False, False]
    received = httpx.get(f"{demo_app.url}/hooks").json()["notifications"]
    assert {n["channel"] for n in received} == {"slack", "status"}
    slack = next(n for n in received if n["channel"] == "slack")
    assert slack["payload"]["text"].startswith("🚨 EMERGENCY ROLLBACK IN PROGRESS")
    assert "unreachable" not in " ".join(r.summary for r in results if r.ok)
