"""Entry point of a stream-processor process: ``python -m streams.worker --route ROUTE``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import faust

from streams.app import build_applier, create_app
from streams.gc_tuning import tune_for_throughput
from streams.model import ROUTES
from streams.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    """Run the Faust worker applying one route until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m streams.worker")
    parser.add_argument("--route", required=True, choices=sorted(ROUTES))
    parser.add_argument("--config", type=Path)
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args(argv)
    settings = load_settings(args.config, data_dir=args.data_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        applier = build_applier(settings, args.route)
    except Exception as exc:  # noqa: BLE001 - report any start-up fault clearly and exit
        print(f"worker {args.route}: cannot start: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings, args.route, applier)
    worker = faust.Worker(app, loglevel="INFO", quiet=True, override_logging=False)
    tune_for_throughput()
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
