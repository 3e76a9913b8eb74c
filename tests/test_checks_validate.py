"""The post-rollback checklist fails on the right item for each injected fault, and the [assess]
settings are validated like the rest of the config."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from app import config as config_mod
from app.errors import ConfigError
from app.validation import run_validation
from tests.conftest import DemoDb
from tests.test_assess import make_backup

FAULTS = [
    pytest.param("DELETE FROM chakai WHERE id <= 3", "Data Integrity", id="rows-missing"),
    pytest.param("ALTER TABLE media DROP CONSTRAINT media_object_id_fkey; "
                 "DELETE FROM objects WHERE id = 1", "Foreign Keys", id="orphans"),
    # the key stays valid, but orphans come in behind its triggers' back (replica mode, as a
    # bulk loader may use): the tables changed, so the scan runs and finds them
    pytest.param("SET session_replication_role = replica; INSERT INTO media (object_id, "
                 "owner_id, url, mime_type, bytes) SELECT 99999999, owner_id, 'u', 'image/png', "
                 "1 FROM media LIMIT 1; SET session_replication_role = origin", "Foreign Keys",
                 id="orphans-behind-a-valid-key"),
    pytest.param('DROP POLICY "objects: owner reads" ON objects; '
                 'DROP POLICY "objects: owner writes" ON objects', "RLS Policies",
                 id="policy-blocks"),
    pytest.param("REVOKE ALL ON auth.users FROM supabase_auth_admin", "Authentication",
                 id="auth-grant"),
    pytest.param("ALTER TABLE objects RENAME COLUMN era TO period", "Application",
                 id="endpoint-fails"),
    # the health endpoint reads every table: with one gone it answers 503 to every request,
    # which is no "0 errors" pass of the error rate
    pytest.param("DROP TABLE chakai", "Error Rates", id="health-down"),
]


@pytest.mark.parametrize(("sql", "item"), FAULTS)
async def test_validate_fails_the_right_item(conn: asyncpg.Connection, console_config: Path,
                                             demo_db: DemoDb, sql: str, item: str) -> None:
    cfg = config_mod.load(console_config)
    await make_backup(conn, cfg, demo_db.dsn)
    await conn.execute(sql)
    checklist = await run_validation(cfg)
    statuses = {i.name: str(i.status) for i in checklist.items}
    assert statuses[item] == "fail", statuses
    assert not checklist.passed and checklist.exit_code == 1
    assert [i.name for i in checklist.items] == [
        "Data Integrity", "Authentication", "Foreign Keys", "RLS Policies", "Application",
        "Performance", "Error Rates"]


async def test_keys_between_unchanged_tables_are_not_scanned_again(
        conn: asyncpg.Connection, console_config: Path, demo_db: DemoDb) -> None:
    """A key valid in the backup, between two tables that still hold exactly the backup's rows
    (data_integrity's checksums), can have no orphans: its anti-join is not run again. A
    changed table's keys are scanned."""
    from app.checks import run_assessment

    cfg = config_mod.load(console_config)
    await make_backup(conn, cfg, demo_db.dsn)
    await conn.execute("UPDATE chakai SET title = 'changed' WHERE id = 1")
    keys = {r.check: r for r in (await run_assessment(cfg)).results}["foreign_keys"]
    scans = keys.evidence["scans"]
    touching_chakai = {k for k, v in scans.items() if k.startswith("public.chakai.")}
    assert touching_chakai and all("not_scanned" not in scans[k] and "sql" in scans[k]
                                   for k in touching_chakai)
    # auth.users is the platform's, outside the manifest: keys into it are always scanned
    others = {k for k in set(scans) - touching_chakai if scans[k]["references"] != "auth.users"}
    assert others and all(scans[k]["orphans"] == 0 and "not_scanned" in scans[k]
                          for k in others), scans
    assert "sql" in scans["public.accounts.accounts_id_fkey"]
    assert str(keys.status) == "pass"


def test_assess_settings_are_validated(console_config: Path) -> None:
    console_config.write_text(console_config.read_text() + """
[assess]
row_tolerance_pct = -1
error_samples = "ten"
colour = "red"
probe_queries = [{ name = "mine", sql = "SELECT 1", min_rows = 1 }, { name = "x" }]
""")
    with pytest.raises(ConfigError) as err:
        config_mod.load(console_config)
    text = str(err.value)
    assert str(console_config) in text
    assert "assess.row_tolerance_pct: expected a number above 0, got -1.0" in text
    assert "assess.error_samples: expected an integer, got str ('ten')" in text
    assert "assess.colour: unknown key" in text
    assert "assess.probe_queries[1].sql is missing" in text


def test_assess_settings_defaults_and_overrides(console_config: Path) -> None:
    assert config_mod.load(console_config).assess.row_tolerance_pct == 5.0
    console_config.write_text(console_config.read_text() + """
[assess]
lock_timeout_ms = 250
login_probe = false
private_tables = ["public.objects"]
probe_queries = [{ name = "own objects", sql = "SELECT 1 FROM public.objects", min_rows = 3 }]
""")
    s = config_mod.load(console_config).assess
    assert (s.lock_timeout_ms, s.login_probe, s.private_tables) == (250, False,
                                                                    ("public.objects",))
    assert s.probe_queries[0].min_rows == 3


def test_docs_print_the_decision_table_as_it_is() -> None:
    """docs/ASSESS.md's decision table is RULES: a rule changed in code shows up as a diff here."""
    from app.decision import RULES

    doc = (Path(__file__).parent.parent / "docs" / "ASSESS.md").read_text()
    for rule in RULES:
        assert f"| `{rule.kind}` | {rule.runbook} | **{rule.tier.label}** | {rule.scope} |" in doc


@pytest.mark.parametrize(("base", "now", "budget", "regressed"), [
    (0.1, 11.5, 200, False),    # "115x slower" yet a blip far inside its budget
    (0.1, 25.0, 200, False),    # issue 15: "250x slower", still under a quarter of the budget
    (2.0, 40.0, 200, False),    # 20x slower, but under a quarter of the budget: noise
    (2.0, 60.0, 200, True),     # 30x slower and over a quarter of the budget
    (1.0, 6.5, 20, True),       # a tight budget: the 5 ms floor decides
    (1.0, 2.9, 20, False),      # under 3x: not slower enough, whatever the budget
])
def test_a_latency_rise_counts_when_it_is_more_than_noise(base: float, now: float, budget: int,
                                                          regressed: bool) -> None:
    from app.checks.performance import slower

    assert slower(now, base, budget, config_mod.AssessSettings().slow_factor) == regressed
