"""Access control: RLS vs the backup plus an impersonation probe (the test user must see rows,
anon must not), and authentication (the auth role can read its users; the app logs the test user
in). The runbook's "RLS policies blocking legitimate user access" and "authentication failure"."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import asyncpg
import httpx

from app import catalog
from app.checks.context import WOULD_WRITE, CheckContext
from app.checks.model import Finding, Kind, Skip, Status
from app.checks.runner import LOCKED, Outcome
from app.config import ProbeQuery
from app.secrets import scrub

LOGIN_WOULD_WRITE = f"{WOULD_WRITE} (login probe: the app records the test user's sign-in)"


def probe_queries(ctx: CheckContext) -> list[tuple[ProbeQuery, str | None]]:
    """The configured probes (their table unknown), else one per critical table."""
    if ctx.settings.probe_queries:
        return [(p, None) for p in ctx.settings.probe_queries]
    return [(ProbeQuery(f"read {t}", f"SELECT 1 FROM {catalog.qualified(t)} LIMIT 1"),
             t if "." in t else f"public.{t}") for t in ctx.config.target.critical_tables]


def anon_readable_by_policy(policies: list[catalog.Policy]) -> set[str]:
    """Tables a permissive SELECT (or ALL) policy lets anon (or PUBLIC) read: public-read by
    design, as many a Supabase project's reference tables are."""
    return {p.table for p in policies if p.permissive and p.command in ("SELECT", "ALL")
            and {"anon", "public"} & set(p.roles)}


def private_tables(ctx: CheckContext) -> list[str]:
    """Tables anon must not read: ``[assess] private_tables``, else the critical tables that had
    RLS on at the backup and no policy there letting anon read them (a table public-read by
    policy in the backup too is no exposure)."""
    if ctx.settings.private_tables:
        return list(ctx.settings.private_tables)
    full = [t if "." in t else f"public.{t}" for t in ctx.config.target.critical_tables]
    if ctx.baseline is None:
        return full
    state = ctx.baseline.manifest.state
    public_read = anon_readable_by_policy(state.policies)
    return [t for t in full if state.rls.get(t, True) and t not in public_read]


def _exposure(ctx: CheckContext, table: str) -> str:
    """anon reads a private table: the finding, saying why the table counts as private."""
    why = ("it is named in [assess] private_tables" if ctx.settings.private_tables else
           "it is a critical table that had RLS on and no policy letting anon read it at the "
           "backup; if it is public by design, list the private ones in "
           "[assess] private_tables")
    return f"anon can read private rows of {table} ({why})"


async def _as_role(conn: asyncpg.Connection, role: str, claims: dict[str, Any],
                   sql: str) -> int:
    """Rows ``sql`` returns for ``role`` with these JWT claims, as PostgREST would run it."""
    async with conn.transaction(readonly=True):
        await conn.execute(f"SET LOCAL ROLE {catalog.quote_ident(role)}")
        await conn.execute("SELECT set_config('request.jwt.claims', $1, true)",
                           json.dumps(claims))
        return int(await conn.fetchval(f"SELECT count(*) FROM ({sql}) AS probe"))


def _policy_changes(ctx: CheckContext, flags: dict[str, bool], pols: list[catalog.Policy],
                    evidence: dict[str, Any]) -> list[Finding]:
    """RLS flags and policies against the backup's: RLS turned off is exposure; any other
    policy change is put in ``evidence`` (drift, unless the probes find worse)."""
    if ctx.baseline is None:
        return []
    then = ctx.baseline.manifest.state
    disabled = sorted(t for t, on in then.rls.items() if on and flags.get(t) is False)
    key = lambda p: (p.table, p.name)  # noqa: E731
    before = {key(p): p for p in then.policies}
    after = {key(p): p for p in pols}
    changed = {
        "dropped": sorted(f"{t}: {n}" for t, n in before.keys() - after.keys()),
        "added": sorted(f"{t}: {n}" for t, n in after.keys() - before.keys()),
        "altered": sorted(f"{k[0]}: {k[1]}" for k in before.keys() & after.keys()
                          if before[k] != after[k])}
    evidence["policies_changed"] = {k: v for k, v in changed.items() if v}
    evidence["rls_disabled"] = disabled
    return [Finding(Kind.RLS_EXPOSURE, f"row level security was turned OFF on {t} since the "
                    "backup") for t in disabled]


_NO_RELATION = re.compile(r'relation "([^"]+)" does not exist')


def _probe_failed(ctx: CheckContext, name: str, table: str | None,
                  exc: asyncpg.PostgresError, error: str) -> Finding:
    """A probe that fails because its table is gone meets a missing table: data loss (the
    schema check's finding too), not a policy blocking the user. A table that was not in the
    backup either (or, with no backup, one the config does not name as critical) is a probe
    to fix, not a loss."""
    if not isinstance(exc, asyncpg.UndefinedTableError):
        return Finding(Kind.RLS_BLOCKING, f"the test user cannot run probe {name!r}: {error}")
    m = _NO_RELATION.search(str(exc))
    gone = table or (m.group(1) if m else None)
    if gone is not None and "." not in gone:
        gone = f"public.{gone}"
    had = ctx.baseline.manifest.state.tables if ctx.baseline is not None else None
    if gone is not None and (gone in had if had is not None else table is not None):
        return Finding(Kind.DATA_LOSS, f"table {gone} is gone, so probe {name!r} cannot run "
                       "(a missing table, not an RLS policy)", (gone,))
    return Finding(Kind.INCOMPLETE, f"probe {name!r} reads {gone or 'a table'} that does not "
                   "exist" + (" and was not in the backup" if had is not None else "")
                   + ": check assess.probe_queries and target.critical_tables")


async def _user_probes(ctx: CheckContext, conn: asyncpg.Connection,
                       not_run: list[str]) -> tuple[list[dict[str, Any]], list[Finding]]:
    """The test user, as PostgREST would run it, must get rows from each probe query."""
    auth = ctx.config.auth
    if auth is None:
        not_run.append("test-user probe: no [auth] section (test_user_id)")
        return [], []
    if not ctx.role.can_become("authenticated"):
        not_run.append(f"test-user probe: role {ctx.role.name} cannot SET ROLE authenticated")
        return [], []
    claims = {"sub": auth.test_user_id, "email": auth.test_user_email,
              "role": "authenticated", "aud": "authenticated"}
    probes: list[dict[str, Any]] = []
    findings: list[Finding] = []
    for p, table in probe_queries(ctx):
        entry: dict[str, Any] = {"probe": p.name, "sql": p.sql, "min_rows": p.min_rows}
        probes.append(entry)
        try:
            entry["rows"] = await _as_role(conn, "authenticated", claims, p.sql)
        except LOCKED:
            entry["error"] = "lock or statement timeout"
            findings.append(Finding(Kind.CONTENTION, f"probe {p.name!r} waited on a lock"))
        except asyncpg.PostgresError as exc:
            entry["error"] = f"{type(exc).__name__}: {scrub(str(exc))}"
            findings.append(_probe_failed(ctx, p.name, table, exc, entry["error"]))
        else:
            if entry["rows"] < p.min_rows:
                findings.append(Finding(
                    Kind.RLS_BLOCKING, f"the test user sees {entry['rows']} rows in probe "
                    f"{p.name!r} (expected at least {p.min_rows})"))
    return probes, findings


async def _anon_probes(ctx: CheckContext, conn: asyncpg.Connection, present: set[str],
                       not_run: list[str]) -> tuple[list[dict[str, Any]], list[Finding]]:
    """anon must see no row of the private tables (a table that is gone is not probed: the
    schema check and the test user's probe say it is gone)."""
    if not ctx.role.can_become("anon"):
        not_run.append(f"anon probe: role {ctx.role.name} cannot SET ROLE anon")
        return [], []
    anon: list[dict[str, Any]] = []
    findings: list[Finding] = []
    for t in private_tables(ctx):
        sql = f"SELECT 1 FROM {catalog.qualified(t)} LIMIT 5"
        entry: dict[str, Any] = {"table": t, "sql": sql}
        anon.append(entry)
        if t not in present:
            entry["not_probed"] = "the table is gone"
            continue
        try:
            entry["rows"] = await _as_role(conn, "anon", {"role": "anon"}, sql)
        except LOCKED:
            entry["error"] = "lock or statement timeout"
        except asyncpg.PostgresError as exc:  # permission denied is what we want
            entry["rows"] = 0
            entry["denied"] = type(exc).__name__
        else:
            if entry["rows"]:
                findings.append(Finding(Kind.RLS_EXPOSURE, _exposure(ctx, t)))
    return anon, findings


async def rls(ctx: CheckContext) -> Outcome:
    """Three checks: RLS flags and policies vs the backup, the test user's probes, anon's."""
    evidence: dict[str, Any] = {}
    not_run: list[str] = []
    async with ctx.pool.acquire() as conn:
        flags = await catalog.rls_flags(conn)
        findings = _policy_changes(ctx, flags, await catalog.policies(conn), evidence)
        probes, found = await _user_probes(ctx, conn, not_run)
        anon, exposed = await _anon_probes(ctx, conn, set(flags), not_run)
    findings += found + exposed
    evidence.update(test_user_probes=probes, anon_probes=anon, not_run=not_run)
    if not probes and not anon and not_run:
        raise Skip("; ".join(not_run), privilege=ctx.config.auth is not None)
    if evidence.get("policies_changed") and not findings:
        findings.append(Finding(Kind.SCHEMA_DRIFT, "policies changed since the backup: "
                                + json.dumps(evidence["policies_changed"])))
    if not_run:
        findings.append(Finding(Kind.INCOMPLETE, "RLS probes not run: " + "; ".join(not_run)))
    severe = {Kind.RLS_BLOCKING, Kind.RLS_EXPOSURE, Kind.DATA_LOSS}
    status = (Status.FAIL if any(f.kind in severe for f in findings) else
              Status.ERROR if any(f.kind in (Kind.CONTENTION, Kind.INCOMPLETE) for f in findings)
              else Status.WARN if findings else Status.PASS)
    summary = ("; ".join(f.summary for f in findings[:2]) if findings else
               f"test user reads through {len(probes)} probes, anon sees nothing in "
               f"{len(anon)} private tables")
    return Outcome(status, summary, evidence, findings)


async def _auth_db(ctx: CheckContext, conn: asyncpg.Connection) -> dict[str, Any]:
    role = ctx.settings.auth_role
    row = await conn.fetchrow(
        "SELECT to_regclass('auth.users') IS NOT NULL AS has_users, "
        "EXISTS (SELECT FROM pg_roles WHERE rolname = $1) AS has_role", role)
    assert row is not None
    if not row["has_users"]:
        return {"skipped": "no auth.users table (not a Supabase-style auth schema)"}
    if not row["has_role"]:
        return {"ok": False, "problem": f"role {role} does not exist"}
    priv = await conn.fetchrow(
        "SELECT has_schema_privilege($1, 'auth', 'USAGE') AS usage, "
        "has_table_privilege($1, 'auth.users', 'SELECT') AS can_select, "
        "has_table_privilege($1, 'auth.users', 'UPDATE') AS can_update", role)
    assert priv is not None
    out: dict[str, Any] = {"role": role, **dict(priv)}
    if ctx.config.auth is not None:
        email = ctx.config.auth.test_user_email
        try:
            if ctx.role.can_become(role):
                async with conn.transaction(readonly=True):
                    await conn.execute(f"SET LOCAL ROLE {catalog.quote_ident(role)}")
                    n = await conn.fetchval("SELECT count(*) FROM auth.users WHERE email = $1",
                                            email)
                out["read_as"] = role
            else:
                n = await conn.fetchval("SELECT count(*) FROM auth.users WHERE email = $1", email)
                out["read_as"] = ctx.role.name
            out["test_user_found"] = bool(n)
        except LOCKED:
            out["error"] = "lock or statement timeout reading auth.users"
        except asyncpg.PostgresError as exc:
            out["error"] = f"{type(exc).__name__}: {scrub(str(exc))}"
    out["ok"] = bool(priv["usage"] and priv["can_select"] and priv["can_update"]
                     and out.get("test_user_found", True) and "error" not in out)
    if not out["ok"]:
        out["problem"] = out.get("error") or (
            f"role {role} cannot read/update auth.users (usage={priv['usage']}, "
            f"select={priv['can_select']}, update={priv['can_update']})"
            if not (priv["usage"] and priv["can_select"] and priv["can_update"]) else
            f"the test user {email} is not in auth.users")
    return out


async def login_probe(ctx: CheckContext) -> dict[str, Any]:
    """POST the login endpoint as the test user: the one non-GET call a check makes. It changes
    no application data, but an app may record the test user's sign-in time (the demo app
    updates auth.users.last_sign_in_at): so it is not run while checks are read-only (assess
    mode, the `assess` command); `validate` in live mode runs it."""
    app, auth = ctx.config.app, ctx.config.auth
    assert app is not None and auth is not None and auth.test_user_password is not None
    http = ctx.need_http()
    started = time.perf_counter()
    try:
        resp = await http.post(app.login, json={"email": auth.test_user_email,
                                                "password": auth.test_user_password.reveal()})
    except httpx.HTTPError as exc:
        return {"ok": False, "unreachable": True,
                "problem": f"{app.base_url}{app.login} unreachable: {type(exc).__name__}"}
    ms = round((time.perf_counter() - started) * 1000, 1)
    out: dict[str, Any] = {"url": app.login, "status": resp.status_code, "latency_ms": ms}
    token = None
    if resp.status_code == 200:
        try:
            token = resp.json().get("access_token")
        except ValueError:
            token = None
    if not token:
        out.update(ok=False, problem=f"login answered {resp.status_code} without a token"
                   + (" (wrong auth.test_user_password, or auth broken)"
                      if resp.status_code in (401, 403) else ""),
                   body=scrub(resp.text[:200]))
        return out
    target = app.critical[0] if app.critical else app.health
    follow = await http.get(target, headers={"Authorization": f"Bearer {token}"})
    out["token_accepted"] = {"url": target, "status": follow.status_code}
    out["ok"] = follow.status_code < 400
    if not out["ok"]:
        out["problem"] = f"the issued token was refused by {target} ({follow.status_code})"
    return out


async def authentication(ctx: CheckContext) -> Outcome:
    evidence: dict[str, Any] = {}
    findings: list[Finding] = []
    async with ctx.pool.acquire() as conn:
        evidence["database"] = db = await _auth_db(ctx, conn)
    if db.get("ok") is False:
        findings.append(Finding(Kind.AUTH_FAILURE, f"auth database: {db['problem']}"))
    app, auth = ctx.config.app, ctx.config.auth
    if app is None or auth is None or auth.test_user_password is None:
        evidence["login"] = {"skipped": "needs [app] and auth.test_user_password"}
    elif not ctx.settings.login_probe:
        evidence["login"] = {"skipped": "assess.login_probe = false"}
    elif ctx.read_only:
        evidence["login"] = {"skipped": LOGIN_WOULD_WRITE, "would_write": True}
    else:
        evidence["login"] = login = await login_probe(ctx)
        if login.get("unreachable"):
            findings.append(Finding(Kind.APP_UNREACHABLE, login["problem"]))
        elif not login["ok"]:
            findings.append(Finding(Kind.AUTH_FAILURE, f"login: {login['problem']}"))
    would_write = bool(evidence["login"].get("would_write"))
    if would_write:
        evidence["not_run"] = [LOGIN_WOULD_WRITE]
    if "skipped" in db and "skipped" in evidence["login"]:
        raise Skip(f"{db['skipped']}; login probe {evidence['login']['skipped']}")
    if any(f.kind is Kind.AUTH_FAILURE for f in findings):
        status = Status.FAIL
    elif findings:
        status = Status.ERROR
    elif would_write:
        status = Status.SKIP   # half of the check did not run: not a pass
    else:
        status = Status.PASS
    parts = [LOGIN_WOULD_WRITE] if would_write and not findings else []
    if db.get("ok"):
        parts.append(f"{db['role']} reads auth.users")
    if evidence["login"].get("ok"):
        parts.append("login issues a token the API accepts")
    summary = "; ".join(f.summary for f in findings) if findings else "; ".join(parts)
    return Outcome(status, summary or "nothing to check", evidence, findings)
