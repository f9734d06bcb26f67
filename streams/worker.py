"""Entry point of a stream-processor process: ``python -m streams.worker --route ROUTE``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import faust

from streams.agents.apply import RouteApplier
from streams.app import build_applier, create_app
from streams.gc_tuning import tune_for_throughput
from streams.logs import configure_for, configure_logging, redact, secrets_of
from streams.metrics import Health, MetricsPortError, WorkerMetrics, serve, worker_metrics
from streams.model import CAPTURED_STORES, ROUTES
from streams.settings import Settings, SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    """Run the Faust worker applying one route until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m streams.worker")
    parser.add_argument("--route", required=True, choices=sorted(ROUTES))
    parser.add_argument("--config", type=Path)
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args(argv)
    process = f"worker-{args.route}"
    configure_logging(process)
    try:
        settings = load_settings(args.config, data_dir=args.data_dir)
        configure_for(settings, process)
    except (SettingsError, ValueError) as exc:
        print(f"{process}: bad settings: {exc}", file=sys.stderr)
        return 2
    try:
        applier = build_applier(settings, args.route)
    except Exception as exc:  # noqa: BLE001 - report any start-up fault clearly and exit
        print(f"worker {args.route}: cannot start: {redact(str(exc), secrets_of(settings))}", file=sys.stderr)
        return 2
    metrics, health = _observability(settings, args.route, applier)
    try:
        server = serve(settings, process, metrics.registry, health)
    except MetricsPortError as exc:
        print(exc, file=sys.stderr)
        return 2
    app = create_app(settings, args.route, applier, metrics, health)
    worker = faust.Worker(app, loglevel="INFO", quiet=True, override_logging=False)
    tune_for_throughput()
    try:
        worker.execute_from_commandline()
    finally:
        if server is not None:
            server.stop()
    return 0


def _observability(settings: Settings, route: str, applier: RouteApplier) -> tuple[WorkerMetrics, Health]:
    """The route's metrics (applied positions seeded from ``platsync_progress``) and health."""
    from streams.progress import read_progress
    from streams.status import capture_state

    source_side, target_side = ROUTES[route]
    metrics = worker_metrics(
        route, CAPTURED_STORES[source_side], applier.sinks,
        captured=lambda store: capture_state(settings, source_side, store),
        retries=lambda: (dict(applier.retrying), dict(applier.retry_attempts)),
        retry_targets=[f"{target_side}/{store}" for store in applier.sinks] + ["progress"])
    try:
        metrics.seed_positions(read_progress(settings, target_side, role="apply"))
    except Exception as exc:  # noqa: BLE001 - positions then start from this process's first batch
        logging.getLogger("platsync.worker").warning("applied positions unknown until the first batch (%s)",
                                                     type(exc).__name__)
    health = Health(settings.metrics_stall_after_s)
    health.beat("event_loop")
    return metrics, health


if __name__ == "__main__":
    sys.exit(main())
