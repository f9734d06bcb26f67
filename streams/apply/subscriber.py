"""A subscriber's worker: ``python -m streams.apply.subscriber`` applies its feed (docs/sharing.md).

Runs beside the hospital's stores (in its link's data dir): reads only its own feed topic,
``<prefix>.<node>.sub``, and applies it to ``fructos_subscribed``
(:func:`connectors.stores.subscribed.apply_feed`) one batch per transaction, committing the consumer
offsets after it (:mod:`streams.apply.feed_loop`). Offline, it simply waits: the feed keeps what it
missed, and it catches up at the next connection.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable

from confluent_kafka import Producer
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from connectors.stores.subscribed import SUBSCRIBED_STORE, FeedApplyResult, apply_feed
from streams.apply.feed_loop import add_metrics_option, feed_consumer, process_start, run_feed_loop, serve_health
from streams.apply.notifier import Notifier
from streams.core.codec import DecodeError
from streams.runtime.connections import dsn
from streams.runtime.credentials import SUBSCRIBER
from streams.runtime.deadletter import DeadLetterWriter, IncomingMessage
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings
from streams.sharing.feed import FEED_TOPIC_PART, FeedMessage, decode_feed_message

log = logging.getLogger("platsync.subscriber")
PROCESS = "subscriber"
HOSPITAL_SIDE = "local"  # a hospital plays the local side of its home link


class Subscriber:
    """Applies batches of one subscriber's feed to its ``fructos_subscribed`` store."""

    def __init__(self, node: str, engine: Engine, dead_letters: DeadLetterWriter,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.node, self.engine, self.dead_letters = node, engine, dead_letters
        self.applied = 0
        self.on_change = on_change  # called after a batch changed copies (and so recorded notifications)

    def apply(self, batch: list[IncomingMessage]) -> None:
        """Decode (dead-lettering what is not a feed message of this node), then apply in one transaction."""
        pairs: list[tuple[IncomingMessage, FeedMessage]] = []
        for msg in batch:
            try:
                message = decode_feed_message(msg.value)
            except DecodeError as exc:
                self.dead_letters.add(msg, "decode", str(exc), "not a subscription message "
                                      "(schemas/subscription_message.avsc); check the fan-out's version")
                continue
            if message.subscriber != self.node:
                self.dead_letters.add(msg, "wrong_subscriber", f"a message for {message.subscriber} on "
                                      f"{self.node}'s feed", "the fan-out wrote to the wrong feed topic")
                continue
            pairs.append((msg, message))
        try:
            with self.engine.begin() as conn:
                result = apply_feed(conn, [m for _, m in pairs])
        except OperationalError:
            raise  # the store is unreachable: the loop waits for it with the same batch
        except Exception:  # noqa: BLE001 - a message the store refuses: find it, one transaction per message
            result = self._one_by_one(pairs)
        self.dead_letters.flush()
        if result.applied or result.removed:
            self.on_change()
        self.applied += result.applied
        log.info("feed of %s: %d messages: %d copies written, %d removed, %d unchanged, %d patients subscribed, "
                 "%d unsubscribed", self.node, len(pairs), result.applied, result.removed, result.unchanged,
                 result.subscribed, result.unsubscribed)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def _one_by_one(self, pairs: list[tuple[IncomingMessage, FeedMessage]]) -> FeedApplyResult:
        total = FeedApplyResult()
        for msg, message in pairs:
            try:
                with self.engine.begin() as conn:
                    one = apply_feed(conn, [message])
            except OperationalError:
                raise
            except Exception as exc:  # noqa: BLE001 - dead-lettered with its reason; the feed goes on
                # The error may quote row values: it goes to the (access-controlled) dead letter, not the log.
                log.warning("feed of %s: a %s message of record %s refused (%s); see the dead letters",
                            self.node, message.kind, message.record_id, type(exc).__name__)
                self.dead_letters.add(msg, "store_refused", f"{SUBSCRIBED_STORE}: {exc}"[:2000],
                                      "the subscriber's store refuses this copy (schema older than the "
                                      "sender's?): upgrade this node, then 'platsync dlq replay'")
                continue
            total.add(one)
        return total


def build_subscriber(settings: Settings, node: str) -> Subscriber:
    """The subscriber of ``node`` on its link's settings (factory)."""
    engine = create_engine(dsn(settings, HOSPITAL_SIDE, SUBSCRIBED_STORE, SUBSCRIBER), pool_pre_ping=True)
    client = f"platsync-{settings.client_tag(HOSPITAL_SIDE)}-subscriber"
    # Its Kafka principal is its link's (``<link prefix>-subscriber``, NetworkPlan.principal), as every Kafka client
    # of the process: the node is its link's hospital.
    return Subscriber(node, engine, DeadLetterWriter(settings, PROCESS, f"{client}-dlq", principal=PROCESS))


def build_notifier(settings: Settings, node: str, engine: Engine) -> Notifier:
    """The node's notifier, on its link's settings: its notification topic is ``<link prefix>.notifications``."""
    client = f"platsync-{settings.client_tag(HOSPITAL_SIDE)}-subscriber-notify"
    producer = Producer({**client_config(settings, client, PROCESS), "enable.idempotence": True,
                         "acks": "all", "linger.ms": 5})
    return Notifier(node, engine, producer, f"{settings.topic_prefix}.notifications")


def link_feed_topic(settings: Settings) -> str:
    """The feed this subscriber reads: ``<link prefix>.sub`` (``platsync.hosp-b.sub``; NetworkPlan.feed_topic)."""
    return f"{settings.topic_prefix}.{FEED_TOPIC_PART}"


def main(argv: list[str] | None = None) -> int:
    """Run the subscriber's worker until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m streams.apply.subscriber")
    parser.add_argument("--node", required=True, help="the hospital whose feed it applies")
    add_metrics_option(parser)
    started = process_start(parser, argv, PROCESS)
    if started is None:
        return 2
    args, settings, stop = started
    health, server = serve_health(settings, PROCESS, args.metrics_port)
    subscriber = build_subscriber(settings, args.node)
    notifier = build_notifier(settings, args.node, subscriber.engine)
    subscriber.on_change = notifier.wake
    notifying = threading.Thread(target=notifier.run, args=(stop,), kwargs={"health": health}, name="notifier",
                                 daemon=True)
    notifying.start()
    topic = link_feed_topic(settings)
    consumer = feed_consumer(settings, f"{settings.topic_prefix}-{PROCESS}",  # the link's prefix
                             f"platsync-{settings.client_tag(HOSPITAL_SIDE)}-subscriber", PROCESS,
                             [topic])
    log.info("subscriber %s started: reading %s", args.node, topic)
    try:
        run_feed_loop(consumer, subscriber.apply, f"{args.node}/{SUBSCRIBED_STORE}", stop,
                      settings.log_repeat_summary_s, health=health)
    finally:
        stop.set()
        notifier.wake()  # it waits to be woken (or every_s): stop now
        notifying.join(30)
        consumer.close()
        subscriber.close()
        if server is not None:
            server.stop()
    log.info("subscriber %s stopped", args.node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
