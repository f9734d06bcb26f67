"""``platsync bench``: the benchmark (bench/runner.py) from the command line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark on a fresh private stack; print the table; exit 1 if a correctness check failed."""
    # deferred: the benchmark and its stack: ~0.9 s
    from bench.runner import render_table, run_bench

    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {message}", flush=True)

    report = run_bench(args.quick, args.json, say, work_dir=args.work_dir, keep=args.keep)
    print()
    print(render_table(report))
    print(f"commit {report['commit']}, {report['machine']['cpus']} cpus ({report['machine']['cpu_model']}), "
          f"{report['duration_s']:.0f}s" + (f"; JSON in {args.json}" if args.json else ""))
    if not all(check["ok"] for check in report["checks"]):
        print("platsync bench: correctness checks failed: the figures above are not valid", file=sys.stderr)
        return 1
    return 0


def register(sub: Any) -> None:
    """Add the ``bench`` subcommand."""
    p = sub.add_parser("bench", help="benchmark the engine against native replication on a fresh stack")
    p.add_argument("--quick", action="store_true",
                   help="smaller scenarios (20,000-document bulk, 20 s steady, 20,000 catch-up changes)")
    p.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    p.add_argument("--work-dir", type=Path,
                   help="where the fresh data dir is made (default: the system's temp dir); the PostgreSQL "
                        "user must be able to traverse it")
    p.add_argument("--keep", action="store_true", help="keep the data dir (logs, databases) afterwards")
    p.set_defaults(func=cmd_bench)
