"""The consume -> apply -> commit loop shared by the fan-out and the subscriber's worker (docs/sharing.md).

At-least-once: a batch's consumer offsets are committed only after its ``apply`` returned (which made
everything it produced and wrote durable); any failure before that replays the batch, which both
sides absorb (the fan-out's version-guarded record, the subscriber's version-guarded store). A store
that cannot be reached is waited for, with the same batch, instead of crashing the process; a message
that cannot be decoded goes to the process's dead-letter topic with the reason.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from sqlalchemy.exc import OperationalError

from streams.runtime.deadletter import IncomingMessage
from streams.runtime.kafka_config import client_config
from streams.runtime.log_repeats import OutageLog
from streams.runtime.logs import configure_for, configure_logging
from streams.runtime.metrics import Health, MetricsPortError, MetricsServer, new_registry
from streams.runtime.settings import Settings, SettingsError, load_settings

log = logging.getLogger("platsync.feed")
BATCH = 500


def load_process_settings(parser: argparse.ArgumentParser, argv: list[str] | None,
                          process: str | Callable[[argparse.Namespace], str]
                          ) -> tuple[argparse.Namespace, Settings] | None:
    """Parse a process's arguments (adding ``--config``/``--data-dir``) and set up its logging and settings;
    None, after saying why on stderr, for bad settings (the process then exits 2). ``process``: its name,
    or how to name it from its arguments (``worker-<route>``)."""
    parser.add_argument("--config", type=Path)
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args(argv)
    process = process if isinstance(process, str) else process(args)
    configure_logging(process)
    try:
        settings = load_settings(args.config, data_dir=args.data_dir)
        configure_for(settings, process)
    except (SettingsError, ValueError) as exc:
        print(f"{process}: bad settings: {exc}", file=sys.stderr)
        return None
    return args, settings


def process_start(parser: argparse.ArgumentParser, argv: list[str] | None,
                  process: str) -> tuple[argparse.Namespace, Settings, threading.Event] | None:
    """:func:`load_process_settings`, plus an event that SIGTERM/SIGINT set."""
    loaded = load_process_settings(parser, argv, process)
    if loaded is None:
        return None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _s, _f: stop.set())
    return (*loaded, stop)


def add_metrics_option(parser: argparse.ArgumentParser) -> None:
    """``--metrics-port``: where the process serves /metrics, /healthz and /readyz (none without it)."""
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve /metrics, /healthz and /readyz on this port (Kubernetes probes); default: none")


def serve_health(settings: Settings, process: str, port: int | None) -> tuple[Health, MetricsServer | None]:
    """The process's health, served on ``port`` (with its process metrics) if one is given; a taken port is a
    :class:`streams.runtime.metrics.MetricsPortError` naming the option."""
    health = Health(settings.metrics_stall_after_s)
    if port is None or not settings.metrics_enabled:
        return health, None
    try:
        return health, MetricsServer(new_registry(), health, settings.host, port).start()
    except OSError as exc:
        raise MetricsPortError(f"{process}: cannot serve metrics on {settings.host}:{port} ({exc}); "
                               "pass a free --metrics-port") from exc


def feed_consumer(settings: Settings, group: str, client_id: str, principal: str,
                  topics: Sequence[str]) -> Consumer:
    """A consumer of ``topics`` in ``group``, committing by hand, from the beginning of each topic the
    group has never read (a subscriber offline since before its feed began still gets all of it)."""
    consumer = Consumer({**client_config(settings, client_id, principal), "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "session.timeout.ms": round(settings.worker_session_timeout_s * 1000),
                         "heartbeat.interval.ms": round(settings.group_heartbeat_s() * 1000),
                         "max.poll.interval.ms": 600000})
    consumer.subscribe(list(topics))
    return consumer


def poll_batch(consumer: Consumer, poll_s: float, batch: int = BATCH) -> list[Message]:
    """Up to ``batch`` messages: wait up to ``poll_s`` for the first, then take what has already arrived.

    ``consume(batch, poll_s)`` alone would hold a lone message until the batch filled or ``poll_s`` passed: a
    second of latency per hop for one document on a quiet network."""
    first = consumer.poll(poll_s)
    if first is None:
        return []
    return [first, *consumer.consume(batch - 1, 0.005)]


def run_feed_loop(consumer: Consumer, apply: Callable[[list[IncomingMessage]], None], what: str,
                  stop: threading.Event, summary_every_s: float = 60.0, poll_s: float = 0.5,
                  apply_when_idle: bool = False, health: Health | None = None) -> None:
    """Consume batches and hand each to ``apply`` until ``stop`` is set; commit after each applied batch.
    ``apply_when_idle``: also call ``apply([])`` after each poll that brought nothing (the fan-out opens and
    closes subscriptions then, on a network where nothing is being written).

    ``apply`` raising :class:`sqlalchemy.exc.OperationalError` (its store is unreachable) is retried with
    the same batch, every second, logged once then summarised; any other exception ends the loop (the
    supervisor restarts the process, which replays the batch). ``health``: beaten every poll, ready once a
    poll or a batch went through, not ready while the store is unreachable."""
    outage = OutageLog(log, what, summary_every_s)
    health = health or Health()
    while not stop.is_set():
        health.beat("feed")
        polled = poll_batch(consumer, poll_s)
        batch = []
        for msg in polled:
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s: consumer error %s", what, error)
                continue
            batch.append(IncomingMessage(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value()))
        if not batch and not apply_when_idle:
            health.set_ready(True)
            continue
        while True:
            try:
                apply(batch)
                outage.recovered()
                health.set_ready(True)
                break
            except OperationalError as exc:
                outage.failed(str(exc).splitlines()[0], 1.0)
                health.set_ready(False, f"{what}: the store is unreachable")
                health.beat("feed")  # waiting for the store is progress, not a stall
                if stop.wait(1.0):
                    return  # not committed: the batch is consumed again at the next start
        last: dict[tuple[str, int], int] = {}
        for m in batch:
            last[m.topic, m.partition] = max(last.get((m.topic, m.partition), -1), m.offset)
        if last:
            consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()], asynchronous=False)
