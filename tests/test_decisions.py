"""Decisions that name exactly the damaged tables, on row-level evidence, and a verdict that is
HEALTHY only when every check ran (INCONCLUSIVE otherwise, naming what is missing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app import config as config_mod
from app.backups.create import create_set
from app.checks import run_assessment
from app.checks.assessment import Assessment
from app.checks.model import CheckResult, Finding, Kind, Status
from app.config import Config
from app.decision import Tier, decide
from app.sandbox.server import bin_dir
from tests.conftest import DemoDb

ROOT = Path(__file__).resolve().parent.parent


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", "-c", str(config), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})


async def assess(cfg: Config, **kw: Any) -> Assessment:
    return await run_assessment(cfg, **kw)


@pytest.fixture
async def pgbench(demo_db: DemoDb, conn: asyncpg.Connection) -> None:
    """pgbench's own tables (`pgbench -i -s 1 --foreign-keys`): 100,000 accounts, one
    branch, ten tellers; the keys ON DELETE NO ACTION, history referencing accounts."""
    subprocess.run([str(bin_dir() / "pgbench"), "-i", "-s", "1", "--foreign-keys", "-q",
                    demo_db.dsn], check=True, capture_output=True)
    assert await conn.fetchval("SELECT count(*) FROM pgbench_accounts") == 100_000


async def test_pgbench_deletions_at_the_tolerance_name_exactly_accounts(
        pgbench: None, console_config: Path, conn: asyncpg.Connection) -> None:
    """Exactly 5% of pgbench_accounts deleted (the row tolerance) and 10% rewritten: a table
    other tables reference tolerates no deletion, so IMMEDIATE ROLLBACK of pgbench_accounts,
    with the deleted keys as evidence; the undamaged branches and tellers are never named."""
    cfg = config_mod.load(console_config)
    await create_set(cfg)
    await conn.execute("DELETE FROM pgbench_accounts WHERE aid % 20 = 0")            # 5,000
    await conn.execute("UPDATE pgbench_accounts SET abalance = abalance + 7 "
                       "WHERE aid % 10 = 1")                                         # 10,000
    a = await assess(cfg, read_only=False)
    d = a.decision
    assert d.tier is Tier.IMMEDIATE_ROLLBACK, d.reasons
    assert d.recommended is not None and d.recommended.key == "partial"
    assert d.tables == ["public.pgbench_accounts"]
    assert "pgbench_branches" not in d.action and "pgbench_tellers" not in d.action
    loss = next(r for r in d.reasons if r.kind is Kind.DATA_LOSS)
    assert loss.tables == ("public.pgbench_accounts",)
    assert loss.evidence["deleted"] == 5000 and loss.evidence["changed"] == 10000
    assert loss.evidence["sample_deleted"][:3] == ["20", "40", "60"]
    assert loss.evidence["changed_columns"] == {"abalance": 1000}   # the rows examined
    lose = d.to_dict()["would_lose"]["tables"]["public.pgbench_accounts"]
    assert (lose["deleted"], lose["changed"], lose["inserted"]) == (5000, 10000, 0)


async def test_orphans_under_an_undamaged_parent_name_the_child_only(
        pgbench: None, console_config: Path, conn: asyncpg.Connection) -> None:
    """A key dropped and 25 accounts pointed at a branch that never existed: the orphans are
    the accounts' own bad rows; reloading pgbench_branches (which lost nothing) would not help."""
    cfg = config_mod.load(console_config)
    await create_set(cfg)
    await conn.execute("ALTER TABLE pgbench_accounts DROP CONSTRAINT pgbench_accounts_bid_fkey;"
                       "UPDATE pgbench_accounts SET bid = 99 WHERE aid <= 25")
    d = (await assess(cfg, read_only=False)).decision
    assert d.tier is Tier.IMMEDIATE_ROLLBACK, d.reasons
    orphans = next(r for r in d.reasons if r.kind is Kind.FK_VIOLATION)
    assert orphans.evidence["orphans"] == 25 and len(orphans.evidence["sample"]) == 5
    assert d.tables == ["public.pgbench_accounts"]


CUSTOMER = """
    CREATE TABLE customer (customer_id serial PRIMARY KEY, first_name text NOT NULL,
                           email text, active boolean NOT NULL DEFAULT true,
                           last_update timestamp NOT NULL DEFAULT now());
    CREATE FUNCTION last_updated() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN NEW.last_update = clock_timestamp(); RETURN NEW; END $$;
    CREATE TRIGGER last_updated BEFORE UPDATE ON customer
        FOR EACH ROW EXECUTE FUNCTION last_updated();
    INSERT INTO customer (first_name, email, last_update)
        SELECT 'first ' || i, 'c' || i || '@example.org', '2025-01-01'
        FROM generate_series(1, 599) i;
"""


async def test_nulled_emails_in_a_last_update_table_are_changed_rows(
        console_config: Path, conn: asyncpg.Connection) -> None:
    """A table that keeps time in last_update (no updated_at): 199 emails set to NULL are 199
    changed rows, the column named, and the table is in the rollback; what the rollback would
    lose is counted row by row, not "0 rows written"."""
    await conn.execute(CUSTOMER)
    cfg = config_mod.load(console_config)
    await create_set(cfg)
    await conn.execute("UPDATE customer SET email = NULL WHERE customer_id % 3 = 0 "
                       "AND customer_id <= 597")
    d = (await assess(cfg, read_only=False)).decision
    assert d.tier is Tier.IMMEDIATE_ROLLBACK, d.reasons
    assert d.tables == ["public.customer"]
    bad = next(r for r in d.reasons if r.kind is Kind.DATA_CORRUPTION)
    assert bad.evidence["changed"] == 199 and bad.evidence["deleted"] == 0
    assert bad.evidence["changed_columns"] == {"email": 199, "last_update": 199}
    assert bad.evidence["sample_changed"] == ["3", "6", "9", "12", "15"]
    assert "email" in bad.summary
    assert d.to_dict()["would_lose"]["tables"]["public.customer"][
        "rows_written_since_backup"] == 199


async def test_rows_changed_without_their_last_update_are_corruption(
        console_config: Path, conn: asyncpg.Connection) -> None:
    """Five rows (under 1%: far from any mass-update threshold) changed with the trigger off:
    their last_update did not move, so they were rewritten behind the app's back."""
    await conn.execute(CUSTOMER)
    cfg = config_mod.load(console_config)
    await create_set(cfg)
    await conn.execute("ALTER TABLE customer DISABLE TRIGGER last_updated;"
                       "UPDATE customer SET active = false WHERE customer_id <= 5;"
                       "ALTER TABLE customer ENABLE TRIGGER last_updated;"
                       "UPDATE customer SET first_name = 'renamed' WHERE customer_id = 100;"
                       "INSERT INTO customer (first_name) VALUES ('new')")
    d = (await assess(cfg, read_only=False)).decision
    assert d.tier is Tier.IMMEDIATE_ROLLBACK, d.reasons
    assert d.tables == ["public.customer"]
    bad = next(r for r in d.reasons if r.kind is Kind.DATA_CORRUPTION)
    assert "5 of the 6 examined without their last_update moving" in bad.summary


async def test_inserts_and_a_normal_update_are_not_damage(
        console_config: Path, conn: asyncpg.Connection) -> None:
    """New rows and an app update (last_update moves with it) are normal traffic: HEALTHY,
    and the evidence still counts them."""
    await conn.execute(CUSTOMER)
    cfg = config_mod.load(console_config)
    await create_set(cfg)
    await conn.execute("INSERT INTO customer (first_name) SELECT 'new' FROM "
                       "generate_series(1, 10); UPDATE customer SET email = 'x@example.org' "
                       "WHERE customer_id = 42")
    a = await assess(cfg, read_only=False)
    assert a.decision.tier is Tier.HEALTHY, (a.decision.reasons, a.decision.missing)
    data = next(r for r in a.results if r.check == "data_integrity")
    since = data.evidence["tables"]["public.customer"]["since_backup"]
    assert (since["deleted"], since["changed"], since["inserted"]) == (0, 1, 10)


async def test_no_backup_is_inconclusive_with_exit_40(console_config: Path) -> None:
    proc = cli(console_config, "assess", "--json")
    assert proc.returncode == 40, proc.stderr
    data = json.loads(proc.stdout)
    assert data["tier"] == "INCONCLUSIVE" and data["recommended_type"] is None
    missing = {m["check"]: m for m in data["missing"]}
    assert {"schema", "data_integrity", "auth"} <= set(missing)
    assert "rollback-console backup" in missing["data_integrity"]["how"]
    assert "rollback-console backup" in data["action"]
    assert "validate" in missing["auth"]["how"]   # the login probe: not run by assess
    table = cli(console_config, "assess")
    assert table.returncode == 40
    assert "INCONCLUSIVE" in table.stdout and "get it:" in table.stdout
    helped = cli(console_config, "assess", "--help")
    assert "40 inconclusive" in helped.stdout


async def test_healthy_only_when_every_check_ran(console_config: Path,
                                                 conn: asyncpg.Connection) -> None:
    cfg = config_mod.load(console_config)
    await create_set(cfg)
    full = (await assess(cfg, read_only=False)).decision
    assert full.tier is Tier.HEALTHY and full.exit_code == 0, (full.reasons, full.missing)
    assert full.missing == [] and full.action == "No action: every check ran and passed."
    # the same database, the login probe not run (assess mode): no bill of health
    partial = (await assess(cfg, read_only=True)).decision
    assert partial.tier is Tier.INCONCLUSIVE and partial.exit_code == 40
    assert [m.check for m in partial.missing] == ["auth"]
    assert "would write" in partial.missing[0].why


async def test_a_finding_keeps_its_tier_with_evidence_missing(
        console_config: Path, conn: asyncpg.Connection) -> None:
    cfg = config_mod.load(console_config)
    await create_set(cfg)
    await conn.execute("DELETE FROM media WHERE id % 2 = 0")
    d = (await assess(cfg, read_only=True)).decision
    assert d.tier is Tier.IMMEDIATE_ROLLBACK and d.tables == ["public.media"]
    assert "Evidence missing (did not run): auth" in d.action


def _result(check: str, status: Status, *findings: Finding) -> CheckResult:
    return CheckResult(check, status, f"{check}: {status}", "symptom", {}, list(findings))


def test_decide_rules_on_hand_made_results() -> None:
    """The matrix itself: a skip or an error without findings is INCONCLUSIVE; a privilege
    missing (incomplete) too; a higher finding decides the tier; orphans under a damaged
    parent reload the parent, under an undamaged one the child."""
    ok = _result("connectivity", Status.PASS)
    assert decide([ok]).tier is Tier.HEALTHY
    assert decide([ok, _result("locks", Status.ERROR)]).tier is Tier.INCONCLUSIVE
    incomplete = Finding(Kind.INCOMPLETE, "rls could not run")
    assert decide([ok, _result("rls", Status.SKIP, incomplete)]).exit_code == 40
    slow = Finding(Kind.CONTENTION, "a lock")
    assert decide([_result("locks", Status.WARN, slow),
                   _result("auth", Status.SKIP)]).tier is Tier.MONITOR
    orphans = Finding(Kind.FK_VIOLATION, "orphans", ("public.child", "public.parent"))
    lost = Finding(Kind.DATA_LOSS, "parent lost rows", ("public.parent",))
    tables = ["public.child", "public.parent", "a", "b", "c"]
    assert decide([_result("foreign_keys", Status.FAIL, orphans)], tables).tables == \
        ["public.child"]
    assert decide([_result("foreign_keys", Status.FAIL, orphans),
                   _result("data_integrity", Status.FAIL, lost)], tables).tables == \
        ["public.parent"]


async def test_the_console_shows_inconclusive_in_its_colour(console_config: Path) -> None:
    """The assess screen names the new tier with its word and colour, and lists what did not
    run with how to get it."""
    from app.tui import RollbackConsoleApp
    from screens.assess import TIER_COLOURS
    from tests.test_assess_screen import _open

    app = RollbackConsoleApp(config_mod.load(console_config), mode="assess")
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await _open(app, pilot)
        assert screen.assessment is not None
        assert screen.assessment.decision.tier is Tier.INCONCLUSIVE
        verdict = screen.query_one("#assess-verdict").render()
        assert "? INCONCLUSIVE" in str(verdict)
        assert TIER_COLOURS[Tier.INCONCLUSIVE] == "magenta"
        assert any("magenta" in str(span.style) for span in getattr(verdict, "spans", []))
        reasons = str(screen.query_one("#assess-reasons-text").render())
        assert "NOT RUN" in reasons and "get it: take or point to a backup set" in reasons
