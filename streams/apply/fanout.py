"""The cloud's fan-out: ``python -m streams.apply.fanout --homes hosp-a,hosp-b`` (docs/sharing.md).

Reads every home link's ``fructos_own`` topics of both sides (what the shared store receives, whichever
side wrote it), keeps the cloud's ``sharing`` database (:mod:`connectors.stores.fanout_state`), and
produces each subscriber's messages to its own feed topic, ``<prefix>.<node>.sub``, keyed by patient.
Per batch: the messages are produced and acknowledged, then the ``sharing`` transaction commits, then
the consumer offsets (:mod:`streams.apply.feed_loop`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from confluent_kafka import Producer
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from connectors.stores.fanout_state import SHARING_DATABASE, fan_out
from streams.apply.feed_loop import add_metrics_option, feed_consumer, process_start, run_feed_loop, serve_health
from streams.core.codec import DecodeError, MessageCodec
from streams.core.model import ChangeEvent
from streams.routing.matrix_model import Matrix, load_matrix
from streams.runtime.confluent_wire import codec_for
from streams.runtime.connections import dsn
from streams.runtime.credentials import FANOUT
from streams.runtime.deadletter import DeadLetterWriter, IncomingMessage
from streams.runtime.delivery import deliver
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings
from streams.runtime.topics import ensure_topics
from streams.sharing.feed import encode_feed_message, feed_topic

log = logging.getLogger("platsync.fanout")
PROCESS = "fanout"
CLOUD_SIDE = "remote"
FEEDING_STORE = "fructos_own"


def home_topics(settings: Settings, homes: Sequence[str]) -> dict[str, str]:
    """Topic -> home institution: each home link's feeding store, both sides (``platsync.hosp-a.local...``)."""
    return {f"{settings.topic_prefix}.{home}.{side}.{FEEDING_STORE}": home
            for home in homes for side in ("local", CLOUD_SIDE)}


class FanOut:
    """Applies batches of captured changes to the ``sharing`` database and the subscribers' feeds."""

    def __init__(self, settings: Settings, homes: Sequence[str], engine: Engine, matrix: Matrix,
                 codec: MessageCodec, producer: Producer, dead_letters: DeadLetterWriter) -> None:
        self.settings, self.engine, self.matrix, self.codec = settings, engine, matrix, codec
        self.homes = home_topics(settings, homes)
        self.producer, self.dead_letters = producer, dead_letters
        self._feeds_ready: set[str] = set()
        self.sent = 0

    def apply(self, batch: list[IncomingMessage]) -> None:
        """Route one batch; produce its messages; commit the ``sharing`` transaction (see the module doc)."""
        changes: list[tuple[str, ChangeEvent]] = []
        for msg in batch:
            try:
                changes.extend((self.homes[msg.topic], self.codec.decode_change(element))
                               for element in self.codec.split_changes(msg.value))
            except DecodeError as exc:
                self.dead_letters.add(msg, "decode", str(exc), "the message is not a valid ChangeEvent or "
                                      "ChangeBatch (schemas/); check the capture version")
        self.dead_letters.flush()
        with self.engine.begin() as conn:
            messages = fan_out(conn, changes, self.matrix)
            self._ensure_feeds({m.subscriber for m in messages})
            # DeliveryError rolls the transaction back: the batch is routed again.
            deliver(self.producer, ((feed_topic(self.settings.topic_prefix, m.subscriber), m.patient_id.encode(),
                                     encode_feed_message(m)) for m in messages), 60, "feeds")
        self.sent += len(messages)
        if messages:
            log.info("fan-out: %d changes -> %d feed messages (%d since start)", len(changes), len(messages),
                     self.sent)

    def close(self) -> None:
        """Release the database connections and deliver what the producer still holds."""
        self.producer.flush(10)
        self.engine.dispose()

    def _ensure_feeds(self, nodes: set[str]) -> None:
        missing = nodes - self._feeds_ready
        if missing:
            ensure_topics(client_config(self.settings, "platsync-remote-fanout-admin", PROCESS),
                          [feed_topic(self.settings.topic_prefix, n) for n in sorted(missing)],
                          real_cluster=bool(self.settings.broker_bootstrap_servers))
            self._feeds_ready |= missing


def build_fanout(settings: Settings, homes: Sequence[str]) -> tuple[FanOut, list[str]]:
    """The fan-out and the topics it reads (factory: the one place that wires clients and stores)."""
    engine = create_engine(dsn(settings, CLOUD_SIDE, SHARING_DATABASE, FANOUT), pool_pre_ping=True)
    producer = Producer({**client_config(settings, "platsync-remote-fanout", PROCESS), "enable.idempotence": True,
                         "acks": "all", "linger.ms": 5})
    fanout = FanOut(settings, homes, engine, load_matrix(), codec_for(settings), producer,
                    DeadLetterWriter(settings, PROCESS, "platsync-remote-fanout-dlq", principal=PROCESS))
    return fanout, list(fanout.homes)


def main(argv: list[str] | None = None) -> int:
    """Run the fan-out until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m streams.apply.fanout")
    parser.add_argument("--homes", required=True, help="the home links it reads, comma-separated hospital ids")
    add_metrics_option(parser)
    started = process_start(parser, argv, PROCESS)
    if started is None:
        return 2
    args, settings, stop = started
    health, server = serve_health(settings, PROCESS, args.metrics_port)
    fanout, topics = build_fanout(settings, [h for h in args.homes.split(",") if h])
    consumer = feed_consumer(settings, f"{settings.topic_prefix}-fanout", "platsync-remote-fanout", PROCESS, topics)
    log.info("fan-out started: reading %s", ", ".join(topics))
    try:
        # Idle polls too: a subscription asked for while nothing is written opens within a poll (1 s).
        run_feed_loop(consumer, fanout.apply, f"cloud/{SHARING_DATABASE}", stop, settings.log_repeat_summary_s,
                      poll_s=1.0, apply_when_idle=True, health=health)
    finally:
        consumer.close()
        fanout.close()
        if server is not None:
            server.stop()
    log.info("fan-out stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
