"""``platsync resync``: re-capture the current state of the stores into the broker."""

from __future__ import annotations

import argparse
from typing import Any

from streams.model import SIDES
from streams.settings import load_settings


def cmd_resync(args: argparse.Namespace) -> int:
    """Re-send every row the chosen side's APIs wrote (safe to repeat: the sinks are idempotent)."""
    from infra.local.recovery import resync_side, write_incarnation

    settings = load_settings(args.config, data_dir=args.data_dir)
    sides = SIDES if args.side == "both" else (args.side,)
    for side in sides:
        resync_side(settings, side, lambda m: print(m, flush=True))
    if args.side == "both":
        write_incarnation(settings)
    print("re-capture published; 'platsync wait-synced' tells when it is applied")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``resync`` subcommand to the ``platsync`` parser."""
    p = sub.add_parser("resync", parents=[common],
                       help="re-capture the stores' current state into the broker (after a broker data loss)")
    p.add_argument("--side", choices=[*SIDES, "both"], default="both")
    p.set_defaults(func=cmd_resync)
