"""Maintenance mode and notifications over HTTP (httpx).

Maintenance is verified, not assumed: after enabling, the app must answer 503 / maintenance;
after disabling, health must answer 200. Notifications are best effort: a failure is reported
as a warning and never blocks the rollback.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from app.config import AppEndpoints, Notifications
from app.errors import ConsoleError
from app.secrets import Secret, scrub

# The runbook's messages.
MESSAGES = {
    "started": "🚨 EMERGENCY ROLLBACK IN PROGRESS - Database maintenance underway",
    "point_of_no_return": "⚠️ EXECUTING ROLLBACK - Point of no return",
    "completed": "✅ Rollback completed. Service restored; monitoring continues.",
    "failed": "❌ Rollback stopped: the database is unchanged or restored; operators are on it.",
    "regression": "🔍 Post-rollback monitoring detected a regression.",
}


class MaintenanceFailed(ConsoleError):
    """Maintenance mode could not be switched, or did not take effect."""


@dataclass
class HttpResult:
    ok: bool
    summary: str
    status: int | None = None


def _describe(exc: httpx.HTTPError, url: str) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"{url} did not answer in time ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"{url} is unreachable (connection failed)"
    return scrub(f"{url}: {type(exc).__name__}: {exc}")


class Maintenance:
    """The app's maintenance switch, as the runbook's `curl -X POST/DELETE` but verified."""

    def __init__(self, app: AppEndpoints, client: httpx.AsyncClient | None = None,
                 attempts: int = 3, delay_s: float = 0.5):
        self.app = app
        self.client = client or httpx.AsyncClient(timeout=app.timeout_s)
        self.attempts = attempts
        self.delay_s = delay_s

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.app.token.reveal()}"} if self.app.token else {}

    async def _call(self, method: str, body: dict[str, Any] | None = None) -> httpx.Response:
        url = self.app.base_url + self.app.maintenance
        try:
            resp = await self.client.request(method, url, headers=self._headers(), json=body)
        except httpx.HTTPError as exc:
            raise MaintenanceFailed(f"maintenance {method}: {_describe(exc, url)}; "
                                    "check app.base_url and that the app is up") from None
        if resp.status_code in (401, 403):
            raise MaintenanceFailed(f"maintenance {method} {url} was refused "
                                    f"({resp.status_code}): check app.token")
        if resp.status_code >= 400:
            raise MaintenanceFailed(f"maintenance {method} {url} answered {resp.status_code}")
        return resp

    async def status(self) -> bool:
        resp = await self._call("GET")
        return bool(resp.json().get("maintenance"))

    async def enable(self, message: str = MESSAGES["started"]) -> HttpResult:
        await self._call("POST", {"message": message})
        probe = await self._probe_api()
        if probe.status != 503:
            raise MaintenanceFailed(
                f"maintenance mode was accepted but did not take effect: the API answered "
                f"{probe.status} ({probe.summary}), not 503")
        return HttpResult(True, "maintenance mode on; the API answers 503", 503)

    async def disable(self) -> HttpResult:
        await self._call("DELETE")
        health = await self.health(retries=self.attempts)
        if not health.ok:
            raise MaintenanceFailed(f"maintenance mode is off but health is not ok: "
                                    f"{health.summary}")
        return HttpResult(True, f"maintenance mode off; {health.summary}", health.status)

    async def _probe_api(self) -> HttpResult:
        url = self.app.base_url + self.app.health
        try:
            resp = await self.client.get(url)
        except httpx.HTTPError as exc:
            return HttpResult(False, _describe(exc, url))
        return HttpResult(resp.status_code == 200, f"{url} answered {resp.status_code}",
                          resp.status_code)

    async def health(self, retries: int = 1) -> HttpResult:
        """GET health, retrying with a pause: an app reconnecting to its database may need it."""
        result = HttpResult(False, "not probed")
        for attempt in range(max(1, retries)):
            result = await self._probe_api()
            if result.ok:
                return result
            if attempt + 1 < retries:
                await asyncio.sleep(self.delay_s)
        return result

    async def aclose(self) -> None:
        await self.client.aclose()


class Notifier:
    """Slack webhook, status page and generic webhooks. Never raises."""

    def __init__(self, cfg: Notifications, target_name: str,
                 client: httpx.AsyncClient | None = None, timeout_s: float = 5.0):
        self.cfg = cfg
        self.target_name = target_name
        self.client = client or httpx.AsyncClient(timeout=timeout_s)

    async def send(self, event: str, detail: str = "") -> list[HttpResult]:
        text = MESSAGES.get(event, event)
        full = f"{text} [{self.target_name}]" + (f": {detail}" if detail else "")
        calls: list[tuple[str, Secret | str, dict[str, Any], dict[str, str]]] = []
        if self.cfg.slack_webhook:
            calls.append(("slack", self.cfg.slack_webhook, {"text": full}, {}))
        if self.cfg.status_page_url:
            headers = ({"Authorization": f"Bearer {self.cfg.status_page_token.reveal()}"}
                       if self.cfg.status_page_token else {})
            calls.append(("status page", self.cfg.status_page_url,
                          {"status": event, "message": full, "target": self.target_name},
                          headers))
        for hook in self.cfg.webhooks:
            calls.append(("webhook", hook, {"event": event, "message": full,
                                            "target": self.target_name}, {}))
        return list(await asyncio.gather(*(self._post(*c) for c in calls)))

    async def _post(self, name: str, url: Secret | str, body: dict[str, Any],
                    headers: dict[str, str]) -> HttpResult:
        raw = url.reveal() if isinstance(url, Secret) else url
        shown = f"{name} notification"
        try:
            resp = await self.client.post(raw, json=body, headers=headers)
        except httpx.HTTPError as exc:
            return HttpResult(False, scrub(f"{shown} failed: {type(exc).__name__}"))
        if resp.status_code >= 400:
            return HttpResult(False, f"{shown} answered {resp.status_code}", resp.status_code)
        return HttpResult(True, f"{shown} sent", resp.status_code)

    async def aclose(self) -> None:
        await self.client.aclose()
