"""Shared bench plumbing: a sandbox of the asked size, timing, medians, the results file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from app.sandbox.server import bin_dir

ANALYSIS = Path(__file__).with_name("analysis.md")   # hand-written, appended to the report


@dataclass
class Result:
    name: str
    ours: list[float]
    baseline: list[float]
    baseline_name: str
    target: float | None          # the ratio to stay under (None: reported only)
    notes: list[str] = field(default_factory=list)
    rows: int | None = None       # the largest table's size; None: does not depend on data
    runs: int = 0                 # how many runs the medians are of (0: len(ours))
    absolute: bool = False        # target is a time in seconds for ours, not a ratio

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.baseline)

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        value = statistics.median(self.ours) if self.absolute else self.ratio
        return value <= self.target

    @property
    def key(self) -> str:
        return " | ".join([self.name, self.baseline_name] +
                          ([f"{self.rows}"] if self.rows is not None else []))


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


def _load(d: dict[str, object]) -> Result:
    known = {f.name for f in fields(Result)}
    return Result(**{k: v for k, v in d.items() if k in known})  # type: ignore[arg-type]


def merge(store: Path, results: list[Result], runs: int) -> list[Result]:
    """Keep the figures of benchmarks not run this time (``--only``), replace the others."""
    saved: dict[str, Result] = {}
    if store.exists():
        for d in json.loads(store.read_text()).values():
            kept = _load(d)
            saved[kept.key] = kept
    for r in results:
        r.runs = r.runs or runs
        saved[r.key] = r
    store.write_text(json.dumps({k: asdict(r) for k, r in saved.items()}, indent=2) + "\n")
    return list(saved.values())


def seconds(s: float) -> str:
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def _row(r: Result) -> str:
    ours = statistics.median(r.ours)
    if r.absolute:
        base, ratio = "—", "—"
        target = "reported" if r.target is None else f"≤ {seconds(r.target)}"
    else:
        base, ratio = seconds(statistics.median(r.baseline)), f"{r.ratio:.2f}×"
        target = "reported" if r.target is None else f"≤ {r.target:g}×"
    met = {True: "yes", False: "**no**", None: "-"}[r.met]
    return (f"| {r.name} | {r.baseline_name} | {seconds(ours)} | {base} | {ratio} | {target} "
            f"| {met} | {r.runs or len(r.ours)} |")


def _scaling(results: list[Result]) -> list[str]:
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        if r.rows is not None and not r.absolute:
            groups.setdefault((r.name, r.baseline_name), []).append(r)
    groups = {k: sorted(v, key=lambda r: r.rows or 0) for k, v in groups.items() if len(v) > 1}
    if not groups:
        return []
    lines = ["", "## Scaling", "",
             "The same benchmarks on sandboxes of different sizes (every table grows with the "
             "largest). *Growth* is how much ours grew from the size above, against how much "
             "the data grew: a factor at or under the data's means the cost grows no faster "
             "than the data.", "",
             "| what | rows (largest table) | ours | baseline | ratio | ours per million rows "
             "| growth of ours vs data | runs |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for (name, base), rs in groups.items():
        previous: Result | None = None
        for r in rs:
            ours = statistics.median(r.ours)
            assert r.rows is not None
            growth = "—"
            if previous is not None and previous.rows:
                factor = ours / statistics.median(previous.ours)
                growth = f"×{factor:.2f} for ×{r.rows / previous.rows:g} data"
            lines.append(f"| {name} vs {base} | {r.rows:,} | {seconds(ours)} | "
                         f"{seconds(statistics.median(r.baseline))} | {r.ratio:.2f}× | "
                         f"{seconds(ours / r.rows * 1e6)} | {growth} | {r.runs or len(r.ours)} |")
            previous = r
    return lines


def write_report(path: Path, rows: int, results: list[Result]) -> str:
    headline = [r for r in results if r.rows in (None, rows)]
    fewest = min((r.runs or len(r.ours) for r in headline), default=0)
    lines = [
        "# Benchmarks",
        "",
        "Made by `make bench` (`python -m bench`): each figure is the median of the runs in "
        f"the last column (at least {fewest}), and each ratio compares the console with its "
        "baseline **in the same run, on the same data** (unless a row says otherwise, the "
        f"largest table has {rows:,} rows). Ratios, not absolute times, are the targets.",
        "",
        f"Machine: {machine()}",
        "",
        "| what | baseline | ours (median) | baseline (median) | ratio | target | met | runs |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    lines += [_row(r) for r in headline]
    lines += _scaling(results)
    shown: set[tuple[str, str]] = set()
    noted = False
    for r in headline:
        for note in r.notes:
            if (r.name, note) not in shown:
                if not noted:
                    lines += ["", "## Notes"]
                    noted = True
                if not any(name == r.name for name, _ in shown):
                    lines += ["", f"**{r.name}**", ""]
                shown.add((r.name, note))
                lines.append(f"- {note}")
    if ANALYSIS.exists():
        lines += ["", ANALYSIS.read_text().strip()]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text
