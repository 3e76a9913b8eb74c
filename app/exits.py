"""Every exit code the console gives, in one place: a rollback run's outcome (0/2/3/4/5), an
assessment's verdict (0/10/20/30/40/50, compared for equality) and an unexpected failure (1).
The CLI, the runner, the console and the README's tables read these; nothing else maps codes.
"""

from __future__ import annotations

from enum import StrEnum

OK = 0
NOT_OK = 1          # an item fails, drift found; or an unexpected error (one line, log file)
BAD_INPUT = 2       # nothing changed
REFUSED = 3         # refused at a gate, nothing changed
FAILED_RESTORED = 4  # failed and returned to the state before
NEEDS_OPERATOR = 5  # stopped, needs the operator (`resume`)
INTERRUPTED = 130   # Ctrl-C before a run started (click's Abort)


class Outcome(StrEnum):
    """How a rollback run ended; its exit code is ``exit_code``."""

    DONE = "done"                  # exit 0: done and validated
    PHASE_VALIDATED = "phase_validated"  # exit 0: phase 1 of 2 validated, maintenance held on
    BAD_INPUT = "bad_input"        # exit 2: nothing changed
    REFUSED = "refused"            # exit 3: refused at a gate, nothing changed
    FAILED_RESTORED = "failed"     # exit 4: failed and returned to the state before
    NEEDS_OPERATOR = "stopped"     # exit 5: stopped, needs the operator (the journal says where)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self]


EXIT_CODES: dict[Outcome, int] = {
    Outcome.DONE: OK, Outcome.PHASE_VALIDATED: OK, Outcome.BAD_INPUT: BAD_INPUT,
    Outcome.REFUSED: REFUSED, Outcome.FAILED_RESTORED: FAILED_RESTORED,
    Outcome.NEEDS_OPERATOR: NEEDS_OPERATOR}


def outcome_of(exit_code: int) -> Outcome:
    """The outcome of a run that ended in a domain error outside a step with this exit code:
    bad input and a refusal changed nothing; anything else stops for the operator."""
    return {BAD_INPUT: Outcome.BAD_INPUT, REFUSED: Outcome.REFUSED}.get(exit_code,
                                                                       Outcome.NEEDS_OPERATOR)


# An assessment exits with its verdict (keyed by the verdict's label, app.decision.Tier.label).
# INCONCLUSIVE (40) and DATABASE UNREACHABLE (50) are codes of their own, not steps on the
# 10-20-30 scale: no script takes the first for HEALTHY, and none starts a rollback (30) or
# waits (10) on a database that is down.
ASSESS_EXIT_CODES: dict[str, int] = {
    "HEALTHY": 0, "MONITOR AND ASSESS": 10, "FORWARD-FIX": 20, "IMMEDIATE ROLLBACK": 30,
    "INCONCLUSIVE": 40, "DATABASE UNREACHABLE": 50}

# What each run code means, in the words of `--help` and the README's table.
RUN_MEANINGS: dict[int, str] = {
    OK: "ok", NOT_OK: "not ok", BAD_INPUT: "bad input", REFUSED: "refused at a gate",
    FAILED_RESTORED: "failed and returned to the state before",
    NEEDS_OPERATOR: "stopped, needs the operator"}
