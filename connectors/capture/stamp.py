"""The stamper of one side (Kubernetes): raw Debezium records from Kafka Connect -> change events.

On Kubernetes Debezium runs in Kafka Connect (infra/k8s): each captured database's connector
writes every record, JSON without schemas like the embedded engine's, to ONE raw topic with one
partition (``<prefix>.raw.<side>.<store>``), so that a transaction's marker row comes before its
rows. ``platsync stamp --side S`` consumes those topics and does what the embedded runner's
handler does for a Debezium batch (:mod:`connectors.capture.runner`), with the same parts:
:class:`~connectors.capture.envelope.TransactionStamper` (Keycloak:
:func:`~connectors.capture.runner.keycloak_converter`), the runner's
:class:`~connectors.capture.publisher.Publisher` to ``settings.topic(side, store)``, the same marker
and progress files under ``<data_dir>/state/capture/`` (a persistent volume on Kubernetes).

Order per poll (at-least-once; the sinks are idempotent): convert -> publish and wait for every
acknowledgement (retrying while the broker is away) -> save markers and progress -> dead letters
acknowledged -> commit the consumer offsets after the last record handled. A record that is not a
Debezium envelope this capture understands is not lost: it goes, with its original bytes, to the
dead-letter topic of the route it belonged to (``platsync dlq list``), and the stamper goes on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from connectors.capture.capture_state import CaptureState
from connectors.capture.envelope import EnvelopeError, TransactionStamper
from connectors.capture.keycloak_converter import KeycloakAccountConverter
from connectors.capture.publisher import DeliveryError, Publisher
from connectors.capture.runner import keycloak_converter, transaction_stamper
from streams.core.model import CAPTURED_STORES, ChangeEvent, route_for_source
from streams.runtime.confluent_wire import codec_for
from streams.runtime.deadletter import DeadLetterWriter, IncomingMessage
from streams.runtime.kafka_config import client_config
from streams.runtime.log_repeats import OutageLog
from streams.runtime.retry import Backoff, retry
from streams.runtime.settings import Settings

log = logging.getLogger("platsync.stamp")
MAX_RECORDS = 2048
RETRY_MAX_S = 1.0
MALFORMED = "malformed_envelope"
HINT = ("the raw record is not a Debezium change envelope of this store: check the KafkaConnector's converters "
        "(JsonConverter, schemas.enable=false) and transforms; 'platsync dlq retry' re-drives it after a fix")

StamperFactory = Callable[[Settings, str, str], "TransactionStamper | KeycloakAccountConverter"]


def raw_topic(settings: Settings, side: str, store: str) -> str:
    """The raw topic Kafka Connect writes one database's Debezium records to (infra/k8s)."""
    return f"{settings.topic_prefix}.raw.{side}.{store}"


def stamp_group(settings: Settings, side: str) -> str:
    """The stamper's consumer group."""
    return f"{settings.topic_prefix}-stamp-{side}"


def default_stamper(settings: Settings, side: str, store: str) -> TransactionStamper | KeycloakAccountConverter:
    """The embedded runner's converter of one store."""
    return keycloak_converter(settings, side) if store == "keycloak" else transaction_stamper(settings, side, store)


@dataclass
class StoreStamp:
    """One raw topic: its converter, publisher and saved state."""

    settings: Settings
    side: str
    store: str
    stamper: TransactionStamper | KeycloakAccountConverter
    publisher: Publisher
    state: CaptureState | None = None

    def restore(self) -> None:
        """Markers (and Keycloak account states) and progress saved by an earlier run of this side's capture."""
        self.state = CaptureState.restore(self.settings, self.side, self.store, self.stamper)

    def save(self, produced: Sequence[ChangeEvent]) -> None:
        """Persist markers (when they changed) and progress, as the embedded runner does."""
        if self.state is None:
            raise RuntimeError(f"{self.side}.{self.store}: restore() must run before save()")
        self.state.save(self.stamper, produced, self.stamper.echoes_dropped)

    @property
    def last_lsn(self) -> int:
        """The newest source position that reached the broker."""
        return self.state.last_lsn if self.state else 0

    @property
    def last_commit_ts_ms(self) -> int:
        """The commit time of :attr:`last_lsn`."""
        return self.state.last_commit_ts_ms if self.state else 0


@dataclass
class PollReport:
    """What one poll did."""

    records: int = 0
    events: int = 0
    dead_letters: int = 0
    #: store -> (events published, echoes dropped, last LSN, last commit time ms): for the metrics
    per_store: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)


class SideStamper:
    """Consumes one side's raw topics and publishes their change events (see the module docstring)."""

    def __init__(self, settings: Settings, side: str, stores: Sequence[str] | None = None,
                 stamper_factory: StamperFactory = default_stamper, stop: threading.Event | None = None,
                 on_retry: Callable[[str], None] = lambda _what: None) -> None:
        self.settings, self.side = settings, side
        self.stop = stop or threading.Event()
        self.on_retry = on_retry  # called while waiting out a failure (the CLI keeps its health current)
        codec = codec_for(settings)  # with a schema registry: the Confluent wire format, like the runner
        self.stores: dict[str, StoreStamp] = {}
        for store in stores or CAPTURED_STORES[side]:
            stamp = StoreStamp(settings, side, store, stamper_factory(settings, side, store),
                               Publisher(settings, settings.topic(side, store), f"platsync-{side}-stamp-{store}",
                                         codec=codec, principal=f"capture-{side}"))
            stamp.restore()
            self.stores[raw_topic(settings, side, store)] = stamp
        self.dead_letters = DeadLetterWriter(settings, route_for_source(side), client_id=f"platsync-{side}-stamp-dlq",
                                             codec=codec, principal=f"capture-{side}")
        self.consumer = Consumer({
            **client_config(settings, f"platsync-{side}-stamp", f"capture-{side}"),
            "group.id": stamp_group(settings, side),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "enable.partition.eof": False,
        })
        self.consumer.subscribe(sorted(self.stores))

    def poll_once(self, timeout_s: float = 0.5) -> PollReport:
        """Handle what one poll returns; offsets are committed only after everything was acknowledged."""
        messages = self.consumer.consume(num_messages=MAX_RECORDS, timeout=timeout_s)
        report = PollReport()
        by_topic: dict[str, list[Message]] = {}
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(err)
            by_topic.setdefault(msg.topic(), []).append(msg)
        for topic, records in by_topic.items():
            stamp = self.stores[topic]
            echoes = stamp.stamper.echoes_dropped
            events = self._convert(records, stamp, report)
            self._retry(lambda s=stamp, e=events: s.publisher.publish(e), f"publishing to {stamp.publisher.topic}")
            stamp.save(events)
            report.records += len(records)
            report.events += len(events)
            report.per_store[stamp.store] = (len(events), stamp.stamper.echoes_dropped - echoes, stamp.last_lsn,
                                             stamp.last_commit_ts_ms)
        if report.dead_letters:
            self._retry(self.dead_letters.flush, "writing dead letters")
        if by_topic:
            offsets = {(m.topic(), m.partition()): m.offset() + 1 for ms in by_topic.values() for m in ms}
            self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())],
                                 asynchronous=False)
        return report

    def _convert(self, records: list[Message], stamp: StoreStamp, report: PollReport) -> list[ChangeEvent]:
        events: list[ChangeEvent] = []
        for msg in records:
            value = msg.value()
            try:
                text = None if value is None else value.decode("utf-8")
                events.extend(stamp.stamper.convert(None, text))
            except (EnvelopeError, UnicodeDecodeError) as exc:
                # The error text may quote row values: it goes to the dead letter, not to the log.
                log.warning("%s offset %d: dead-lettered (%s)", msg.topic(), msg.offset(), type(exc).__name__)
                self.dead_letters.add(IncomingMessage(msg.topic(), msg.partition(), msg.offset(), msg.key(), value),
                                      MALFORMED, str(exc), HINT)
                report.dead_letters += 1
        if isinstance(stamp.stamper, KeycloakAccountConverter):
            events.extend(stamp.stamper.finish_batch())
        return events

    def _retry(self, action: Callable[[], Any], what: str) -> None:
        """Run ``action`` until it succeeds (the broker may be away); :class:`DeliveryError` once stopped."""
        outage = OutageLog(log, what)

        def failed(exc: BaseException, _attempts: int, delay: float) -> None:
            outage.failed(type(exc).__name__, delay)  # the text may quote a record: the class only
            self.on_retry(what)

        retry(action, what, retry_on=(DeliveryError, KafkaException, RuntimeError),
              backoff=Backoff(0.1, RETRY_MAX_S), stop=self.stop, on_failure=failed,
              on_success=lambda _failed: outage.recovered())

    def assigned(self) -> bool:
        """True once the group gave this stamper its partitions."""
        return bool(self.consumer.assignment())

    def close(self) -> None:
        """Leave the group (offsets are committed per poll)."""
        self.consumer.close()
