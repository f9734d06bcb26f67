"""``platsync resync``: re-capture the current state of the stores into the broker."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from streams.cli.options import add_node_option
from streams.core.model import SIDES
from streams.runtime.settings import load_settings


def cmd_resync(args: argparse.Namespace) -> int:
    """Re-send every row the chosen side's APIs wrote (safe to repeat: the sinks are idempotent)."""
    # deferred: Kafka clients and the capture: ~0.65 s, only for this command
    from infra.local.recovery import resync_side, write_incarnation

    settings = load_settings(args.config, data_dir=args.data_dir)
    sides = SIDES if args.side == "both" else (args.side,)
    for side in sides:
        resync_side(settings, side, lambda m: print(m, flush=True))
    if args.side == "both":
        write_incarnation(settings)
    print("re-capture published; 'platsync wait-synced' tells when it is applied")
    return 0


def _ms(value: str) -> int:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"time {value!r} needs a UTC offset, e.g. 2026-11-22T09:00:00+09:00")
    return int(parsed.timestamp() * 1000)


def cmd_recovery_report(args: argparse.Namespace) -> int:
    """List what each side entered during the outage: copied, copyable or not copyable (why)."""
    # deferred: Kafka clients and store tables: ~0.85 s, only for 'recovery'
    from streams.ops.recovery_report import Window, as_json, build_report, last_outage, render

    settings = load_settings(args.config, data_dir=args.data_dir)
    window: Window | None
    if args.since:
        window = Window(_ms(args.since), _ms(args.until) if args.until else None)
    else:
        window = last_outage(settings)
        if window is None:
            print("platsync recovery-report: no emergency recorded by the mode servers in this data dir; "
                  "give the window with --since (and --until)", file=sys.stderr)
            return 2
    start, end = window.start_ms, window.end_ms
    entries = build_report(settings, start, end)
    if args.json:
        print(json.dumps(as_json(entries, start, end, window), ensure_ascii=False, indent=2, default=str))
    else:
        print(render(entries, start, end, window.note()))
    return 0


def cmd_recovery_copy(args: argparse.Namespace) -> int:
    """Copy the chosen records of the difference list to the other side now; exit 1 if any was refused."""
    # deferred: Kafka clients and store tables: ~0.85 s, only for 'recovery-copy'
    from streams.ops.recovery_copy import REFUSED, Selected, copy_selected

    try:
        chosen = [Selected.parse(text) for text in args.records]
    except ValueError as exc:
        print(f"platsync recovery-copy: {exc}", file=sys.stderr)
        return 2
    outcomes = copy_selected(load_settings(args.config, data_dir=args.data_dir), chosen)
    if args.json:
        print(json.dumps([{"id": o.selected.id, "outcome": o.outcome, "reason": o.reason} for o in outcomes],
                         ensure_ascii=False, indent=2))
    else:
        for o in outcomes:
            print(f"{o.selected.id}: {o.outcome}: {o.reason}")
    return 1 if any(o.outcome == REFUSED for o in outcomes) else 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``resync``, ``recovery-report`` and ``recovery-copy`` subcommands to the ``platsync`` parser."""
    p = sub.add_parser("recovery-report", parents=[common],
                       help="what each side entered during the last outage: copied, copyable, not copyable")
    p.add_argument("--since", help="window start, ISO 8601 with offset (default: the last heartbeat the "
                   "sides exchanged before the last emergency)")
    p.add_argument("--until", help="window end (default: the end of that emergency, or now)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_recovery_report)
    p = sub.add_parser("recovery-copy", parents=[common],
                       help="copy chosen records of the recovery report to the other side now (re-send or re-drive)")
    p.add_argument("records", nargs="+", metavar="SIDE/STORE/TABLE/ROW_ID",
                   help="records as the report's JSON names them (side, store, table, row_id)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_recovery_copy)
    p = sub.add_parser("resync", parents=[common],
                       help="re-capture the stores' current state into the broker (after a broker data loss)")
    add_node_option(p, [*SIDES, "both"], default="both", help="node whose writes to re-send (default both)")
    p.set_defaults(func=cmd_resync)
