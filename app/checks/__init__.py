"""Read-only checks of a target and the application in front of it.

The TUI and the CLI call ``run_assessment`` (checks + decision matrix) and
``app.validation.run_validation`` (the runbook's post-rollback checklist); both stream each
``CheckResult`` to ``on_result`` as it completes.
"""

from __future__ import annotations

from app.checks.access import authentication, rls
from app.checks.database import connectivity, data_integrity, writes
from app.checks.http import app_endpoints, error_rate
from app.checks.keys import foreign_keys
from app.checks.model import CheckResult, Finding, Kind, Skip, Status
from app.checks.performance import critical_queries, locks
from app.checks.runner import CheckSpec, stream_checks
from app.checks.schema import schema

ASSESS_CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("connectivity", "Complete system failure", connectivity),
    CheckSpec("schema", "Schema changes causing issues, data remains intact", schema),
    CheckSpec("data_integrity", "Data corruption detected", data_integrity),
    CheckSpec("foreign_keys", "Foreign key constraint violations preventing normal operation",
              foreign_keys),
    CheckSpec("rls", "RLS policies blocking legitimate user access", rls),
    CheckSpec("auth", "Authentication system failure", authentication),
    CheckSpec("critical_queries", "Minor performance degradation / critical functionality",
              critical_queries),
    CheckSpec("app_endpoints", "Critical application functionality broken", app_endpoints),
    CheckSpec("error_rate", "Elevated error rates but service functional", error_rate),
    CheckSpec("locks", "Performance issues that might resolve", locks),
    CheckSpec("writes", "What a data rollback would lose", writes),
)
CHECKS_BY_NAME = {c.name: c for c in ASSESS_CHECKS}

from app.checks.assessment import Assessment, open_context, run_assessment  # noqa: E402

__all__ = ["ASSESS_CHECKS", "CHECKS_BY_NAME", "Assessment", "CheckResult", "CheckSpec",
           "Finding", "Kind", "Skip", "Status", "open_context", "run_assessment",
           "stream_checks"]
