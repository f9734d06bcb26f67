"""A restored node's own changes made after its backup, read back from its topics and applied again
(docs/backups.md, "Restore").

Its captures published every change the node made; those past a database's backup position are missing from
the dump. They are applied to the same stores by the engine's own sinks: version-guarded (a change the dump
already holds, or a newer state, is skipped) and marked as applied by the engine, so the new capture drops
them as echoes (the other side has them already).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import Consumer, TopicPartition

from connectors.sinks.base import Sink
from connectors.sinks.keycloak import KeycloakSink
from connectors.sinks.postgres_rows import PostgresRowSink
from streams.core.model import ChangeEvent, Write, route_for_source
from streams.routing.route import SINK_OPS
from streams.runtime.confluent_wire import codec_for
from streams.runtime.kafka_config import client_config
from streams.runtime.settings import Settings

Say = Callable[[str], None]
#: Read a topic until no message came for this long (the embedded broker's watermark is not to be trusted).
IDLE_S = 5.0
BATCH = 500


@dataclass
class CatchUp:
    """What the catch-up found and did, per store."""

    read: dict[str, int] = field(default_factory=dict)
    after_backup: dict[str, int] = field(default_factory=dict)
    applied: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    max_lsn: int = 0


def read_own_changes(settings: Settings, side: str, positions: Mapping[str, int], since_ms: int,
                     say: Say = print, timeout_s: float = 300.0) -> tuple[list[ChangeEvent], CatchUp]:
    """Every change ``side`` published to its topics since ``since_ms``; those of each store past its position
    (``positions``: store -> WAL position) in position order, and what was read. ``max_lsn`` is the largest
    position read at all, which a rebuilt server must continue past."""
    report = CatchUp()
    codec = codec_for(settings, register=False)
    group = f"{settings.consumer_group(route_for_source(side))}-restore-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({**client_config(settings, "platsync-restore"), "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    wanted: list[ChangeEvent] = []
    try:
        topics = {settings.topic(side, store): store for store in positions}
        metadata = consumer.list_topics(timeout=10)
        partitions = [TopicPartition(t, p, since_ms) for t in topics if t in metadata.topics
                      for p in sorted(metadata.topics[t].partitions)]
        consumer.assign(consumer.offsets_for_times(partitions, timeout=10))
        began = last = time.monotonic()
        while time.monotonic() - last < IDLE_S and time.monotonic() - began < timeout_s:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None or msg.value() is None:
                continue
            last = time.monotonic()
            store = topics[msg.topic()]
            for event in codec.decode_changes(msg.value()):
                report.read[store] = report.read.get(store, 0) + 1
                report.max_lsn = max(report.max_lsn, event.lsn)
                if event.op != "probe" and event.lsn > positions[store]:  # a probe is no change of a row
                    wanted.append(event)
                    report.after_backup[store] = report.after_backup.get(store, 0) + 1
    finally:
        consumer.close()
    say(f"read {sum(report.read.values())} change(s) of {side} since the backup; "
        f"{len(wanted)} past its positions")
    return sorted(wanted, key=lambda e: (e.lsn, e.event_id)), report


def _write(event: ChangeEvent, side: str) -> Write:
    """The write that puts ``event``'s state back into the store it was captured from (as the router writes)."""
    op = SINK_OPS[event.op]
    return Write(target_side=side, target_store=event.source_store, table=event.table, op=op, key=event.key,
                 version=event.version, row=event.row, event_id=event.event_id, api_id=event.api_id or "",
                 origin_side=event.origin_side, before=event.before if op == "upsert" else None)


def apply_own_changes(settings: Settings, side: str, events: list[ChangeEvent], report: CatchUp,
                      say: Say = print) -> CatchUp:
    """Apply ``events`` (one side's own, in position order) to that side's stores, a batch per store at a time."""
    sinks: dict[str, Sink] = {}
    try:
        for start in range(0, len(events), BATCH):
            chunk = events[start:start + BATCH]
            by_store: dict[tuple[str, str], list[Write]] = {}
            for event in chunk:
                by_store.setdefault((event.source_store, event.origin_side), []).append(_write(event, side))
            for (store, origin), writes in by_store.items():
                if store not in sinks:
                    sinks[store] = (KeycloakSink(settings, side) if store == "keycloak"
                                    else PostgresRowSink(settings, side, store))
                    sinks[store].setup()
                result = sinks[store].apply_batch(writes, origin)
                report.applied[store] = report.applied.get(store, 0) + result.applied
                report.skipped[store] = report.skipped.get(store, 0) + result.stale
                report.rejected += [f"{store}.{r.write.table} {r.write.key}: {r.error}" for r in result.rejected]
    finally:
        for sink in sinks.values():
            sink.close()
    say(f"applied {sum(report.applied.values())} of them again "
        f"({sum(report.skipped.values())} already held by the backup or newer)")
    return report
