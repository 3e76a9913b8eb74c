"""The rollback-type registry: a type declared in one module shows up in the CLI's --type, the
plan screen's list, the gate and the decision matrix without touching any other file; every
type's phrase, risk and downtime read the same wherever they are shown; and every exit code
comes from one mapping (app.exits) that the README's tables and --help agree with."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import exits
from app.checks.assessment import Assessment
from app.decision import Decision, Tier, decide, known_types
from app.rollback.registry import all_types, rollback_type, types_table, unregister

ROOT = Path(__file__).resolve().parent.parent

# A fourth type, as a new module would declare it: facts, a phrase, a plan builder.
TOY = '''
from app.rollback.registry import TypeSpec, register


async def plan(cfg, backup, options):
    from app.rollback.plan import Plan

    return Plan("toy", cfg.target.name, backup.id, ())


TOY = register(TypeSpec(
    key="toy", number=9, title="Toy point-in-time rollback",
    when="A toy for the registry's test", risk="Toy-risk", downtime="7-8 minutes",
    phrase=lambda target: f"TOY ROLLBACK OF {target}", loses="toy writes",
    restores="tables", plan=plan, takes_tables=True))
'''


@pytest.fixture
def toy(tmp_path: Path) -> Iterator[Path]:
    """The toy type's module on disk and registered in this process; gone afterwards."""
    folder = tmp_path / "toy_types"
    folder.mkdir()
    (folder / "toy_type.py").write_text(TOY)
    sys.path.insert(0, str(folder))
    try:
        import toy_type  # noqa: F401  (registers itself)

        yield folder
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("toy_type", None)
        unregister("toy")


def _run_help(*imports: str, pythonpath: Path | None = None) -> str:
    """`rollback-console run --help` in a fresh interpreter that imports ``imports`` first."""
    script = "".join(f"import {m}\n" for m in imports) + textwrap.dedent("""
        import sys
        from app.cli import main
        sys.argv = ["rollback-console", "run", "--help"]
        main()
    """)
    env = {**os.environ, "COLUMNS": "400"}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), str(ROOT)])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.split())   # click wraps; compare the words


def test_the_runbook_types_come_from_the_registry_in_order() -> None:
    assert [(t.key, t.number) for t in all_types()] == [("schema", 1), ("partial", 2),
                                                         ("full", 3), ("repair", 4)]
    assert rollback_type("full").phrase("shop") == "CONFIRM_FULL_RESTORE shop"
    assert rollback_type("schema").phrase("shop") == "ROLLBACK SCHEMA shop"
    assert rollback_type("partial").phrase("shop") == "ROLLBACK shop"


def test_an_unknown_type_is_bad_input_naming_the_known_ones() -> None:
    from app.errors import BadInput

    with pytest.raises(BadInput, match="unknown rollback type 'pitr': choose one of schema, "
                                       "partial, full, repair"):
        rollback_type("pitr")


def test_a_new_type_module_shows_up_in_the_clis_type_choices(toy: Path) -> None:
    text = _run_help("toy_type", pythonpath=toy)
    assert "--type [schema|partial|full|repair|toy]" in text
    assert ("toy = Type 9: toy point-in-time rollback (risk Toy-risk, downtime 7-8 minutes, "
            "phrase 'TOY ROLLBACK OF <target>')") in text


def test_a_new_type_is_known_to_the_decision_matrix_without_displacing_the_runbooks(
        toy: Path) -> None:
    assert "toy" in [t.key for t in known_types()]
    # the matrix still recommends the runbook's Type 2 for damaged table data: the toy also
    # restores tables, but the lowest-numbered type that does is the recommendation
    from app.checks.model import CheckResult, Finding, Kind, Status

    found = CheckResult("data_integrity", Status.FAIL, "media rewritten", "",
                        {}, [Finding(Kind.DATA_CORRUPTION, "media rewritten",
                                     ("public.media",))])
    decision = decide([found], ["public.media", "public.objects", "public.accounts"])
    assert decision.tier is Tier.IMMEDIATE_ROLLBACK
    assert decision.recommended is rollback_type("partial")


def _decision(key: str) -> Decision:
    spec = rollback_type(key)
    return Decision(Tier.IMMEDIATE_ROLLBACK, [], spec,
                    ["public.media"] if spec.takes_tables else [])


def test_every_types_phrase_risk_and_downtime_read_the_same_in_help_and_assess(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from app.commands.assess import _render_assessment

    help_text = _run_help()
    monkeypatch.setenv("COLUMNS", "300")
    for t in all_types():
        assert (f"{t.key} = Type {t.number}: {t.title.lower()} (risk {t.risk}, downtime "
                f"{t.downtime}, phrase '{t.phrase('<target>')}')") in help_text
        decision = _decision(t.key)
        assert f"(risk {t.risk}, downtime {t.downtime})" in decision.action
        assert decision.to_dict()["rollback"] == {"type": t.number, "title": t.title,
                                                  "when": t.when, "risk": t.risk,
                                                  "downtime": t.downtime}
        _render_assessment(Assessment("shop", "b1", "2026-12-02T00:00:00+00:00", [], decision))
        shown = " ".join(capsys.readouterr().out.split())
        assert (f"Recommended: Type {t.number} {t.title} ({t.key}) - risk {t.risk}, "
                f"downtime {t.downtime}; when: {t.when}") in shown


async def test_the_plan_screen_lists_every_type_and_its_gate_asks_the_types_phrase(
        toy: Path, console_config: Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """The toy type is in the plan screen's list with its risk and downtime, and a plan of it
    goes to a gate that asks its own phrase under its own title; so does every built-in."""
    from textual.widgets import OptionList

    from app import config
    from app.rollback.plan import Plan
    from app.tui import RollbackConsoleApp
    from screens.gate import GateScreen
    from screens.plan import PlanScreen

    monkeypatch.setenv("ROLLBACK_CONSOLE_HOME", str(tmp_path / "home"))
    cfg = config.load(console_config)
    app = RollbackConsoleApp(cfg, mode="drill")
    async with app.run_test(size=(140, 45)) as pilot:
        await app.workers.wait_for_complete()
        for t in all_types():
            screen = PlanScreen(t.key)
            await app.push_screen(screen)
            await pilot.pause()
            listed = screen.query_one("#plan-type", OptionList)
            labels = [str(listed.get_option_at_index(i).prompt)
                      for i in range(listed.option_count)]
            assert labels == [f"{s.label}: risk {s.risk}, downtime {s.downtime}"
                              for s in all_types()]
            assert "Type 9: toy point-in-time rollback: risk Toy-risk, downtime 7-8 minutes" \
                in labels
            assert listed.highlighted == [s.key for s in all_types()].index(t.key)
            assert screen.query_one("#plan-tables").display is t.takes_tables
            screen.plan = Plan(t.key, cfg.target.name, "b1", (), blast_radius=["one line"])
            screen.action_gate()
            await pilot.pause()
            gate = app.screen
            assert isinstance(gate, GateScreen)
            assert gate.phrase == t.phrase(cfg.target.name)
            assert gate.title_text == f"{t.label} of {cfg.target.name}"
            assert f"type exactly:  {t.phrase(cfg.target.name)}" in str(
                gate.query_one("#gate-phrase").render())
            app.pop_screen()
            app.pop_screen()
            await pilot.pause()


def test_the_docs_types_table_is_the_registrys() -> None:
    text = (ROOT / "docs" / "ROLLBACK.md").read_text()
    assert types_table() in text


def test_one_exit_code_mapping_and_the_readme_and_help_agree_with_it() -> None:
    for tier in Tier:
        assert tier.exit_code == exits.ASSESS_EXIT_CODES[tier.label]
    readme = (ROOT / "README.md").read_text()
    for label, code in exits.ASSESS_EXIT_CODES.items():
        assert re.search(rf"^\| `{code}` \| {re.escape(label)}\b", readme, re.M), label
    for code in exits.RUN_MEANINGS:
        assert f"| `{code}` | {exits.RUN_MEANINGS[code]}" in readme, code
    assert exits.Outcome.NEEDS_OPERATOR.exit_code == exits.NEEDS_OPERATOR == 5
    from app.cli import EXAMPLES

    words = " ".join(EXAMPLES.split())
    for code, meaning in exits.RUN_MEANINGS.items():
        assert f"{code} {meaning.split(',')[0]}" in words, code
    for label, code in exits.ASSESS_EXIT_CODES.items():
        assert f"{code} {label.split()[0].lower()}" in words, label


def test_every_types_resume_state_is_an_option_the_incident_records() -> None:
    """What a type needs back to resume (its resume state) is an option of the run and is
    written into incident_opened: otherwise a resumed run would build a different plan."""
    from dataclasses import fields

    from app.journal_entries import IncidentOpened
    from app.rollback.context import Options

    options = {f.name for f in fields(Options)}
    recorded = {f.name for f in fields(IncidentOpened)}
    for t in all_types():
        assert t.resume_state, t.key
        for name in t.resume_state:
            assert name in options and name in recorded, (t.key, name)
