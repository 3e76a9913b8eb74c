"""How a screen runs engine work: every worker is ``@work(group=Group.X, name=...,
exit_on_error=False)`` (async: the engine is asyncpg and httpx), and how it ended reaches the
screen's ``work_failed`` / ``work_done`` / ``work_cancelled`` through the one hook in
``ConsoleScreen``, which says a failure the same way on every screen."""

from __future__ import annotations

from enum import StrEnum


class Group(StrEnum):
    """The worker groups; the app and the screens name them only through this."""

    ROLLBACK = "rollback"
    ASSESS = "assess"
    VALIDATE = "validate"
    WATCH = "watch"
    BACKUP = "backup"
    PLAN = "plan"
    RESUME = "resume"
    PROBE = "probe"
    INCIDENT = "incident"
    MAINTENANCE = "maintenance"
    PITR = "pitr"   # a point in time: the WAL archive's window read, a moment restored aside


# What each group's work is, for the one failure line: "could not <what>: <why> (details...)".
DOING: dict[Group, str] = {
    Group.ROLLBACK: "finish the rollback",
    Group.ASSESS: "assess",
    Group.VALIDATE: "validate",
    Group.WATCH: "watch",
    Group.BACKUP: "verify",
    Group.PLAN: "build the plan",
    Group.RESUME: "resume",
    Group.PROBE: "probe the target",
    Group.INCIDENT: "look for unfinished incidents",
    Group.MAINTENANCE: "switch maintenance mode",
    # a screen that runs both says which one failed (the plan screen: PITR_WORK)
    Group.PITR: "read or restore the point in time",
}

# Group.PITR's workers by name, each in its own words: "could not restore the moment aside: ..."
PITR_WORK: dict[str, str] = {"pitr-window": "read the WAL archive's window",
                             "restore-aside": "restore the moment aside"}

# Work that does real work: quitting while one runs asks first (a restore aside runs a scratch
# cluster: quitting stops it and removes it).
WORK_GROUPS: frozenset[Group] = frozenset({Group.ROLLBACK, Group.ASSESS, Group.BACKUP,
                                           Group.VALIDATE, Group.WATCH, Group.PITR})
