"""`validate` and `assess`, their database checks, against the plain way of checking a database
after a rollback: one ``count(*)`` plus one content hash per table, run one after the other in
psql. Ours runs through the console's own entry points (``app.validation.run_validation`` and
``app.checks.run_assessment``), on a backup set taken by the console itself.

The HTTP checks are not part of the comparison: ours runs on the target's config with its
``[app]`` section removed, which is how the console runs against a database without an app in
front of it: the checks that need the app (login probe, endpoints, error rate) return SKIP at
once, without a request. The run asserts that they did.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

from app import config
from app.backups.create import create_set
from app.catalog import qualified
from app.checks import Status, run_assessment
from app.validation import run_validation
from bench.common import Result, psql

HTTP_ONLY = {"app_endpoints", "error_rate"}   # and auth's login probe, inside "auth"
HASH = ("coalesce(sum(('x' || left(md5(t::text), 16))::bit(64)::bigint::numeric), 0)")


def baseline_script(tables: list[str]) -> str:
    """The runbook-style check: per table, count the rows, then hash the content (the same
    order-independent row hash the console keeps in its manifest, so like is compared with
    like), sequentially, in one psql session."""
    lines = []
    for t in tables:
        lines.append(f"SELECT count(*) FROM {qualified(t)};")
        lines.append(f"SELECT {HASH} FROM {qualified(t)} AS t;")
    return "\n".join(lines) + "\n"


def database_only(cfg: config.Config) -> config.Config:
    """The config without its [app] section (HTTP checks skip), with check deadlines that a
    large table's full scan does not hit (what an operator of a big database sets)."""
    assess = dataclasses.replace(cfg.assess, check_timeout_s=3600.0,
                                 statement_timeout_ms=3_600_000)
    return dataclasses.replace(cfg, app=None, assess=assess)


def _validate(cfg: config.Config, set_id: str) -> None:
    checklist = asyncio.run(run_validation(cfg, set_id))
    data = next(i for i in checklist.items if i.name == "Data Integrity")
    assert data.status is Status.PASS, f"validate: data integrity {data.status}: {data.summary}"
    assert all(t["checksum_match"] for t in data.evidence["tables"].values()), \
        "validate did not compare every table's checksum"
    skipped = {i.name for i in checklist.items if i.status is Status.SKIP}
    assert "Application" in skipped, "validate reached the app: HTTP checks were not excluded"


def _assess(cfg: config.Config, set_id: str) -> None:
    assessment = asyncio.run(run_assessment(cfg, set_id))
    by_name = {r.check: r for r in assessment.results}
    assert all(by_name[c].status is Status.SKIP for c in HTTP_ONLY), \
        "assess reached the app: HTTP checks were not excluded"
    assert by_name["auth"].evidence["login"].get("skipped"), "assess ran the login probe"
    data = by_name["data_integrity"]
    assert data.status is Status.PASS, f"assess: data_integrity {data.status}: {data.summary}"
    errors = [r.check for r in assessment.results if r.status is Status.ERROR]
    assert not errors, f"assess checks in error: {errors}"


def run(config_path: Path, dsn: str, workdir: Path, runs: int) -> list[Result]:
    cfg = config.load(config_path)
    backup = asyncio.run(create_set(cfg, "bench-checks"))
    assert backup.manifest is not None
    tables = sorted(backup.manifest.state.tables)
    script = workdir / "baseline_checks.sql"
    script.write_text(baseline_script(tables))
    db_cfg = database_only(cfg)

    def baseline() -> None:
        out = psql(dsn, "-A", "-t", "-f", str(script))
        assert len(out.split()) == 2 * len(tables), "psql did not check every table"

    jobs = {"baseline": baseline,
            "validate": lambda: _validate(db_cfg, backup.id),
            "assess": lambda: _assess(db_cfg, backup.id)}
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for i in range(runs):
        order = list(jobs)
        order = order[i % len(order):] + order[:i % len(order)]   # rotate: no fixed position
        for name in order:
            started = time.perf_counter()
            jobs[name]()
            times[name].append(time.perf_counter() - started)
        print(f"  checks run {i + 1}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in jobs),
              flush=True)
    baseline_name = "one count(*) + one content hash per table, sequentially in psql"
    common = [f"{len(tables)} tables; the same order-independent md5 row hash as the "
              "console's manifest; ours includes opening its pool and reading the backup set",
              "HTTP checks excluded: the config's [app] section is removed, so the login "
              "probe, endpoint and error-rate checks return SKIP without a request "
              "(asserted every run)",
              "ours also checks every foreign key (the baseline checks none): a key valid in "
              "the backup between two tables whose checksums equal the backup's cannot have "
              "orphans and is not anti-joined again; keys into tables outside the manifest "
              "(auth.users) are"]
    return [
        Result("validate, database checks incl. checksums", times["validate"],
               times["baseline"], baseline_name, 1.2, common),
        Result("assess, database checks", times["assess"], times["baseline"], baseline_name,
               1.2, common),
    ]
