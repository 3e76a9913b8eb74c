"""The application in front of the database: health and critical endpoints, and the error rate
over N samples. GET only; the maintenance endpoint is never called."""

from __future__ import annotations

import time
from typing import Any

import httpx

from app.checks.context import CheckContext
from app.checks.model import Finding, Kind, Status
from app.checks.runner import Outcome
from app.secrets import scrub

RETRIES = 2


async def get(http: httpx.AsyncClient, path: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        resp = await http.get(path)
    except httpx.HTTPError as exc:
        return {"url": path, "status": None, "error": type(exc).__name__,
                "connect_failed": isinstance(exc, httpx.ConnectError),
                "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    out: dict[str, Any] = {"url": path, "status": resp.status_code,
                           "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    if resp.status_code >= 400:
        out["body"] = scrub(resp.text[:200])
    if resp.status_code == 503 and '"maintenance": true' in resp.text.replace(":true", ": true"):
        out["maintenance"] = True
    return out


async def app_endpoints(ctx: CheckContext) -> Outcome:
    http = ctx.need_http()
    app = ctx.config.app
    assert app is not None
    results = []
    for path in (app.health, *app.critical):
        r = await get(http, path)
        for _ in range(RETRIES):   # one 5xx is the error rate's business; broken = keeps failing
            if (r["status"] is not None and r["status"] < 500) or r.get("connect_failed"):
                break
            retry = await get(http, path)
            retry["earlier_failures"] = [*r.get("earlier_failures", []), r["status"] or r["error"]]
            r = retry
        results.append(r)
    evidence: dict[str, Any] = {"base_url": app.base_url, "endpoints": results}
    findings: list[Finding] = []
    if all(r.get("connect_failed") for r in results):
        findings.append(Finding(Kind.APP_UNREACHABLE, f"nothing answers at {app.base_url}: is "
                                "the app up, and is app.base_url right? (a database rollback "
                                "would not fix an app that is down)"))
    elif any(r.get("maintenance") for r in results):
        findings.append(Finding(Kind.INCOMPLETE, "the app is in maintenance mode: its endpoints "
                                "cannot be assessed until it is lifted"))
    else:
        for r in results:
            if r["status"] is None or r["status"] >= 400:
                what = r["status"] if r["status"] is not None else r["error"]
                findings.append(Finding(Kind.CRITICAL_BROKEN, f"{r['url']} answered {what}"))
    if not findings:
        return Outcome(Status.PASS, f"{len(results)} endpoints answer 2xx (slowest "
                       f"{max(r['latency_ms'] for r in results):.0f} ms)", evidence, [])
    status = Status.FAIL if any(f.kind is Kind.CRITICAL_BROKEN for f in findings) else \
        Status.ERROR
    return Outcome(status, "; ".join(f.summary for f in findings[:3]), evidence, findings)


async def error_rate(ctx: CheckContext) -> Outcome:
    http = ctx.need_http()
    app = ctx.config.app
    assert app is not None
    n = ctx.settings.error_samples
    per_endpoint: dict[str, dict[str, Any]] = {}
    failed_total = sent = 0
    for path in app.critical or (app.health,):
        statuses: dict[str, int] = {}
        failed = 0
        for _ in range(n):
            r = await get(http, path)
            key = str(r["status"] or r["error"])
            statuses[key] = statuses.get(key, 0) + 1
            if r["status"] is None or r["status"] >= 500:
                failed += 1
            if r.get("connect_failed"):
                break
        sent += sum(statuses.values())
        failed_total += failed
        per_endpoint[path] = {"samples": sum(statuses.values()), "errors": failed,
                              "statuses": statuses}
    evidence = {"samples_per_endpoint": n, "endpoints": per_endpoint}
    rate = failed_total * 100 / sent if sent else 0.0
    evidence["error_rate_pct"] = round(rate, 1)
    if any(e["statuses"].get("ConnectError") for e in per_endpoint.values()):
        return Outcome(Status.ERROR, f"cannot reach {app.base_url}", evidence,
                       [Finding(Kind.APP_UNREACHABLE, f"nothing answers at {app.base_url}")])
    if failed_total == 0:
        return Outcome(Status.PASS, f"0 errors in {sent} requests", evidence, [])
    if failed_total == sent:
        return Outcome(Status.FAIL, f"every one of {sent} requests failed", evidence,
                       [Finding(Kind.CRITICAL_BROKEN, f"all {sent} sampled requests failed")])
    return Outcome(Status.WARN, f"{failed_total} of {sent} requests failed ({rate:.0f}%) but the "
                   "service answers", evidence,
                   [Finding(Kind.ERROR_RATE, f"{rate:.0f}% of sampled requests failed")])
