"""Entry point of a stream-processor process: ``python -m streams.apply.worker --route ROUTE``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faust
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from connectors.sinks.base import StoreUnavailableError
from streams.apply.agent import RouteApplier
from streams.apply.app import build_applier, create_app, target_of
from streams.apply.feed_loop import load_process_settings
from streams.apply.progress import read_progress
from streams.core.model import REPLICA_SOURCE_SIDES, REPLICA_STORE, ROUTES, replica_node
from streams.routing.matrix_model import load_matrix
from streams.runtime.gc_tuning import tune_for_throughput
from streams.runtime.jsonfile import write_json
from streams.runtime.kafka_config import client_config
from streams.runtime.log_repeats import OutageLog
from streams.runtime.logs import redact, secrets_of
from streams.runtime.metrics import Health, MetricsPortError, WorkerMetrics, serve, worker_metrics
from streams.runtime.retry import Backoff, RetryStopped, retry
from streams.runtime.settings import Settings
from streams.runtime.state_files import capture_state, worker_state_path

log = logging.getLogger("platsync.worker")


def main(argv: list[str] | None = None) -> int:
    """Run the Faust worker applying one route until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m streams.apply.worker")
    parser.add_argument("--route", required=True, type=_route_name,
                        help=f"{' or '.join(sorted(ROUTES))}, or local_to_<regional node> (a replica route)")
    loaded = load_process_settings(parser, argv, lambda a: f"worker-{a.route}")
    if loaded is None:
        return 2
    args, settings = loaded
    process = f"worker-{args.route}"
    try:
        applier = _build_applier(settings, args.route)
        if applier is None:
            return 0  # stopped by a signal while waiting for the regional server's store
    except Exception as exc:  # noqa: BLE001 - report any start-up fault clearly and exit
        print(f"worker {args.route}: cannot start: {redact(str(exc), secrets_of(settings))}", file=sys.stderr)
        return 2
    metrics, health = _observability(settings, args.route, applier)
    try:
        server = serve(settings, process, metrics.registry, health)
    except MetricsPortError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not wait_for_broker(settings, args.route):
        return 0  # stopped by a signal while waiting: nothing was consumed, nothing to commit
    app = create_app(settings, args.route, applier, metrics, health)
    worker = faust.Worker(app, loglevel="INFO", quiet=True, override_logging=False)
    tune_for_throughput()
    try:
        worker.execute_from_commandline()
    finally:
        if server is not None:
            server.stop()
    return 0


def _build_applier(settings: Settings, route: str) -> RouteApplier | None:
    """The route's applier. A replica route's worker runs on a regional server, which may be down or cut off
    while the hospitals go on: it waits for its store (logged once, then summaries) instead of exiting, so it
    resumes by itself when the server is back. None if SIGTERM/SIGINT came first."""
    if replica_node(route) is None:
        return build_applier(settings, route)
    what = f"{replica_node(route)}/{REPLICA_STORE}"
    outage = OutageLog(log, what, settings.log_repeat_summary_s)
    with _stop_on_signal() as stop:
        try:
            return retry(lambda: build_applier(settings, route), what, retry_on=(StoreUnavailableError,),
                         backoff=Backoff(1.0, 10.0), stop=stop,
                         on_failure=lambda exc, _n, delay: outage.failed(str(exc).splitlines()[0], delay),
                         on_success=lambda _failed: outage.recovered())
        except RetryStopped:
            return None


@contextmanager
def _stop_on_signal() -> Iterator[threading.Event]:
    """An event that SIGTERM or SIGINT sets while the block runs (the previous handlers are restored after):
    what the worker's waits before Faust starts stop on."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda _s, _f: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _route_name(value: str) -> str:
    """A home route, or a replica route ``local_to_<regional node>`` (checked against the settings later)."""
    if value in ROUTES or replica_node(value) is not None:
        return value
    raise argparse.ArgumentTypeError(f"unknown route {value!r}: expected {', '.join(sorted(ROUTES))} or "
                                     "local_to_<regional node>")


def wait_for_broker(settings: Settings, route: str) -> bool:
    """Wait until the broker answers, however long a link cut lasts; False if SIGTERM/SIGINT came first.

    Faust gives up at once when it cannot bootstrap, so a worker started during a cut (a hospital
    server rebooted in an outage) would exit and stay down until someone restarts it. Waiting here
    keeps it running and makes it consume as soon as the link is back. The worker's state file says
    what it waits for (``platsync status``); the log gets the outage once plus periodic summaries.
    """
    client_id = f"platsync-{settings.worker_client_tag(route)}-worker-{route}"  # names the side for the link proxy
    admin = AdminClient({**client_config(settings, client_id, f"worker-{route}"), "socket.timeout.ms": 5000})
    what = f"broker {settings.broker_bootstrap}"
    outage = OutageLog(log, what, settings.log_repeat_summary_s)

    def failed(exc: BaseException, _attempts: int, delay: float) -> None:
        outage.failed(str(exc.args[0] if exc.args else exc), delay)
        write_json(worker_state_path(settings, route), {
            "route": route, "pid": os.getpid(), "ready": False, "waiting_for": what,
            "updated_ts_ms": time.time_ns() // 1_000_000})

    with _stop_on_signal() as stop:
        try:
            retry(lambda: admin.list_topics(timeout=5), what, retry_on=(KafkaException,),
                  backoff=Backoff(settings.broker_reconnect_backoff_ms / 1000,
                                  settings.broker_reconnect_backoff_max_ms / 1000),
                  stop=stop, on_failure=failed, on_success=lambda _failed: outage.recovered())
            return not stop.is_set()  # a signal during the last attempt still stops us
        except RetryStopped:
            return False


def _observability(settings: Settings, route: str, applier: RouteApplier) -> tuple[WorkerMetrics, Health]:
    """The route's metrics (applied positions seeded from ``platsync_progress``) and health."""

    target_side, _stores, progress_store = target_of(route)
    if replica_node(route) is None:
        source_side = ROUTES[route][0]
        sources = list(settings.captured_stores(source_side))

        def captured(store: str) -> dict[str, Any]:
            return capture_state(settings, source_side, store)
    else:  # a replica route reads one store of both sides: progress keys are <side>.<store>
        feed = load_matrix().feed_source(REPLICA_STORE)
        sources = [f"{side}.{feed}" for side in REPLICA_SOURCE_SIDES]

        def captured(store: str) -> dict[str, Any]:
            side, _, name = store.partition(".")
            return capture_state(settings, side, name)
    metrics = worker_metrics(
        route, sources, applier.sinks, captured=captured,
        retries=lambda: (dict(applier.retrying), dict(applier.retry_attempts)),
        retry_targets=[f"{target_side}/{store}" for store in applier.sinks] + ["progress"])
    try:
        kept_as = settings.progress_route(route)
        metrics.seed_positions({**row, "route": route} for row in read_progress(
            settings, target_side, role="apply", store=progress_store) if row["route"] == kept_as)
    except Exception as exc:  # noqa: BLE001 - positions then start from this process's first batch
        logging.getLogger("platsync.worker").warning("applied positions unknown until the first batch (%s)",
                                                     type(exc).__name__)
    health = Health(settings.metrics_stall_after_s)
    health.beat("event_loop")
    return metrics, health


if __name__ == "__main__":
    sys.exit(main())
