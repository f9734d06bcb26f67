"""A common server's declarer: ``python -m streams.apply.declarer`` (docs/sharing.md, "The patient index").

Runs beside a common server's shared store (the cloud's ``fructos_patient``, or a regional server's):
publishes the declarations its trigger queued (:mod:`connectors.stores.index_outbox`) to the server's own
topic ``<prefix>.index.<server>``, in ``seq`` order, and forgets them once the broker acknowledged them.
At-least-once: a crash in between publishes them again, which the index ignores (it keeps the greatest
``seq``). A regional server's declarer reaches the broker through the region's gate, so cutting it
(``platsync link down --node R``) holds its declarations until the gate is back.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from confluent_kafka import Producer
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from connectors.stores.index_outbox import pending, published
from streams.apply.feed_loop import add_metrics_option, process_start, serve_health
from streams.core.model import REPLICA_STORE
from streams.runtime.connections import dsn
from streams.runtime.credentials import DECLARER
from streams.runtime.delivery import DeliveryError, deliver
from streams.runtime.kafka_config import client_config
from streams.runtime.log_repeats import OutageLog
from streams.runtime.metrics import Health
from streams.runtime.settings import Settings
from streams.sharing.index import encode_declaration, index_topic

log = logging.getLogger("platsync.declarer")
PROCESS = "declarer"
BATCH = 500


class Declarer:
    """Publishes one common server's queued declarations to its index topic."""

    def __init__(self, server: str, engine: Engine, producer: Producer, topic: str, batch: int = BATCH) -> None:
        self.server, self.engine, self.producer, self.topic, self.batch = server, engine, producer, topic, batch
        self.declared = 0

    def run_once(self) -> int:
        """Publish the oldest queued declarations (up to a batch), then forget them; how many.
        :class:`DeliveryError` if the broker did not take them all (they stay queued)."""
        with self.engine.begin() as conn:
            due = pending(conn, self.server, self.batch)
        if not due:
            return 0
        deliver(self.producer, ((self.topic, d.record_id.encode(), encode_declaration(d)) for d in due), 30,
                f"{self.server}: index topic {self.topic}")
        with self.engine.begin() as conn:
            published(conn, due[-1].seq)
        self.declared += len(due)
        log.info("%s declared %d changes of shared documents to the index (%d since start)", self.server,
                 len(due), self.declared)
        return len(due)

    def run(self, stop: threading.Event, poll_s: float = 0.5, summary_every_s: float = 60.0,
            health: Health | None = None) -> None:
        """Publish until ``stop`` is set: at once while a full batch waits, else every ``poll_s``. An unreachable
        store or broker is retried every second, logged once, then summarised (and makes ``health`` not ready)."""
        outage = OutageLog(log, f"{self.server}/index", summary_every_s)
        health = health or Health()
        while not stop.is_set():
            health.beat("declare")
            try:
                sent = self.run_once()
                outage.recovered()
                health.set_ready(True)
            except (OperationalError, DeliveryError) as exc:
                outage.failed(str(exc).splitlines()[0], 1.0)
                health.set_ready(False, f"{self.server}: the shared store or the broker is unreachable")
                stop.wait(1.0)
                continue
            if sent < self.batch:
                stop.wait(poll_s)

    def close(self) -> None:
        """Release the database connections."""
        self.producer.flush(10)
        self.engine.dispose()


def build_declarer(settings: Settings, server: str, pg_node: str) -> Declarer:
    """The declarer of common server ``server`` whose shared store is on ``pg_node`` of ``settings`` (``remote``
    for the cloud, the region's id for a regional server). A regional server's client id names its gate."""
    # ``<region>.replica``, like the region's replica workers (Settings.worker_client_tag): its gate cuts it.
    tag = f"{server}.replica" if pg_node != "remote" else "cloud"
    producer = Producer({**client_config(settings, f"platsync-{tag}-declarer", f"{PROCESS}-{server}"),
                         "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    engine = create_engine(dsn(settings, pg_node, REPLICA_STORE, DECLARER), pool_pre_ping=True)
    return Declarer(server, engine, producer, index_topic(settings.topic_prefix, server))


def main(argv: list[str] | None = None) -> int:
    """Run a common server's declarer until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m streams.apply.declarer")
    parser.add_argument("--server", required=True, help="the common server (topology node id) it declares for")
    parser.add_argument("--pg-node", required=True, help="the settings node of its PostgreSQL: 'remote' for the "
                        "cloud, the region's id for a regional server")
    add_metrics_option(parser)
    started = process_start(parser, argv, PROCESS)
    if started is None:
        return 2
    args, settings, stop = started
    health, server = serve_health(settings, f"{PROCESS}-{args.server}", args.metrics_port)
    declarer = build_declarer(settings, args.server, args.pg_node)
    log.info("declarer of %s started: publishing to %s", args.server, declarer.topic)
    try:
        declarer.run(stop, summary_every_s=settings.log_repeat_summary_s, health=health)
    finally:
        declarer.close()
        if server is not None:
            server.stop()
    log.info("declarer of %s stopped", args.server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
