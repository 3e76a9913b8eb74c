"""`make bench`: sandboxes at each of --sizes (rows in the largest table), every benchmark, a
table on stdout and docs/BENCHMARKS.md (the headline table at --rows, a scaling table across the
sizes)."""

from __future__ import annotations

import argparse
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from app.sandbox.manager import DATABASE, Sandbox
from bench import checks, full, partial, pitr, repair, rows, schema, startup, tui
from bench.common import Result, merge, write_report

ROOT = Path(__file__).resolve().parent.parent
SIZED = ("partial", "full", "checks", "schema", "rows", "repair", "pitr")   # at every size;
# pitr last: it switches WAL archiving on (a restart) and off again on the sandbox's server
ONCE = ("startup", "tui")                 # do not depend on the data's size
TUI_ROWS = 2000                           # the TUI's sandbox when no sized benchmark runs


def _names(raw: str | None) -> list[str]:
    if raw is None:
        return [*SIZED, *ONCE]
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in (*SIZED, *ONCE)]
    if unknown:
        raise SystemExit(f"--only: unknown {', '.join(unknown)} (known: "
                         f"{', '.join((*SIZED, *ONCE))})")
    return names


def _sized(box: Sandbox, names: list[str], work: Path, runs: int) -> Iterator[list[Result]]:
    """Each benchmark's results as it finishes; one that fails is reported and skipped, so a
    long run keeps what it measured."""
    assert box.server is not None
    dsn = box.server.dsn(DATABASE)
    admin = box.server.dsn()
    jobs: dict[str, Callable[[], list[Result]]] = {
        "partial": lambda: [partial.run(dsn, work, runs)],
        "full": lambda: full.run(box.config_path, dsn, admin, work, runs),
        "checks": lambda: checks.run(box.config_path, dsn, work, runs),
        "schema": lambda: schema.run(box.config_path, dsn, work, runs),
        "rows": lambda: rows.run(box.config_path, dsn, work, runs),
        "repair": lambda: repair.run(box.config_path, dsn, work / "repair", runs),
        "pitr": lambda: pitr.run(box, work / "pitr", runs),
    }
    for name in SIZED:
        if name in names:
            try:
                yield jobs[name]()
            except Exception:   # report it, keep the other benchmarks
                print(f"!! {name} failed at this size:", flush=True)
                traceback.print_exc()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000,
                        help="the size of the headline table (added to --sizes)")
    parser.add_argument("--sizes", default="200000,2000000,8000000",
                        help="comma-separated sizes for the scaling table")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default=None, metavar="NAMES",
                        help=f"comma-separated, of: {', '.join((*SIZED, *ONCE))}")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    parser.add_argument("--report-only", action="store_true",
                        help="re-render the Markdown from the kept results, measure nothing")
    args = parser.parse_args()
    store = args.out.with_suffix(".json")
    if args.report_only:
        print(write_report(args.out, args.rows, merge(store, [], args.runs)))
        return
    names = _names(args.only)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()} | {args.rows})
    if not any(n in SIZED for n in names):
        sizes = []
    def save(results: list[Result]) -> None:   # after every benchmark: nothing measured is lost
        write_report(args.out, args.rows, merge(store, results, args.runs))

    if "startup" in names:
        save(startup.run(args.runs))
    tui_done = "tui" not in names
    with tempfile.TemporaryDirectory(prefix="rollback-bench-") as tmp:
        for rows in sizes or ([TUI_ROWS] if not tui_done else []):
            work = Path(tmp) / str(rows)
            print(f"building a sandbox with {rows:,} rows in the largest table…", flush=True)
            box = Sandbox.up(work / "sandbox", rows=rows, progress=print)
            try:
                if not tui_done:   # on the smallest sandbox: the screens do not read the data
                    save(tui.run(box.config_path, work, args.runs))
                    tui_done = True
                for measured in _sized(box, names, work, args.runs):
                    for r in measured:
                        r.rows = rows
                    save(measured)
            finally:
                box.down()
    print(write_report(args.out, args.rows, merge(store, [], args.runs)))


if __name__ == "__main__":
    main()
