"""Issue 14: schemas nobody here designed. Each schema in tests/corpus/ (a .sql file: schema and
deterministic data) gets the same bad migrations (its .toml: one SQL transaction per damage
class, and what a right verdict says about it), driven through the commands an operator types:

    backup -> (damage) -> assess --json -> run the rollback the right verdict names -> compare

A cell checks two things and reports both when it fails:

- the VERDICT: `assess --json` gives the expected tier, recommended type and EXACT table list
  (the damaged tables, never one that is undamaged or only received inserts), and the Type 2
  that follows a Type 1 (`then`);
- the ROLLBACK: the rollback the right verdict names (so a wrong verdict and a broken rollback
  are told apart) exits 0 and leaves every table, partition and materialized view with its
  pre-damage checksum (count + order-independent md5 sum, `app.catalog.table_content`), every
  constraint, index, trigger, policy and RLS flag as before and every constraint valid. Tables
  the migration only inserted into (an audit trail: `side_effects`) must be left as they were
  after the damage: a rollback does not erase the trail of the incident.

`baseline` (no damage) and `inserts_only` (normal traffic) must recommend no rollback.

One template database per schema, built once per session; each cell is a fresh CREATE DATABASE
... TEMPLATE. The configs have no [app] section: the demo app serves only the demo database
(its endpoints read public.objects and friends), so against a corpus database its health and
critical endpoints would fail in every cell and drown the verdict in `critical_broken`; without
[app] those checks are skipped as not configured, which the decision ignores, and the rollback
runs without a maintenance switch. The schema with row level security has [auth] with the demo's
test user and probe queries: the RLS probe runs as role `authenticated` (the test user's role)
against that schema's own policies.

Set CORPUS_REPORT=<file> to append one JSON line per cell (expected vs observed) for the matrix.
"""

from __future__ import annotations

import asyncio
import json
import os
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.catalog import ROW_CHECKSUM, qualified
from app.sandbox.demo_data import TEST_USER_EMAIL
from app.sandbox.manager import write_secrets
from app.sandbox.server import PgServer
from tests.helpers import cli

CORPUS = Path(__file__).parent / "corpus"
TEST_USER_ID = "00000000-0000-4000-8000-000000000014"
# Checks these configs leave unconfigured on purpose (no [app], no critical queries; no login
# probe in `assess`; no RLS probe without [auth]): evidence they cannot give is no finding.
UNCONFIGURED = {"app_endpoints", "error_rate", "critical_queries", "auth"}
USER_NAMESPACES = ("SELECT oid FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', "
                   "'information_schema') AND nspname NOT LIKE 'pg\\_toast%'")


def _spec(schema: str) -> dict[str, Any]:
    return tomllib.loads((CORPUS / f"{schema}.toml").read_text())


def _cells() -> list[Any]:
    cells = []
    for sql in sorted(CORPUS.glob("*.sql")):
        for case in _spec(sql.stem)["cases"]:
            cells.append(pytest.param(sql.stem, case, id=f"{sql.stem}-{case}"))
    return cells


# --- databases ------------------------------------------------------------------------------

async def _admin(pg: PgServer, sql: str) -> None:
    conn = await asyncpg.connect(pg.dsn())
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class Templates:
    """One template database per corpus schema, built the first time a cell needs it."""

    def __init__(self, pg: PgServer):
        self.pg = pg
        self.built: dict[str, str] = {}

    async def get(self, schema: str) -> str:
        if schema not in self.built:
            name = f"corpus_tpl_{schema}"
            await _admin(self.pg, f'DROP DATABASE IF EXISTS "{name}"')
            await _admin(self.pg, f'CREATE DATABASE "{name}"')
            conn = await asyncpg.connect(self.pg.dsn(name))
            try:
                await conn.execute((CORPUS / f"{schema}.sql").read_text())
            finally:
                await conn.close()
            self.built[schema] = name
        return self.built[schema]


@pytest.fixture(scope="session")
def corpus_templates(pg: PgServer) -> Iterator[Templates]:
    templates = Templates(pg)
    yield templates
    for name in templates.built.values():
        asyncio.run(_admin(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- what "the same state" means ------------------------------------------------------------

async def _relations(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """Every table, partition, inheritance child and materialized view outside the system."""
    rows = await conn.fetch(
        "SELECT n.nspname || '.' || c.relname AS t, c.relkind::text AS k FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'm') "
        f"AND n.oid IN ({USER_NAMESPACES}) ORDER BY 1")
    return [(r["t"], r["k"]) for r in rows]


async def _user_tables(conn: asyncpg.Connection) -> list[str]:
    """What the console calls the tables (partitions are part of their parent)."""
    rows = await conn.fetch(
        "SELECT n.nspname || '.' || c.relname AS t FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
        f"AND n.oid IN ({USER_NAMESPACES}) ORDER BY 1")
    return [r["t"] for r in rows]


async def contents(conn: asyncpg.Connection) -> dict[str, str]:
    """relation -> its checksum, ``app.catalog.table_content``'s (count + order-independent md5
    sum) over the relation's OWN rows: an inheritance parent without its children's (they are
    tables of their own, checked apart), a partitioned table with its partitions (each of them
    checked apart too). An unpopulated materialized view says so."""
    out = {}
    for name, kind in await _relations(conn):
        only = "ONLY " if kind == "r" else ""
        try:
            row = (await conn.fetch(
                f"SELECT count(*) AS n, {ROW_CHECKSUM.format(row='t')} AS sum "
                f"FROM {only}{qualified(name)} AS t"))[0]
        except asyncpg.ObjectNotInPrerequisiteStateError:
            out[name] = "materialized view not populated"
            continue
        out[name] = f"{int(row['n'])}:{row['sum']}"
    return out


async def structure(conn: asyncpg.Connection) -> dict[str, set[tuple[Any, ...]]]:
    """Constraints (with their validity), indexes, triggers (and their enabled state), policies,
    RLS flags, views and materialized views: what a rollback must give back as it was."""
    queries = {
        "constraint": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), "
                      "convalidated FROM pg_constraint WHERE conrelid <> 0 "
                      f"AND connamespace IN ({USER_NAMESPACES})",
        "index": "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c "
                 f"ON c.oid = i.indexrelid WHERE c.relnamespace IN ({USER_NAMESPACES})",
        "trigger": "SELECT tgrelid::regclass::text, tgname, tgenabled::text, "
                   "pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = "
                   f"t.tgrelid WHERE NOT tgisinternal AND c.relnamespace IN ({USER_NAMESPACES})",
        "policy": "SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, "
                  "qual, with_check FROM pg_policies",
        "rls": "SELECT oid::regclass::text, relrowsecurity, relforcerowsecurity FROM pg_class "
               f"WHERE relkind IN ('r', 'p') AND relnamespace IN ({USER_NAMESPACES}) "
               "AND (relrowsecurity OR relforcerowsecurity)",
        "view": "SELECT c.oid::regclass::text, c.relkind::text, pg_get_viewdef(c.oid) "
                f"FROM pg_class c WHERE c.relkind IN ('v', 'm') "
                f"AND c.relnamespace IN ({USER_NAMESPACES})",
    }
    return {what: {tuple(r) for r in await conn.fetch(sql)} for what, sql in queries.items()}


def _structure_diff(before: dict[str, set[tuple[Any, ...]]],
                    after: dict[str, set[tuple[Any, ...]]]) -> list[str]:
    """One line per kind of object: how many are missing (or changed) and new, and the first."""
    out = []
    for what in before:
        for label, rows in (("missing or changed", before[what] - after[what]),
                            ("new or changed", after[what] - before[what])):
            if rows:
                first = sorted(rows, key=str)
                out.append(f"{len(rows)} {what}(s) {label}: "
                           + "; ".join(str(r)[:200] for r in first[:3])
                           + (" ..." if len(rows) > 3 else ""))
    return out


# --- the console ------------------------------------------------------------------------------

def _toml_str(text: str) -> str:
    return json.dumps(text)   # a JSON string is a valid TOML basic string


def write_corpus_config(workdir: Path, pg: PgServer, schema: str, database: str,
                        spec: dict[str, Any]) -> Path:
    """The console config for one corpus database, its secrets in files as `sandbox up` does;
    no [app] (see the module's docstring)."""
    write_secrets(workdir, pg.port, pg.password, "unused: no app", "unused: no app")
    (workdir / "backups").mkdir()
    lines = ["[target]", f'name = "corpus-{schema}"', 'environment = "drill"',
             f'dsn = "postgresql://postgres@127.0.0.1:{pg.port}/{database}"',
             'password_file = "secrets/db_password"', 'backups_root = "backups"', ""]
    if spec.get("auth"):
        lines += ["[auth]", f"test_user_email = {_toml_str(TEST_USER_EMAIL)}",
                  f'test_user_id = "{TEST_USER_ID}"', ""]
    lines.append("[assess]")
    if spec.get("private_tables"):
        lines.append("private_tables = [" + ", ".join(_toml_str(t) for t in
                                                       spec["private_tables"]) + "]")
    for probe in spec.get("probe_queries", []):
        lines += ["[[assess.probe_queries]]", f"name = {_toml_str(probe['name'])}",
                  f"sql = {_toml_str(probe['sql'])}"]
    path = workdir / "rollback.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _out(result: Any) -> str:
    return (result.stdout + result.stderr)[-1500:]


def _failure(result: Any) -> str:
    """What a failed run says about why: its FAILED/refused lines, else its last lines."""
    lines = [ln.strip() for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
    said = [ln for ln in lines if "FAILED" in ln or "error" in ln.lower() or "refus" in ln]
    return " / ".join(ln[:500] for ln in (said or lines)[-3:])


def rollback_runs(case: dict[str, Any], target: str) -> list[tuple[str, ...]]:
    """The commands the right verdict names, as an operator types them."""
    kind = case["type"]
    if kind == "partial":
        return [("run", "--type", "partial", "--tables", ",".join(case["tables"]),
                 "--confirm", f"ROLLBACK {target}")]
    if kind == "schema":
        runs: list[tuple[str, ...]] = [
            ("run", "--type", "schema", "--confirm", f"ROLLBACK SCHEMA {target}")]
        if case.get("then"):
            runs.append(("run", "--type", "partial", "--tables", ",".join(case["then"]),
                         "--confirm", f"ROLLBACK {target}"))
        return runs
    if kind == "full":
        return [("run", "--type", "full", "--confirm", f"CONFIRM_FULL_RESTORE {target}")]
    return []


def _not_run(report: dict[str, Any]) -> set[str]:
    """The checks the assessment says did not run."""
    if "missing" in report:
        return {m["check"] for m in report["missing"]}
    return {line.split(":", 1)[0] for line in report.get("not_run", [])}


def _verdict(report: dict[str, Any], unconfigured: set[str]) -> dict[str, Any]:
    """The verdict as the case files write it. INCONCLUSIVE (evidence missing) reads as HEALTHY
    when only the checks this config leaves out on purpose are missing: the database side was
    fully assessed and nothing was found."""
    then = report.get("then") or {}
    tier = report["tier"]
    if tier == "INCONCLUSIVE" and _not_run(report) <= unconfigured:
        tier = "HEALTHY"
    return {"tier": tier, "type": report["recommended_type"] or "none",
            "tables": sorted(report["tables"]), "then": sorted(then.get("tables", []))}


def _reasons(report: dict[str, Any]) -> list[str]:
    return [f"[{r['tier']}] {r['kind']} ({r['check']}): {r['summary']}"
            for r in report.get("reasons", [])]


# --- the matrix -------------------------------------------------------------------------------

@pytest.mark.parametrize(("schema", "case_name"), _cells())
async def test_corpus(schema: str, case_name: str, pg: PgServer, corpus_templates: Templates,
                      tmp_path: Path) -> None:
    spec = _spec(schema)
    case = spec["cases"][case_name]
    template = await corpus_templates.get(schema)
    database = f"corpus_{schema}_{case_name}_{uuid.uuid4().hex[:6]}"
    await _admin(pg, f'CREATE DATABASE "{database}" TEMPLATE "{template}"')
    conn = await asyncpg.connect(pg.dsn(database))
    cell = Cell(schema, case_name, case, spec.get("config", {}))
    try:
        await cell.run(pg, database, conn, tmp_path)
    except AssertionError as exc:   # the harness could not set the cell up as the case says
        cell.problems.append(f"HARNESS: {exc}")
        raise
    finally:
        await conn.close()
        await _admin(pg, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        cell.record()
    assert not cell.problems, "\n".join(cell.problems)


class Cell:
    """One schema x damage class: what was expected, what was observed, what went wrong."""

    def __init__(self, schema: str, case_name: str, case: dict[str, Any],
                 config: dict[str, Any]):
        self.schema, self.case_name, self.case, self.config = schema, case_name, case, config
        self.expected = {"tier": case["tier"], "type": case["type"],
                         "tables": sorted(case["tables"]), "then": sorted(case.get("then", []))}
        self.observed: dict[str, Any] | None = None
        self.reasons: list[str] = []
        self.evidence: dict[str, Any] = {}
        self.problems: list[str] = []

    def record(self) -> None:
        """CORPUS_REPORT=<file>: one JSON line per cell, for the matrix in the issue."""
        if os.environ.get("CORPUS_REPORT"):
            with open(os.environ["CORPUS_REPORT"], "a") as f:
                f.write(json.dumps({"schema": self.schema, "case": self.case_name,
                                    "expected": self.expected, "observed": self.observed,
                                    "reasons": self.reasons, "evidence": self.evidence,
                                    "problems": self.problems}, default=str) + "\n")

    async def run(self, pg: PgServer, database: str, conn: asyncpg.Connection,
                  tmp_path: Path) -> None:
        case = self.case
        target = f"corpus-{self.schema}"
        workdir = tmp_path / "console"
        workdir.mkdir()
        cfg = write_corpus_config(workdir, pg, self.schema, database, self.config)
        home = tmp_path / "home"

        made = cli(cfg, home, "backup")
        if made.returncode != 0:
            self.problems.append(f"BACKUP: `backup` exit {made.returncode}: {_failure(made)}")
            return
        tables_before = await _user_tables(conn)
        before = await contents(conn)
        shape_before = await structure(conn)

        # the bad migration (or the traffic), in one transaction
        if case["sql"].strip():
            async with conn.transaction():
                await conn.execute(case["sql"])
        damaged = await contents(conn)
        changed = {t for t in tables_before if damaged.get(t) != before[t]}
        expected_tables = set(case["tables"]) | set(case.get("then", []))
        side_effects = set(case.get("side_effects", []))
        if case["type"] != "none":   # the harness damaged what the case says, and only that
            assert expected_tables <= changed <= expected_tables | side_effects, \
                f"the damage changed {sorted(changed)}, the case names " \
                f"{sorted(expected_tables)} (+ side effects {sorted(side_effects)})"
        elif self.case_name == "baseline":
            assert not changed, f"nothing was done but {sorted(changed)} changed"

        self.assess(cfg, home, expected_tables, changed | side_effects)

        for args in rollback_runs(case, target):
            ran = cli(cfg, home, *args)
            if ran.returncode != 0:
                self.problems.append(f"ROLLBACK: `{' '.join(args[:-2])}` exit "
                                     f"{ran.returncode}: {_failure(ran)}")
                break

        if self.case_name == "inserts_only":   # traffic stays: nothing to compare
            return
        after = await contents(conn)
        for name in sorted(set(before) | set(after)):
            want = damaged.get(name) if name in side_effects else before.get(name)
            if after.get(name) != want:
                self.problems.append(
                    f"ROLLBACK: {name} is {after.get(name, 'MISSING')}, expected "
                    f"{want or 'absent'}"
                    + (" (an insert-only side effect: left as the migration left it)"
                       if name in side_effects else
                       f" (pre-damage; the damage made it {damaged.get(name, 'MISSING')})"))
        self.problems += [f"ROLLBACK: {d}" for d in _structure_diff(shape_before,
                                                                    await structure(conn))]
        invalid = await conn.fetch("SELECT conrelid::regclass::text AS t, conname FROM "
                                   "pg_constraint WHERE NOT convalidated AND connamespace IN "
                                   f"({USER_NAMESPACES})")
        self.problems += [f"ROLLBACK: constraint {r['conname']} on {r['t']} is NOT VALID"
                          for r in invalid]

    def assess(self, cfg: Path, home: Path, damaged: set[str], written: set[str]) -> None:
        """`assess --json` against the expected verdict."""
        assessed = cli(cfg, home, "assess", "--json")
        try:
            report = json.loads(assessed.stdout)
        except json.JSONDecodeError:
            self.problems.append(f"VERDICT: assess printed no JSON (exit "
                                 f"{assessed.returncode}): {_out(assessed)}")
            return
        unconfigured = UNCONFIGURED | (set() if self.config.get("auth") else {"rls"})
        self.observed = observed = _verdict(report, unconfigured)
        self.reasons = _reasons(report)
        data: dict[str, Any] = next(
            (f for f in report.get("findings", []) if f["check"] == "data_integrity"), {})
        per_table = data.get("evidence", {}).get("tables", {})
        self.evidence = {t: per_table.get(t) for t in sorted(damaged | set(observed["tables"]))}
        if observed != self.expected:
            self.problems.append(
                f"VERDICT: expected {self.expected}, observed {observed} (tier "
                f"{report['tier']}, not run: {sorted(_not_run(report))}); reasons: "
                + " | ".join(self.reasons))
        if assessed.returncode != report.get("exit_code", assessed.returncode):
            self.problems.append(f"VERDICT: exit {assessed.returncode}, the JSON says "
                                 f"{report['exit_code']}")
        undamaged = set(observed["tables"] + observed["then"]) - damaged
        if undamaged:
            self.problems.append(
                "VERDICT: would reload tables the migration did not damage: "
                f"{sorted(undamaged)}" + (" (they only received inserts)"
                                          if undamaged <= written else ""))
