"""`make bench`: a sandbox of --rows (default 2,000,000 in the largest table), every benchmark,
a table on stdout and docs/BENCHMARKS.md."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from app.sandbox.manager import DATABASE, Sandbox
from bench import full, partial
from bench.common import Result, merge, write_report

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", choices=["partial", "full"], default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    parser.add_argument("--report-only", action="store_true",
                        help="re-render the Markdown from the kept results, measure nothing")
    args = parser.parse_args()
    if args.report_only:
        kept = merge(args.out.with_suffix(".json"), [], args.rows, args.runs)
        print(write_report(args.out, args.rows, args.runs, kept))
        return
    with tempfile.TemporaryDirectory(prefix="rollback-bench-") as tmp:
        work = Path(tmp)
        print(f"building a sandbox with {args.rows:,} rows in the largest table…", flush=True)
        box = Sandbox.up(work / "sandbox", rows=args.rows, progress=print)
        try:
            assert box.server is not None
            dsn = box.server.dsn(DATABASE)
            admin = box.server.dsn()
            results: list[Result] = []
            if args.only in (None, "partial"):
                results.append(partial.run(dsn, work, args.runs))
            if args.only in (None, "full"):
                results += full.run(box.config_path, dsn, admin, work, args.runs)
        finally:
            box.down()
    everything = merge(args.out.with_suffix(".json"), results, args.rows, args.runs)
    print(write_report(args.out, args.rows, args.runs, everything))


if __name__ == "__main__":
    main()
