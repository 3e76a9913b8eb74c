"""The console's TOML config: loaded and validated before any screen opens.

Every problem names the file, the key and what was expected; all problems are reported at once.
Secrets are read from the file itself, an environment variable (``*_env``) or a file (``*_file``)
and kept as ``Secret`` so they never print.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

from app.errors import ConfigError
from app.secrets import Secret, display_dsn

ENVIRONMENTS = ("production", "staging", "drill")


@dataclass(frozen=True)
class CriticalQuery:
    name: str
    sql: str
    budget_ms: int = 500


@dataclass(frozen=True)
class Contact:
    role: str
    name: str
    phone: str = ""
    email: str = ""


def parse_time(text: str) -> datetime:
    """An ISO time; without a zone it is UTC. Raises ValueError."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# Schemas a platform (Supabase) manages: checks and schema rollbacks leave their contents alone.
PLATFORM_SCHEMAS = ("auth", "storage", "realtime", "extensions", "supabase_migrations",
                    "graphql", "graphql_public", "vault", "pgsodium", "information_schema")


@dataclass(frozen=True)
class Target:
    name: str
    environment: str
    dsn: Secret
    backups_root: Path
    critical_tables: tuple[str, ...]
    critical_queries: tuple[CriticalQuery, ...]
    sandbox_dir: Path | None = None
    platform_schemas: tuple[str, ...] = PLATFORM_SCHEMAS
    tools_dir: Path | None = None        # pg_dump / pg_restore / psql; default: bundled, PATH
    migration_at: datetime | None = None  # when the bad migration ran, if known

    @property
    def display_dsn(self) -> str:
        return display_dsn(self.dsn.reveal())

    @property
    def database(self) -> str:
        return urlsplit(self.dsn.reveal()).path.lstrip("/") or "postgres"


@dataclass(frozen=True)
class AppEndpoints:
    base_url: str
    health: str = "/api/health"
    critical: tuple[str, ...] = ("/api/objects?limit=1",)
    maintenance: str = "/admin/maintenance-mode"
    login: str = "/api/login"
    token: Secret | None = None
    timeout_s: float = 5.0


@dataclass(frozen=True)
class AuthProbe:
    test_user_email: str
    test_user_id: str
    test_user_password: Secret | None = None


@dataclass(frozen=True)
class Notifications:
    slack_webhook: Secret | None = None
    status_page_url: str = ""
    status_page_token: Secret | None = None
    webhooks: tuple[Secret, ...] = ()


@dataclass(frozen=True)
class ProbeQuery:
    """A query the RLS impersonation probe runs as the test user; must return >= min_rows."""

    name: str
    sql: str
    min_rows: int = 1


@dataclass(frozen=True)
class AssessSettings:
    """Optional ``[assess]`` table: thresholds of the read-only assessment (docs/ASSESS.md)."""

    row_tolerance_pct: float = 5.0      # row count drift allowed for normal writes
    mass_change_pct: float = 25.0       # share of a table rewritten since the backup = suspect
    slow_factor: float = 3.0            # critical query slower than this x baseline = degraded
    error_samples: int = 10             # requests per critical endpoint for the error rate
    check_timeout_s: float = 30.0       # each check's own deadline
    lock_timeout_ms: int = 1000         # never wait longer than this for a lock
    statement_timeout_ms: int = 10000   # never run one statement longer than this
    long_transaction_s: int = 300       # transactions older than this are reported
    login_probe: bool = True            # POST the app's login as the test user
    auth_role: str = "supabase_auth_admin"
    probe_queries: tuple[ProbeQuery, ...] = ()   # default: each critical table
    private_tables: tuple[str, ...] = ()         # anon must see none; default: critical tables


@dataclass(frozen=True)
class Config:
    path: Path
    target: Target
    app: AppEndpoints | None
    auth: AuthProbe | None
    notifications: Notifications
    contacts: tuple[Contact, ...]
    channels: dict[str, str] = field(default_factory=dict)
    assess: AssessSettings = field(default_factory=AssessSettings)


# --- validation -----------------------------------------------------------------------------

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list", dict: "a table"}


class _Reader:
    """Walks the parsed TOML, collecting problems instead of stopping at the first."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data
        self.problems: list[str] = []

    def table(self, parent: dict[str, Any], key: str, where: str, required: bool) -> dict[str, Any]:
        value = parent.get(key)
        if value is None:
            if required:
                self.problems.append(f"[{where}] is missing: a table is required")
            return {}
        if not isinstance(value, dict):
            self.problems.append(f"{where}: expected a table, got {type(value).__name__}")
            return {}
        return value

    def known(self, table: dict[str, Any], where: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                hint = ", ".join(sorted(allowed))
                self.problems.append(f"{where}.{key}: unknown key (known keys: {hint})")

    def get(self, table: dict[str, Any], key: str, where: str, kind: type,
            default: Any = None, required: bool = False) -> Any:
        if key not in table:
            if required:
                self.problems.append(f"{where}.{key} is missing: {_TYPE_NAMES[kind]} is required")
            return default
        value = table[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            self.problems.append(
                f"{where}.{key}: expected {_TYPE_NAMES[kind]}, got {type(value).__name__} "
                f"({value!r})" if not isinstance(value, dict | list) else
                f"{where}.{key}: expected {_TYPE_NAMES[kind]}, got {type(value).__name__}")
            return default
        return value

    def number(self, table: dict[str, Any], key: str, where: str, kind: type, default: Any,
               minimum: float = 0, inclusive: bool = False,
               maximum: float | None = None) -> Any:
        """A finite int or float above ``minimum`` (or at least it, when ``inclusive``) and at
        most ``maximum``; out of range is a problem naming the key, and the default is kept."""
        value = self.get(table, key, where, kind, default=default)
        if value is None or value is default:
            return value
        low_ok = value >= minimum if inclusive else value > minimum
        if not math.isfinite(value) or not low_ok or (maximum is not None and value > maximum):
            bound = f"at least {minimum:g}" if inclusive else f"above {minimum:g}"
            if maximum is not None:
                bound += f" and at most {maximum:.0f}"
            what = "an integer" if kind is int else "a number"
            self.problems.append(f"{where}.{key}: expected {what} {bound}, got {value!r}")
            return default
        return value

    def str_list(self, table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
        values = self.get(table, key, where, list, default=[])
        if not all(isinstance(v, str) for v in values):
            self.problems.append(f"{where}.{key}: expected a list of strings")
            return ()
        return tuple(values)

    def secret(self, table: dict[str, Any], base: str, where: str,
               required: bool = False) -> Secret | None:
        """``base`` literal, ``base_env`` (variable name) or ``base_file`` (path to a file)."""
        given = [k for k in (base, f"{base}_env", f"{base}_file") if k in table]
        if len(given) > 1:
            self.problems.append(f"{where}: give only one of {', '.join(given)}")
            return None
        if not given:
            if required:
                self.problems.append(
                    f"{where}.{base} is missing: set {base}, {base}_env (an environment "
                    f"variable's name) or {base}_file")
            return None
        key = given[0]
        value = self.get(table, key, where, str)
        if value is None:
            return None
        if key.endswith("_env"):
            env_value = os.environ.get(value)
            if not env_value:
                self.problems.append(
                    f"{where}.{key}: environment variable {value} is not set (export it, or "
                    f"point {where}.{base}_file at a file holding the value)")
                return None
            return Secret(env_value)
        if key.endswith("_file"):
            file = self.resolve(value)
            try:
                return Secret(file.read_text(encoding="utf-8").strip())
            except OSError as exc:
                self.problems.append(f"{where}.{key}: cannot read {file}: {exc.strerror}")
                return None
        return Secret(value)

    def resolve(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.path.parent / p).resolve()


PG_MAX_MS = 2_147_483_647   # PostgreSQL's largest lock_timeout / statement_timeout


def dsn_problem(dsn: str) -> str | None:
    """What is wrong with a DSN's form (scheme, port), in words that never show its password;
    None when it can be connected to."""
    shape = "write it as postgresql://user@host:5432/database"
    try:
        parts = urlsplit(dsn)
    except ValueError as exc:   # an unclosed [ipv6] host
        return f"not a valid URL ({exc}): {shape}"
    if parts.scheme not in ("postgres", "postgresql"):
        return "expected a postgresql:// URL (postgresql://user@host:port/database)"
    host = parts.netloc.rpartition("@")[2]
    text = host.partition("]")[2] if host.startswith("[") else host
    text = text.rpartition(":")[2] if ":" in text else ""
    try:
        port = parts.port
    except ValueError:
        port = None
    if text and port is None and "," not in host:
        if not text.isdigit():
            return f"port {text!r} is not a number: {shape}"
        return f"port {text} is out of range (1-65535): {shape}"
    if port == 0:
        return f"port 0 is out of range (1-65535): {shape}"
    for given in parse_qs(parts.query).get("port", []):
        if not all(p.strip().isdigit() and 0 < int(p) < 65536 for p in given.split(",")):
            return f"port {given!r} (in ?port=) is not a number from 1 to 65535: {shape}"
    return None


def _with_password(dsn: str, password: Secret | None) -> str:
    if password is None:
        return dsn
    parts = urlsplit(dsn)
    if parts.password:
        return dsn
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = quote(parts.username or "", safe="")
    netloc = f"{user}:{quote(password.reveal(), safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


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

    r = _Reader(path, data)
    r.known(data, "(top level)", {"target", "app", "auth", "notifications", "contacts",
                                  "channels", "assess"})
    t = r.table(data, "target", "target", required=True)
    r.known(t, "target", {"name", "environment", "dsn", "dsn_env", "dsn_file", "password",
                          "password_env", "password_file", "backups_root", "critical_tables",
                          "critical_queries", "sandbox_dir", "platform_schemas",
                          "tools_dir", "migration_at"})
    name = r.get(t, "name", "target", str, required=bool(t) or "target" in data)
    env = r.get(t, "environment", "target", str, required=bool(t))
    if env is not None and env not in ENVIRONMENTS:
        r.problems.append(f"target.environment: expected one of {', '.join(ENVIRONMENTS)}, "
                          f"got {env!r}")
    dsn = r.secret(t, "dsn", "target", required=bool(t))
    if dsn is not None:
        problem = dsn_problem(dsn.reveal())
        if problem:
            r.problems.append(f"target.dsn: {problem}")
    password = r.secret(t, "password", "target")
    backups_root = r.resolve(r.get(t, "backups_root", "target", str, default="backups"))
    if backups_root.exists() and not backups_root.is_dir():
        r.problems.append(f"target.backups_root: {backups_root} is a file, not a folder: point "
                          "it at the folder holding the backup sets (created if missing)")
    tables = r.str_list(t, "critical_tables", "target")
    queries: list[CriticalQuery] = []
    for i, q in enumerate(r.get(t, "critical_queries", "target", list, default=[])):
        where = f"target.critical_queries[{i}]"
        if not isinstance(q, dict):
            r.problems.append(f"{where}: expected a table with name, sql, budget_ms")
            continue
        r.known(q, where, {"name", "sql", "budget_ms"})
        qname = r.get(q, "name", where, str, required=True)
        sql = r.get(q, "sql", where, str, required=True)
        budget = r.number(q, "budget_ms", where, int, default=500)
        if qname and sql:
            queries.append(CriticalQuery(qname, sql, budget))
    sandbox_dir = t.get("sandbox_dir")
    platform = r.str_list(t, "platform_schemas", "target") if "platform_schemas" in t \
        else PLATFORM_SCHEMAS
    tools_dir = None
    if "tools_dir" in t:
        tools_dir = r.resolve(r.get(t, "tools_dir", "target", str, default=""))
        if not tools_dir.is_dir():
            r.problems.append(f"target.tools_dir: {tools_dir} is not a folder (it should hold "
                              "pg_dump, pg_restore and psql)")
    migration_at = None
    if "migration_at" in t:
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
            migration_at = None

    a = r.table(data, "app", "app", required=False)
    app_cfg = None
    if a:
        r.known(a, "app", {"base_url", "health", "critical", "maintenance", "login", "token",
                           "token_env", "token_file", "timeout_s"})
        base_url = r.get(a, "base_url", "app", str, required=True)
        if base_url is not None and urlsplit(base_url).scheme not in ("http", "https"):
            r.problems.append(f"app.base_url: expected an http:// or https:// URL, got "
                              f"{base_url!r}")
        app_cfg = AppEndpoints(
            base_url=(base_url or "").rstrip("/"),
            health=r.get(a, "health", "app", str, default="/api/health"),
            critical=r.str_list(a, "critical", "app") or ("/api/objects?limit=1",),
            maintenance=r.get(a, "maintenance", "app", str, default="/admin/maintenance-mode"),
            login=r.get(a, "login", "app", str, default="/api/login"),
            token=r.secret(a, "token", "app"),
            timeout_s=r.number(a, "timeout_s", "app", float, default=5.0),
        )

    u = r.table(data, "auth", "auth", required=False)
    auth_cfg = None
    if u:
        r.known(u, "auth", {"test_user_email", "test_user_id", "test_user_password",
                            "test_user_password_env", "test_user_password_file"})
        auth_cfg = AuthProbe(
            test_user_email=r.get(u, "test_user_email", "auth", str, required=True),
            test_user_id=r.get(u, "test_user_id", "auth", str, required=True),
            test_user_password=r.secret(u, "test_user_password", "auth"),
        )

    n = r.table(data, "notifications", "notifications", required=False)
    r.known(n, "notifications", {"slack_webhook", "slack_webhook_env", "slack_webhook_file",
                                 "status_page_url", "status_page_token",
                                 "status_page_token_env", "status_page_token_file",
                                 "webhooks"})
    hooks = tuple(Secret(h) for h in r.str_list(n, "webhooks", "notifications"))
    notifications = Notifications(
        slack_webhook=r.secret(n, "slack_webhook", "notifications"),
        status_page_url=r.get(n, "status_page_url", "notifications", str, default=""),
        status_page_token=r.secret(n, "status_page_token", "notifications"),
        webhooks=hooks,
    )

    contacts: list[Contact] = []
    c = r.table(data, "contacts", "contacts", required=False)
    r.known(c, "contacts", {"people"})
    for i, person in enumerate(r.get(c, "people", "contacts", list, default=[])):
        where = f"contacts.people[{i}]"
        if not isinstance(person, dict):
            r.problems.append(f"{where}: expected a table with role, name, phone, email")
            continue
        r.known(person, where, {"role", "name", "phone", "email"})
        role = r.get(person, "role", where, str, required=True)
        pname = r.get(person, "name", where, str, required=True)
        if role and pname:
            contacts.append(Contact(role, pname, r.get(person, "phone", where, str, default=""),
                                    r.get(person, "email", where, str, default="")))
    ch = r.table(data, "channels", "channels", required=False)
    channels: dict[str, str] = {}
    for key in ch:
        value = r.get(ch, key, "channels", str)
        if value is not None:
            channels[key] = value

    assess = _assess_settings(r, data)

    if r.problems:
        raise ConfigError(shown, r.problems)
    assert name is not None and env is not None and dsn is not None
    return Config(
        path=path,
        target=Target(
            name=name, environment=env,
            dsn=Secret(_with_password(dsn.reveal(), password)),
            backups_root=backups_root, critical_tables=tables,
            critical_queries=tuple(queries),
            sandbox_dir=r.resolve(sandbox_dir) if isinstance(sandbox_dir, str) else None,
            platform_schemas=platform, tools_dir=tools_dir, migration_at=migration_at,
        ),
        app=app_cfg, auth=auth_cfg, notifications=notifications,
        contacts=tuple(contacts), channels=channels, assess=assess,
    )


def _assess_settings(r: _Reader, data: dict[str, Any]) -> AssessSettings:
    """The optional ``[assess]`` table; every key has a default."""
    s = r.table(data, "assess", "assess", required=False)
    d = AssessSettings()
    r.known(s, "assess", {"row_tolerance_pct", "mass_change_pct", "slow_factor",
                          "error_samples", "check_timeout_s", "lock_timeout_ms",
                          "statement_timeout_ms", "long_transaction_s", "login_probe",
                          "auth_role", "probe_queries", "private_tables"})

    def positive(key: str, kind: type, default: Any, maximum: float | None = None) -> Any:
        return r.number(s, key, "assess", kind, default=default, maximum=maximum)

    probes: list[ProbeQuery] = []
    for i, q in enumerate(r.get(s, "probe_queries", "assess", list, default=[])):
        where = f"assess.probe_queries[{i}]"
        if not isinstance(q, dict):
            r.problems.append(f"{where}: expected a table with name, sql, min_rows")
            continue
        r.known(q, where, {"name", "sql", "min_rows"})
        qname = r.get(q, "name", where, str, required=True)
        sql = r.get(q, "sql", where, str, required=True)
        min_rows = r.number(q, "min_rows", where, int, default=1, inclusive=True)
        if qname and sql:
            probes.append(ProbeQuery(qname, sql, min_rows))
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
        probe_queries=tuple(probes),
        private_tables=r.str_list(s, "private_tables", "assess"),
    )
