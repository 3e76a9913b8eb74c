"""What the assessment's rows say agrees with their status mark and with what they found: a
missing table is data loss (not an RLS policy), an endpoint that answers 503 is not a passing
error rate, maintenance mode is not an outage, and the Performance check judges the median of
several runs so a loaded machine does not turn a fast query into a forward-fix."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import httpx
import pytest

from app import config as config_mod
from app.checks import performance
from app.checks.assessment import Assessment
from app.checks.model import CheckResult
from app.config import Config
from tests.conftest import DemoApp, DemoDb
from tests.test_assess import assess, make_backup, with_assess


@pytest.fixture
async def cfg(conn: asyncpg.Connection, console_config: Path, demo_db: DemoDb) -> Config:
    config = config_mod.load(console_config)
    await make_backup(conn, config, demo_db.dsn)
    return config


def row(a: Assessment, check: str) -> CheckResult:
    return next(r for r in a.results if r.check == check)


async def test_a_dropped_table_is_data_loss_not_an_rls_policy(
        cfg: Config, conn: asyncpg.Connection) -> None:
    await conn.execute("DROP TABLE chakai")
    a = await assess(cfg)
    rls = row(a, "rls")
    assert "rls_blocking" not in {str(f.kind) for f in rls.findings}, rls.findings
    gone = [f for f in rls.findings if str(f.kind) == "data_loss"]
    assert gone and gone[0].tables == ("public.chakai",)
    assert "table public.chakai is gone" in rls.summary and str(rls.status) == "fail"
    blocking = [x for x in a.decision.reasons if x.runbook.startswith("RLS policies blocking")]
    assert blocking == [], blocking
    # the verdict is unchanged: bring the table back, then its rows
    assert a.decision.recommended is not None and a.decision.recommended.key == "schema"
    assert a.decision.then_partial == ["public.chakai"]



async def test_a_probe_of_a_table_that_never_existed_is_a_probe_to_fix(
        conn: asyncpg.Connection, console_config: Path, demo_db: DemoDb) -> None:
    """A typo in assess.probe_queries is neither data loss nor an RLS lockout: nothing to roll
    back, the probe to fix is named."""
    cfg = with_assess(console_config, '[assess]\nprobe_queries = [{ name = "gatherings", '
                      'sql = "SELECT 1 FROM public.chakkai" }]')
    await make_backup(conn, cfg, demo_db.dsn)
    a = await assess(cfg)
    rls = row(a, "rls")
    assert {str(f.kind) for f in rls.findings} == {"incomplete"}, rls.findings
    assert "probe 'gatherings' reads public.chakkai that does not exist and was not in the " \
        "backup: check assess.probe_queries" in rls.summary
    assert a.decision.tier.label == "INCONCLUSIVE", a.decision.reasons
    assert a.decision.recommended is None

async def test_a_health_endpoint_answering_503_is_not_a_passing_error_rate(
        cfg: Config, conn: asyncpg.Connection) -> None:
    """The demo app's health reads every table: with one dropped it answers 503 every time,
    while /api/objects still answers 200."""
    await conn.execute("DROP TABLE chakai")
    a = await assess(cfg)
    endpoints, errors = row(a, "app_endpoints"), row(a, "error_rate")
    assert "/api/health answered 503" in endpoints.summary
    assert str(errors.status) == "fail", errors.summary
    assert "/api/health failed all 10 requests (503 x10): down, not an error rate" \
        in errors.summary
    assert "0 errors" not in errors.summary
    assert errors.evidence["endpoints"]["/api/objects?limit=1"]["errors"] == 0


async def test_maintenance_mode_is_not_measured_as_an_outage(cfg: Config,
                                                             demo_app: DemoApp) -> None:
    async with httpx.AsyncClient(base_url=demo_app.url) as client:
        resp = await client.post("/admin/maintenance-mode", json={"message": "drill"},
                                 headers={"Authorization": f"Bearer {demo_app.admin_token}"})
        assert resp.status_code == 200
    a = await assess(cfg)
    errors = row(a, "error_rate")
    assert str(errors.status) == "error"
    assert errors.summary.startswith("not measured: the app is in maintenance mode")
    assert {str(f.kind) for f in errors.findings} == {"incomplete"}
    assert "critical_broken" not in {str(x.kind) for x in a.decision.reasons
                                     if x.check == "error_rate"}


async def test_a_loaded_machine_does_not_make_a_fast_query_a_forward_fix(
        cfg: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15's flake: every run of a 0.1 ms query took 25 ms on a busy machine, against a
    200 ms budget. A real server cannot be made that busy on cue, so the samples are injected
    through the check's seam (``performance.measure``): the real queries run, and 25 ms is
    added to each run (and one run is far over its budget)."""
    real = performance.measure

    async def loaded(conn: asyncpg.Connection, sql: str, n: int = performance.SAMPLES,
                     ) -> list[float]:
        samples = [s + 25.0 for s in await real(conn, sql, n)]
        samples[0] = 900.0
        return samples

    monkeypatch.setattr(performance, "measure", loaded)
    a = await assess(cfg)
    queries = row(a, "critical_queries")
    assert str(queries.status) == "pass", queries.summary
    assert a.decision.tier.label == "HEALTHY", a.decision.reasons
    measured = queries.evidence["queries"]
    assert all(len(q["samples_ms"]) == performance.SAMPLES and 25 <= q["ms"] < 100
               for q in measured), measured
    assert all(q["baseline_ms"] < 25 for q in measured)   # "Nx slower" than the backup


async def test_a_query_slowed_by_a_dropped_index_is_judged_on_its_median(
        conn: asyncpg.Connection, console_config: Path, demo_db: DemoDb) -> None:
    """A real regression: an indexed lookup in 400,000 rows becomes a sequential scan."""
    await conn.execute(
        "CREATE TABLE public.ledger (id bigint PRIMARY KEY, account int NOT NULL, note text);"
        "INSERT INTO public.ledger SELECT g, g % 40000, md5(g::text) "
        "FROM generate_series(1, 400000) g; CREATE INDEX ledger_account_idx ON "
        "public.ledger (account); ANALYZE public.ledger")
    cfg = with_assess(console_config, '[[target.critical_queries]]\nname = "ledger of one '
                      'account"\nsql = "SELECT id FROM public.ledger WHERE account = 7"\n'
                      "budget_ms = 20")
    await make_backup(conn, cfg, demo_db.dsn)
    await conn.execute("DROP INDEX public.ledger_account_idx")
    a = await assess(cfg)
    queries = row(a, "critical_queries")
    ledger = next(q for q in queries.evidence["queries"] if q["name"] == "ledger of one account")
    assert ledger["indexes_dropped"] == ["public.ledger_account_idx"]
    assert len(ledger["samples_ms"]) == performance.SAMPLES
    said = [f.summary for f in queries.findings if "'ledger of one account'" in f.summary]
    assert any("median of 5 runs" in s for s in said), said
    assert a.decision.tier.label == "FORWARD-FIX", a.decision.reasons


@pytest.mark.parametrize(("samples", "base", "budget", "said"), [
    # the flake: 25 ms against a 0.1 ms baseline and a 200 ms budget is noise
    ([25.0, 25.1, 24.9, 25.0, 25.2], 0.1, 200, None),
    # one run far over budget is one run; the median decides
    ([0.2, 900.0, 0.3, 0.2, 0.25], 0.1, 200, None),
    ([60.0, 61.0, 59.0, 0.2, 62.0], 1.0, 200, "60.0x slower than at the backup"),
    ([250.0, 240.0, 1.0, 260.0, 255.0], 1.0, 200, "took 250 ms (median of 5 runs; budget 200"),
])
def test_the_verdict_reads_the_median_of_the_samples(samples: list[float], base: float,
                                                     budget: int, said: str | None) -> None:
    found = performance.latency_findings("q", samples, base, budget, 3.0)
    assert [f.summary for f in found if said and said in f.summary] == \
        [f.summary for f in found]
    assert bool(found) == (said is not None), found
