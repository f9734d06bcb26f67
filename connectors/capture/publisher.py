"""Publishing a capture's change events: several per message, each batch acknowledged before Debezium
may commit its offsets (at-least-once), oversized changes dead-lettered instead of produced."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

from confluent_kafka import KafkaError, Message, Producer

from connectors.capture.oversized import OversizedChanges, producer_max_bytes
from streams.core.codec import MessageCodec
from streams.core.errors import RetryableError
from streams.core.model import ChangeEvent
from streams.runtime.confluent_wire import codec_for
from streams.runtime.kafka_config import OPERATOR, client_config
from streams.runtime.settings import Settings

FLUSH_TIMEOUT_S = 30.0


class DeliveryError(RetryableError, RuntimeError):
    """The broker did not acknowledge every event of a batch."""


class Publisher:
    """Produces change events to one topic and waits until the broker acknowledged all of them."""

    def __init__(self, settings: Settings, topic: str, client_id: str, codec: MessageCodec | None = None,
                 principal: str = OPERATOR) -> None:
        self.topic = topic
        # Plain framing, or the Confluent wire format with a schema registry (streams/runtime/confluent_wire.py).
        codec = codec or codec_for(settings)
        self._encode_change, self._encode_batch = codec.encode_change, codec.encode_change_batch
        self._config = {
            **client_config(settings, client_id, principal),  # bootstrap, TLS/SASL (streams/runtime/kafka_config.py)
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 20000,  # then the batch is retried whole (see handleJsonBatch)
            "queue.buffering.max.messages": 500000,
            "batch.num.messages": 10000,
            "message.max.bytes": producer_max_bytes(settings),
        }
        self._producer = Producer(self._config)
        # The topic is <prefix>.<side>.<store>: its side names the route an oversized change belonged to.
        self.oversized = OversizedChanges(settings, topic.rsplit(".", 2)[-2], topic, client_id, codec)
        self._max_events = max(1, settings.capture_events_per_message)
        self._max_bytes = max(1, settings.capture_message_max_bytes)
        self._errors: list[str] = []
        self._acked = 0

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(str(err))  # not the key: a Keycloak change is keyed by its username
        else:
            self._acked += 1

    def _flush(self, stop: threading.Event | None) -> int:
        """Wait up to :data:`FLUSH_TIMEOUT_S` for every delivery report, or until ``stop`` is set (a
        process stopping during a link cut must not wait out the timeout); return what is still queued."""
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        while True:
            remaining = int(self._producer.flush(max(0.0, min(0.5, deadline - time.monotonic()))))
            if not remaining or time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                return remaining

    def publish(self, events: Sequence[ChangeEvent], stop: threading.Event | None = None) -> None:
        """Produce ``events`` in order and block until each message is acknowledged; raise otherwise
        (also when ``stop`` is set while waiting).

        Consecutive events share a message (``change_batch``) up to ``capture_events_per_message``
        events or ``capture_message_max_bytes``: the consumers' and the broker's cost is mostly per
        message. A group of one is sent as a plain ``change_event`` message.
        """
        self._errors.clear()
        self._acked = 0
        messages = 0
        encode_change, encode_change_batch = self._encode_change, self._encode_batch
        encoded = self.oversized.split([(e, encode_change(e)) for e in events])
        try:
            self.oversized.flush()
        except RuntimeError as exc:  # retried with the batch, like an unacknowledged change
            raise DeliveryError(f"{self.topic}: dead letters of oversized changes not acknowledged: {exc}") from exc
        for group in _groups(encoded, self._max_events, self._max_bytes):
            first = group[0][0]
            value = group[0][1] if len(group) == 1 else encode_change_batch([v for _, v in group])
            key = f"{first.table}:{first.key}".encode()
            messages += 1
            while True:
                try:
                    self._producer.produce(self.topic, value=value, key=key, on_delivery=self._on_delivery)
                    break
                except BufferError:
                    self._producer.poll(0.05)
        remaining = self._flush(stop)
        if remaining or self._errors or self._acked != messages:
            # After timed-out messages the idempotent producer bumps its epoch, which the broker
            # answers with PRODUCER_FENCED: start over with a new producer (a new producer id).
            self._producer.purge()
            self._producer = Producer(self._config)
            raise DeliveryError(
                f"{self.topic}: {len(events)} events in {messages} messages produced, {self._acked} acknowledged, "
                f"{remaining} still queued; errors: {self._errors[:5]}")


def _groups(encoded: Sequence[tuple[ChangeEvent, bytes]], max_events: int,
            max_bytes: int) -> Iterator[list[tuple[ChangeEvent, bytes]]]:
    """Consecutive slices of ``encoded`` within both limits (an event larger than ``max_bytes`` alone)."""
    group: list[tuple[ChangeEvent, bytes]] = []
    size = 0
    for item in encoded:
        if group and (len(group) >= max_events or size + len(item[1]) > max_bytes):
            yield group
            group, size = [], 0
        group.append(item)
        size += len(item[1])
    if group:
        yield group
