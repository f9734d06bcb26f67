"""``platsync stamp --side S``: the stamper of one side on Kubernetes (connectors/capture/stamp.py).

Serves ``/metrics``, ``/healthz`` and ``/readyz`` on the ``capture-<side>`` metrics port (the
stamper is the capture's Python half there). Exit codes: 0 after SIGTERM/SIGINT, 1 on a failure
(Kubernetes restarts the pod; offsets of unacknowledged records were not committed), 2 on bad
settings or a taken metrics port.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from streams.cli.options import add_node_option
from streams.core.model import CAPTURED_STORES, SIDES
from streams.runtime.logs import configure_for, configure_logging
from streams.runtime.metrics import Health, capture_metrics, serve
from streams.runtime.settings import SettingsError, load_settings

log = logging.getLogger("platsync.stamp")


def run(settings: Any, side: str, stop: threading.Event) -> int:
    """Stamp until ``stop`` is set (0) or something fails (1)."""
    # deferred: Kafka clients and the capture: ~0.75 s
    from connectors.capture.stamp import SideStamper

    metrics = capture_metrics(side, CAPTURED_STORES[side])
    health = Health(settings.metrics_stall_after_s)
    health.beat("main")
    server = serve(settings, f"capture-{side}", metrics.registry, health)
    stamper = None
    try:
        def waiting(what: str) -> None:  # alive but not ready while the broker or a database is away
            health.beat("main")
            health.set_ready(False, f"retrying: {what}")

        stamper = SideStamper(settings, side, stop=stop, on_retry=waiting)
        log.info("stamper %s consuming %s", side, ", ".join(sorted(stamper.stores)))
        while not stop.is_set():
            report = stamper.poll_once()
            health.beat("main")
            health.set_ready(stamper.assigned(), "waiting for the raw topics' partitions")
            for store, (events, echoes, lsn, ts) in report.per_store.items():
                metrics.record_batch(store, events, echoes, lsn, ts)
        return 0
    except Exception as exc:  # noqa: BLE001 - one line without row contents; Kubernetes restarts the pod
        if stop.is_set():
            return 0
        log.error("stamper %s failed: %s", side, type(exc).__name__, exc_info=log.isEnabledFor(logging.DEBUG))
        health.fail(type(exc).__name__)
        return 1
    finally:
        if stamper is not None:
            stamper.close()
        if server is not None:
            server.stop()


def cmd_stamp(args: argparse.Namespace) -> int:
    """Run the stamper of ``--side`` until a signal."""

    configure_logging(f"stamp-{args.side}")
    try:
        settings = load_settings(args.config, data_dir=args.data_dir)
        configure_for(settings, f"stamp-{args.side}")
    except (SettingsError, ValueError) as exc:
        log.error("stamper %s: bad settings: %s", args.side, exc)
        return 2
    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return run(settings, args.side, stop)
    except OSError as exc:  # the metrics port is taken: the message names the setting
        log.error("%s", exc)
        return 2


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``stamp`` subcommand to the ``platsync`` parser."""
    p = sub.add_parser("stamp", parents=[common],
                       help="Kubernetes: turn one side's raw Debezium topics into change events")
    add_node_option(p, SIDES, required=True, help="node whose raw Debezium topics to stamp")
    p.set_defaults(func=cmd_stamp)
