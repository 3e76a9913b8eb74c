"""One check's evidence: the numbers, sample rows and SQL it ran, and the runbook symptom."""

from __future__ import annotations

import json
from typing import Any

from rich.syntax import Syntax
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from app.secrets import scrub


class FindingScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "dismiss", "Close")]

    def __init__(self, title: str, symptom: str, summary: str, evidence: dict[str, Any]):
        super().__init__()
        self.title_text = title
        self.symptom = symptom
        self.summary = summary
        self.evidence = evidence

    def compose(self) -> ComposeResult:
        body = scrub(json.dumps(self.evidence, indent=2, default=str, ensure_ascii=False))
        with VerticalScroll(id="finding-box"):
            yield Static(self.title_text, classes="help-title")
            yield Static(f"Runbook symptom: {self.symptom}")
            yield Static(self.summary, classes="help-intro")
            yield Static(Syntax(body, "json", word_wrap=True, theme="ansi_dark"))
            yield Static("escape closes", classes="help-hint")


class FixScreen(ModalScreen[None]):
    """The suggested fix at full width, wrapped: readable at 80 columns, nothing cut."""

    BINDINGS = [Binding("escape,enter,q", "dismiss", "Close")]

    def __init__(self, title: str, intro: str, sql: str):
        super().__init__()
        self.title_text = title
        self.intro = intro
        self.sql = sql

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="finding-box"):
            yield Static(self.title_text, classes="help-title")
            yield Static(self.intro, classes="help-intro")
            yield Static(Syntax(self.sql, "sql", word_wrap=True, theme="ansi_dark"),
                         id="fix-text")
            yield Static("escape closes", classes="help-hint")
