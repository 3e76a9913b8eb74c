"""The console's TOML config: loaded and validated before any screen opens.

Every problem names the file, the key and what was expected; all problems are reported at once.
Secrets are read from the file itself, an environment variable (``*_env``) or a file (``*_file``)
and kept as ``Secret`` so they never print. The types live in ``app.config_schema``, the TOML
walker in ``app.config_reader``; here each section has its own validating function.
"""

from __future__ import annotations

import os
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.config_reader import Reader, dsn_problem, with_password
from app.config_schema import (
    ENVIRONMENTS,
    PITR_ENGINES,
    PLATFORM_SCHEMAS,
    AppEndpoints,
    AssessSettings,
    AuthProbe,
    Config,
    Contact,
    CriticalQuery,
    Notifications,
    PitrSettings,
    ProbeQuery,
    Target,
    parse_time,
)
from app.errors import ConfigError
from app.secrets import Secret

__all__ = ["ENVIRONMENTS", "PG_MAX_MS", "PLATFORM_SCHEMAS", "AppEndpoints", "AssessSettings",
           "AuthProbe", "Config", "Contact", "CriticalQuery", "Notifications", "PitrSettings",
           "ProbeQuery", "Target", "dsn_problem", "load", "parse_time"]

PG_MAX_MS = 2_147_483_647   # PostgreSQL's largest lock_timeout / statement_timeout

_TARGET_KEYS = {"name", "environment", "dsn", "dsn_env", "dsn_file", "password",
                "password_env", "password_file", "backups_root", "critical_tables",
                "critical_queries", "sandbox_dir", "platform_schemas", "tools_dir",
                "migration_at"}
_ASSESS_KEYS = {"row_tolerance_pct", "mass_change_pct", "slow_factor", "error_samples",
                "check_timeout_s", "lock_timeout_ms", "statement_timeout_ms",
                "long_transaction_s", "login_probe", "auth_role", "probe_queries",
                "private_tables"}


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate ``path``. Raises ``ConfigError`` listing every problem."""
    path = Path(path).expanduser().resolve() if Path(path).exists() else Path(path)
    shown = str(path)
    if not path.exists():
        raise ConfigError(shown, [
            "the file does not exist: pass --config PATH, or copy rollback.example.toml to "
            "./rollback.toml, or run `rollback-console sandbox up` to get one"])
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(shown, [f"not valid TOML: {exc}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(shown, [f"cannot read the file: {exc}"]) from None

    r = Reader(path, data)
    r.known(data, "(top level)", {"target", "app", "auth", "notifications", "contacts",
                                  "channels", "assess", "pitr"})
    target = _target(r, data)
    app_cfg = _app(r, data)
    auth_cfg = _auth(r, data)
    notifications = _notifications(r, data)
    contacts = _contacts(r, data)
    channels = _channels(r, data)
    assess = _assess_settings(r, data)
    pitr = _pitr(r, data)
    if r.problems:
        raise ConfigError(shown, r.problems)
    assert target is not None
    return Config(path=path, target=target, app=app_cfg, auth=auth_cfg,
                  notifications=notifications, contacts=contacts, channels=channels,
                  assess=assess, pitr=pitr)


def _target(r: Reader, data: dict[str, Any]) -> Target | None:
    """The required ``[target]`` table; None when a required key is missing (a problem)."""
    t = r.table(data, "target", "target", required=True)
    r.known(t, "target", _TARGET_KEYS)
    name = r.get(t, "name", "target", str, required=bool(t) or "target" in data)
    env = r.get(t, "environment", "target", str, required=bool(t))
    if env is not None and env not in ENVIRONMENTS:
        r.problems.append(f"target.environment: expected one of {', '.join(ENVIRONMENTS)}, "
                          f"got {env!r}")
    dsn = _target_dsn(r, t)
    backups_root = r.resolve(r.get(t, "backups_root", "target", str, default="backups"))
    if backups_root.exists() and not backups_root.is_dir():
        r.problems.append(f"target.backups_root: {backups_root} is a file, not a folder: point "
                          "it at the folder holding the backup sets (created if missing)")
    tables = r.str_list(t, "critical_tables", "target")
    queries = tuple(CriticalQuery(qname, sql, budget)
                    for qname, sql, budget in _queries(r, t, "target", "critical_queries",
                                                              "budget_ms", 500))
    sandbox_dir = t.get("sandbox_dir")
    platform = r.str_list(t, "platform_schemas", "target") if "platform_schemas" in t \
        else PLATFORM_SCHEMAS
    tools_dir = _tools_dir(r, t)
    migration_at = _migration_at(r, t)
    if name is None or env is None or dsn is None or r.problems:
        return None   # load raises with the problems
    return Target(
        name=name, environment=env, dsn=dsn, backups_root=backups_root,
        critical_tables=tables, critical_queries=queries,
        sandbox_dir=r.resolve(sandbox_dir) if isinstance(sandbox_dir, str) else None,
        platform_schemas=platform, tools_dir=tools_dir, migration_at=migration_at)


def _target_dsn(r: Reader, t: dict[str, Any]) -> Secret | None:
    """``target.dsn`` with ``target.password`` put in when it has none; None when either is
    missing or the DSN's form is wrong (a problem: it cannot even be parsed for a port)."""
    dsn = r.secret(t, "dsn", "target", required=bool(t))
    problem = None if dsn is None else dsn_problem(dsn.reveal())
    if problem:
        r.problems.append(f"target.dsn: {problem}")
    password = r.secret(t, "password", "target")
    if dsn is None or problem:
        return None
    return Secret(with_password(dsn.reveal(), password))


def _queries(r: Reader, table: dict[str, Any], where: str, key: str, limit: str,
             default: int) -> list[tuple[str, str, int]]:
    """``critical_queries`` or ``probe_queries``: each a name, its SQL and an integer
    ``limit`` (``budget_ms`` above 0, ``min_rows`` at least 0)."""
    found = []
    for place, q in r.entries(table, key, where, ("name", "sql", limit)):
        qname = r.get(q, "name", place, str, required=True)
        sql = r.get(q, "sql", place, str, required=True)
        value = r.number(q, limit, place, int, default=default,
                         inclusive=limit == "min_rows")
        if qname and sql:
            found.append((qname, sql, value))
    return found


def _tools_dir(r: Reader, t: dict[str, Any]) -> Path | None:
    if "tools_dir" not in t:
        return None
    tools_dir = r.resolve(r.get(t, "tools_dir", "target", str, default=""))
    if not tools_dir.is_dir():
        r.problems.append(f"target.tools_dir: {tools_dir} is not a folder (it should hold "
                          "pg_dump, pg_restore and psql)")
    return tools_dir


def _migration_at(r: Reader, t: dict[str, Any]) -> datetime | None:
    """When the bad migration ran: an ISO string or a TOML datetime; no zone means UTC."""
    if "migration_at" not in t:
        return None
    raw = t["migration_at"]
    try:
        migration_at = parse_time(raw) if isinstance(raw, str) else raw
        if not isinstance(migration_at, datetime):
            raise ValueError
        if migration_at.tzinfo is None:
            migration_at = migration_at.replace(tzinfo=UTC)
    except ValueError:
        r.problems.append("target.migration_at: expected a time like "
                          f"2026-11-24T02:00:00Z, got {raw!r}")
        return None
    return migration_at


def _pitr(r: Reader, data: dict[str, Any]) -> PitrSettings | None:
    """The optional ``[pitr]`` table: the WAL archive point-in-time rollbacks restore from."""
    p = r.table(data, "pitr", "pitr", required=False)
    if not p:
        return None
    r.known(p, "pitr", {"engine", "archive_dir", "base_dir", "stanza", "pgbackrest_config",
                        "bin_dir", "aside_dir", "keep_aside"})
    engine = r.get(p, "engine", "pitr", str, required=True)
    if engine is not None and engine not in PITR_ENGINES:
        r.problems.append(f"pitr.engine: expected one of {', '.join(PITR_ENGINES)}, "
                          f"got {engine!r}")
        return None

    def folder(key: str, needed: bool, holds: str) -> Path | None:
        raw = r.get(p, key, "pitr", str, required=needed)
        if raw is None:
            return None
        path = r.resolve(raw)
        if not path.is_dir():
            r.problems.append(f"pitr.{key}: {path} is not a folder (it should hold {holds})")
        return path

    native = engine == "native"
    archive_dir = folder("archive_dir", native, "the WAL segments archive_command copies")
    base_dir = folder("base_dir", native, "one pg_basebackup folder per base backup")
    stanza = r.get(p, "stanza", "pitr", str, required=engine == "pgbackrest") or ""
    conf = r.get(p, "pgbackrest_config", "pitr", str)
    conf_path = r.resolve(conf) if conf else None
    if conf_path is not None and not conf_path.is_file():
        r.problems.append(f"pitr.pgbackrest_config: {conf_path} is not a file")
    bin_dir = folder("bin_dir", False, "postgres, pg_ctl and pg_waldump")
    if bin_dir is not None and bin_dir.is_dir() and not (bin_dir / "postgres").is_file():
        r.problems.append(f"pitr.bin_dir: {bin_dir} has no postgres server binary (point it "
                          "at the bin folder of the target's major version)")
    aside = r.get(p, "aside_dir", "pitr", str)
    return PitrSettings(
        engine=engine or "native", archive_dir=archive_dir, base_dir=base_dir, stanza=stanza,
        pgbackrest_config=conf_path, bin_dir=bin_dir,
        aside_dir=r.resolve(aside) if aside else None,
        keep_aside=bool(r.get(p, "keep_aside", "pitr", bool, default=False)))


def _app(r: Reader, data: dict[str, Any]) -> AppEndpoints | None:
    """The optional ``[app]`` table: the application's HTTP endpoints."""
    a = r.table(data, "app", "app", required=False)
    if not a:
        return None
    r.known(a, "app", {"base_url", "health", "critical", "maintenance", "login", "token",
                       "token_env", "token_file", "timeout_s"})
    base_url = r.get(a, "base_url", "app", str, required=True)
    if base_url is not None and urlsplit(base_url).scheme not in ("http", "https"):
        r.problems.append(f"app.base_url: expected an http:// or https:// URL, got "
                          f"{base_url!r}")
    return AppEndpoints(
        base_url=(base_url or "").rstrip("/"),
        health=r.get(a, "health", "app", str, default="/api/health"),
        critical=r.str_list(a, "critical", "app") or ("/api/objects?limit=1",),
        maintenance=r.get(a, "maintenance", "app", str, default="/admin/maintenance-mode"),
        login=r.get(a, "login", "app", str, default="/api/login"),
        token=r.secret(a, "token", "app"),
        timeout_s=r.number(a, "timeout_s", "app", float, default=5.0),
    )


def _auth(r: Reader, data: dict[str, Any]) -> AuthProbe | None:
    """The optional ``[auth]`` table: the test user the login and RLS probes act as."""
    u = r.table(data, "auth", "auth", required=False)
    if not u:
        return None
    r.known(u, "auth", {"test_user_email", "test_user_id", "test_user_password",
                        "test_user_password_env", "test_user_password_file"})
    return AuthProbe(
        test_user_email=r.get(u, "test_user_email", "auth", str, required=True),
        test_user_id=r.get(u, "test_user_id", "auth", str, required=True),
        test_user_password=r.secret(u, "test_user_password", "auth"),
    )


def _notifications(r: Reader, data: dict[str, Any]) -> Notifications:
    n = r.table(data, "notifications", "notifications", required=False)
    r.known(n, "notifications", {"slack_webhook", "slack_webhook_env", "slack_webhook_file",
                                 "status_page_url", "status_page_token",
                                 "status_page_token_env", "status_page_token_file",
                                 "webhooks"})
    hooks = tuple(Secret(h) for h in r.str_list(n, "webhooks", "notifications"))
    return Notifications(
        slack_webhook=r.secret(n, "slack_webhook", "notifications"),
        status_page_url=r.get(n, "status_page_url", "notifications", str, default=""),
        status_page_token=r.secret(n, "status_page_token", "notifications"),
        webhooks=hooks,
    )


def _contacts(r: Reader, data: dict[str, Any]) -> tuple[Contact, ...]:
    c = r.table(data, "contacts", "contacts", required=False)
    r.known(c, "contacts", {"people"})
    contacts = []
    for place, person in r.entries(c, "people", "contacts", ("role", "name", "phone", "email")):
        role = r.get(person, "role", place, str, required=True)
        pname = r.get(person, "name", place, str, required=True)
        if role and pname:
            contacts.append(Contact(role, pname, r.get(person, "phone", place, str, default=""),
                                    r.get(person, "email", place, str, default="")))
    return tuple(contacts)


def _channels(r: Reader, data: dict[str, Any]) -> dict[str, str]:
    ch = r.table(data, "channels", "channels", required=False)
    channels: dict[str, str] = {}
    for key in ch:
        value = r.get(ch, key, "channels", str)
        if value is not None:
            channels[key] = value
    return channels


def _assess_settings(r: Reader, data: dict[str, Any]) -> AssessSettings:
    """The optional ``[assess]`` table; every key has a default."""
    s = r.table(data, "assess", "assess", required=False)
    d = AssessSettings()
    r.known(s, "assess", _ASSESS_KEYS)

    def positive(key: str, kind: type, default: Any, maximum: float | None = None) -> Any:
        return r.number(s, key, "assess", kind, default=default, maximum=maximum)

    probes = tuple(ProbeQuery(qname, sql, min_rows)
                   for qname, sql, min_rows in _queries(r, s, "assess", "probe_queries",
                                                               "min_rows", 1))
    return AssessSettings(
        row_tolerance_pct=positive("row_tolerance_pct", float, d.row_tolerance_pct),
        mass_change_pct=positive("mass_change_pct", float, d.mass_change_pct),
        slow_factor=positive("slow_factor", float, d.slow_factor),
        error_samples=positive("error_samples", int, d.error_samples),
        check_timeout_s=positive("check_timeout_s", float, d.check_timeout_s),
        lock_timeout_ms=positive("lock_timeout_ms", int, d.lock_timeout_ms, PG_MAX_MS),
        statement_timeout_ms=positive("statement_timeout_ms", int, d.statement_timeout_ms,
                                      PG_MAX_MS),
        long_transaction_s=positive("long_transaction_s", int, d.long_transaction_s),
        login_probe=r.get(s, "login_probe", "assess", bool, default=d.login_probe),
        auth_role=r.get(s, "auth_role", "assess", str, default=d.auth_role),
        probe_queries=probes,
        private_tables=r.str_list(s, "private_tables", "assess"),
    )
