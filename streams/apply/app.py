"""Faust app factory: one app (one consumer group) per route. No module-level App.

The agent is thin: it takes batches of raw messages from the route's source topics and
hands them to :class:`streams.apply.agent.RouteApplier` in a worker thread; Faust acks the
batch only after the applier returned (sinks flushed, dead letters acked, progress recorded),
so offsets are committed after the sinks flushed (at-least-once).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import faust

from connectors.sinks.base import Sink
from connectors.sinks.keycloak import KeycloakSink
from connectors.sinks.postgres_rows import PostgresRowSink
from streams.apply.agent import RouteApplier
from streams.apply.pipeline import ApplyPipeline
from streams.apply.progress import ProgressRecorder
from streams.core.model import DATABASE_STORES, REPLICA_SOURCE_SIDES, REPLICA_STORE, ROUTES, replica_node
from streams.core.reports import BatchReport
from streams.routing.matrix_model import load_matrix
from streams.runtime.confluent_wire import codec_for
from streams.runtime.deadletter import DeadLetterWriter, IncomingMessage
from streams.runtime.jsonfile import write_json
from streams.runtime.kafka_config import faust_broker_options
from streams.runtime.metrics import Health, WorkerMetrics
from streams.runtime.settings import Settings
from streams.runtime.state_files import worker_state_path
from streams.runtime.transport import RouteApp

log = logging.getLogger("platsync.worker")


def source_topics(settings: Settings, route: str) -> list[str]:
    """Topics a route consumes: the captures of every database store of its source side; a replica
    route's: the topics of the store feeding the replica store, on both sides of the home link."""
    if replica_node(route) is not None:
        feed = load_matrix().feed_source(REPLICA_STORE)
        return [settings.topic(side, feed) for side in REPLICA_SOURCE_SIDES]
    source_side, _ = ROUTES[route]
    return [settings.topic(source_side, store) for store in settings.captured_stores(source_side)]


def target_of(route: str) -> tuple[str, tuple[str, ...], str]:
    """(target node, its database stores, the store keeping the route's progress) of a route."""
    node = replica_node(route)
    if node is not None:
        return node, (REPLICA_STORE,), REPLICA_STORE
    target_side = ROUTES[route][1]
    return target_side, DATABASE_STORES[target_side], "meta"


def build_applier(settings: Settings, route: str) -> RouteApplier:
    """The route's applier with one sink per target store of the target side (each checked now); a
    replica route's: the regional server's replica store only (it has no META, no Keycloak)."""
    target_side, stores, progress_store = target_of(route)
    sinks: dict[str, Sink] = {store: PostgresRowSink(settings, target_side, store) for store in stores}
    if replica_node(route) is None:
        sinks["keycloak"] = KeycloakSink(settings, target_side)
    for sink in sinks.values():
        sink.setup()
    codec = codec_for(settings)  # with a schema registry: registers schemas/*.avsc, refuses incompatible ones
    return RouteApplier(
        route, load_matrix(), sinks, DeadLetterWriter(settings, route, codec=codec),
        ProgressRecorder(settings, route, target_side, progress_store), codec=codec)


def _add_apply_checks(health: Health, applier: RouteApplier, pipeline: ApplyPipeline[Any, Any]) -> None:
    """Liveness: no failed batch, no batch applying for longer than the stall limit unless it is
    retrying an unreachable store (waiting, not stuck); readiness: nothing being retried."""

    def apply_alive() -> str | None:
        if pipeline.failure is not None:  # the agent stops consuming: only a restart helps
            return f"a batch failed: {type(pipeline.failure).__name__}"
        started = applier.busy_since
        if started is not None and not applier.retrying and time.monotonic() - started > health.stall_after_s:
            return f"a batch has been applying for more than {health.stall_after_s:g}s"
        return None

    def not_retrying() -> str | None:
        retrying = sorted(applier.retrying)
        return f"retrying unreachable {', '.join(retrying)}" if retrying else None

    health.add_check(apply_alive)
    health.add_check(not_retrying, readiness=True)


def create_app(settings: Settings, route: str, applier: RouteApplier, metrics: WorkerMetrics | None = None,
               health: Health | None = None) -> faust.App:
    """Build the Faust app applying ``route`` with ``applier``; ``metrics`` get every applied batch,
    ``health`` the event loop's beats, readiness (partitions assigned) and the apply checks."""
    datadir = settings.data_dir / "faust" / route
    datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = RouteApp(
        settings.consumer_group(route),
        **faust_broker_options(settings, f"worker-{route}"),  # broker URL, TLS/SASL (streams/runtime/kafka_config.py)
        # The worker runs on the side it writes; the link proxy (infra/local/link.py) reads the side here.
        broker_client_id=f"platsync-{settings.worker_client_tag(route)}-worker-{route}",
        store="memory://",
        # Faust's default data dir is '<app id>-data' in the current directory: keep it in the data dir.
        datadir=str(datadir),
        autodiscover=False,
        web_enabled=False,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.worker_session_timeout_s,
        broker_heartbeat_interval=settings.group_heartbeat_s(),
        broker_commit_interval=1.0,
        topic_partitions=1,
        topic_disable_leader=True,
        producer_max_batch_size=16,
        # At least the largest message (a single large signed record), or its partition would stall.
        consumer_max_fetch_size=settings.kafka_message_max_bytes + 65536,
        key_serializer="raw",
        value_serializer="raw",
    )
    app.broker_retry_backoff_ms = settings.broker_reconnect_backoff_ms
    topic = app.topic(*source_topics(settings, route), key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")
    state_path = worker_state_path(settings, route)
    counters = {"batches": 0, "events": 0, "writes": 0, "applied": 0, "dead_letters": 0}

    def publish(ready: bool) -> None:
        if health is not None:
            health.beat("event_loop")
            health.set_ready(ready, "no partitions assigned (not consuming yet)")
        write_json(state_path, {"route": route, "pid": os.getpid(), "ready": ready,
                                  "updated_ts_ms": int(time.time() * 1000), "retrying": dict(applier.retrying),
                                  **counters}, compact=True)  # after every batch

    def applied(report: BatchReport) -> None:
        counters["batches"] += 1
        for key in ("events", "writes", "applied", "dead_letters"):
            counters[key] += getattr(report, key)
        if metrics is not None:
            metrics.record(report)
        publish(True)

    pipeline: ApplyPipeline[IncomingMessage, BatchReport] = ApplyPipeline(
        applier.apply_batch, applied, depth=settings.worker_batches_in_flight, name=f"apply-{route}")
    if health is not None:
        _add_apply_checks(health, applier, pipeline)

    # A message holds up to capture_events_per_message events (schemas/change_batch.avsc): take as
    # many messages as keep a batch near worker_batch_size events.
    take = max(1, settings.worker_batch_size // max(1, settings.capture_events_per_message))

    @app.agent(topic, name=f"apply_{route}")
    async def apply_changes(stream: faust.StreamT) -> None:
        # noack_take: the events of a batch are acknowledged by the pipeline once it is applied.
        async for events in stream.noack_take(take, within=settings.worker_batch_within_s):
            batch = list(events)
            messages = [IncomingMessage(e.message.topic, e.message.partition, e.message.offset,
                                        e.message.key, e.message.value) for e in batch]

            async def ack(batch: list[Any] = batch) -> None:
                for event in batch:
                    await stream.ack(event)

            await pipeline.submit(messages, ack)

    @app.on_partitions_assigned.connect
    async def on_assigned(app: faust.App, assigned: set[Any], **_: Any) -> None:
        log.info("route %s assigned %d partitions", route, len(assigned))
        publish(bool(assigned))

    @app.timer(interval=2.0)
    async def heartbeat() -> None:
        publish(bool(app.consumer.assignment()))

    del apply_changes, on_assigned, heartbeat  # registered on the app by the decorators
    publish(False)
    return app
