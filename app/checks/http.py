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


async def _samples(http: httpx.AsyncClient, path: str, n: int) -> dict[str, Any]:
    """``n`` GETs of ``path``: how many answered what, and how many failed (5xx or no answer)."""
    statuses: dict[str, int] = {}
    failed = 0
    maintenance = False
    for _ in range(n):
        r = await get(http, path)
        key = str(r["status"] or r["error"])
        statuses[key] = statuses.get(key, 0) + 1
        maintenance = maintenance or bool(r.get("maintenance"))
        if r["status"] is None or r["status"] >= 500:
            failed += 1
        if r.get("connect_failed"):
            break
    return {"samples": sum(statuses.values()), "errors": failed, "statuses": statuses,
            "maintenance": maintenance}


def _answers(statuses: dict[str, int]) -> str:
    return ", ".join(f"{k} x{v}" if v > 1 else k for k, v in statuses.items())


async def error_rate(ctx: CheckContext) -> Outcome:
    """5xx among ``error_samples`` GETs of the health and each critical endpoint. An endpoint
    that fails every sample is down, not an error rate: it is named as such, never counted
    into a passing rate next to it."""
    http = ctx.need_http()
    app = ctx.config.app
    assert app is not None
    paths = list(dict.fromkeys((app.health, *app.critical)))
    per_endpoint = {p: await _samples(http, p, ctx.settings.error_samples) for p in paths}
    sent = sum(e["samples"] for e in per_endpoint.values())
    failed_total = sum(e["errors"] for e in per_endpoint.values())
    rate = failed_total * 100 / sent if sent else 0.0
    evidence = {"samples_per_endpoint": ctx.settings.error_samples, "endpoints": per_endpoint,
                "error_rate_pct": round(rate, 1)}
    if any(e["statuses"].get("ConnectError") for e in per_endpoint.values()):
        return Outcome(Status.ERROR, f"cannot reach {app.base_url}", evidence,
                       [Finding(Kind.APP_UNREACHABLE, f"nothing answers at {app.base_url}")])
    if any(e["maintenance"] for e in per_endpoint.values()):
        msg = ("not measured: the app is in maintenance mode (it answers 503 on purpose); "
               "measure again once it is lifted")
        return Outcome(Status.ERROR, msg, evidence, [Finding(Kind.INCOMPLETE, f"error rate {msg}")])
    if failed_total == 0:
        return Outcome(Status.PASS, f"0 errors in {sent} requests to {len(paths)} endpoint(s)",
                       evidence, [])
    down = {p: e for p, e in per_endpoint.items() if e["errors"] == e["samples"]}
    findings = [Finding(Kind.CRITICAL_BROKEN, f"{p} failed all {e['samples']} requests "
                        f"({_answers(e['statuses'])}): down, not an error rate")
                for p, e in down.items()]
    rest = [e for p, e in per_endpoint.items() if p not in down]
    rest_failed, rest_sent = sum(e["errors"] for e in rest), sum(e["samples"] for e in rest)
    if rest_failed:
        findings.append(Finding(Kind.ERROR_RATE, f"{rest_failed} of {rest_sent} requests to the "
                                f"endpoints that answer failed ({rest_failed * 100 / rest_sent:.0f}"
                                "%)"))
    if down:
        return Outcome(Status.FAIL, "; ".join(f.summary for f in findings), evidence, findings)
    return Outcome(Status.WARN, f"{failed_total} of {sent} requests failed ({rate:.0f}%) but the "
                   "service answers", evidence, findings)
