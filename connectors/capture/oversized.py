"""Changes too large for a Kafka message: dead-lettered by the capture instead of stalling it.

A signed record can be larger than ``kafka_message_max_bytes``. The broker would refuse it on every
attempt, and since the capture retries a batch until the broker acknowledges it, one such row would
hold up every later change of its store. Instead its event is left out of the stream and reported as
a dead letter of the route that would have carried it, without its bytes (they do not fit a message
either) but with where it is: table, key, version and WAL position. The row stays in the source
store; after the limit is raised, ``platsync resync`` captures it again.
"""

from __future__ import annotations

from collections.abc import Sequence

from streams.core.codec import MessageCodec
from streams.core.model import ROUTES, ChangeEvent
from streams.runtime.deadletter import DeadLetterWriter, IncomingMessage
from streams.runtime.settings import Settings

#: What a message adds around its value (record batch and request headers, the key), with room to spare.
MESSAGE_OVERHEAD_BYTES = 64 * 1024
HINT = ("raise kafka_message_max_bytes (and max.message.bytes of the topics on a real Kafka) above this size, "
        "then run 'platsync resync --side {side}' to capture the row again; it is still in the source store")


def route_from(side: str) -> str:
    """The route whose source is ``side``."""
    return next(name for name, (source, _target) in ROUTES.items() if source == side)


def value_limit(settings: Settings) -> int:
    """The largest encoded change event that still fits a message."""
    return max(1, settings.kafka_message_max_bytes - MESSAGE_OVERHEAD_BYTES)


def producer_max_bytes(settings: Settings) -> int:
    """librdkafka's ``message.max.bytes`` for producers of change messages (a request holds one batch)."""
    return settings.kafka_message_max_bytes + MESSAGE_OVERHEAD_BYTES


class OversizedChanges:
    """Collects a capture's oversized events and produces their dead letters durably."""

    def __init__(self, settings: Settings, side: str, topic: str, client_id: str,
                 codec: MessageCodec | None = None) -> None:
        self.limit = value_limit(settings)
        self.side = side
        self.topic = topic
        self.reported = 0
        self._writer: DeadLetterWriter | None = None
        self._settings = settings
        self._client_id = client_id
        self._codec = codec

    def split(self, encoded: Sequence[tuple[ChangeEvent, bytes]]) -> list[tuple[ChangeEvent, bytes]]:
        """The events that fit; the others are queued as dead letters (call :meth:`flush` before acking)."""
        fitting = [item for item in encoded if len(item[1]) <= self.limit]
        if len(fitting) == len(encoded):
            return fitting
        if self._writer is None:
            self._writer = DeadLetterWriter(self._settings, route_from(self.side), client_id=self._client_id,
                                            codec=self._codec, principal=f"capture-{self.side}")
        for event, value in encoded:
            if len(value) > self.limit:
                self._writer.add(
                    IncomingMessage(self.topic, -1, -1, f"{event.table}:{event.key}".encode(), None), "oversized",
                    f"{event.source_side}/{event.source_store} {event.table} {event.key} version {event.version} "
                    f"(lsn {event.lsn}, api {event.api_id}): change event of {len(value)} bytes exceeds "
                    f"{self.limit} (kafka_message_max_bytes {self._settings.kafka_message_max_bytes} less "
                    f"{MESSAGE_OVERHEAD_BYTES} for headers)", HINT.format(side=self.side))
        return fitting

    def flush(self) -> None:
        """Produce the queued dead letters and wait for the broker (raises if it does not acknowledge)."""
        if self._writer is not None:
            self.reported += self._writer.flush()
