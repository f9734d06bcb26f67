"""The patient index's writer: ``python -m streams.apply.indexer`` (cloud; docs/sharing.md, "The patient index").

Reads every common server's declaration topic (``<prefix>.index.<server>``) and records the declarations in
the cloud's ``patient_index`` database, one transaction per batch, committing the consumer offsets after it
(:mod:`streams.apply.feed_loop`). Redeliveries change nothing: per server and record, only a greater
``seq`` replaces an entry. A message that is not a declaration, or that declares for another server than
the topic's, goes to ``<prefix>.dlq.indexer`` with the reason.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from connectors.stores.patient_index import INDEX_DATABASE, apply_declarations
from streams.apply.feed_loop import add_metrics_option, feed_consumer, process_start, run_feed_loop, serve_health
from streams.core.codec import DecodeError
from streams.runtime.connections import dsn
from streams.runtime.credentials import INDEXER
from streams.runtime.deadletter import DeadLetterWriter, IncomingMessage
from streams.runtime.settings import Settings
from streams.sharing.index import Declaration, decode_declaration, index_topic

log = logging.getLogger("platsync.indexer")
PROCESS = "indexer"
CLOUD_SIDE = "remote"


class Indexer:
    """Records batches of declarations in the ``patient_index`` database."""

    def __init__(self, topics: dict[str, str], engine: Engine, dead_letters: DeadLetterWriter) -> None:
        self.topics, self.engine, self.dead_letters = topics, engine, dead_letters  # topic -> server
        self.changed = 0

    def apply(self, batch: list[IncomingMessage]) -> None:
        """Decode (dead-lettering what is not a declaration of the topic's server), then record in one
        transaction."""
        declarations: list[Declaration] = []
        for msg in batch:
            try:
                d = decode_declaration(msg.value)
            except (DecodeError, ValueError, TypeError) as exc:
                self.dead_letters.add(msg, "decode", str(exc)[:2000], "not an index declaration "
                                      "(schemas/index_declaration.avsc); check the declarer's version")
                continue
            if self.topics.get(msg.topic) != d.server:
                self.dead_letters.add(msg, "wrong_server", f"a declaration of {d.server} on {msg.topic}",
                                      "a server declares on its own topic only: check the declarer's --server")
                continue
            declarations.append(d)
        with self.engine.begin() as conn:
            changed = apply_declarations(conn, declarations)
        self.dead_letters.flush()
        self.changed += changed
        log.info("index: %d declarations, %d entries changed (%d since start)", len(declarations), changed,
                 self.changed)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()


def build_indexer(settings: Settings, servers: list[str]) -> Indexer:
    """The indexer of the declarations of ``servers`` (factory; the cloud's settings)."""
    engine = create_engine(dsn(settings, CLOUD_SIDE, INDEX_DATABASE, INDEXER), pool_pre_ping=True)
    topics = {index_topic(settings.topic_prefix, s): s for s in servers}
    return Indexer(topics, engine, DeadLetterWriter(settings, PROCESS, "platsync-remote-indexer-dlq",
                                                    principal=PROCESS))


def main(argv: list[str] | None = None) -> int:
    """Run the indexer until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m streams.apply.indexer")
    parser.add_argument("--servers", required=True, help="the common servers whose declarations it records, "
                        "comma-separated topology node ids")
    add_metrics_option(parser)
    started = process_start(parser, argv, PROCESS)
    if started is None:
        return 2
    args, settings, stop = started
    health, server = serve_health(settings, PROCESS, args.metrics_port)
    indexer = build_indexer(settings, [s for s in args.servers.split(",") if s])
    consumer = feed_consumer(settings, f"{settings.topic_prefix}-indexer", "platsync-remote-indexer", PROCESS,
                             list(indexer.topics))
    log.info("indexer started: reading %s", ", ".join(indexer.topics))
    try:
        run_feed_loop(consumer, indexer.apply, f"cloud/{INDEX_DATABASE}", stop, settings.log_repeat_summary_s,
                      health=health)
    finally:
        consumer.close()
        indexer.close()
        if server is not None:
            server.stop()
    log.info("indexer stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
