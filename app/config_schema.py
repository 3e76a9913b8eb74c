"""The console's config as typed values (what ``app.config.load`` returns), and the few
constants its validation shares with the engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

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


PITR_ENGINES = ("native", "pgbackrest")


@dataclass(frozen=True)
class PitrSettings:
    """Optional ``[pitr]`` table: where the target's WAL archive is and how to restore from it
    (docs/SCALE.md). ``native``: PostgreSQL's own (``archive_dir`` filled by archive_command,
    ``base_dir`` holding pg_basebackup folders); ``pgbackrest``: a stanza of the real tool.
    The aside cluster runs with ``bin_dir``'s server (the target's major version)."""

    engine: str
    archive_dir: Path | None = None       # native: the folder archive_command copies WAL into
    base_dir: Path | None = None          # native: one pg_basebackup folder per base backup
    stanza: str = ""                      # pgbackrest
    pgbackrest_config: Path | None = None  # pgbackrest: its config file (default: its own)
    bin_dir: Path | None = None           # postgres, pg_ctl, pg_waldump, ... (default: bundled)
    aside_dir: Path | None = None         # where aside clusters are made (default: state dir)
    keep_aside: bool = False              # leave the aside cluster's folder after a rollback


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
    pitr: PitrSettings | None = None
