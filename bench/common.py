"""Shared bench plumbing: a sandbox of the asked size, timing, medians, the results file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from app.sandbox.server import bin_dir


@dataclass
class Result:
    name: str
    ours: list[float]
    baseline: list[float]
    baseline_name: str
    target: float | None          # the ratio to stay under (None: reported only)
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.baseline)

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.ratio <= self.target


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def psql(dsn: str, *args: str) -> str:
    out = subprocess.run([str(bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                          *args, dsn], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return out.stdout


def machine() -> str:
    pg = subprocess.run([str(bin_dir() / "postgres"), "--version"], capture_output=True,
                        text=True).stdout.strip()
    return (f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()}, "
            f"Python {platform.python_version()}, {pg}")


def merge(store: Path, results: list[Result], rows: int, runs: int) -> list[Result]:
    """Keep the figures of benchmarks not run this time (``--only``), replace the others."""
    saved: dict[str, dict[str, object]] = {}
    if store.exists():
        saved = json.loads(store.read_text())
    for r in results:
        saved[f"{r.name} | {r.baseline_name}"] = {**asdict(r), "rows": rows, "runs": runs}
    store.write_text(json.dumps(saved, indent=2) + "\n")
    return [Result(**{k: v for k, v in d.items() if k not in ("rows", "runs")})  # type: ignore[arg-type]
            for d in saved.values()]


def write_report(path: Path, rows: int, runs: int, results: list[Result]) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Made by `make bench` (`python -m bench`): each figure is the median of "
        f"{runs} runs, and each ratio compares the console with its baseline **in the same "
        "run, on the same data** (the largest table has "
        f"{rows:,} rows). Ratios, not absolute times, are the targets.",
        "",
        f"Machine: {machine()}",
        "",
        "| what | baseline | ours (median s) | baseline (median s) | ratio | target | met |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        target = f"≤ {r.target:g}×" if r.target is not None else "reported"
        met = {True: "yes", False: "**no**", None: "-"}[r.met]
        lines.append(f"| {r.name} | {r.baseline_name} | {statistics.median(r.ours):.2f} | "
                     f"{statistics.median(r.baseline):.2f} | {r.ratio:.2f}× | {target} | {met} |")
    shown: set[tuple[str, str]] = set()
    for r in results:
        for note in r.notes:
            if (r.name, note) not in shown:
                if not any(name == r.name for name, _ in shown):
                    lines += ["", f"**{r.name}**", ""]
                shown.add((r.name, note))
                lines.append(f"- {note}")
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text
