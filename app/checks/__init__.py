"""Read-only checks of a target and the application in front of it.

The TUI and the CLI call ``run_assessment`` (checks + decision matrix) and
``app.validation.run_validation`` (the runbook's post-rollback checklist); both stream each
``CheckResult`` to ``on_result`` as it completes. The checks an assessment runs, with the
runbook's symptom each one answers, are ``ASSESS_CHECKS`` (in ``assessment``).
"""

from __future__ import annotations

from app.checks.assessment import (
    ASSESS_CHECKS,
    CHECKS_BY_NAME,
    Assessment,
    open_context,
    run_assessment,
)
from app.checks.model import CheckResult, Finding, Kind, Skip, Status
from app.checks.runner import CheckSpec, stream_checks

__all__ = ["ASSESS_CHECKS", "CHECKS_BY_NAME", "Assessment", "CheckResult", "CheckSpec",
           "Finding", "Kind", "Skip", "Status", "open_context", "run_assessment",
           "stream_checks"]
